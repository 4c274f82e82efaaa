"""Fault drills: real Celery worker processes, PostgreSQL and Redis, faults injected on
loopback, and afterwards every identity's HSS state must equal its desired state.

Each drill prints its figures (run with ``-s``); docs/drills.md explains the drills and
keeps the figures of a run. ``make drills`` runs only these. Backoff, lease and sweep
times are shrunk so that a drill takes seconds; the beat's sweep is played by the test
(every second instead of every 30 s).

The tests at the end without the ``drill`` marker pin, in-process, the faults the drills
found, so that they also run on SQLite.
"""

from __future__ import annotations

import io
import os
import random
import re
import shutil
import socket
import subprocess
import threading
import time
import traceback
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import Enterprise, ServiceContract, User
from accounts.tests.factories import AdminFactory, UserFactory
from kernel.errors import RuleViolation
from portal.testing import QUEUES, CeleryWorker, backend_pid, wait_for, wait_until_blocked_by
from telephony.bulk import services as bulk
from telephony.identities import services, sync
from telephony.identities.hss import builtin
from telephony.identities.hss.builtin import BuiltinHss
from telephony.models import Identity, IdentitySync, ImportJob, SimulatedSubscription, SyncAttempt
from telephony.tests.factories import give_numbers

ON_POSTGRES_AND_REDIS = connection.vendor == "postgresql" and settings.CELERY_BROKER_URL.startswith(
    "redis://"
)


def fault_drill(test):
    """A drill: real workers on PostgreSQL and Redis (skipped elsewhere, saying why)."""
    for mark in (
        pytest.mark.drill,
        pytest.mark.worker,
        pytest.mark.skipif(
            not ON_POSTGRES_AND_REDIS,
            reason="fault drills need PostgreSQL and Redis: set DATABASE_URL=postgres://… "
            "and CELERY_BROKER_URL=redis://…",
        ),
    ):
        test = mark(test)
    return test


SYSTEM = Actor.system()

# Small backoff, a short lease and many tries, so that a drill's faults play out in
# seconds (production: 2 s doubling to 600 s, a 300 s lease, 8 tries).
FAST = {
    "SYNC_BACKOFF_BASE_SECONDS": "0.05",
    "SYNC_BACKOFF_CAP_SECONDS": "2",
    "SYNC_LEASE_SECONDS": "2",
    "SYNC_MAX_ATTEMPTS": "40",
    "LOG_LEVEL": "INFO",
}
SWEEP_AFTER_SECONDS = 3


# --- Figures --------------------------------------------------------------------------

REPORT: list[Figures] = []


@dataclass
class Figures:
    """What a drill measured; printed, and written down in docs/drills.md."""

    drill: str
    changes: int = 0
    hss_writes: int = 0
    duplicate_writes: int = 0
    late_pushes: int = 0
    retries: int = 0
    skipped_deliveries: int = 0
    swept: int = 0
    recovery_seconds: float | None = None
    seconds: float = 0.0
    notes: dict = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        recovery = "-" if self.recovery_seconds is None else f"{self.recovery_seconds:.1f} s"
        notes = "".join(f", {key}: {value}" for key, value in self.notes.items())
        return (
            f"{self.drill}: {self.changes} changes, {self.hss_writes} HSS writes, "
            f"{self.duplicate_writes} duplicate writes, {self.late_pushes} pushes that "
            f"outlived their lease, {self.retries} retries, "
            f"{self.skipped_deliveries} duplicate deliveries (nothing left to push), "
            f"{self.swept} re-queued by the sweep, recovery {recovery}, "
            f"drill {self.seconds:.1f} s{notes}"
        )


@pytest.fixture(scope="module", autouse=True)
def drill_report():
    yield
    if REPORT:
        print("\n\nFault drills")
        for figures in REPORT:
            print(" -", figures.line())


# --- Workers, brokers, data -----------------------------------------------------------


@pytest.fixture
def workers(transactional_db, settings):
    """Start drill workers: ``start(name, env=..., queues=..., broker_url=...)``. Tasks
    sent by the test go through the broker; every worker is stopped afterwards."""
    from portal.celery import app

    started: list[CeleryWorker] = []

    def start(
        name, *, env=None, queues=QUEUES, broker_url="", purge=None, concurrency=1, wait=True
    ) -> CeleryWorker:
        worker = CeleryWorker(
            {**FAST, **(env or {})},
            queues=queues,
            hostname=f"{name}-{uuid.uuid4().hex[:6]}@localhost",
            broker_url=broker_url,
            concurrency=concurrency,
            purge=not started if purge is None else purge,
        )
        started.append(worker)
        worker.launch()
        return worker.wait_ready() if wait else worker

    settings.SYNC_SWEEP_AFTER_SECONDS = SWEEP_AFTER_SECONDS
    app.conf.task_always_eager = False
    try:
        yield start
    finally:
        app.conf.task_always_eager = True
        for worker in started:
            worker.stop()


