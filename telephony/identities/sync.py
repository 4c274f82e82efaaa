"""The worker side of the HSS sync: push an identity's current desired state, the
sweep that re-queues changes whose task was lost, and the reconcile that compares the
HSS with what the portal wants and repairs drift.

A push claims the identity's sync row (a lease, so that two workers never push the
same identity at once), reads the identity afresh, writes through the HSS backend with
an idempotent upsert, and records the version it pushed. A worker that dies between the
HSS write and the record leaves the lease to expire; the sweep re-queues the change and
the repeated push writes the same state again.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts import audit
from accounts.audit import Actor
from kernel import enqueue, generations
from telephony.identities.hss import (
    Change,
    DeviceSettings,
    HssBackend,
    HssError,
    HssPermanentError,
    HssTransientError,
    SharedAccess,
    Subscription,
)
from telephony.identities.hss import backend as hss_backend
from telephony.models import (
    Grant,
    Identity,
    IdentitySync,
    Registration,
    SyncAttempt,
    TelephoneNumber,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushResult:
    outcome: str  # synced | retry | failed | skipped | handed_back (push it again)
    retry_in: float | None = None
    attempt: int = 0  # failed tries so far: the retry follows them


# --- Desired state --------------------------------------------------------------------


def shared_access(owner_ids) -> dict[int, tuple[SharedAccess, ...]]:
    """For each owner, the TNs of other identities they may use through active grants."""
    shared = defaultdict(list)
    grants = (
        Grant.objects.active()
        .filter(grantee_id__in=owner_ids, identity__status=Identity.Status.ACTIVE)
        .order_by("identity__number__e164")
        .values_list("grantee_id", "identity__number__e164", "can_make_calls", "can_receive_calls")
    )
    for grantee_id, tn, can_make_calls, can_receive_calls in grants:
        shared[grantee_id].append(SharedAccess(tn or "", can_make_calls, can_receive_calls))
    return {owner: tuple(items) for owner, items in shared.items()}


def device_settings(identity_ids) -> dict[int, tuple[DeviceSettings, ...]]:
    """For each identity, the settings its users changed on their devices (a device
    left at the defaults needs no entry, so a UE coming or going changes nothing)."""
    found = defaultdict(list)
    customised = (
        Registration.objects.filter(identity_id__in=identity_ids)
        .filter(
            ~Q(enabled_services=[])
            | ~Q(default_impu="")
            | Q(do_not_disturb=True)
            | ~Q(ring_priority=3)
        )
        .order_by("device_key")
        .values_list(
            "identity_id",
            "device_key",
            "enabled_services",
            "default_impu",
            "do_not_disturb",
            "ring_priority",
        )
    )
    for identity_id, device, services, default_impu, do_not_disturb, priority in customised:
        found[identity_id].append(
            DeviceSettings(
                device=device,
                services=tuple(sorted(services)),
                default_impu=default_impu,
                do_not_disturb=do_not_disturb,
                ring_priority=priority,
            )
        )
    return {identity: tuple(items) for identity, items in found.items()}


def desired_subscription(identity: Identity, shared=None, devices=None) -> Subscription | None:
    """What the HSS should hold for this identity; None when it should hold nothing."""
    if identity.status == Identity.Status.REMOVED:
        return None
    if shared is None:
        shared = shared_access([identity.owner_id])
    if devices is None:
        devices = device_settings([identity.pk])
    return Subscription(
        msisdn=identity.tn,
        imsi=identity.line.imsi if identity.line is not None else "",
        impi=identity.impi,
        impus=tuple(identity.impus),
        enabled=identity.status == Identity.Status.ACTIVE,
        services=tuple(sorted(identity.services)),
        display_name=identity.display_name,
        shared=shared.get(identity.owner_id, ()),
        devices=devices.get(identity.pk, ()),
    )


def _held_by_live_identity(msisdn: str, *, other_than: int) -> bool:
    """Another live identity has this number now: its stale copy must not be removed."""
    return Identity.objects.live().filter(number__e164=msisdn).exclude(pk=other_than).exists()


def _line_in_use(imsi: str, *, other_than: int) -> bool:
    return Identity.objects.live().filter(line__imsi=imsi).exclude(pk=other_than).exists()


# --- Push -----------------------------------------------------------------------------


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff, capped, with jitter: between half and all of the step, so
    that identities failing together do not retry together (attempt counts from 1)."""
    ceiling = min(
        settings.SYNC_BACKOFF_CAP_SECONDS, settings.SYNC_BACKOFF_BASE_SECONDS * 2**attempt
    )
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security


