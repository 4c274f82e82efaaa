"""The outbox and visible state of each identity's sync to the HSS, its history, and
the builtin (simulated) HSS's own store."""

from django.db import models
from django.utils import timezone

from accounts.models import Enterprise
from kernel.tenancy import TenantQuerySet

from .identities import Identity


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
        default=0, help_text="Failed tries since the last success or the last new change."
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
    # The task queue the latest change's pushes go to ("": the sync queue), so that the
    # sweep and the retries keep an import's pushes on the bulk queue.
    push_queue = models.CharField(max_length=16, blank=True)
    drift_found_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["state", "requested_at"]),
            # The late changes of one queue, the longest waiting first (sync._claims),
            # without walking an import's pending rows on another queue.
            models.Index(fields=["push_queue", "state", "requested_at"]),
        ]

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
    devices = models.JSONField(default=list)
    operation_id = models.CharField(max_length=64, blank=True)
    deregistered_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["msisdn"]

    def __str__(self):
        return self.msisdn


class SimulatedHssOutage(models.Model):
    """The builtin HSS's outage switch (one row). While it is on, every call to the
    simulated HSS fails the way a real HSS's do during an outage (transiently), in every
    process, so operator staff can show that changes wait, retry and all land once it is
    back; the fault drills use it. It ends when switched off or at ``until``."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    down = models.BooleanField("HSS down", default=False)
    until = models.DateTimeField(
        null=True, blank=True, help_text="Back by itself at this time; empty: until switched off."
    )
    reason = models.CharField(max_length=200, blank=True)
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "simulated HSS outage"

    def __str__(self):
        return "Simulated HSS outage"