@pytest.fixture
def company(transactional_db):
    """An enterprise with room for a thousand identities."""
    from accounts.tests.factories import EnterpriseFactory

    enterprise = EnterpriseFactory(name="Drill Co", slug="drill", sip_domain="drill.example")
    ServiceContract.objects.filter(enterprise=enterprise).update(identity_quota=5000)
    give_numbers(enterprise, "+4930120000", "+4930121999")
    return Enterprise.objects.get(pk=enterprise.pk)  # with its contract as changed


def populate(enterprise, count: int) -> list[int]:
    """``count`` employees with an identity each (one change each)."""
    ids = []
    for n in range(count):
        owner = UserFactory.create(
            enterprise=enterprise, email=f"e{n}-{uuid.uuid4().hex[:4]}@drill.test"
        )
        ids.append(services.identity_create(actor=SYSTEM, owner=owner, services=["voice"]).pk)
    return ids


SERVICE_SETS = (
    ["voice"],
    ["video", "voice"],
    ["messaging", "voice"],
    ["messaging", "video", "voice"],
)


class Changes:
    """Changes of every kind an admin makes, on identities chosen at random: caller
    names, services, suspend and resume, relocation to a new number, removal."""

    def __init__(self, identity_ids, seed: int, *, removals: bool = True):
        self.live = list(identity_ids)
        self.random = random.Random(seed)
        self.seed = seed
        self.removals = removals
        self.count = 0

    def one(self) -> None:
        """One change; when a concurrent editor got there first (the identity is
        suspended already), another one."""
        while True:
            try:
                return self._one(self.random.choice(self.live))
            except RuleViolation:
                continue

    def _one(self, identity_id: int) -> None:
        identity = Identity.objects.get(pk=identity_id)
        roll = self.random.random()
        if roll < 0.6:
            services.identity_update(actor=SYSTEM, identity=identity, display_name=self.new_name())
        elif roll < 0.8:  # with a new caller name too: a change even when a concurrent
            # editor chose the same services first
            wanted = self.random.choice([s for s in SERVICE_SETS if s != sorted(identity.services)])
            services.identity_update(
                actor=SYSTEM, identity=identity, services=wanted, display_name=self.new_name()
            )
        elif roll < 0.92:
            if identity.status == Identity.Status.ACTIVE:
                services.identity_suspend(actor=SYSTEM, identity=identity)
            else:
                services.identity_resume(actor=SYSTEM, identity=identity)
        elif roll < 0.98 or not self.removals or len(self.live) < 10:
            services.identity_relocate(actor=SYSTEM, identity=identity, country="DE")
        else:
            services.identity_remove(actor=SYSTEM, identity=identity)
            self.live.remove(identity_id)
        self.count += 1

    def new_name(self) -> str:
        """A caller name no identity had before (15 characters at most)."""
        return f"Caller {self.seed}-{self.count}"

    def make(self, count: int) -> None:
        for _ in range(count):
            self.one()


@contextmanager
def broker(url: str):
    """Point this process's Celery app (the changes' and the sweep's messages) at
    another broker."""
    from portal.celery import app

    def reset():  # kombu keeps its pools per broker URL: only forget this app's handles
        app._pool = None
        app.amqp._producer_pool = None

    # Celery reads CELERY_BROKER_URL from the environment before its configuration.
    before = os.environ.get("CELERY_BROKER_URL"), app.conf.broker_url
    reset()
    os.environ["CELERY_BROKER_URL"] = app.conf.broker_url = url
    try:
        yield
    finally:
        reset()
        if before[0] is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = before[0]
        app.conf.broker_url = before[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A redis-server of the drill's own on a free loopback port, without persistence
    (a restart loses every message: the hardest case). Never the machine's Redis."""

    def __init__(self, directory):
        self.port = free_port()
        self.directory = directory
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.directory), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(self.answers, timeout=10, interval=0.05)
        return self

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("the Redis restart drill starts its own redis-server; none is installed")
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


# --- Reading what happened ------------------------------------------------------------

HSS_WRITE = re.compile(r"builtin HSS: (upsert|remove) (\S+) portal-(\d+)-(\d+)")
NOTHING_TO_DO = re.compile(r"sync_identity\[[^\]]+\] succeeded in [0-9.e-]+s: 'skipped'")


def hss_writes(worker: CeleryWorker) -> list[tuple[str, str, int, int]]:
    """(kind, msisdn, identity, version) of every write the worker made, in order."""
    found = []
    for line in list(worker.output):
        match = HSS_WRITE.search(line)
        if match:
            kind, msisdn, identity, version = match.groups()
            found.append((kind, msisdn, int(identity), int(version)))
    return found


def converge(enterprise, figures: Figures, *, timeout: float = 90) -> float:
    """Play the beat's sweep every second until every identity is synced; returns how
    long that took."""
    started = next_sweep = time.monotonic()
    deadline = started + timeout
    while True:
        unsettled = IdentitySync.objects.filter(enterprise=enterprise).exclude(
            state=IdentitySync.State.SYNCED
        )
        if not unsettled.exists():
            return time.monotonic() - started
        if time.monotonic() > deadline:
            states = Counter(unsettled.values_list("state", flat=True))
            errors = set(unsettled.values_list("last_error", flat=True)[:5])
            raise AssertionError(f"not converged after {timeout}s: {dict(states)} {errors}")
        if time.monotonic() >= next_sweep:
            figures.swept += sync.sweep()
            next_sweep = time.monotonic() + 1
        time.sleep(0.2)


