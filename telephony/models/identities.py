"""Identities employees hold, the grants that share them, and offboarding receipts."""

from datetime import datetime
from typing import Self

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Enterprise, Service
from kernel.tenancy import TenantQuerySet

from .inventory import SimLine, TelephoneNumber


class IdentityQuerySet(TenantQuerySet["Identity"]):
    def live(self) -> Self:
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
    # The TN it had before: the one it left when relocated, or held when removed (its
    # number row moves on), so that the sync engine can make sure the HSS lets it go.
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
        return self.number.e164 if self.number is not None else ""

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
        if self.line is not None:
            imsi = self.line.imsi
            mnc_digits = settings.IMSI_MNC_DIGITS
            mcc, mnc = imsi[:3], imsi[3 : 3 + mnc_digits]
            return f"{imsi}@ims.mnc{mnc.zfill(3)}.mcc{mcc}.3gppnetwork.org"
        return f"{self.tn[1:]}@{self.domain}" if self.tn else ""

    def service_labels(self) -> list[str]:
        return [Service(s).label for s in self.services if s in Service.values]


class GrantQuerySet(TenantQuerySet["Grant"]):
    def current(self, at: datetime | None = None) -> Self:
        """Grants not ended (revoked or expired): the active and the paused ones."""
        at = at or timezone.now()
        return self.filter(revoked_at=None).filter(Q(valid_until=None) | Q(valid_until__gt=at))

    def active(self, at: datetime | None = None) -> Self:
        """Grants in force: not ended and not paused."""
        return self.current(at).filter(paused_at=None)


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
    # Set while its owner or its grantee is deactivated: no rights, but not ended.
    paused_at = models.DateTimeField(null=True, blank=True)

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
    def has_ended(self) -> bool:
        return self.revoked_at is not None or (
            self.valid_until is not None and self.valid_until <= timezone.now()
        )

    @property
    def is_active(self) -> bool:
        return not self.has_ended and self.paused_at is None

    @property
    def rights(self) -> str:
        return " and ".join(
            r
            for r, on in (("make", self.can_make_calls), ("receive", self.can_receive_calls))
            if on
        )


class OffboardingReceipt(models.Model):
    """What the leaver's kill-switch did, or a deactivation or reactivation, step by
    step. Steps that the HSS must carry out point at their identity, whose sync state
    tells whether they are done."""

    class Kind(models.TextChoices):
        OFFBOARDING = "offboarding", "Offboarding"
        DEACTIVATION = "deactivation", "Deactivation"
        REACTIVATION = "reactivation", "Reactivation"

    enterprise = models.ForeignKey(Enterprise, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(
        max_length=12, choices=Kind.choices, default=Kind.OFFBOARDING, db_default=Kind.OFFBOARDING
    )
    # A deactivation's identities that it suspended: the ones reactivation resumes.
    suspended_identities = models.JSONField(default=list, blank=True)
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
        return f"{self.get_kind_display()} of {self.user} on {self.created_at:%Y-%m-%d}"