# A push's bookkeeping (its lease, its record) commits without waiting for the WAL to
# reach the disk: each wait costs several milliseconds per push, more than the rest of
# the push's database work. What a PostgreSQL crash may then lose is the last fraction
# of a second of leases and records — never half of one (each commits whole) — and
# that is the case the engine already recovers from for a worker that died after the
# HSS write: the lease expires, the sweep queues the change again, and the push writes
# the same state again (the HSS writes are idempotent) and records it then. The
# identity's own changes (desired state, audit rows) keep waiting for the disk.
NO_FLUSH_WAIT = "SELECT set_config('synchronous_commit', 'off', true)"


@dataclass(frozen=True)
class Claim:
    """A worker's lease on one sync row: the version it pushes, and until when."""

    version: int
    until: datetime
    # What the HSS was last given (read with the lease: no second read of the row).
    pushed_msisdn: str = ""
    pushed_imsi: str = ""
    queue: str = ""  # the queue its pushes go on (``push_queue``)


# A change whose first try has not started this long after it was made waits behind
# others in its queue: the workers are behind. A worker pushing one change then takes
# such late changes along (``push_identities``, ``take_late``), as many as a batch, so
# that a run of single edits (an HR system's calls, one per employee) costs the worker
# and the database what a batch costs. Their own tasks, when they come, find their
# change pushed (and take others along while the workers are still behind); a late
# change is only ever brought forward by this.
LATE_AFTER = timedelta(milliseconds=100)


def _claims(identity_ids, now, attempt: int | None = None, take_late: int = 0) -> dict[int, Claim]:
    """Take the lease on each of these sync rows that is pending; skipped are rows with
    nothing pending, a failure on show, or another worker pushing (that one re-queues
    what changes meanwhile). With ``take_late``, on up to that many late changes of
    the same queue besides (``LATE_AFTER``), first tries all, the longest waiting first.

    ``attempt`` is how many tries the delivery follows (0: a change's first delivery).
    A delivery that does not follow the row's current try count is a copy — the change
    was queued again by another edit or the sweep, or a newer change started afresh —
    and leaves the pending version to the retry that is scheduled, so that a change
    retries as one chain and its tries are counted once. None: try regardless.

    One statement, a round trip of its own: the rows are locked (skipping one that a
    change or another worker holds: that one pushes it), checked and leased at once; its
    commit does not wait for the disk (``NO_FLUSH_WAIT``)."""
    until = now + timedelta(seconds=settings.SYNC_LEASE_SECONDS)
    ids = list(identity_ids)
    postgresql = connection.vendor == "postgresql"
    # On PostgreSQL the rows are locked first, skipping a row that someone holds.
    lock = "FOR UPDATE SKIP LOCKED" if postgresql else ""
    ctes = [f"bookkeeping AS MATERIALIZED ({NO_FLUSH_WAIT})"] if postgresql else []
    ctes.append(
        "own AS MATERIALIZED (SELECT identity_id FROM telephony_identitysync "  # noqa: S608 - fixed fragments
        f"WHERE identity_id IN ({', '.join(['%s'] * len(ids))}) {lock})"
    )
    params: list = [*ids]
    rows = "SELECT identity_id FROM own"
    if take_late:
        # Served by the index on (push_queue, state, requested_at).
        ctes.append(
            "late AS MATERIALIZED (SELECT identity_id FROM telephony_identitysync "  # noqa: S608 - fixed fragments
            "WHERE state = %s AND requested_at < %s AND attempts = 0 "
            "AND next_attempt_at IS NULL AND claimed_until IS NULL "
            "AND synced_version < desired_version AND push_queue = "
            "(SELECT push_queue FROM telephony_identitysync WHERE identity_id = %s) "
            "AND identity_id NOT IN (SELECT identity_id FROM own) "
            f"ORDER BY requested_at LIMIT %s {lock})"
        )
        params += [IdentitySync.State.PENDING, now - LATE_AFTER, ids[0], take_late]
        rows += " UNION ALL SELECT identity_id FROM late"
    same_try = ""
    params += [until, IdentitySync.State.FAILED, now]
    if attempt is not None:
        same_try = "AND attempts = %s"
        params.append(attempt)
    quick = "AND EXISTS (SELECT 1 FROM bookkeeping)" if postgresql else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH {', '.join(ctes)} "  # noqa: S608 - fixed fragments; the values are parameters
            "UPDATE telephony_identitysync SET claimed_until = %s "
            f"WHERE identity_id IN ({rows}) AND synced_version < desired_version "
            "AND state <> %s AND (claimed_until IS NULL OR claimed_until <= %s) "
            f"{same_try} {quick} "
            "RETURNING identity_id, desired_version, pushed_msisdn, pushed_imsi, push_queue",
            params,
        )
        found = cursor.fetchall()
    return {
        pk: Claim(version, until, msisdn, imsi, queue) for pk, version, msisdn, imsi, queue in found
    }


