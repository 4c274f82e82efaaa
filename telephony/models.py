"""The operator's inventory given to an enterprise (number blocks with their numbers,
SIM lines), the identities an enterprise creates for its employees, sharing grants,
and the state of each identity's sync to the HSS."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Enterprise, Service
from portal.tenancy import TenantQuerySet


class NumberBlock(models.Model):
    """A range of E.164 numbers the operator assigns to an enterprise. Every number of
    the block has its own ``TelephoneNumber`` row, so that allocation and quarantine
    are row states and no number can belong to two enterprises (it is unique)."""

    MAX_SIZE = 100_000

    enterprise = models.ForeignKey(
        Enterprise, on_delete=models.PROTECT, related_name="number_blocks"
    )
    country = models.CharField(max_length=2, help_text="ISO 3166 country of the numbers.")
    first_number = models.CharField(max_length=16)
    last_number = models.CharField(max_length=16)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["first_number"]

    def __str__(self):
        return f"{self.first_number}–{self.last_number}"

    @property
    def size(self) -> int:
        return int(self.last_number[1:]) - int(self.first_number[1:]) + 1


class TelephoneNumber(models.Model):
    """One TN of a block: free, assigned to an identity, or in quarantine after its
    identity left it (it is not reused before ``quarantined_until``)."""

    class Status(models.TextChoices):
        FREE = "free", "Free"
        ASSIGNED = "assigned", "Assigned"
        QUARANTINED = "quarantined", "Quarantined"

    enterprise = models.ForeignKey(Enterprise, on_delete=models.PROTECT, related_name="+")
    block = models.ForeignKey(NumberBlock, on_delete=models.CASCADE, related_name="numbers")
    e164 = models.CharField("TN", max_length=16, unique=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.FREE)
    quarantined_until = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["e164"]
        indexes = [models.Index(fields=["enterprise", "status", "e164"])]

    def __str__(self):
        return self.e164


class SimLine(models.Model):
    """A SIM from the enterprise's line pool, loaded by the operator."""

    enterprise = models.ForeignKey(Enterprise, on_delete=models.PROTECT, related_name="sim_lines")
    imsi = models.CharField("IMSI", max_length=15, unique=True)
    iccid = models.CharField("ICCID", max_length=20, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["imsi"]

    def __str__(self):
        return self.imsi


class IdentityQuerySet(TenantQuerySet):
    def live(self):
        """Identities that exist in the network (active or suspended), not removed ones."""
        return self.exclude(status=Identity.Status.REMOVED)


class Identity(models.Model):
    """An employee's MMTEL identity: TN, optional SIM line, derived IMPUs and IMPI,
    display name, entitled services. An employee may hold several."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        REMOVED = "removed", "Removed"

    # CNAM carries at most 15 characters; the same name goes into RCD's "nam".
    DISPLAY_NAME_MAX = 15

    enterprise = models.ForeignKey(Enterprise, on_delete=models.PROTECT, related_name="identities")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="identities"
    )
    number = models.OneToOneField(
        TelephoneNumber, on_delete=models.PROTECT, null=True, blank=True, related_name="identity"
    )
    line = models.OneToOneField(
        SimLine, on_delete=models.PROTECT, null=True, blank=True, related_name="identity"
    )
    alias = models.CharField(
        max_length=64, blank=True, help_text="Optional user part of sip:alias@<enterprise domain>."
    )
    display_name = models.CharField(max_length=DISPLAY_NAME_MAX)
    services = models.JSONField(default=list)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    # The TN as it was when the identity was removed: its number row moves on.
    former_tn = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = IdentityQuerySet.as_manager()

    class Meta:
        ordering = ["owner__full_name", "created_at"]
        verbose_name_plural = "identities"
        constraints = [
            models.UniqueConstraint(
                fields=["enterprise", "alias"],
                condition=~Q(alias="") & ~Q(status="removed"),
                name="identity_alias_unique_per_enterprise",
            ),
            # A live identity always has a number; a removed one has given it back.
            models.CheckConstraint(
                condition=Q(status="removed", number__isnull=True, line__isnull=True)
                | (~Q(status="removed") & Q(number__isnull=False)),
                name="identity_live_has_number",
            ),
        ]

    def __str__(self):
        return f"{self.tn or self.former_tn} ({self.display_name})"

    @property
    def tn(self) -> str:
        return self.number.e164 if self.number_id else ""

    @property
    def domain(self) -> str:
        return self.enterprise.sip_domain

    @property
    def impus(self) -> list[str]:
        """The implicit registration set: tel URI, SIP URI with user=phone, alias."""
        if not self.tn:
            return []
        uris = [f"tel:{self.tn}", f"sip:{self.tn}@{self.domain};user=phone"]
        if self.alias:
            uris.append(f"sip:{self.alias}@{self.domain}")
        return uris

    @property
    def impi(self) -> str:
        """IMSI-derived for a SIM (TS 23.003 13.3), else the TN in the enterprise's realm."""
        if self.line_id:
            imsi = self.line.imsi
            mnc_digits = settings.IMSI_MNC_DIGITS
            mcc, mnc = imsi[:3], imsi[3 : 3 + mnc_digits]
            return f"{imsi}@ims.mnc{mnc.zfill(3)}.mcc{mcc}.3gppnetwork.org"
        return f"{self.tn[1:]}@{self.domain}" if self.tn else ""

    def service_labels(self) -> list[str]:
        return [Service(s).label for s in self.services if s in Service.values]


class GrantQuerySet(TenantQuerySet):
    def active(self, at=None):
        at = at or timezone.now()
        return self.filter(revoked_at=None).filter(Q(valid_until=None) | Q(valid_until__gt=at))


class Grant(models.Model):
    """An identity's owner permits another employee of the enterprise to make and/or
    receive calls with it (TS 22.173 4.6), optionally until a time; revocable."""

    class EndReason(models.TextChoices):
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"
        OWNER_LEFT = "owner_left", "Owner left"
        GRANTEE_LEFT = "grantee_left", "Grantee left"
        IDENTITY_REMOVED = "identity_removed", "Identity removed"

    enterprise = models.ForeignKey(Enterprise, on_delete=models.PROTECT, related_name="+")
    identity = models.ForeignKey(Identity, on_delete=models.PROTECT, related_name="grants")
    grantee = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="received_grants"
    )
    can_make_calls = models.BooleanField(default=True)
    can_receive_calls = models.BooleanField(default=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=20, choices=EndReason.choices, blank=True)

    objects = GrantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(can_make_calls=True) | Q(can_receive_calls=True),
                name="grant_gives_some_right",
            ),
        ]

    def __str__(self):
        return f"{self.identity.tn or self.identity.former_tn} → {self.grantee}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (
            self.valid_until is None or self.valid_until > timezone.now()
        )

    @property
    def rights(self) -> str:
        return " and ".join(
            r
            for r, on in (("make", self.can_make_calls), ("receive", self.can_receive_calls))
            if on
        )