def assert_hss_exactly_as_desired(enterprise) -> None:
    """Every identity synced at its latest version, the HSS holding exactly its desired
    subscription (written by that version's push), and nothing else of ours."""
    hss = BuiltinHss(latency_ms=0, failure_rate=0)
    rows = {row.msisdn: row for row in SimulatedSubscription.objects.all()}
    identities = list(
        Identity.objects.filter(enterprise=enterprise).select_related(
            "enterprise", "number", "line", "owner", "sync"
        )
    )
    shared = sync.shared_access({i.owner_id for i in identities})
    devices = sync.device_settings([i.pk for i in identities])
    wrong: dict[int, object] = {}
    wanted: set[str] = set()
    for identity in identities:
        row = identity.sync
        if row.state != IdentitySync.State.SYNCED or row.synced_version != row.desired_version:
            wrong[identity.pk] = f"{row.state} v{row.synced_version}/{row.desired_version}"
            continue
        desired = sync.desired_subscription(identity, shared, devices)
        if desired is None:
            if identity.former_tn in rows:
                wrong[identity.pk] = f"removed, but {identity.former_tn} is still in the HSS"
            continue
        wanted.add(desired.msisdn)
        stored = rows.get(desired.msisdn)
        actual = hss._subscription(stored) if stored else None
        written_by = stored.operation_id if stored else None
        differences = hss.differences(desired, actual)
        if differences:
            wrong[identity.pk] = differences
        elif written_by != f"portal-{identity.pk}-{row.synced_version}":
            wrong[identity.pk] = f"last written by {written_by}, not v{row.synced_version}"
    assert not wrong, f"{len(wrong)} identities not as desired: {dict(list(wrong.items())[:5])}"
    leftovers = set(rows) - wanted
    assert not leftovers, f"subscriptions no identity wants: {sorted(leftovers)[:5]}"


def settle(enterprise, figures: Figures, *workers: CeleryWorker, fault_ended=None) -> Figures:
    """Wait for recovery, check the HSS, count what happened, and report."""
    took = converge(enterprise, figures)
    if fault_ended is not None:
        figures.recovery_seconds = time.monotonic() - fault_ended
    else:
        figures.recovery_seconds = took
    assert_hss_exactly_as_desired(enterprise)
    writes = [w for worker in workers for w in hss_writes(worker)]
    figures.hss_writes = len(writes)
    figures.duplicate_writes = sum(n - 1 for n in Counter(writes).values() if n > 1)
    figures.changes = sum(
        IdentitySync.objects.filter(enterprise=enterprise).values_list("desired_version", flat=True)
    )
    figures.retries = SyncAttempt.objects.filter(
        enterprise=enterprise, outcome=SyncAttempt.Outcome.RETRYING
    ).count()
    figures.late_pushes = sum(
        1 for worker in workers for line in list(worker.output) if "outlived its lease" in line
    )
    figures.skipped_deliveries = sum(
        1 for worker in workers for line in list(worker.output) if NOTHING_TO_DO.search(line)
    )
    figures.seconds = time.monotonic() - figures.started
    REPORT.append(figures)
    print("\n" + figures.line())
    return figures


def queued(queue: str = "sync") -> int:
    """Messages waiting in a queue of the broker this process sends to (Redis)."""
    from portal.celery import app

    with app.connection_for_write() as conn:
        return conn.default_channel.client.llen(queue)


def synced_count(enterprise) -> int:
    return IdentitySync.objects.filter(enterprise=enterprise, state="synced").count()


# --- 1. The HSS down for a while ------------------------------------------------------


@fault_drill
def test_drill_the_hss_down_during_1000_changes_loses_none(workers, company):
    figures = Figures("HSS outage")
    worker = workers("outage", concurrency=2, wait=False)
    ids = populate(company, 100)  # while it starts
    worker.wait_ready()
    changes = Changes(ids, seed=1)
    changes.make(200)
    builtin.outage_start(reason="fault drill")
    changes.make(700)  # made while every HSS call fails
    wait_for(lambda: SyncAttempt.objects.filter(outcome="retrying").count() >= 300, timeout=60)
    pending = IdentitySync.objects.filter(enterprise=company).exclude(state="synced").count()
    backlog = queued()
    builtin.outage_end()
    back = time.monotonic()
    figures.notes["identities pending when the HSS came back"] = pending
    figures.notes["messages queued then"] = backlog
    figures = settle(company, figures, worker, fault_ended=back)
    assert figures.changes == 1000
    assert figures.retries >= 300  # the outage was felt
    assert not IdentitySync.objects.filter(state="failed").exists()
    # Failed calls write nothing, and a retry writes only what is still pending; a version
    # is written twice only by a push that outlived its lease (a stalled worker).
    assert figures.duplicate_writes <= figures.late_pushes