def _write(hss: HssBackend, identity: Identity, claim: Claim, operation_id: str, shared, devices):
    """Bring the HSS in step with the identity; returns what was pushed (or None).

    The number and line the identity left are cleaned up with it — unless another live
    identity holds them now; the backend orders the writes (``HssBackend.apply``)."""
    desired = desired_subscription(identity, shared, devices)
    stale = ""
    if claim.pushed_msisdn and (desired is None or claim.pushed_msisdn != desired.msisdn):
        stale = claim.pushed_msisdn
    if desired is None and not claim.pushed_msisdn:
        stale = identity.former_tn  # removed before its first push landed: be sure
    if stale and _held_by_live_identity(stale, other_than=identity.pk):
        stale = ""
    old_line = claim.pushed_imsi
    released = ""
    if (
        old_line
        and (desired is None or desired.imsi != old_line)
        and not _line_in_use(old_line, other_than=identity.pk)
    ):
        released = old_line
    change = Change(
        desired=desired,
        pushed_msisdn=claim.pushed_msisdn,
        pushed_imsi=claim.pushed_imsi,
        stale_msisdn=stale,
        released_line=released,
    )
    hss.apply(change, operation_id=operation_id)
    # A relocation whose push wrote the new number and then failed was never recorded;
    # if the identity moved on before a retry, that number (now its former one) is known
    # to the HSS but to no push. Removing it is idempotent, and only a push that changes
    # the number pays for it.
    former = identity.former_tn
    if (
        stale
        and former
        and former not in (stale, desired.msisdn if desired else "")
        and not _held_by_live_identity(former, other_than=identity.pk)
    ):
        hss.remove(former, operation_id=operation_id, keep_imsi=desired.imsi if desired else "")
    return desired


# The portal's own database went away: a restart, a failover, a dropped connection.
DATABASE_GONE = (OperationalError, InterfaceError)


def push_identity(
    identity_id: int, *, attempt: int | None = None, take_late: int = 0
) -> PushResult:
    """One sync attempt of one identity (what the ``sync_identity`` task runs; see
    ``_claims`` for ``attempt`` and ``take_late``). Raises DATABASE_GONE when the
    portal's database went away; nothing was recorded then, and the lease is handed
    back if it can be."""
    return push_identities([identity_id], attempt=attempt, take_late=take_late)[identity_id]


def push_identities(
    identity_ids, *, attempt: int | None = None, take_late: int = 0
) -> dict[int, PushResult]:
    """One sync attempt of each of these identities, one after the other: the leases
    are taken and the identities read at once, each after its lease (so that what is
    pushed is at least the version leased), then each is pushed and recorded on its
    own. Late changes taken along (``take_late``) are pushed after them, and what
    follows for them (a retry, a lease handed back) is queued here: their own tasks
    have come and gone or will find nothing. DATABASE_GONE as for ``push_identity``;
    the leases not recorded yet are handed back."""
    ids = list(dict.fromkeys(identity_ids))
    results = {pk: PushResult("skipped") for pk in ids}
    claims = _claims(ids, timezone.now(), attempt, take_late)
    if not claims:  # a copy of a delivery, or nothing pending: nothing to read
        return results
    started = time.monotonic()
    # What the pushes read: the numbers, the lines, the SIP domain, the owners' grants,
    # the device settings.
    unrecorded = [pk for pk in ids if pk in claims] + [pk for pk in claims if pk not in results]
    late = {pk: PushResult("handed_back") for pk in unrecorded if pk not in results}
    try:
        identities = Identity.objects.select_related("enterprise", "number", "line").in_bulk(
            unrecorded
        )
        shared = shared_access({identity.owner_id for identity in identities.values()})
        hss = hss_backend()
        # An HSS that holds no device settings is spared their query.
        devices = device_settings(unrecorded) if hss.holds_device_settings else {}
        with _announced_together():
            while unrecorded:
                if len(unrecorded) < len(claims) and _lease_half_gone(started):
                    # A slow HSS: the rest would be pushed on leases near their end.
                    for identity_id in unrecorded:
                        _release(identity_id, claims[identity_id])
                        (late if identity_id in late else results)[identity_id] = PushResult(
                            "handed_back"
                        )
                    break
                identity_id = unrecorded[0]
                identity, claim = identities[identity_id], claims[identity_id]
                result = _push(hss, identity, claim, shared, devices)
                (late if identity_id in late else results)[identity_id] = result
                unrecorded.pop(0)
    except DATABASE_GONE:
        for identity_id in unrecorded:
            _release(identity_id, claims[identity_id])
        raise
    finally:
        follow_up(late, {pk: claims[pk].queue for pk in late})
    return results


