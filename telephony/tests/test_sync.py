"""The HSS sync: outbox, idempotent pushes, retries, failures, lost tasks, reconcile."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import AuditEvent, User
from accounts.tests.factories import UserFactory
from kernel import enqueue
from portal.testing import backend_pid, wait_for, wait_until_blocked_by
from telephony.identities import onboarding, services, sync
from telephony.identities.hss import HssPermanentError, HssTransientError
from telephony.identities.hss.builtin import BuiltinHss
from telephony.identities.onboarding import Joiner
from telephony.models import Identity, IdentitySync, SimulatedSubscription, SyncAttempt
from telephony.tests.factories import give_numbers, make_identity

pytestmark = pytest.mark.django_db


def queue_of_pushes(record):
    """The sync queue, for monkeypatch.setitem: its task's ``apply_async`` replaced by
    ``record(identity_id, attempt, queue)`` for each push queued ("" = the task's route)."""
    task = enqueue.task("telephony.tasks.sync_identity")
    return (
        vars(task),
        "apply_async",
        lambda args, kwargs, **options: record(
            args[0], kwargs["attempt"], options.get("queue", "")
        ),
    )


def sync_row(identity) -> IdentitySync:
    return IdentitySync.objects.get(pk=identity.pk)


def hss(tn):
    return SimulatedSubscription.objects.filter(msisdn=tn).first()


BUSY = HssTransientError("HSS busy (503)")


class FlakyHss(BuiltinHss):
    """The builtin HSS failing its first ``failures`` calls with ``error``."""

    def __init__(self, failures, error=BUSY):
        super().__init__(latency_ms=0, failure_rate=0)
        self.failures = failures
        self.error = error

    def simulate_conditions(self):
        if self.failures:
            self.failures -= 1
            raise self.error


class BusyFor(BuiltinHss):
    """The builtin HSS answering BUSY for one number's pushes and taking the others."""

    def __init__(self, tn):
        super().__init__(latency_ms=0, failure_rate=0)
        self.tn = tn

    def apply(self, change, *, operation_id):
        if change.desired and change.desired.msisdn == self.tn:
            raise BUSY
        super().apply(change, operation_id=operation_id)


@pytest.fixture
def flaky(monkeypatch):
    def install(failures, error=BUSY):
        backend = FlakyHss(failures, error)
        monkeypatch.setattr("telephony.identities.sync.hss_backend", lambda: backend)
        return backend

    return install


def test_a_change_is_pending_until_pushed_then_synced(identity):
    assert sync_row(identity).state == IdentitySync.State.PENDING
    assert sync.push_identity(identity.pk).outcome == "synced"
    row = sync_row(identity)
    assert (row.state, row.synced_version, row.pushed_msisdn) == ("synced", 1, identity.tn)
    assert row.remote_operation_id == f"portal-{identity.pk}-1"
    assert hss(identity.tn).operation_id == row.remote_operation_id


def test_a_duplicate_delivery_changes_nothing(identity):
    sync.push_identity(identity.pk)
    stored = hss(identity.tn)
    assert sync.push_identity(identity.pk).outcome == "skipped"
    assert SyncAttempt.objects.filter(identity=identity).count() == 1
    assert hss(identity.tn).updated_at == stored.updated_at


def test_many_changes_collapse_into_one_push_of_the_latest_state(identity, admin):
    for name in ("One", "Two", "Three"):
        services.identity_update(actor=Actor(user=admin), identity=identity, display_name=name)
    assert sync_row(identity).desired_version == 4
    sync.push_identity(identity.pk)
    assert hss(identity.tn).display_name == "Three"
    assert sync.push_identity(identity.pk).outcome == "skipped"


def test_a_transient_failure_retries_with_backoff_and_then_syncs(identity, flaky):
    flaky(failures=2)
    first = sync.push_identity(identity.pk)
    assert first.outcome == "retry" and 2 <= first.retry_in <= 4
    row = sync_row(identity)
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, "HSS busy (503)")
    assert row.next_attempt_at > timezone.now()
    second = sync.push_identity(identity.pk)
    assert second.outcome == "retry" and 4 <= second.retry_in <= 8
    assert sync.push_identity(identity.pk).outcome == "synced"
    row = sync_row(identity)
    assert (row.state, row.attempts, row.last_error) == ("synced", 0, "")
    outcomes = list(
        SyncAttempt.objects.filter(identity=identity)
        .order_by("id")
        .values_list("outcome", flat=True)
    )
    assert outcomes == ["retrying", "retrying", "synced"]