class IdentitySync(models.Model):
    """The transactional outbox row and the visible sync state of one identity.

    A change bumps ``desired_version`` in the change's own transaction; a worker pushes
    the identity's *current* desired state and records the version it pushed. Pending
    while ``synced_version < desired_version``.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SYNCED = "synced", "Synced"
        FAILED = "failed", "Failed"
        DRIFT = "drift", "Drift found"

    identity = models.OneToOneField(
        Identity, on_delete=models.CASCADE, primary_key=True, related_name="sync"
    )
    enterprise = models.ForeignKey(Enterprise, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    desired_version = models.PositiveIntegerField(default=1)
    synced_version = models.PositiveIntegerField(default=0)
    requested_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Tries of the pending version."
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    remote_operation_id = models.CharField(max_length=64, blank=True)
    # The MSISDN last written to the HSS: after a relocation the old one is removed.
    pushed_msisdn = models.CharField(max_length=16, blank=True)
    pushed_imsi = models.CharField(max_length=15, blank=True)
    drift = models.JSONField(default=dict, blank=True)
    drift_found_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["state", "requested_at"])]

    def __str__(self):
        return f"{self.identity}: {self.state}"

    @property
    def is_pending(self) -> bool:
        return self.synced_version < self.desired_version


class SyncAttempt(models.Model):
    """One push of an identity to the HSS, or one reconcile finding: the sync history."""

    class Outcome(models.TextChoices):
        SYNCED = "synced", "Synced"
        RETRYING = "retrying", "Transient failure, will retry"
        FAILED = "failed", "Failed"
        DRIFT = "drift", "Drift found"

    enterprise = models.ForeignKey(Enterprise, on_delete=models.PROTECT, related_name="+")
    identity = models.ForeignKey(Identity, on_delete=models.CASCADE, related_name="sync_attempts")
    version = models.PositiveIntegerField()
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    detail = models.TextField(blank=True)
    operation_id = models.CharField(max_length=64, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.identity_id} v{self.version} {self.outcome}"


class SimulatedSubscription(models.Model):
    """The builtin HSS's own store: what a real HSS would hold, kept apart from the
    portal's desired state so that drift and reconcile are real. Keyed by MSISDN."""

    msisdn = models.CharField(max_length=16, primary_key=True)
    imsi = models.CharField(max_length=15, blank=True)
    impi = models.CharField(max_length=255)
    impus = models.JSONField(default=list)
    enabled = models.BooleanField(default=True)
    services = models.JSONField(default=list)
    display_name = models.CharField(max_length=64, blank=True)
    shared_msisdns = models.JSONField(default=list)
    operation_id = models.CharField(max_length=64, blank=True)
    deregistered_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["msisdn"]

    def __str__(self):
        return self.msisdn


class OffboardingReceipt(models.Model):
    """What the leaver's kill-switch did, step by step. Steps that the HSS must carry
    out point at their identity, whose sync state tells whether they are done."""

    enterprise = models.ForeignKey(Enterprise, on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="offboarding_receipts"
    )
    actor_label = models.CharField(max_length=254)
    steps = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Offboarding of {self.user} on {self.created_at:%Y-%m-%d}"


class ImportJob(models.Model):
    """A CSV import of employees with identities: previewed first (every row's problem
    listed), then run by a worker in small transactions, resumable from ``next_row``."""

    class State(models.TextChoices):
        PREVIEWED = "previewed", "Previewed"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    enterprise = models.ForeignKey(Enterprise, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    filename = models.CharField(max_length=255)
    # Kept in the database, not on a local disk, so that any worker machine can run it.
    csv_text = models.TextField()
    send_invitations = models.BooleanField(default=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PREVIEWED)
    total_rows = models.PositiveIntegerField(default=0)
    next_row = models.PositiveIntegerField(default=0, help_text="First data row not yet applied.")
    created_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    problems = models.JSONField(default=list, blank=True, help_text="[{row, message}], capped.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Moves with every committed chunk: a running job that stops moving lost its worker.
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Import {self.filename} ({self.state})"

    @property
    def percent(self) -> int:
        return int(100 * self.next_row / self.total_rows) if self.total_rows else 100