def follow_up(results: dict[int, PushResult], queues: dict[int, str]) -> None:
    """Queue what follows each of these first tries: a lease handed back goes out again
    in batches, a failure that is tried again goes on as a ``sync_identity`` chain of
    its own; each on the queue its change went on (``queues``)."""
    handed_back = defaultdict(list)
    for identity_id, result in results.items():
        if result.outcome == "handed_back":
            handed_back[queues[identity_id]].append(identity_id)
        elif result.retry_in is not None:
            queue_push(identity_id, result.attempt, queues[identity_id], countdown=result.retry_in)
    for queue, ids in handed_back.items():
        queue_pushes(ids, queue)


def _push(hss: HssBackend, identity: Identity, claim: Claim, shared, devices) -> PushResult:
    operation_id = f"portal-{identity.pk}-{claim.version}"
    started = time.monotonic()
    try:
        pushed = _write(hss, identity, claim, operation_id, shared, devices)
    except HssPermanentError as exc:
        return _record_failure(identity, claim, str(exc), started, transient=False)
    except HssTransientError as exc:
        return _record_failure(identity, claim, str(exc), started, transient=True)
    except DATABASE_GONE:
        raise
    except Exception as exc:
        log.exception("HSS push of identity %s failed unexpectedly", identity.pk)
        reason = f"{exc.__class__.__name__}: {exc}"
        return _record_failure(identity, claim, reason, started, transient=True)
    return record_success(identity, claim, pushed, operation_id, started)


def _lease_half_gone(started: float) -> bool:
    return time.monotonic() - started > settings.SYNC_LEASE_SECONDS / 2


def _release(identity_id: int, claim: Claim) -> None:
    """Hand back a lease not used (the database went away mid-push, or a batch ran
    slow), so that the next try need not wait for it to expire; if the database does
    not answer yet, the lease expires and the sweep re-queues the change."""
    if connection.in_atomic_block:
        return
    connection.close_if_unusable_or_obsolete()
    try:
        # Raw, as the lease was written (``_claims``): SQLite keeps a raw statement's
        # time in another text form than the ORM's, and would match no row.
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE telephony_identitysync SET claimed_until = NULL "
                "WHERE identity_id = %s AND claimed_until = %s",
                [identity_id, claim.until],
            )
    except DATABASE_GONE:
        log.warning("database still away: the lease on identity %s will expire", identity_id)


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _locked_row(identity: Identity, claim: Claim) -> IdentitySync | None:
    """The sync row, locked, if our lease still holds it: a push that outlived its
    lease lets the worker that took over record the outcome."""
    row = _lock_for_record(identity.pk)
    return row if row.claimed_until == claim.until else None


def _lock_for_record(identity_id: int) -> IdentitySync:
    """The identity's sync row, locked, to record a push or a finding in.

    The record adds a history row that names the identity, and PostgreSQL checks that
    reference at commit (deferred foreign keys) under a KEY SHARE lock on the identity.
    A change of the identity's number or line holds a stronger lock on the identity and
    then updates this sync row. Taking the KEY SHARE lock first, before the sync row,
    makes one wait for the other, never each for the other (a deadlock)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                'SELECT 1 FROM "telephony_identity" WHERE "id" = %s FOR KEY SHARE', [identity_id]
            )
    return IdentitySync.objects.select_for_update().get(pk=identity_id)


def _history(identity, claim, outcome, started, detail="", operation_id="") -> None:
    SyncAttempt.objects.create(
        enterprise_id=identity.enterprise_id,
        identity=identity,
        version=claim.version,
        outcome=outcome,
        detail=detail[:2000],
        operation_id=operation_id,
        duration_ms=_elapsed_ms(started),
    )


# What ends an identity's registrations once the HSS holds nothing for it or holds it
# suspended, in the same
# transaction. The registrations context sits above this engine and plugs in here
# (telephony.apps), so that the engine never imports it.
registration_enders: list[Callable[[Identity, str], object]] = []


def _sync_state_recorded(identity: Identity) -> None:
    """Whether an identity is in step with the HSS decides its calls' attestation: the
    call path's cached facts of its enterprise lapse when the state's record commits —
    inside a batch, with the batch's others (``_announced_together``)."""
    batch = _recorded_in_batch.get()
    if batch is None:
        generations.bump_after_commit(enterprise_id=identity.enterprise_id)
    else:
        batch.add(identity.enterprise_id)


# How long a batch's recorded sync states may wait to be announced to the call path's
# cache: a Redis round trip per push is a tenth of what a push costs beyond the HSS.
ANNOUNCE_EVERY_SECONDS = 0.2
_recorded_in_batch: ContextVar[_Announcements | None] = ContextVar(
    "sync_recorded_in_batch", default=None
)