# --- 2. A worker killed mid-batch -----------------------------------------------------


def others_running_a_statement() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state = 'active')"
        )
        return cursor.fetchone()[0]


def kill_while_pushing(worker: CeleryWorker, enterprise) -> IdentitySync:
    """SIGKILL the worker at a moment it holds a lease (checked while it is frozen, once
    the statement it last sent has finished: a commit sent just before the freeze still
    lands, and would clear the lease the drill reads)."""
    for _ in range(500):
        worker.pause()
        wait_for(lambda: not others_running_a_statement(), timeout=5)
        held = (
            IdentitySync.objects.filter(enterprise=enterprise, claimed_until__gt=timezone.now())
            .order_by("claimed_until")
            .last()
        )
        if held is not None:
            worker.kill()
            return held
        worker.resume()
        time.sleep(0.01)
    raise AssertionError("the worker never held a lease")


@fault_drill
def test_drill_a_worker_killed_mid_batch_loses_nothing(workers, company):
    figures = Figures("worker SIGKILL")
    doomed = workers("doomed", env={"HSS_BUILTIN_LATENCY_MS": "30"}, wait=False)
    ids = populate(company, 100)  # while it starts
    doomed.wait_ready()
    Changes(ids, seed=2).make(200)
    wait_for(lambda: synced_count(company) >= 30, timeout=60)
    held = kill_while_pushing(doomed, company)
    killed = time.monotonic()
    figures.notes["synced before the kill"] = synced_count(company)
    # The lease outlives its worker; nobody else may push that identity until it expires.
    assert IdentitySync.objects.get(pk=held.pk).claimed_until == held.claimed_until
    survivor = workers("survivor", purge=False)
    figures = settle(company, figures, doomed, survivor, fault_ended=killed)
    assert figures.changes == 300
    # The killed task's message stays unacked: its own change comes back by the sweep, and
    # the late changes it had taken along by their own deliveries once its leases expired
    # (never before: checked above); which of them the lease was on is chance.
    # At most the killed push is written twice (if it died between the write and the record).
    assert figures.duplicate_writes <= 1 + figures.late_pushes


# --- 3. Redis restarted ---------------------------------------------------------------


@fault_drill
def test_drill_redis_restarted_mid_batch_loses_nothing(workers, company, own_redis, caplog):
    figures = Figures("Redis restart")
    with broker(own_redis.url):
        worker = workers("redis", broker_url=own_redis.url, env={"HSS_BUILTIN_LATENCY_MS": "10"})
        ids = populate(company, 100)
        changes = Changes(ids[:-5], seed=3)
        changes.make(100)
        figures.notes["messages queued when Redis stopped"] = queued()
        own_redis.stop()  # every queued message is gone with it
        down = time.monotonic()
        with caplog.at_level("ERROR"):
            # Committed, but their messages cannot be sent: a later push takes them along
            # (late first tries of its queue) or the sweep re-queues them.
            for n, identity_id in enumerate(ids[-5:]):
                Changes([identity_id], seed=30 + n).make(1)
        lost_sends = sum("on_commit" in r.getMessage() for r in caplog.records)
        own_redis.start()
        figures.notes["Redis down"] = f"{time.monotonic() - down:.1f} s"
        figures.notes["messages not sent"] = lost_sends
        changes.make(95)
        back = time.monotonic()
        figures = settle(company, figures, worker, fault_ended=back)
    assert figures.changes == 300  # the five among them: settle checked the HSS holds all
    assert lost_sends == 5
    assert worker.running
    assert figures.duplicate_writes <= figures.late_pushes


# --- 4. PostgreSQL connections dropped ------------------------------------------------


