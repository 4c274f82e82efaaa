"""Call authentication (STIR/SHAKEN): the signing credentials and trust anchors, each
enterprise's verified business caller name, and the record of every signing and
verification."""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Enterprise, NetworkClient
from kernel.tenancy import TenantQuerySet

from .identities import Identity


class SigningCredential(models.Model):
    """An X.509 certificate and, for those the portal signs with, its ES256 private key
    (encrypted at rest, never shown again). A trust anchor is a root the verifier
    accepts. As in SHAKEN PKIs, the operator holds two certificates under it, both with
    its SPC in a TNAuthList (RFC 8226): an end-entity one that signs calls, and an
    issuing CA for its enterprises' delegate certificates (RFC 9060), which cover
    exactly their number blocks. Verifiers refuse a CA as a PASSporT signer."""

    class Kind(models.TextChoices):
        TRUST_ANCHOR = "anchor", "Trust anchor (STI-CA root)"
        OPERATOR = "operator", "Operator signing certificate (end entity)"
        # Max 10 characters: the column's length, so the migration changes choices only.
        OPERATOR_CA = "issuing_ca", "Operator issuing CA (for delegate certificates)"
        DELEGATE = "delegate", "Enterprise delegate certificate"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    name = models.CharField(max_length=120)
    enterprise = models.ForeignKey(
        Enterprise,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="signing_credentials",
    )
    issuer = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="issued"
    )
    slug = models.SlugField(
        max_length=80, unique=True, help_text="Its public URL: /certs/<slug>.pem"
    )
    certificate_pem = models.TextField()
    private_key_encrypted = models.BinaryField(null=True, blank=True, editable=False)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="delegate", enterprise__isnull=False)
                | (~Q(kind="delegate") & Q(enterprise__isnull=True)),
                name="credential_delegate_has_enterprise",
            )
        ]

    def __str__(self):
        return self.name

    @property
    def can_sign(self) -> bool:
        return self.private_key_encrypted is not None

    @property
    def is_current(self) -> bool:
        now = timezone.now()
        return self.active and self.not_before <= now < self.not_after


class CallerName(models.Model):
    """The business name (and logo, and default call reason) the enterprise's calls
    carry as Rich Call Data, once operator staff have vetted it."""

    class Vetting(models.TextChoices):
        PENDING = "pending", "Awaiting vetting"
        VETTED = "vetted", "Vetted"
        REJECTED = "rejected", "Rejected"

    enterprise = models.OneToOneField(
        Enterprise, on_delete=models.CASCADE, related_name="caller_name"
    )
    name = models.CharField(max_length=64, help_text="Shown to the people the enterprise calls.")
    logo_url = models.URLField(blank=True, help_text="HTTPS URL of the logo (icn).")
    call_reason = models.CharField(
        max_length=64, blank=True, help_text="Default call reason (crn)."
    )
    vetting = models.CharField(max_length=10, choices=Vetting.choices, default=Vetting.PENDING)
    vetting_note = models.CharField(max_length=255, blank=True)
    vetted_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.name} ({self.get_vetting_display().lower()})"

    @property
    def is_vetted(self) -> bool:
        return self.vetting == self.Vetting.VETTED


class CallRecord(models.Model):
    """One signing (outgoing call) or verification (incoming call) and its outcome, with
    the decision walk that led to it. Kept for ``CALL_RECORD_RETENTION_DAYS``."""

    class Direction(models.TextChoices):
        OUTGOING = "outgoing", "Outgoing (signed)"
        INCOMING = "incoming", "Incoming (verified)"

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # None when neither number belongs to an enterprise of the portal. Neither this nor
    # the identity has an index of its own: the Meta's lead with them, and every index
    # costs each of the hundreds of records a second their writer inserts.
    enterprise = models.ForeignKey(
        Enterprise, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        db_index=False,
    )  # fmt: skip
    identity = models.ForeignKey(
        Identity, on_delete=models.SET_NULL, null=True, blank=True, related_name="call_records",
        db_index=False,
    )  # fmt: skip
    network_client = models.ForeignKey(
        NetworkClient, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    direction = models.CharField(max_length=8, choices=Direction.choices)
    orig_tn = models.CharField(max_length=32)
    dest_tns = models.JSONField(default=list)
    attestation = models.CharField(max_length=1, blank=True)
    verstat = models.CharField(max_length=32, blank=True)
    reason = models.CharField(max_length=255, blank=True)
    checks = models.JSONField(default=list, help_text="[[check, passed, detail], …]")
    origid = models.CharField(max_length=64, blank=True)
    caller_name = models.CharField(max_length=64, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    # Made when the call is answered: the record travels through the record stream,
    # which may deliver it twice, and is written once (telephony/callauth/records.py).
    record_id = models.UUIDField(null=True, blank=True, unique=True, editable=False)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["enterprise", "direction", "-created_at"]),
            models.Index(fields=["identity", "direction", "-created_at"]),
        ]

    def __str__(self):
        return f"{self.direction} {self.orig_tn} {self.attestation or self.verstat}"