class _Announcements:
    """The enterprises whose sync states a batch recorded and has not announced yet."""

    def __init__(self) -> None:
        self.enterprises: set[int] = set()
        self.announced = self.recorded = time.monotonic()

    def add(self, enterprise_id: int) -> None:
        self.enterprises.add(enterprise_id)
        now = time.monotonic()
        # A push that took as long as the wait (a slow HSS) says the next one will too:
        # what it recorded is announced at once, not after the next push.
        slow = now - self.recorded >= ANNOUNCE_EVERY_SECONDS
        self.recorded = now
        if slow or now - self.announced >= ANNOUNCE_EVERY_SECONDS:
            self.announce()

    def announce(self, *, last: bool = False) -> None:
        # Only what has committed: a record still inside its transaction waits, but not
        # past the batch (its caller's transaction then announces it once it commits).
        if self.enterprises and (last or not connection.in_atomic_block):
            for enterprise_id in self.enterprises:
                generations.bump_after_commit(enterprise_id=enterprise_id)
            self.enterprises.clear()
            self.announced = time.monotonic()


@contextmanager
def _announced_together():
    """The sync states a batch records lapse the call path's cached facts of their
    enterprises together, at most ``ANNOUNCE_EVERY_SECONDS`` after their records and at
    the batch's end, not once per push."""
    batch = _Announcements()
    token = _recorded_in_batch.set(batch)
    try:
        yield
    finally:
        _recorded_in_batch.reset(token)
        batch.announce(last=True)


def _record_success(identity, claim, pushed, operation_id, started) -> PushResult:
    # Removed (the HSS holds nothing) or suspended: no UE of it can be registered, and
    # its registrations end in the record's transaction. Else the record is its one
    # statement, committed on its own: a round trip less than a transaction around it.
    ends_registrations = pushed is None or not pushed.enabled
    with transaction.atomic() if ends_registrations else nullcontext():
        recorded = mark_synced(identity, claim, pushed, operation_id, started)
        _sync_state_recorded(identity)
        if recorded is None:
            _outlived_lease(identity, claim, operation_id, started)
            return PushResult("skipped")
        state, queue = recorded
        if state == IdentitySync.State.PENDING:  # changed again while we pushed
            transaction.on_commit(lambda: queue_push(identity.pk, queue=queue), robust=True)
        if ends_registrations:
            for end_registrations in registration_enders:
                end_registrations(identity, Registration.EndReason.IDENTITY_REMOVED)
    return PushResult("synced")


@transaction.atomic
def _outlived_lease(identity, claim, operation_id, started) -> None:
    """This push outlived its lease: another worker took the row over and may have
    written a newer state, which this late write may just have overwritten. The HSS
    cannot refuse an older write, so the current state is pushed once more."""
    late = "written after its lease ran out; the current state is pushed again"
    _history(identity, claim, SyncAttempt.Outcome.RETRYING, started, late, operation_id)
    request_sync(identity)
    log.warning(
        "HSS push %s of identity %s outlived its lease; pushing the current state again",
        operation_id,
        identity.pk,
    )


MARK_SYNCED = """
UPDATE telephony_identitysync SET
    synced_version = CASE WHEN synced_version > %(version)s
        THEN synced_version ELSE %(version)s END,
    state = CASE WHEN desired_version > %(version)s AND desired_version > synced_version
        THEN %(pending)s ELSE %(synced)s END,
    pushed_msisdn = %(msisdn)s, pushed_imsi = %(imsi)s, claimed_until = NULL,
    synced_at = %(now)s, remote_operation_id = %(operation_id)s, attempts = 0,
    last_error = '', next_attempt_at = NULL
WHERE identity_id = %(identity_id)s AND claimed_until = %(lease)s"""

# On PostgreSQL the record is one statement: the identity's KEY SHARE lock (the first
# CTE: the UPDATE's condition on it is a one-time filter, checked before the sync row
# is read and locked, in the order ``_lock_for_record`` explains), the sync row, and
# the history row, written exactly when the sync row was; its transaction does not wait
# for the disk (``NO_FLUSH_WAIT``).
MARK_SYNCED_WITH_HISTORY = f"""
WITH bookkeeping AS MATERIALIZED ({NO_FLUSH_WAIT}
), identity_key AS MATERIALIZED (
    SELECT 1 FROM telephony_identity WHERE id = %(identity_id)s FOR KEY SHARE
), marked AS (
    {MARK_SYNCED} AND EXISTS (SELECT 1 FROM bookkeeping, identity_key)
    RETURNING state, push_queue
), history AS (
    INSERT INTO telephony_syncattempt (enterprise_id, identity_id, version, outcome,
        detail, operation_id, duration_ms, created_at)
    SELECT %(enterprise_id)s, %(identity_id)s, %(version)s, %(outcome)s, %(detail)s,
        %(operation_id)s, %(duration_ms)s, %(now)s FROM marked
)
SELECT state, push_queue FROM marked"""  # noqa: S608 - fixed fragments; the values are parameters