def drop_other_connections() -> int:
    """pg_terminate_backend on every connection to the test database but this one."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def other_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@fault_drill
def test_drill_postgresql_connections_dropped_mid_batch_the_worker_recovers(workers, company):
    figures = Figures("PostgreSQL connections dropped")
    worker = workers("pg", env={"HSS_BUILTIN_LATENCY_MS": "10"}, wait=False)
    ids = populate(company, 100)  # while it starts
    worker.wait_ready()
    Changes(ids, seed=4).make(200)
    terminated = rounds = 0
    while rounds < 3:
        wait_for(lambda n=rounds: synced_count(company) >= 20 * (n + 1), timeout=60)
        wait_for(other_connections, timeout=30)  # the worker is connected (again)
        dropped_now = drop_other_connections()
        rounds += dropped_now > 0
        terminated += dropped_now
    dropped = time.monotonic()
    figures.notes["connections terminated"] = terminated
    figures = settle(company, figures, worker, fault_ended=dropped)
    log = "".join(worker.output)
    figures.notes["tasks retried after a database error"] = log.count("retry: Retry in")
    assert terminated >= 3
    assert worker.running
    assert figures.duplicate_writes <= terminated + figures.late_pushes
    # A push cut off by the database is retried at once, not left to the sweep.
    assert "raised unexpected" not in log
    assert figures.changes == 300


# --- 5. Several workers ---------------------------------------------------------------


@fault_drill
def test_drill_two_workers_with_racing_edits_end_exactly_as_desired(workers, company):
    figures = Figures("two workers, racing edits")
    left = workers("left", queues=("sync",), wait=False)
    right = workers("right", queues=("sync",), purge=False, wait=False)
    ids = populate(company, 100)  # while they start
    left.wait_ready(), right.wait_ready()
    errors = []

    def edit(seed):
        try:
            # Three editors on the same fifty identities (none removes one under the others).
            Changes(ids[:50], seed=seed, removals=False).make(300)
        except Exception:  # noqa: BLE001 - reported by the test
            errors.append(traceback.format_exc())
        finally:
            connection.close()

    threads = [threading.Thread(target=edit, args=(seed,)) for seed in (51, 52, 53)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors[0]
    close_old_connections()
    figures = settle(company, figures, left, right)
    by_worker = {w.hostname.split("-")[0]: len(hss_writes(w)) for w in (left, right)}
    figures.notes["writes by worker"] = by_worker
    assert figures.changes == 1000
    assert all(by_worker.values())  # both took part
    assert figures.duplicate_writes <= figures.late_pushes


def freeze_before_write(worker: CeleryWorker, identity, version: int) -> bool:
    """Freeze the worker in its push of ``version`` after it took the lease and before
    it wrote (in the HSS's latency), outside any transaction — frozen inside one, it
    would hold row locks that stop every other worker. False if it wrote first."""
    written = f"portal-{identity.pk}-{version}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if SimulatedSubscription.objects.filter(operation_id=written).exists():
            return False
        leased = IdentitySync.objects.filter(pk=identity.pk, claimed_until__gt=timezone.now())
        if leased.exists():
            worker.pause()
            clean = not SimulatedSubscription.objects.filter(operation_id=written).exists()
            if clean and not busy_connections():
                return True
            worker.resume()
        time.sleep(0.005)
    return False


def busy_connections() -> int:
    """Other connections to the test database inside a transaction or a query."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state <> 'idle'"
        )
        return cursor.fetchone()[0]


@fault_drill
def test_drill_a_push_that_outlived_its_lease_does_not_leave_stale_state(workers, company):
    """Lease fencing: a worker that stalls past its lease (frozen here) and then writes
    an older state must not leave it in the HSS over the newer one."""
    figures = Figures("stale push after an expired lease")
    lease = {"SYNC_LEASE_SECONDS": "1"}
    slow = workers("slow", env={**lease, "HSS_BUILTIN_LATENCY_MS": "300"})
    (identity_id,) = populate(company, 1)
    wait_for(lambda: synced_count(company) == 1, timeout=30)
    identity = Identity.objects.get(pk=identity_id)
    for attempt in range(20):
        services.identity_update(actor=SYSTEM, identity=identity, display_name=f"Stale {attempt}")
        stale_version = IdentitySync.objects.get(pk=identity_id).desired_version
        if freeze_before_write(slow, identity, stale_version):
            break
        wait_for(lambda: synced_count(company) == 1, timeout=10)
    else:
        raise AssertionError("could not freeze the worker before its write")
    wait_for(  # the frozen worker's lease runs out
        lambda: IdentitySync.objects.filter(
            pk=identity_id, claimed_until__lt=timezone.now()
        ).exists(),
        timeout=10,
    )
    services.identity_update(actor=SYSTEM, identity=identity, display_name="Fresh")
    fast = workers("fast", env=lease, queues=("sync",), purge=False)
    fresh = f"portal-{identity_id}-{stale_version + 1}"
    wait_for(lambda: SimulatedSubscription.objects.filter(operation_id=fresh).exists(), 30)
    wait_for(lambda: synced_count(company) == 1, timeout=10)
    seen = len(slow.output)
    slow.resume()  # it wakes up and writes the older state
    stale = ("upsert", identity.tn, identity_id, stale_version)
    wait_for(lambda: stale in hss_writes(slow), timeout=10)
    wait_for(lambda: any("succeeded" in line for line in slow.output[seen:]), timeout=10)
    figures.notes["stale write landed"] = "yes"
    figures = settle(company, figures, slow, fast)
    assert SimulatedSubscription.objects.get(msisdn=identity.tn).display_name == "Fresh"


