"""Reports answered at once and applied in batches: the network API's asynchronous mode
(``Prefer: respond-async``, RFC 7240), for the IMS core's storms.

A report is checked as the synchronous mode checks it (the body parsed, the credential,
the subscription), kept as parsed, and answered 202 with where to read its outcome. A
worker applies the reports waiting, oldest first, up to BATCH in one transaction
(ingest.apply_reports: each report whole or not at all, the version rules across the
batch as if one came after the other), and keeps each outcome with its report. One
batch is applied at a time (a PostgreSQL advisory lock held by its transaction), so
reports apply in the order received, and a second worker woken meanwhile leaves at once:
during a storm one process of the ``sync`` worker applies reports, the others stay free
for the HSS pushes. It is woken after a report commits (at most one wake-up queued at a
time) and every few seconds by beat, in case a wake-up was lost.
"""

from __future__ import annotations

import json
import logging
import time

from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import NetworkClient
from kernel import enqueue
from telephony.models import RegistrationReport
from telephony.registrations import ingest
from telephony.registrations.records import write_changes
from telephony.registrations.reginfo import (
    ReginfoDocument,
    document_as_json,
    document_from_json,
)

log = logging.getLogger(__name__)

State = RegistrationReport.State
BATCH = 200
# The wake-up queued: another report does not queue a second one until a worker has
# applied what waits (or this many seconds pass, should no worker be there).
WAKE_KEY = "registration-reports:wake"
WAKE_SECONDS = 5
# A process that found the wake-up queued does not ask again for this long (in a storm
# that is most reports: a cache round trip each saved); the worker looks for reports
# once more this long after it lets the wake-up go, so none is left waiting for beat.
WAKE_HELD_SECONDS = 0.25
_wake_held_until = 0.0
# The advisory lock that lets one batch be applied at a time (any fixed number).
LOCK = 0x7265_6769  # "regi"


def receive(
    *,
    actor: Actor,
    client: NetworkClient,
    document: ReginfoDocument,
    subscription: str | None = None,
) -> RegistrationReport:
    """Keep a report to be applied by the worker; RuleViolation for a malformed
    subscription, as the synchronous mode refuses it."""
    error = ingest.subscription_error(subscription)
    if error is not None:
        raise error
    report = RegistrationReport(
        client=client,
        ip=actor.ip,
        subscription=subscription or "",
        document=document_as_json(document),
    )
    _keep(report)
    transaction.on_commit(_wake, robust=True)
    return report


_IP = RegistrationReport._meta.get_field("ip")


def _keep(report: RegistrationReport) -> None:
    """INSERT the report, written out: the ORM's create, its values made ready field by
    field through the compiler, cost about 0.1 ms of an answer's 3.3 ms of CPU in a
    storm. The address goes through its field, as the ORM writes it ("" is none)."""
    quote = connection.ops.quote_name
    columns = ("client_id", "ip", "subscription", "document", "state", "received_at")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(RegistrationReport._meta.db_table)} "  # noqa: S608 - names from the model; the values are parameters
            f"({', '.join(map(quote, columns))}) VALUES (%s, %s, %s, %s, %s, %s) "
            f"RETURNING {quote('id')}",
            [
                report.client_id,
                _IP.get_db_prep_save(report.ip, connection),
                report.subscription,
                json.dumps(report.document),
                report.state,
                connection.ops.adapt_datetimefield_value(report.received_at),
            ],
        )
        report.pk = cursor.fetchone()[0]
    report._state.adding = False


def _wake() -> None:
    global _wake_held_until
    now = time.monotonic()
    if now >= _wake_held_until and not _queue_wake():
        _wake_held_until = now + WAKE_HELD_SECONDS


def _queue_wake() -> bool:
    """Queue a wake-up unless one is queued; whether this one was."""
    if not cache.add(WAKE_KEY, 1, timeout=WAKE_SECONDS):
        return False
    enqueue.task("telephony.tasks.apply_registration_reports").delay()
    return True