def _mark_synced(identity, claim: Claim, pushed, operation_id, started) -> tuple[str, str] | None:
    """Record the pushed version on the sync row, and its history row, if our lease
    still holds the row: pending again if the identity changed while we pushed (the
    newer state is pushed next), synced otherwise. Returns the row's new state and
    push queue, or None (nothing written) when the lease was lost."""
    now = timezone.now()
    detail = "removed from the HSS" if pushed is None else ""
    params = {
        "version": claim.version,
        "pending": IdentitySync.State.PENDING,
        "synced": IdentitySync.State.SYNCED,
        "msisdn": pushed.msisdn if pushed else "",
        "imsi": pushed.imsi if pushed else "",
        "now": now,
        "operation_id": operation_id,
        "identity_id": identity.pk,
        "lease": claim.until,
        "enterprise_id": identity.enterprise_id,
        "outcome": SyncAttempt.Outcome.SYNCED,
        "detail": detail,
        "duration_ms": _elapsed_ms(started),
    }
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(MARK_SYNCED_WITH_HISTORY, params)
            return cursor.fetchone()
    with transaction.atomic(), connection.cursor() as cursor:  # two statements here
        cursor.execute(f"{MARK_SYNCED} RETURNING state, push_queue", params)
        recorded = cursor.fetchone()
        if recorded is not None:
            _history(identity, claim, SyncAttempt.Outcome.SYNCED, started, detail, operation_id)
    return recorded


# Named seams, the steps of a push that a test stands in for: recording a push the HSS
# took (a worker killed between the write and its record), and marking the row synced (a
# record held open while a change of the identity waits on its locks). The push calls
# them through these names.
record_success = _record_success
mark_synced = _mark_synced


def _record_failure(identity, claim, reason, started, *, transient) -> PushResult:
    with transaction.atomic():
        _sync_state_recorded(identity)
        row = _locked_row(identity, claim)
        if row is None:
            _history(identity, claim, SyncAttempt.Outcome.RETRYING, started, reason)
            return PushResult("skipped")
        row.claimed_until = None
        if row.desired_version > claim.version:
            # A newer change came in while this one failed: try the newer state afresh.
            _history(identity, claim, SyncAttempt.Outcome.RETRYING, started, reason)
            row.attempts = 0
            row.last_error = reason[:2000]
            row.next_attempt_at = None
            row.state = IdentitySync.State.PENDING
            row.save(
                update_fields=[
                    "claimed_until",
                    "attempts",
                    "last_error",
                    "next_attempt_at",
                    "state",
                ]
            )
            queue = row.push_queue
            transaction.on_commit(lambda: queue_push(identity.pk, queue=queue), robust=True)
            return PushResult("skipped")
        row.attempts += 1
        retry_in = None
        if transient and row.attempts < settings.SYNC_MAX_ATTEMPTS:
            retry_in = backoff_seconds(row.attempts)
            row.next_attempt_at = timezone.now() + timedelta(seconds=retry_in)
            row.state = IdentitySync.State.PENDING
            outcome = SyncAttempt.Outcome.RETRYING
        else:
            row.next_attempt_at = None
            row.state = IdentitySync.State.FAILED
            outcome = SyncAttempt.Outcome.FAILED
            if transient:
                # Shown as failed, for people to see and alerts to fire; but an outage
                # ends at some point, and nobody should have to press Retry for every
                # change made during it: the sweep tries again when this time comes.
                row.next_attempt_at = timezone.now() + timedelta(
                    seconds=backoff_seconds(row.attempts)
                )
                reason = f"{row.attempts} tries failed: {reason}"
        row.last_error = reason[:2000]
        row.save(
            update_fields=["claimed_until", "attempts", "last_error", "next_attempt_at", "state"]
        )
        _history(identity, claim, outcome, started, reason)
    if retry_in is None:
        log.warning("HSS sync of identity %s failed: %s", identity.pk, reason)
        return PushResult("failed")
    return PushResult("retry", retry_in, row.attempts)


# The queue for pushes of changes made in this context; None: the task's route (sync).
_push_queue: ContextVar[str | None] = ContextVar("sync_push_queue", default=None)


@contextmanager
def pushes_on_queue(queue: str):
    """Changes made inside queue their pushes on ``queue``: a bulk import's thousands of
    pushes go to the bulk queue's workers, so that a leaver's kill-switch on the sync
    queue never waits behind them."""
    token = _push_queue.set(queue)
    try:
        yield
    finally:
        _push_queue.reset(token)


def push_queue() -> str:
    """The queue for pushes of changes made now ("": the task's route, sync)."""
    return _push_queue.get() or ""


def request_sync(identity: Identity) -> None:
    """Record, in the caller's transaction, that the HSS must follow this identity; the
    task runs after commit. Many changes in a row collapse into one push of the latest
    state, since the task reads the identity afresh."""
    request_syncs([identity])