@fault_drill
def test_drill_a_bulk_import_does_not_hold_up_a_leavers_kill_switch(workers, company, settings):
    figures = Figures("kill-switch during a bulk import")
    # Nothing is lost here: a sweep must not mistake the import's pushes, waiting on the
    # bulk queue, for lost ones (see docs/drills.md).
    settings.SYNC_SWEEP_AFTER_SECONDS = 60
    sync_worker = workers(
        "sync",
        queues=("sync", "notify", "celery"),
        env={"HSS_BUILTIN_LATENCY_MS": "10"},
        wait=False,
    )
    bulk_worker = workers("bulk", queues=("bulk", "imports"), purge=False)
    sync_worker.wait_ready()
    admin = AdminFactory(enterprise=company, email="admin@drill.test")
    leaver = UserFactory(enterprise=company, email="leaver@drill.test")
    kept = services.identity_create(actor=SYSTEM, owner=leaver, services=["voice"])
    wait_for(lambda: synced_count(company) == 1, timeout=30)
    rows = "".join(f"joiner{n}@drill.test,Joiner {n},employee,voice,,,,\n" for n in range(300))
    job = bulk.import_preview(
        actor=Actor(user=admin),
        enterprise=company,
        filename="joiners.csv",
        csv_text="email,full_name,role,services,display_name,tn,imsi,alias\n" + rows,
        send_invitations=False,
    )
    assert not job.problems
    bulk.import_start(actor=Actor(user=admin), job=job)
    # Two chunks committed: the first one's pushes are queued for certain.
    wait_for(lambda: ImportJob.objects.get(pk=job.pk).next_row >= 200, timeout=60, interval=0.02)
    bulk_worker.pause()  # the import, frozen mid-way, holds its queue
    with connection.cursor() as cursor:  # fail, not hang, should the frozen import block it
        cursor.execute("SET lock_timeout = '20s'")
    services.employee_offboard(actor=Actor(user=admin), user=leaver)
    removal = ("remove", kept.tn, kept.pk, 2)
    wait_for(lambda: removal in hss_writes(sync_worker), timeout=30)
    # Order of events: the leaver's removal went ahead while the import stood still,
    # and no push of an imported identity ran before it on the sync queue's worker.
    assert ImportJob.objects.get(pk=job.pk).state == ImportJob.State.RUNNING
    sync_log = hss_writes(sync_worker)
    ahead = [w for w in sync_log[: sync_log.index(removal)] if w[2] != kept.pk]
    figures.notes["import pushes ahead of the kill-switch"] = len(ahead)
    assert ahead == []
    bulk_worker.resume()
    wait_for(lambda: ImportJob.objects.get(pk=job.pk).state == "done", timeout=90)
    figures = settle(company, figures, sync_worker, bulk_worker)
    assert User.objects.get(pk=leaver.pk).status == User.Status.OFFBOARDED
    assert figures.changes == 2 + 300


# --- What the drills found, pinned in-process ----------------------------------------

ON_POSTGRES = connection.vendor == "postgresql"
postgres_only = pytest.mark.skipif(
    not ON_POSTGRES, reason="row locks (SELECT … FOR UPDATE) need PostgreSQL"
)


class DownHss(BuiltinHss):
    """The builtin HSS answering with ``error`` while ``down``: every call, or only the
    first ``down_for`` calls it counts."""

    def __init__(self, error):
        super().__init__(latency_ms=0, failure_rate=0)
        self.error = error
        self.down = True
        self.down_for: int | None = None
        self.calls = 0

    def simulate_conditions(self):
        self.calls += 1
        if self.down and (self.down_for is None or self.calls <= self.down_for):
            raise self.error


@pytest.fixture
def held(monkeypatch):
    """Pushes that changes queue are held here as (identity, attempt, queue), as if no
    worker had taken them yet; the test runs what it wants."""
    queued = []
    monkeypatch.setattr(
        "telephony.identities.sync.queue_push",
        lambda identity_id, attempt=0, queue="", countdown=None: queued.append(
            (identity_id, attempt, queue)
        ),
    )
    monkeypatch.setattr(
        "telephony.identities.sync.queue_pushes",
        lambda identity_ids, queue="": queued.extend((pk, 0, queue) for pk in identity_ids),
    )
    return queued


def make_pending_identity():
    from accounts.tests.factories import EnterpriseFactory

    enterprise = EnterpriseFactory(sip_domain="pin.example")
    give_numbers(enterprise)
    owner = UserFactory(enterprise=enterprise)
    return services.identity_create(actor=SYSTEM, owner=owner, services=["voice"])


@pytest.fixture
def pending_identity(db, held):
    return make_pending_identity()


@pytest.fixture
def one_identity(transactional_db, held):
    """A pending identity, committed: for tests that use several connections."""
    return make_pending_identity()


def test_copies_of_a_failing_change_retry_as_one_and_count_their_tries_once(
    pending_identity, held, monkeypatch, settings
):
    """The outage drill: every message of a change (each edit queues one, the sweep
    queues more) used to start its own retry chain, multiplying the load on a sick HSS
    and using up SYNC_MAX_ATTEMPTS in a few seconds."""
    from telephony.identities.hss import HssTransientError

    settings.SYNC_MAX_ATTEMPTS = 3
    hss = DownHss(HssTransientError("HSS busy (503)"))
    monkeypatch.setattr("telephony.identities.sync.hss_backend", lambda: hss)
    pk = pending_identity.pk
    assert sync.push_identity(pk, attempt=0).attempt == 1
    # Five more copies of the first delivery: they leave it to the scheduled retry.
    assert {sync.push_identity(pk, attempt=0).outcome for _ in range(5)} == {"skipped"}
    assert IdentitySync.objects.get(pk=pk).attempts == 1
    assert sync.push_identity(pk, attempt=1).attempt == 2  # the scheduled retry tries
    assert IdentitySync.objects.get(pk=pk).state == IdentitySync.State.PENDING
    # That retry is lost; the sweep's delivery takes its place in the count.
    hss.down = False
    IdentitySync.objects.filter(pk=pk).update(next_attempt_at=timezone.now() - timedelta(hours=1))
    held.clear()
    assert sync.sweep() == 1
    assert held == [(pk, 2, "")]
    assert sync.push_identity(pk, attempt=2).outcome == "synced"


