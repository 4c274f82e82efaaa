"""Celery tasks: thin, by id, calling the sync engine or a service."""

from celery import shared_task
from django.conf import settings

from kernel import jsonrpc
from telephony.identities import services, sync
from telephony.identities.hss import HssTransientError
from telephony.registrations import inbox, ingest, notices, notify, records, signout, third_party
from telephony.registrations.notify import NoticeError


# max_retries=None: Celery never stops the chain; the sync row counts the tries and stops
# at SYNC_MAX_ATTEMPTS (a retry's own `max_retries=None` means the task's default).
@shared_task(
    bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True, max_retries=None
)
def sync_identity(self, identity_id: int, attempt: int = 0) -> str:
    """Push one identity's current desired state to the HSS. Idempotent: a duplicate
    delivery finds nothing pending and does nothing. Transient faults retry with
    backoff; the sync row shows every attempt. ``attempt``: the failed tries this
    delivery follows (0 for a change), so that copies of a delivery do not retry too.
    A change's first try takes late changes along (``sync.LATE_AFTER``): a batch's
    worth, when the workers are behind."""
    take_late = sync.PUSH_BATCH - 1 if attempt == 0 else 0
    try:
        result = sync.push_identity(identity_id, attempt=attempt, take_late=take_late)
    except sync.DATABASE_GONE as exc:
        # Nothing was recorded and the try count stands: try again soon, on a new
        # connection (Celery's Django fixup drops the broken one before the next task).
        raise self.retry(
            exc=exc,
            countdown=sync.backoff_seconds(self.request.retries + 1),
            max_retries=settings.SYNC_MAX_ATTEMPTS,
            kwargs={"attempt": attempt},
        ) from exc
    if result.retry_in is not None:
        # The sync row counts the tries and decides when to stop; Celery only schedules.
        raise self.retry(countdown=result.retry_in, kwargs={"attempt": result.attempt})
    return result.outcome


@shared_task(
    bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True, max_retries=None
)
def sync_identities(self, identity_ids: list[int], queue: str = "") -> None:
    """Push the changes one transaction made to several identities, as first tries
    (``sync.queue_pushes``): their leases taken and the identities read at once, then
    each pushed and recorded on its own. An identity whose push must be tried again goes
    on as a ``sync_identity`` chain of its own, on the same queue; those a slow HSS left
    no time for go on as a batch of their own."""
    try:
        results = sync.push_identities(identity_ids, attempt=0)
    except sync.DATABASE_GONE as exc:
        # The batch waits for the database, as a single push does; those pushed before
        # it went away are skipped then, nothing being pending for them.
        raise self.retry(
            exc=exc,
            countdown=sync.backoff_seconds(self.request.retries + 1),
            max_retries=settings.SYNC_MAX_ATTEMPTS,
            args=(identity_ids, queue),
        ) from exc
    sync.follow_up(results, dict.fromkeys(results, queue))


@shared_task(ignore_result=True)
def sweep_sync_queue() -> int:
    """Re-queue sync changes, imports, sign-outs and notices whose task was lost."""
    from telephony.bulk import services as bulk

    return sync.sweep() + bulk.sweep_stalled_imports() + notices.sweep()


@shared_task(ignore_result=True, acks_late=True)
def reconcile_hss() -> dict:
    report = sync.reconcile()
    return {
        "compared": report.compared,
        "drifted": report.drifted,
        "orphans": report.orphans_removed,
    }


@shared_task(ignore_result=True)
def expire_grants() -> int:
    return services.grants_expire()


@shared_task(ignore_result=True)
def offboard_expired_deactivations() -> int:
    return services.deactivations_expire()


@shared_task(bind=True, acks_late=True, ignore_result=True)
def run_import(self, job_id: int) -> None:
    """Apply a confirmed CSV import chunk by chunk; a redelivery resumes where the last
    committed chunk ended."""
    from telephony.bulk import services as bulk

    # Its identities' pushes go to the bulk queue: the sync queue stays free for
    # interactive changes and kill-switches (the import itself runs on "imports").
    with sync.pushes_on_queue("bulk"):
        bulk.run_import_job(job_id)


# Messages to the network retry on its transient faults with capped, jittered backoff.
TO_THE_NETWORK = {
    "acks_late": True,
    "retry_backoff": 2,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 8,
    "ignore_result": True,
}


@shared_task(autoretry_for=(HssTransientError, jsonrpc.RpcUnavailable), **TO_THE_NETWORK)
def deregister_ue(registration_id: int) -> str:
    """Send a requested sign-out of one UE to the network."""
    return signout.deregister(registration_id)


@shared_task(autoretry_for=(jsonrpc.RpcUnavailable,), **TO_THE_NETWORK)
def deregister_at_scscf(impus: list[str]) -> None:
    """Have the S-CSCF drop the UEs of a suspended or removed identity's IMPUs."""
    signout.deregister_impus_at_scscf(impus)


@shared_task(autoretry_for=(NoticeError,), **TO_THE_NETWORK)
def send_network_notice(notice_id: int) -> str:
    """Send one notice; a transient fault tries it again (Celery's backoff, counted by
    the notice up to SYNC_MAX_ATTEMPTS)."""
    return notify.send_notice(notice_id)


@shared_task(**TO_THE_NETWORK)
def send_network_notices(notice_ids: list[int]) -> None:
    """Send the notices one transaction queued (``notices.queue_notices``): claimed and
    read at once, each sent and its answer recorded on its own. One to try again goes on
    as a ``send_network_notice`` chain of its own; those a slow backend left no time for
    go out again in batches."""
    notices.follow_up(notify.send_notices(notice_ids))


@shared_task(autoretry_for=(jsonrpc.RpcUnavailable,), **TO_THE_NETWORK)
def forget_at_edge(aors: list[str]) -> None:
    """Tell the SIP edge that these IMPUs' identity is gone."""
    third_party.forget_at_edge(aors)


@shared_task(ignore_result=True)
def expire_registrations() -> int:
    """Registrations past their expiry, and the bookkeeping that ended subscriptions
    and expired third-party registrations leave behind."""
    return (
        records.expire_registrations()
        + ingest.prune_subscription_versions()
        + inbox.prune()
        + third_party.prune_expired()
    )


@shared_task(ignore_result=True)
def purge_call_records() -> int:
    from telephony.callauth import retention

    return retention.purge_call_records()


@shared_task(ignore_result=True)
def apply_registration_reports() -> int:
    """Apply the registration reports answered asynchronously (woken by each, and
    every few seconds by beat)."""
    return inbox.apply_waiting()


@shared_task(ignore_result=True)
def store_call_records() -> int:
    """Write the call records waiting in the record stream (every second, by beat)."""
    from telephony.callauth import records

    return records.store_pending()