def request_syncs(identities: list[Identity]) -> None:
    """``request_sync`` for several identities a change concerns at once (a grantee's
    identities): one UPDATE, and their pushes go out together (``queue_pushes``)."""
    if not identities:
        return
    for enterprise_id in {identity.enterprise_id for identity in identities}:
        generations.bump_after_commit(enterprise_id=enterprise_id)
    ids = [identity.pk for identity in identities]
    IdentitySync.objects.filter(pk__in=ids).update(
        desired_version=F("desired_version") + 1,
        state=IdentitySync.State.PENDING,
        requested_at=timezone.now(),
        attempts=0,
        next_attempt_at=None,
        last_error="",
        push_queue=push_queue(),
    )
    queue_pushes_after_commit(ids)


def queue_pushes_after_commit(identity_ids: list[int]) -> None:
    """Queue pushes of the identities once the caller's transaction (or savepoint)
    commits, on the queue of changes made now; several go out in batches."""
    ids, queue = list(identity_ids), push_queue()
    # A function, not a partial: Django names a robust hook that failed by its __qualname__.
    transaction.on_commit(lambda: queue_pushes(ids, queue), robust=True)


# Identities per push task when one transaction changed many (an import chunk, a bulk
# action, an enterprise suspended): a task costs the worker about as much CPU as the
# push itself, and batches of this size still spread over all of a queue's workers.
PUSH_BATCH = 10


def queue_pushes(identity_ids, queue: str = "") -> None:
    """Hand the pushes of several changed identities to the workers, in batches."""
    ids = list(dict.fromkeys(identity_ids))
    if len(ids) == 1:
        queue_push(ids[0], queue=queue)
        return
    sync_identities = enqueue.task("telephony.tasks.sync_identities")
    options = {"queue": queue} if queue else {}
    batches = [(ids[start : start + PUSH_BATCH], queue) for start in range(0, len(ids), PUSH_BATCH)]
    enqueue.apply_together(sync_identities, batches, **options)


def queue_push(
    identity_id: int, attempt: int = 0, queue: str = "", countdown: float | None = None
) -> None:
    """Hand a push of the identity to a worker: the one place the engine queues one (a
    change, a retry, the sweep). A named seam: a test that holds pushes stands in for it,
    as it does for ``record_success`` and ``mark_synced``."""
    sync_identity = enqueue.task("telephony.tasks.sync_identity")

    options: dict = {"queue": queue} if queue else {}
    if countdown is not None:
        options["countdown"] = countdown
    sync_identity.apply_async((identity_id,), {"attempt": attempt}, **options)


# --- Sweep ----------------------------------------------------------------------------

SWEEP_BATCH = 1000


def sweep() -> int:
    """Re-queue pending changes whose task seems lost (never started, a retry that is
    long overdue, or a lease that expired because its worker died) and changes that
    failed on transient faults whose next try is due. Periodic."""
    now = timezone.now()
    return _requeue_lost(now) + _retry_failed(now)


def _requeue_lost(now) -> int:
    grace = timedelta(seconds=settings.SYNC_SWEEP_AFTER_SECONDS)
    lost = (
        IdentitySync.objects.filter(synced_version__lt=F("desired_version"))
        .exclude(state=IdentitySync.State.FAILED)
        .filter(Q(claimed_until=None) | Q(claimed_until__lt=now))
        .filter(
            Q(next_attempt_at=None, requested_at__lt=now - grace)
            | Q(next_attempt_at__lt=now - grace)
        )
        .values_list("pk", "attempts", "push_queue")[:SWEEP_BATCH]
    )
    # The re-queued delivery takes over the lost one's place in the tries, on its queue.
    found = {pk: (attempts, queue) for pk, attempts, queue in lost}
    ids = list(found)
    if ids:
        # Mark them due now, so that the next sweep does not queue them again; a row a
        # worker claimed meanwhile keeps its lease.
        IdentitySync.objects.filter(pk__in=ids).filter(
            Q(claimed_until=None) | Q(claimed_until__lt=now)
        ).update(next_attempt_at=now, claimed_until=None)
        for identity_id, (attempts, queue) in found.items():
            queue_push(identity_id, attempts, queue)
        log.info("sync sweep re-queued %d identities", len(ids))
    return len(ids)


def _retry_failed(now) -> int:
    """One more try for each change that failed on transient faults and is due: it
    syncs once the HSS answers again, or fails again and waits for the next time."""
    due = (
        IdentitySync.objects.filter(state=IdentitySync.State.FAILED, next_attempt_at__lt=now)
        .filter(Q(claimed_until=None) | Q(claimed_until__lt=now))
        .values_list("pk", "attempts", "push_queue")[:SWEEP_BATCH]
    )
    found = {pk: (attempts, queue) for pk, attempts, queue in due}
    if found:
        # Pending again while it is tried; a row changed meanwhile (a Retry, a new
        # change) is no longer failed and is left to its own delivery.
        IdentitySync.objects.filter(pk__in=list(found), state=IdentitySync.State.FAILED).update(
            state=IdentitySync.State.PENDING, next_attempt_at=now, claimed_until=None
        )
        for identity_id, (attempts, queue) in found.items():
            queue_push(identity_id, attempts, queue)
        log.info("sync sweep tries %d failed identities again", len(found))
    return len(found)