def test_a_push_that_outlived_its_lease_writes_the_current_state_once_more(
    pending_identity, held, monkeypatch, django_capture_on_commit_callbacks
):
    """The lease-fencing drill: a worker that stalled past its lease wrote an older state
    over the newer one another worker had pushed meanwhile, and left it there."""
    identity = pending_identity
    sync.push_identity(identity.pk)
    services.identity_update(actor=SYSTEM, identity=identity, display_name="Stale")

    class StallingHss(BuiltinHss):
        """While the first push stalls, its lease runs out and another worker pushes a
        newer change; then the stalled push writes what it had read."""

        stalled = False

        def upsert(self, subscription, *, operation_id):
            if not self.stalled:
                self.stalled = True
                IdentitySync.objects.filter(pk=identity.pk).update(
                    claimed_until=timezone.now() - timedelta(seconds=1)
                )
                fresh = Identity.objects.get(pk=identity.pk)
                services.identity_update(actor=SYSTEM, identity=fresh, display_name="Fresh")
                assert sync.push_identity(identity.pk).outcome == "synced"  # the other worker
            super().upsert(subscription, operation_id=operation_id)

    hss = StallingHss(latency_ms=0, failure_rate=0)
    monkeypatch.setattr("telephony.identities.sync.hss_backend", lambda: hss)
    held.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert sync.push_identity(identity.pk).outcome == "skipped"  # its record came too late
    assert SimulatedSubscription.objects.get(msisdn=identity.tn).display_name == "Stale"
    row = IdentitySync.objects.get(pk=identity.pk)
    assert (row.state, row.synced_version, row.desired_version) == ("pending", 3, 4)
    assert held[-1] == (identity.pk, 0, "")  # the current state goes out once more
    assert sync.push_identity(identity.pk, attempt=0).outcome == "synced"
    stored = SimulatedSubscription.objects.get(msisdn=identity.tn)
    assert (stored.display_name, stored.operation_id) == ("Fresh", f"portal-{identity.pk}-4")


def test_a_push_cut_off_by_the_database_hands_back_its_lease_and_the_task_retries(
    one_identity, monkeypatch
):
    """The PostgreSQL drill: a dropped connection mid-push killed the task and left the
    lease to expire (SYNC_LEASE_SECONDS, 5 minutes) before the sweep could try again."""
    from django.db import OperationalError

    from portal.celery import app
    from telephony.tasks import sync_identity

    hss = DownHss(OperationalError("server closed the connection unexpectedly"))
    monkeypatch.setattr("telephony.identities.sync.hss_backend", lambda: hss)
    with pytest.raises(OperationalError):
        sync.push_identity(one_identity.pk, attempt=0)
    row = IdentitySync.objects.get(pk=one_identity.pk)
    assert (row.claimed_until, row.attempts, row.state) == (None, 0, "pending")
    assert not SyncAttempt.objects.exists()  # not an HSS failure

    hss.calls, hss.down_for = 0, 1  # the task's first try is cut off, its retry gets through
    monkeypatch.setitem(app.conf, "task_eager_propagates", False)
    sync_identity.delay(one_identity.pk)  # eager: its retry runs at once
    assert IdentitySync.objects.get(pk=one_identity.pk).state == IdentitySync.State.SYNCED
    assert hss.calls >= 2


def test_an_imports_pushes_go_to_the_bulk_queue_and_other_changes_to_the_sync_queue(
    pending_identity, held, django_capture_on_commit_callbacks
):
    """The kill-switch drill: an import's pushes filled the sync queue ahead of a
    leaver's kill-switch."""
    one_identity = pending_identity
    enterprise = one_identity.enterprise
    ServiceContract.objects.filter(enterprise=enterprise).update(identity_quota=10)
    enterprise = Enterprise.objects.get(pk=enterprise.pk)
    admin = AdminFactory(enterprise=enterprise)
    job = bulk.import_preview(
        actor=Actor(user=admin),
        enterprise=enterprise,
        filename="joiners.csv",
        csv_text="email,full_name\na@pin.test,Ann A\nb@pin.test,Ben B\n",
        send_invitations=False,
    )
    held.clear()
    with django_capture_on_commit_callbacks(execute=True):
        bulk.import_start(actor=Actor(user=admin), job=job)  # the import task runs eagerly
    imported = Identity.objects.filter(owner__email__endswith="@pin.test")
    assert sorted(held) == sorted((pk, 0, "bulk") for pk in imported.values_list("pk", flat=True))
    assert len(held) == 2
    held.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.identity_update(actor=SYSTEM, identity=one_identity, display_name="Leaver")
    assert held == [(one_identity.pk, 0, "")]  # the task's route: the sync queue