def apply_waiting(budget_seconds: float = 60.0) -> int:
    """Apply the reports waiting, BATCH at a time, until none is left or the budget is
    spent; nothing if another worker is applying them (it looks again before it stops,
    and this one frees its process for the other tasks of the queue). How many were
    applied."""
    applied = 0
    deadline = time.monotonic() + budget_seconds
    lingered = False
    while time.monotonic() < deadline:
        taken = apply_batch()
        if taken is None:
            return applied
        if not taken:
            if lingered:
                break
            # In a storm more come at once: the wake-up still held, the reports'
            # processes do not ask the cache (nor queue this worker's next run).
            lingered = True
            time.sleep(WAKE_HELD_SECONDS)
            continue
        lingered = False
        applied += taken
    # From now on a report wakes a worker. One committed before found the wake-up still
    # queued (this one), or was committed by a process that had found it so within
    # WAKE_HELD_SECONDS, and the budget may have run out: queue another for those.
    cache.delete(WAKE_KEY)
    time.sleep(WAKE_HELD_SECONDS)
    if _waiting().exists():
        _queue_wake()
    return applied


def apply_batch(size: int = BATCH) -> int | None:
    """Apply the oldest ``size`` reports waiting in one transaction and keep their
    outcomes. Should that fail, each is applied alone, so that one report the portal
    cannot apply holds up no other. How many were taken; None if another worker is
    applying a batch."""
    try:
        return _apply(_waiting()[:size])
    except Exception:
        log.exception("registration reports applied one by one: their batch failed")
    taken = 0
    for report_id in list(_waiting().values_list("pk", flat=True)[:size]):
        try:
            if _apply(_waiting().filter(pk=report_id)) is None:
                break
        except Exception as exc:
            log.exception("registration report %s could not be applied", report_id)
            RegistrationReport.objects.filter(pk=report_id).update(
                state=State.REFUSED,
                outcome={"reason": f"The portal could not apply it: {type(exc).__name__}."},
                applied_at=timezone.now(),
            )
        taken += 1
    return taken


def _waiting():
    return RegistrationReport.objects.filter(state=State.PENDING).order_by("pk")


def _apply(waiting) -> int | None:
    """Apply the reports ``waiting`` selects, in one transaction; None if another
    worker holds the lock."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # One batch at a time, each taking the oldest waiting: in the order received.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [LOCK])
                if not cursor.fetchone()[0]:
                    return None
        reports = list(waiting)
        if not reports:
            return 0
        # One instance per client: the enterprises it serves are read once.
        clients = NetworkClient.objects.in_bulk({r.client_id for r in reports})
        outcomes = ingest.apply_reports(
            [
                ingest.Received(
                    actor=Actor(network_client=clients[r.client_id], ip=r.ip),
                    client=clients[r.client_id],
                    document=document_from_json(r.document),
                    subscription=r.subscription or None,
                )
                for r in reports
            ]
        )
        now = timezone.now()
        for report, outcome in zip(reports, outcomes, strict=True):
            report.applied_at = now
            if isinstance(outcome, ingest.ApplyReport):
                report.state, report.outcome = State.APPLIED, outcome.as_dict()
            else:
                report.state, report.outcome = State.REFUSED, {"reason": str(outcome)}
        write_changes(RegistrationReport, reports, ["state", "outcome", "applied_at"])
    return len(reports)


def prune(limit: int = 5000) -> int:
    """Forget outcomes older than RETENTION (periodic; at most ``limit`` a run)."""
    before = timezone.now() - RegistrationReport.RETENTION
    old = RegistrationReport.objects.filter(received_at__lt=before).exclude(state=State.PENDING)
    deleted, _ = RegistrationReport.objects.filter(
        pk__in=list(old.values_list("pk", flat=True)[:limit])
    ).delete()
    return deleted