# --- Reconcile ------------------------------------------------------------------------


@dataclass
class ReconcileReport:
    compared: int = 0
    drifted: int = 0
    orphans_removed: int = 0


def reconcile(batch: int = 500) -> ReconcileReport:
    """Compare what the HSS holds with what every synced identity wants; record and
    repair each difference, and remove subscriptions on our numbers that no identity
    holds. Periodic (Celery beat)."""
    hss = hss_backend()
    # Anything synced after this moment is newer than the HSS snapshot: not compared.
    read_at = timezone.now()
    actual = {sub.msisdn: sub for sub in hss.list_all()}
    report = ReconcileReport()
    wanted = set()
    identities = (
        Identity.objects.select_related("enterprise", "number", "line", "sync")
        .filter(sync__state=IdentitySync.State.SYNCED)
        .order_by("pk")
    )
    last_pk = 0
    while True:
        chunk = list(identities.filter(pk__gt=last_pk)[:batch])
        if not chunk:
            break
        last_pk = chunk[-1].pk
        shared = shared_access({i.owner_id for i in chunk})
        devices = device_settings([i.pk for i in chunk]) if hss.holds_device_settings else {}
        for identity in chunk:
            desired = desired_subscription(identity, shared, devices)
            if desired is not None:
                wanted.add(desired.msisdn)
            if identity.sync.synced_at and identity.sync.synced_at > read_at:
                continue
            report.compared += 1
            if desired is None:
                if identity.former_tn in actual and not _held_by_live_identity(
                    identity.former_tn, other_than=identity.pk
                ):
                    found = _drift_found(identity, {"subscription": ["absent", "present"]}, read_at)
                    report.drifted += found
                continue
            differences = hss.differences(desired, actual.get(desired.msisdn))
            if differences and desired.msisdn not in actual:
                # The listing may have missed it (an HSS paging without a stable order):
                # looked up by its key before it is called missing.
                differences = hss.differences(desired, hss.get(desired.msisdn))
            if differences:
                report.drifted += _drift_found(identity, differences, read_at)
    report.orphans_removed = _remove_orphans(hss, actual, wanted)
    return report


def _drift_found(identity: Identity, differences: dict, read_at) -> bool:
    """Show what differed and queue the repair: a push of the desired state. False if
    the identity changed since the HSS was read (its push settles the difference)."""
    with transaction.atomic():
        row = _lock_for_record(identity.pk)
        if row.state != IdentitySync.State.SYNCED or (row.synced_at and row.synced_at > read_at):
            return False
        request_sync(identity)
        IdentitySync.objects.filter(pk=identity.pk).update(
            state=IdentitySync.State.DRIFT, drift=differences, drift_found_at=timezone.now()
        )
        SyncAttempt.objects.create(
            enterprise_id=identity.enterprise_id,
            identity=identity,
            version=row.desired_version,
            outcome=SyncAttempt.Outcome.DRIFT,
            detail=json.dumps(differences, sort_keys=True),
        )
        audit.record(
            actor=Actor.system(),
            action="identity.drift_found",
            enterprise=identity.enterprise,
            target=identity,
            changes=differences,
        )
    return True


def _remove_orphans(hss: HssBackend, actual: dict, wanted: set) -> int:
    """Subscriptions on numbers of our blocks that no live identity wants."""
    candidates = [msisdn for msisdn in actual if msisdn not in wanted]
    # A number a live identity holds is never an orphan, whatever its sync is doing.
    ours = TelephoneNumber.objects.filter(
        e164__in=candidates, identity__isnull=True
    ).select_related("enterprise")
    removed = 0
    for number in ours:
        imsi = actual[number.e164].imsi
        # An orphan naming a live identity's line: its UEs are that identity's, and PyHSS
        # cannot deregister an IMSI two rows name anyway; only the row goes.
        keep = imsi if imsi and _line_in_use(imsi, other_than=0) else ""
        try:
            hss.remove(number.e164, operation_id="portal-reconcile", keep_imsi=keep)
        except HssError as exc:
            # One orphan the HSS will not let go of must not stop the others; the next
            # reconcile tries again.
            log.warning("orphan %s stays in the HSS for now: %s", number.e164, exc)
            continue
        audit.record(
            actor=Actor.system(),
            action="hss.orphan_removed",
            enterprise=number.enterprise,
            target=number,
            changes={"subscription": ["present", "absent"]},
        )
        removed += 1
    return removed