def test_the_builtin_hss_outage_switch_fails_every_call_until_switched_off(
    pending_identity, monkeypatch
):
    one_identity = pending_identity
    monkeypatch.setattr(builtin, "OUTAGE_READ_FOR_SECONDS", 60)
    from django.core.management import CommandError, call_command

    from telephony.identities.hss import HssTransientError

    hss = BuiltinHss(latency_ms=0, failure_rate=0)
    out = io.StringIO()
    call_command("hss_outage", "on", "--reason", "maintenance", stdout=out)
    assert out.getvalue() == "The simulated HSS is down.\n"
    with pytest.raises(HssTransientError, match="outage"):
        hss.get(one_identity.tn)
    assert sync.push_identity(one_identity.pk).outcome == "retry"
    call_command("hss_outage", "off", stdout=io.StringIO())
    assert sync.push_identity(one_identity.pk).outcome == "synced"  # a new backend: at once
    with pytest.raises(HssTransientError):  # one backend (a batch) goes by what it read
        hss.get(one_identity.tn)
    monkeypatch.setattr(builtin, "OUTAGE_READ_FOR_SECONDS", 0)
    assert hss.get(one_identity.tn) is not None
    builtin.outage_start(until=timezone.now() - timedelta(seconds=1))
    assert not builtin.outage_active()  # over by itself
    with pytest.raises(CommandError, match="more than 0"):
        call_command("hss_outage", "on", "--minutes", "0")
    assert not builtin.outage_active()


def test_operator_staff_flip_the_outage_switch_in_django_admin(staff_client):
    from django.urls import reverse

    from accounts.models import AuditEvent

    switch = staff_client.get(reverse("admin:telephony_simulatedhssoutage_changelist"))
    assert switch.status_code == 302
    response = staff_client.post(
        switch.url, {"down": "on", "until_0": "", "until_1": "", "reason": "demo"}
    )
    assert response.status_code == 302
    assert builtin.outage_active()
    response = staff_client.post(switch.url, {"until_0": "", "until_1": "", "reason": ""})
    assert response.status_code == 302
    assert not builtin.outage_active()
    changes = AuditEvent.objects.filter(action="simulatedhssoutage.changed")
    assert [e.changes["down"] for e in changes.order_by("id")] == [[False, True], [True, False]]


@postgres_only
def test_concurrent_allocations_in_one_country_each_get_a_free_number(one_identity):
    """The racing drill: an allocation filtered by country locked the number block's
    row too, so a concurrent one skipped every number and found "no free number"."""
    other = services.identity_create(
        actor=SYSTEM, owner=UserFactory(enterprise=one_identity.enterprise), services=["voice"]
    )
    with holding_a_relocation(one_identity):
        services.identity_relocate(actor=SYSTEM, identity=other, country="DE")
    tns = set(Identity.objects.values_list("number__e164", flat=True))
    assert len(tns) == 2


@postgres_only
def test_a_change_that_waited_for_a_concurrent_relocation_reads_the_new_number(one_identity):
    """The racing drill: the locking read re-read the identity's row after the other
    transaction committed but not the joined number, which came back empty (a 500)."""
    first_tn = one_identity.tn
    with holding_a_relocation(one_identity) as held:
        waiting = threading.Thread(target=relocate_in_thread, args=(one_identity,))
        waiting.start()
        wait_until_blocked_by(held.backend)  # it queues for the row lock
    waiting.join(10)
    assert RELOCATED[one_identity.pk] is None  # no error
    final = Identity.objects.get(pk=one_identity.pk)
    assert final.tn not in (first_tn, held.tn)


RELOCATED: dict[int, Exception | None] = {}


def relocate_in_thread(identity) -> None:
    try:
        services.identity_relocate(actor=SYSTEM, identity=identity, country="DE")
        RELOCATED[identity.pk] = None
    except Exception as exc:  # noqa: BLE001 - the test reads it
        RELOCATED[identity.pk] = exc
    finally:
        connection.close()


@dataclass
class HeldRelocation:
    """A relocation whose transaction another thread holds open."""

    tn: str = ""  # the number it moved to
    backend: int = 0  # the PostgreSQL backend holding its locks


@contextmanager
def holding_a_relocation(identity):
    """Relocate ``identity`` in another thread and hold its transaction open until the
    block ends (then commit); yields a HeldRelocation."""
    from django.db import transaction

    held, holding, release = HeldRelocation(), threading.Event(), threading.Event()

    def relocate():
        try:
            with transaction.atomic():
                moved = services.identity_relocate(actor=SYSTEM, identity=identity, country="DE")
                held.tn, held.backend = moved.tn, backend_pid()
                holding.set()
                release.wait(10)
        finally:
            holding.set()
            connection.close()

    thread = threading.Thread(target=relocate)
    thread.start()
    holding.wait(10)
    try:
        yield held
    finally:
        release.set()
        thread.join(10)