def test_the_task_retries_transient_failures_by_itself(identity, flaky, monkeypatch):
    from portal.celery import app
    from telephony.tasks import sync_identity

    flaky(failures=3)
    # Eager mode runs each retry at once; Celery re-raises the Retry unless told not to.
    monkeypatch.setitem(app.conf, "task_eager_propagates", False)
    sync_identity.delay(identity.pk)
    assert sync_row(identity).state == IdentitySync.State.SYNCED
    assert SyncAttempt.objects.filter(identity=identity, outcome="retrying").count() == 3


def test_transient_failures_give_up_after_the_last_try_and_show(identity, flaky, settings):
    settings.SYNC_MAX_ATTEMPTS = 3
    flaky(failures=99)
    outcomes = [sync.push_identity(identity.pk).outcome for _ in range(4)]
    assert outcomes == ["retry", "retry", "failed", "skipped"]
    row = sync_row(identity)
    assert row.state == IdentitySync.State.FAILED
    assert row.last_error == "3 tries failed: HSS busy (503)"
    assert row.next_attempt_at > timezone.now()  # the sweep tries again then


def due_now(identity):
    IdentitySync.objects.filter(pk=identity.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def test_a_change_that_failed_on_an_outage_syncs_by_itself_once_the_hss_is_back(
    identity, flaky, settings, monkeypatch
):
    settings.SYNC_MAX_ATTEMPTS = 2
    backend = flaky(failures=99)
    while sync.push_identity(identity.pk).outcome == "retry":
        pass
    assert sync_row(identity).state == IdentitySync.State.FAILED
    queued = []
    monkeypatch.setitem(
        *queue_of_pushes(lambda identity_id, attempt, queue: queued.append(attempt))
    )
    assert sync.sweep() == 0  # not due yet

    due_now(identity)  # the outage goes on: one more try, failed again, later again
    assert sync.sweep() == 1 and queued == [2]
    assert sync_row(identity).state == IdentitySync.State.PENDING
    assert sync.push_identity(identity.pk, attempt=queued.pop()).outcome == "failed"
    row = sync_row(identity)
    assert (row.state, row.attempts) == (IdentitySync.State.FAILED, 3)
    assert row.next_attempt_at > timezone.now()

    backend.failures = 0  # the HSS is back
    due_now(identity)
    assert sync.sweep() == 1
    assert sync.push_identity(identity.pk, attempt=queued.pop()).outcome == "synced"
    assert sync_row(identity).state == IdentitySync.State.SYNCED
    assert hss(identity.tn) is not None
    outcomes = list(
        SyncAttempt.objects.filter(identity=identity)
        .order_by("pk")
        .values_list("outcome", flat=True)
    )
    assert outcomes == ["retrying", "failed", "failed", "synced"]


def test_the_sweep_leaves_a_change_the_admin_retried_meanwhile_to_its_own_push(
    identity, flaky, settings, monkeypatch, admin
):
    settings.SYNC_MAX_ATTEMPTS = 1
    flaky(failures=1)
    assert sync.push_identity(identity.pk).outcome == "failed"
    due_now(identity)
    services.sync_retry(actor=Actor(user=admin), identity=identity)
    queued = []
    monkeypatch.setitem(
        *queue_of_pushes(lambda identity_id, attempt, queue: queued.append(attempt))
    )
    assert sync.sweep() == 0 and queued == []
    assert sync.push_identity(identity.pk, attempt=0).outcome == "synced"


def test_a_permanent_failure_stops_shows_the_reason_and_can_be_retried(identity, flaky, admin):
    flaky(failures=1, error=HssPermanentError("HSS refused the IMSI"))
    assert sync.push_identity(identity.pk).outcome == "failed"
    row = sync_row(identity)
    assert (row.state, row.last_error) == ("failed", "HSS refused the IMSI")
    assert row.next_attempt_at is None  # no automatic retry: the same change fails again
    assert sync.push_identity(identity.pk).outcome == "skipped"
    assert sync.sweep() == 0

    services.sync_retry(actor=Actor(user=admin), identity=identity)
    assert sync_row(identity).state == IdentitySync.State.PENDING
    assert sync.push_identity(identity.pk).outcome == "synced"
    assert AuditEvent.objects.filter(action="identity.sync_retried").exists()


def test_a_worker_killed_after_the_hss_write_converges_on_the_next_run(identity, monkeypatch):
    def die(*args, **kwargs):
        raise SystemExit("worker killed")

    monkeypatch.setattr(sync, "record_success", die)
    with pytest.raises(SystemExit):
        sync.push_identity(identity.pk)
    monkeypatch.undo()
    assert hss(identity.tn) is not None  # written ...
    row = sync_row(identity)
    assert row.state == IdentitySync.State.PENDING and row.claimed_until  # ... but not recorded
    assert sync.push_identity(identity.pk).outcome == "skipped"  # the lease still holds

    # The lease runs out; the sweep finds the change and queues it again.
    IdentitySync.objects.filter(pk=identity.pk).update(
        claimed_until=timezone.now() - timedelta(seconds=1),
        requested_at=timezone.now() - timedelta(hours=1),
    )
    queued = []
    monkeypatch.setitem(*queue_of_pushes(lambda identity_id, *_: queued.append(identity_id)))
    assert sync.sweep() == 1 and queued == [identity.pk]
    assert sync.push_identity(identity.pk).outcome == "synced"
    assert sync_row(identity).state == IdentitySync.State.SYNCED


def test_a_number_written_by_a_failed_relocation_goes_when_the_identity_moves_on(
    identity, admin, monkeypatch
):
    """The new number went in, the old one's removal failed, and the identity moved
    again before the retry: no subscription is left on the number in between."""
    actor = Actor(user=admin)
    assert sync.push_identity(identity.pk).outcome == "synced"
    first = identity.tn
    backend = BuiltinHss(latency_ms=0, failure_rate=0)
    removals = []

    def remove_fails_once(msisdn, **kwargs):
        if not removals:
            removals.append(msisdn)
            raise BUSY
        return BuiltinHss.remove(backend, msisdn, **kwargs)

    monkeypatch.setattr(backend, "remove", remove_fails_once)
    monkeypatch.setattr("telephony.identities.sync.hss_backend", lambda: backend)
    between = services.identity_relocate(actor=actor, identity=identity, country="DE").tn
    assert sync.push_identity(identity.pk).outcome == "retry"
    assert hss(between) is not None and removals == [first]  # written, not recorded
    last = services.identity_relocate(actor=actor, identity=identity, country="DE").tn
    due_now(identity)
    assert sync.push_identity(identity.pk).outcome == "synced"
    assert hss(last) is not None
    assert hss(between) is None and hss(first) is None


def test_the_sweep_leaves_fresh_and_finished_changes_alone(identity, monkeypatch, employee):
    queued = []
    monkeypatch.setitem(*queue_of_pushes(lambda identity_id, *_: queued.append(identity_id)))
    assert sync.sweep() == 0  # just requested: its task is surely still queued
    sync.push_identity(identity.pk)
    IdentitySync.objects.filter(pk=identity.pk).update(
        requested_at=timezone.now() - timedelta(hours=1)
    )
    assert sync.sweep() == 0 and queued == []


def test_an_imports_pushes_stay_on_the_bulk_queue_when_the_sweep_queues_them_again(
    employee, enterprise, admin, monkeypatch, django_capture_on_commit_callbacks
):
    give_numbers(enterprise)
    queued = []
    monkeypatch.setitem(*queue_of_pushes(lambda identity_id, attempt, queue: queued.append(queue)))
    with sync.pushes_on_queue("bulk"), django_capture_on_commit_callbacks(execute=True):
        imported = make_identity(employee)
    assert queued == ["bulk"] and sync_row(imported).push_queue == "bulk"

    # Its push waited so long behind the import that the sweep takes it for lost.
    IdentitySync.objects.filter(pk=imported.pk).update(
        requested_at=timezone.now() - timedelta(hours=1)
    )
    assert sync.sweep() == 1 and queued[-1] == "bulk"  # not ahead of a kill-switch

    # A change made in the portal afterwards is pushed on the sync queue again.
    with django_capture_on_commit_callbacks(execute=True):
        services.identity_update(actor=Actor(user=admin), identity=imported, display_name="R")
    assert queued[-1] == "" and sync_row(imported).push_queue == ""


def test_reconcile_repairs_a_change_made_directly_in_the_hss(
    identity, django_capture_on_commit_callbacks
):
    sync.push_identity(identity.pk)
    SimulatedSubscription.objects.filter(msisdn=identity.tn).update(
        display_name="Tampered", enabled=False
    )
    with django_capture_on_commit_callbacks(execute=True):
        report = sync.reconcile()
    assert (report.compared, report.drifted) == (1, 1)
    stored = hss(identity.tn)
    assert (stored.display_name, stored.enabled) == (identity.display_name, True)
    row = sync_row(identity)
    assert row.state == IdentitySync.State.SYNCED
    assert row.drift == {
        "display_name": [identity.display_name, "Tampered"],
        "enabled": [True, False],
    }
    assert row.drift_found_at is not None
    assert AuditEvent.objects.filter(
        action="identity.drift_found", target_id=str(identity.pk)
    ).exists()
    assert SyncAttempt.objects.filter(identity=identity, outcome="drift").exists()
    assert sync.reconcile().drifted == 0


def test_reconcile_restores_a_deleted_subscription_and_removes_orphans_on_our_numbers(
    identity, enterprise, django_capture_on_commit_callbacks
):
    sync.push_identity(identity.pk)
    SimulatedSubscription.objects.filter(msisdn=identity.tn).delete()
    SimulatedSubscription.objects.create(msisdn="+4930123477", impi="ghost")  # ours, unused
    SimulatedSubscription.objects.create(msisdn="+4989000000", impi="foreign")  # not ours
    with django_capture_on_commit_callbacks(execute=True):
        report = sync.reconcile()
    assert (report.drifted, report.orphans_removed) == (1, 1)
    assert hss(identity.tn) is not None
    assert hss("+4930123477") is None
    assert hss("+4989000000") is not None


def test_reconcile_ignores_changes_still_under_way(identity, admin):
    sync.push_identity(identity.pk)
    services.identity_update(actor=Actor(user=admin), identity=identity, display_name="Newer")
    assert sync.reconcile().drifted == 0  # the pending push settles it


def test_a_removed_identity_is_removed_even_if_never_pushed(identity, admin):
    services.identity_remove(actor=Actor(user=admin), identity=identity)
    SimulatedSubscription.objects.create(msisdn=identity.former_tn or "+4930123400", impi="x")
    sync.push_identity(identity.pk)
    identity.refresh_from_db()
    assert hss(identity.former_tn) is None


def test_backoff_grows_and_stays_capped(settings):
    settings.SYNC_BACKOFF_BASE_SECONDS = 2
    settings.SYNC_BACKOFF_CAP_SECONDS = 60
    for attempt, (low, high) in enumerate([(2, 4), (4, 8), (8, 16), (16, 32), (30, 60)], start=1):
        assert low <= sync.backoff_seconds(attempt) <= high
    assert 30 <= sync.backoff_seconds(20) <= 60


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_concurrent_edits_of_one_identity_end_with_the_last_state_synced(enterprise, admin):
    give_numbers(enterprise)
    owner = UserFactory(enterprise=enterprise)
    identity = make_identity(owner)  # autocommit: its push already ran (eager)
    names = [f"Name {i}" for i in range(12)]
    barrier = threading.Barrier(4)
    errors = []

    def edit(chunk):
        try:
            barrier.wait()
            for name in chunk:
                services.identity_update(
                    actor=Actor(user=admin), identity=identity, display_name=name
                )
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=edit, args=(names[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    final = Identity.objects.get(pk=identity.pk)
    row = wait_for(lambda: IdentitySync.objects.filter(pk=identity.pk, state="synced").first(), 10)
    assert row.synced_version == row.desired_version == 13
    assert hss(final.tn).display_name == final.display_name


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_a_relocation_during_a_push_waits_for_it_instead_of_deadlocking(
    enterprise, admin, monkeypatch
):
    """The push holds the sync row and, at commit, checks that the identity its history
    row names exists; the relocation changes the identity's number, a key column. (A
    suspension's push: its record is a transaction that also ends the registrations;
    the record of an active identity's push is one statement, committed on its own.)"""
    give_numbers(enterprise)
    identity = make_identity(UserFactory(enterprise=enterprise))  # pushed already (eager)
    Identity.objects.filter(pk=identity.pk).update(status=Identity.Status.SUSPENDED)
    IdentitySync.objects.filter(pk=identity.pk).update(  # a change whose push is due
        desired_version=F("desired_version") + 1, state=IdentitySync.State.PENDING
    )
    recording, finish = threading.Event(), threading.Event()
    mark_synced = sync.mark_synced
    pushing = []  # the push's database backend

    def pausing(*args):
        recorded = mark_synced(*args)
        if threading.current_thread().name == "push":
            pushing.append(backend_pid())
            recording.set()
            finish.wait(10)  # holds the identity's key and the row, not yet committed
        return recorded

    monkeypatch.setattr(sync, "mark_synced", pausing)
    errors = []

    def run(work):
        try:
            work()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    push = threading.Thread(
        target=run, args=(lambda: sync.push_identity(identity.pk),), name="push"
    )
    relocation = threading.Thread(
        target=run,
        args=(
            lambda: services.identity_relocate(
                actor=Actor(user=admin), identity=identity, tn="+4930123450"
            ),
        ),
    )
    push.start()
    assert recording.wait(10)
    relocation.start()
    wait_until_blocked_by(pushing[0])  # the relocation waits for the push's sync row
    finish.set()
    push.join(20), relocation.join(20)
    assert not errors, errors
    assert Identity.objects.get(pk=identity.pk).tn == "+4930123450"
    # Its own push followed (eagerly, at its commit): the HSS holds the new number only.
    assert IdentitySync.objects.get(pk=identity.pk).state == IdentitySync.State.SYNCED
    assert hss("+4930123450") is not None and hss("+4930123400") is None


@pytest.mark.worker
def test_a_real_worker_on_the_broker_syncs_an_onboarding_end_to_end(
    celery_worker, enterprise, admin
):
    give_numbers(enterprise)
    identity = services.employee_onboard(
        actor=Actor(user=admin),
        enterprise=enterprise,
        email="rob.smith@swift.example",
        full_name="Rob Smith",
        services=["voice"],
    )
    wait_for(lambda: IdentitySync.objects.filter(pk=identity.pk, state="synced").exists())
    assert hss(identity.tn).display_name == "Rob Smith"
    services.employee_offboard(actor=Actor(user=admin), user=identity.owner)
    wait_for(lambda: hss(identity.tn) is None)
    assert User.objects.get(pk=identity.owner_id).status == User.Status.OFFBOARDED


class RecordingHss(BuiltinHss):
    """The builtin HSS, noting which SIM lines it was told to release."""

    def __init__(self):
        super().__init__(latency_ms=0, failure_rate=0)
        self.released = []

    def release_line(self, imsi, *, operation_id):
        self.released.append(imsi)


def test_a_new_sim_line_releases_the_old_one_but_a_kept_line_stays(
    employee, enterprise, admin, monkeypatch
):
    from telephony.tests.factories import give_line

    give_numbers(enterprise)
    give_numbers(enterprise, "+14155550100", "+14155550199")
    first, second = give_line(enterprise, 1), give_line(enterprise, 2)
    recording = RecordingHss()
    monkeypatch.setattr("telephony.identities.sync.hss_backend", lambda: recording)
    identity = make_identity(employee, imsi=first.imsi)
    sync.push_identity(identity.pk)

    services.identity_relocate(actor=Actor(user=admin), identity=identity, country="US")
    sync.push_identity(identity.pk)
    assert recording.released == []  # same line, new number
    assert hss("+4930123400") is None

    services.identity_relocate(
        actor=Actor(user=admin), identity=identity, tn="+4930123410", imsi=second.imsi
    )
    sync.push_identity(identity.pk)
    assert recording.released == [first.imsi]
    assert hss("+4930123410").imsi == second.imsi


def test_the_reconcile_command_reports_what_it_found(identity, capsys):
    from django.core.management import call_command

    sync.push_identity(identity.pk)
    SimulatedSubscription.objects.filter(msisdn=identity.tn).update(enabled=False)
    call_command("reconcile_hss")
    assert "drift found in 1" in capsys.readouterr().out


def test_a_refused_new_state_leaves_the_old_subscription_in_place(
    identity, enterprise, admin, flaky
):
    give_numbers(enterprise, "+14155550100", "+14155550199")
    sync.push_identity(identity.pk)
    old_tn = identity.tn
    services.identity_relocate(actor=Actor(user=admin), identity=identity, country="US")
    flaky(failures=1, error=HssPermanentError("HSS refused the new subscription"))
    assert sync.push_identity(identity.pk).outcome == "failed"
    assert hss(old_tn) is not None  # the employee keeps working on the old number


def test_a_change_made_while_a_push_fails_is_pushed_afresh(identity, admin):
    claim = sync._claims([identity.pk], timezone.now())[identity.pk]
    services.identity_update(actor=Actor(user=admin), identity=identity, display_name="Fixed")
    result = sync._record_failure(
        identity, claim, "HSS refused v1", time.monotonic(), transient=False
    )
    assert result.outcome == "skipped"
    row = sync_row(identity)
    assert (row.state, row.attempts, row.claimed_until) == ("pending", 0, None)
    assert sync.push_identity(identity.pk).outcome == "synced"
    assert hss(identity.tn).display_name == "Fixed"


def test_a_push_that_outlived_its_lease_does_not_overwrite_the_new_holder(identity):
    stale = sync._claims([identity.pk], timezone.now())[identity.pk]
    IdentitySync.objects.filter(pk=identity.pk).update(
        claimed_until=timezone.now() - timedelta(seconds=1)
    )
    fresh = sync._claims([identity.pk], timezone.now())[identity.pk]
    assert fresh is not None and fresh.until != stale.until
    assert sync._record_success(identity, stale, None, "op", time.monotonic()).outcome == "skipped"
    assert sync_row(identity).claimed_until == fresh.until  # the new holder's lease stands


def test_reconcile_does_not_remove_a_number_whose_identity_is_mid_push(identity, admin):
    sync.push_identity(identity.pk)
    services.identity_update(actor=Actor(user=admin), identity=identity, display_name="Newer")
    report = sync.reconcile()  # the identity is pending: not compared, and not an orphan
    assert report.orphans_removed == 0
    assert hss(identity.tn) is not None


def test_reconcile_ignores_identities_synced_after_it_read_the_hss(identity, admin, monkeypatch):
    sync.push_identity(identity.pk)

    class ChangingHss(BuiltinHss):
        def list_all(self):
            yield from super().list_all()
            # While reconcile reads, an edit is made and pushed.
            services.identity_update(
                actor=Actor(user=admin), identity=identity, display_name="Newer"
            )
            monkeypatch.setattr("telephony.identities.sync.hss_backend", BuiltinHss)
            sync.push_identity(identity.pk)

    monkeypatch.setattr("telephony.identities.sync.hss_backend", ChangingHss)
    assert sync.reconcile().drifted == 0
    assert not AuditEvent.objects.filter(action="identity.drift_found").exists()


def test_grantees_follow_when_the_shared_identity_moves(
    employee, enterprise, admin, django_capture_on_commit_callbacks
):
    give_numbers(enterprise)
    give_numbers(enterprise, "+14155550100", "+14155550199")
    colleague = UserFactory(enterprise=enterprise)
    with django_capture_on_commit_callbacks(execute=True):
        shared, own = make_identity(employee), make_identity(colleague)
        services.grant_create(actor=Actor(user=employee), identity=shared, grantee=colleague)
    with django_capture_on_commit_callbacks(execute=True):
        services.identity_relocate(actor=Actor(user=admin), identity=shared, country="US")
    assert hss(own.tn).shared_msisdns == [["+14155550100", True, True]]
    with django_capture_on_commit_callbacks(execute=True):
        services.identity_suspend(actor=Actor(user=admin), identity=shared)
    assert hss(own.tn).shared_msisdns == []


# --- Pushes of one transaction, in batches -------------------------------------------


def batches_of_pushes(record):
    """Like ``queue_of_pushes``, for the task that pushes a batch: ``record(identity_ids,
    queue)`` for each batch queued."""
    task = enqueue.task("telephony.tasks.sync_identities")
    return (vars(task), "apply_async", lambda args, **options: record(*args))


def joiners(count):
    return [
        Joiner(email=f"p{n}@swift.example", full_name=f"P {n}", services=["voice"])
        for n in range(count)
    ]


@pytest.mark.django_db(transaction=True)
def test_the_pushes_of_an_onboarded_chunk_go_out_in_batches_on_their_queue_once_it_commits(
    admin, enterprise, monkeypatch
):
    """A real commit (Django empties its list of hooks before it runs them), not a
    capture of the hooks."""
    give_numbers(enterprise)
    singles, batches = [], []
    monkeypatch.setitem(*queue_of_pushes(lambda identity_id, *_: singles.append(identity_id)))
    monkeypatch.setitem(*batches_of_pushes(lambda ids, queue: batches.append((ids, queue))))
    count = sync.PUSH_BATCH * 2 + 3
    with sync.pushes_on_queue("bulk"), transaction.atomic():
        made = onboarding.onboard(
            actor=Actor(user=admin), enterprise=enterprise, joiners=joiners(count)
        )
        assert batches == []
    assert singles == []
    assert [len(ids) for ids, _ in batches] == [sync.PUSH_BATCH, sync.PUSH_BATCH, 3]
    assert {queue for _, queue in batches} == {"bulk"}
    assert [pk for ids, _ in batches for pk in ids] == [identity.pk for identity in made]

    # One change alone is one push of its own.
    batches.clear()
    services.identity_update(actor=Actor.system(), identity=made[0], display_name="Solo")
    assert (singles, batches) == ([made[0].pk], [])


def test_a_chunk_rolled_back_with_its_savepoint_pushes_nothing(
    admin, enterprise, monkeypatch, django_capture_on_commit_callbacks
):
    give_numbers(enterprise)
    singles, batches = [], []
    monkeypatch.setitem(*queue_of_pushes(lambda identity_id, *_: singles.append(identity_id)))
    monkeypatch.setitem(*batches_of_pushes(lambda ids, queue: batches.append(ids)))
    actor = Actor(user=admin)
    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                onboarding.onboard(actor=actor, enterprise=enterprise, joiners=joiners(3))
                raise RuntimeError("the chunk failed")
        except RuntimeError:
            pass
        kept = onboarding.onboard(actor=actor, enterprise=enterprise, joiners=joiners(5)[3:])
    assert (singles, batches) == ([], [[identity.pk for identity in kept]])


@pytest.mark.django_db(transaction=True)  # as a worker runs it: not inside a transaction
def test_a_batch_a_slow_hss_left_no_time_for_hands_the_rest_back_as_a_batch_of_its_own(
    employee, enterprise, monkeypatch, settings
):
    """The batch's leases are taken at once: once half the lease has gone (here at once),
    the identities not pushed yet are handed back and queued again together."""
    give_numbers(enterprise)
    monkeypatch.setitem(*queue_of_pushes(lambda *_: None))  # made, not pushed yet
    made = [make_identity(UserFactory(enterprise=enterprise)) for _ in range(3)]
    settings.SYNC_LEASE_SECONDS = 0
    batches = []
    monkeypatch.setitem(*batches_of_pushes(lambda ids, queue: batches.append(ids)))
    from telephony.tasks import sync_identities

    sync_identities.apply(args=([i.pk for i in made], ""))
    assert [sync_row(i).state for i in made] == ["synced", "pending", "pending"]
    assert [sync_row(i).claimed_until for i in made[1:]] == [None, None]
    assert batches == [[made[1].pk, made[2].pk]]


def test_a_batch_pushes_each_identity_and_a_failing_one_retries_on_its_own(
    employee, enterprise, monkeypatch
):
    give_numbers(enterprise)
    made = [make_identity(UserFactory(enterprise=enterprise)) for _ in range(3)]
    refused = made[1]
    monkeypatch.setattr("telephony.identities.sync.hss_backend", lambda: BusyFor(refused.tn))
    retries = []
    monkeypatch.setitem(
        *queue_of_pushes(lambda identity_id, attempt, queue: retries.append((identity_id, attempt)))
    )
    from telephony.tasks import sync_identities

    sync_identities.apply(args=([i.pk for i in made], "")).get()
    assert [sync_row(i).state for i in made] == ["synced", "pending", "synced"]
    assert hss(made[0].tn) and hss(made[2].tn) and not hss(refused.tn)
    assert retries == [(refused.pk, 1)]  # its own chain, after its first failed try


# --- Late changes taken along ---------------------------------------------------------


def waiting_since(identities, seconds, **fields):
    IdentitySync.objects.filter(pk__in=[i.pk for i in identities]).update(
        requested_at=timezone.now() - timedelta(seconds=seconds), **fields
    )


def test_a_first_try_takes_late_changes_of_its_queue_along(employee, enterprise, monkeypatch):
    """Single edits that wait behind others (an HR system's calls, one per employee) go
    out a batch at a time; their own tasks then find their change pushed."""
    give_numbers(enterprise)
    monkeypatch.setitem(*queue_of_pushes(lambda *_: None))  # made, not pushed yet
    first, late, later, fresh, on_bulk, retrying = (
        make_identity(UserFactory(enterprise=enterprise)) for _ in range(6)
    )
    waiting_since([late], 2)
    waiting_since([later], 1)
    waiting_since([on_bulk], 2, push_queue="bulk")
    waiting_since([retrying], 2, attempts=1, next_attempt_at=timezone.now())
    from telephony.tasks import sync_identity

    assert sync_identity.apply(args=(first.pk,)).get() == "synced"

    states = {i: sync_row(i).state for i in (first, late, later, fresh, on_bulk, retrying)}
    assert states == {
        first: "synced",
        late: "synced",
        later: "synced",
        fresh: "pending",  # its own task is on its way
        on_bulk: "pending",  # the bulk queue's workers push it
        retrying: "pending",  # its retry chain tries it
    }
    assert hss(late.tn) and hss(later.tn) and not hss(fresh.tn)
    assert sync.push_identity(late.pk, attempt=0).outcome == "skipped"
    # A retry takes nothing along: it follows its own chain.
    waiting_since([fresh], 2)
    sync_identity.apply(args=(retrying.pk,), kwargs={"attempt": 1})
    assert (sync_row(retrying).state, sync_row(fresh).state) == ("synced", "pending")


def test_a_late_change_taken_along_that_fails_retries_on_a_chain_of_its_own(
    employee, enterprise, monkeypatch
):
    give_numbers(enterprise)
    monkeypatch.setitem(*queue_of_pushes(lambda *_: None))
    first, late = (make_identity(UserFactory(enterprise=enterprise)) for _ in range(2))
    waiting_since([late], 2)
    monkeypatch.setattr("telephony.identities.sync.hss_backend", lambda: BusyFor(late.tn))
    retries = []
    monkeypatch.setitem(*queue_of_pushes(lambda *args: retries.append(args)))
    from telephony.tasks import sync_identity

    assert sync_identity.apply(args=(first.pk,)).get() == "synced"
    assert sync_row(late).state == "pending" and sync_row(late).attempts == 1
    assert retries == [(late.pk, 1, "")]


@pytest.mark.django_db(transaction=True)  # as a worker runs it: each record commits
def test_a_batch_announces_the_sync_states_it_recorded_together(employee, enterprise, monkeypatch):
    """The call path's cached facts lapse once per enterprise for a quick batch (not a
    Redis round trip per push), and at once after each push of a slow HSS."""
    give_numbers(enterprise)
    monkeypatch.setitem(*queue_of_pushes(lambda *_: None))
    made = [make_identity(UserFactory(enterprise=enterprise)) for _ in range(3)]
    announced = []
    monkeypatch.setattr(
        "kernel.generations.bump_after_commit",
        lambda *, enterprise_id, operator=False: announced.append(enterprise_id),
    )

    sync.push_identities([i.pk for i in made], attempt=0)
    assert announced == [enterprise.pk]

    announced.clear()
    waiting_since(made, 0, desired_version=F("desired_version") + 1, state="pending")
    monkeypatch.setattr(sync, "ANNOUNCE_EVERY_SECONDS", 0)  # every push as slow as the wait
    sync.push_identities([i.pk for i in made], attempt=0)
    assert announced == [enterprise.pk] * 3
