"""The call path never waits on the database: signing and verification read their facts
from the shared cache, every change that concerns them makes them stale when it commits
(in this process or in a worker), and the records go through a stream."""

import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from types import SimpleNamespace
from unittest.mock import patch

import jwt
import pytest
import redis
from django.core.cache import caches
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.test import RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import NetworkClient
from accounts.services import network_client_revoke
from accounts.tests.factories import AdminFactory, UserFactory
from kernel import generations
from portal.testing import wait_for
from telephony.callauth import facts, records
from telephony.identities import services, sync
from telephony.models import (
    CallerName,
    CallRecord,
    Grant,
    Identity,
    IdentitySync,
    SigningCredential,
)
from telephony.tests.factories import give_numbers, make_identity
from telephony.tests.sip_messages import invite
from telephony.tests.test_network import reginfo

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not generations.enabled(), reason="the call path's cache needs CACHE_URL"),
]


def sign(network, orig, impu=""):
    body = {"signingRequest": {"orig": {"tn": orig.lstrip("+")}, "dest": {"tn": ["4940123499"]},
                               "iat": int(time.time()), **({"origImpu": impu} if impu else {})}}  # fmt: skip
    answer = network.post("/network/v1/stir/signing", body, content_type="application/json")
    assert answer.status_code == 200, answer.content
    return answer.json()["signingResponse"]


def attest(answer) -> str:
    return jwt.decode(answer["identity"].split(";")[0], options={"verify_signature": False})[
        "attest"
    ]


def verify(network, identity, orig):
    body = {"verificationRequest": {"from": {"tn": orig.lstrip("+")}, "to": {"tn": ["4940123499"]},
                                    "time": int(time.time()), "identity": identity}}  # fmt: skip
    answer = network.post("/network/v1/stir/verification", body, content_type="application/json")
    assert answer.status_code == 200, answer.content
    return answer.json()["verificationResponse"]


@pytest.fixture
def stream(settings):
    """The record stream on the broker's Redis, empty."""
    settings.CALL_RECORD_STREAM_URL = settings.CELERY_BROKER_URL
    if not settings.CALL_RECORD_STREAM_URL.startswith("redis"):
        pytest.skip("the record stream needs a Redis broker")
    connection = records._stream()
    connection.delete(records.STREAM)
    yield connection
    connection.delete(records.STREAM)


@contextmanager
def redis_commands():
    """The names of the Redis commands sent meanwhile."""
    sent: list[str] = []
    send = redis.Redis.execute_command

    def counting(self, *args, **options):
        sent.append(str(args[0]).upper())
        return send(self, *args, **options)

    with patch.object(redis.Redis, "execute_command", counting):
        yield sent


def test_a_warm_signing_and_verification_make_no_sql_query(
    network, rob, enterprise, stream, django_assert_num_queries
):
    CallerName.objects.create(enterprise=enterprise, name="Swift Delivery", vetting="vetted")
    warm = sign(network, rob.tn)
    verify(network, ",".join(warm["identities"]), rob.tn)
    with django_assert_num_queries(0), redis_commands() as signing_commands:
        signed = sign(network, rob.tn)
    with django_assert_num_queries(0), redis_commands() as verifying_commands:
        verified = verify(network, ",".join(signed["identities"]), rob.tn)
    # Nothing read from the shared cache (this process's near copy holds the client, the
    # call's entries and their generations), and the record's append.
    assert signing_commands == verifying_commands == ["XADD"]
    assert attest(signed) == "A" and len(signed["identities"]) == 2
    assert (verified["verstat"], verified["caller"]["name"]) == (
        "TN-Validation-Passed",
        "Swift Delivery",
    )
    # Every call is recorded, by the stream's writer.
    assert not CallRecord.objects.exists()
    assert records.store_pending() == 4
    assert CallRecord.objects.filter(direction="outgoing").count() == 2
    assert CallRecord.objects.filter(direction="incoming").count() == 2


def test_another_processs_change_reaches_the_near_copy_once_its_window_has_passed(
    network, rob, stream, settings, monkeypatch
):
    """The call path takes a generation it read from the shared cache as current for
    CALL_FACTS_NEAR_SECONDS: inside that window a warm call asks the cache nothing;
    after it, one round trip for the generations, and another process's change (its
    new generation in the shared cache) reaches the call."""
    clock = SimpleNamespace(now=time.monotonic())
    monkeypatch.setattr(generations, "time", SimpleNamespace(monotonic=lambda: clock.now))
    assert attest(sign(network, rob.tn)) == "A"
    # Another process suspends Rob: its row, then its enterprise's new generation.
    Identity.objects.filter(pk=rob.pk).update(status=Identity.Status.SUSPENDED)
    caches[generations.CACHE].set(f"generation:{rob.enterprise_id}", "changed", timeout=None)
    clock.now += settings.CALL_FACTS_NEAR_SECONDS * 0.9
    with redis_commands() as commands:
        assert attest(sign(network, rob.tn)) == "A"
    assert commands == ["XADD"]
    clock.now += settings.CALL_FACTS_NEAR_SECONDS * 0.2
    with redis_commands() as commands:
        assert attest(sign(network, rob.tn)) == "C"
    assert commands[0] == "MGET"
    # This process's own change is near at once, with no window to wait.
    Identity.objects.filter(pk=rob.pk).update(status=Identity.Status.ACTIVE)
    generations.bump_after_commit(enterprise_id=rob.enterprise_id)
    assert attest(sign(network, rob.tn)) == "A"


@override_settings(CALL_FACTS_NEAR_SECONDS=0)
def test_without_a_window_every_call_reads_the_shared_cache(network, rob, stream):
    sign(network, rob.tn)
    with redis_commands() as commands:
        assert attest(sign(network, rob.tn)) == "A"
    assert commands == ["MGET", "XADD"]


def test_the_near_copy_holds_at_most_its_bound(network, rob, stream, monkeypatch):
    monkeypatch.setattr(generations, "NEAR_KEPT", 2)
    sign(network, rob.tn)  # the client, the call's facts and the signers: three entries
    assert len(generations._near.entries) <= 2
    assert attest(sign(network, rob.tn)) == "A"


def test_a_hint_that_no_longer_holds_costs_a_round_trip_and_nothing_else(
    network, rob, other_enterprise, stream, django_assert_num_queries
):
    """Which enterprises a call's facts were read under is remembered per process, only
    to fetch their entries in the first round trip: a wrong or missing hint costs the
    second one, never a wrong answer."""
    sign(network, rob.tn)
    key = facts.context_key(rob.tn, "")
    generations.bump_after_commit(enterprise_id=other_enterprise.pk)  # its generation exists
    for hint in ((generations.OPERATOR, other_enterprise.pk), None):
        generations.forget_near()  # a new process: nothing near
        if hint is None:
            generations._scopes_seen.clear()  # a new process
        else:
            generations._scopes_seen[key] = hint
        with django_assert_num_queries(0), redis_commands() as commands:
            signed = sign(network, rob.tn)
        assert commands == ["MGET", "MGET", "XADD"] and attest(signed) == "A"
        assert rob.enterprise_id in generations.scopes_seen(key)


def test_an_invite_from_the_edge_is_signed_and_verified_warm_in_as_few_round_trips(
    network, rob, enterprise, stream, django_assert_num_queries
):
    """The SIP edge's INVITEs read the cache as the ATIS endpoints do: warm, from the
    process's near copy, so that only the record's append is a round trip."""
    CallerName.objects.create(enterprise=enterprise, name="Swift Delivery", vetting="vetted")

    def post(data: bytes) -> dict:
        answer = network.post("/network/v1/sip/invite", data, content_type="message/sip")
        assert answer.status_code == 200, answer.content
        return answer.json()

    warm = post(invite(caller=rob.tn, served="orig"))
    post(invite(caller=rob.tn, served="term", identity=tuple(warm["identity"])))
    with django_assert_num_queries(0), redis_commands() as signing_commands:
        signed = post(invite(caller=rob.tn, served="orig"))
    with django_assert_num_queries(0), redis_commands() as verifying_commands:
        verified = post(invite(caller=rob.tn, served="term", identity=tuple(signed["identity"])))
    assert signing_commands == verifying_commands == ["XADD"]
    assert signed["attest"] == "A" and len(signed["identity"]) == 2
    assert verified["verstat"] == "TN-Validation-Passed"
    assert verified["asserted_identity"][0].startswith('"Swift Delivery" <')


def test_a_device_reporting_leaves_the_call_paths_facts_warm(network, rob, enterprise, stream):
    """Registrations decide no call: a UE's report (many a minute in a busy enterprise)
    lapses only what shows devices (kernel.generations.devices)."""
    sign(network, rob.tn)
    answer = network.post(
        "/network/v1/reginfo",
        data=reginfo(aor=f"sip:{rob.tn}@{enterprise.sip_domain};user=phone"),
        content_type="application/reginfo+xml",
    )
    assert answer.status_code == 200 and answer.json()["applied"] == 1, answer.content
    with CaptureQueriesContext(connection) as after_report:
        assert attest(sign(network, rob.tn)) == "A"
    assert after_report.captured_queries == []


def test_an_originator_that_names_nobody_is_kept_until_an_identity_takes_its_address(
    network, rob, enterprise, other_enterprise, stream
):
    """Even in another enterprise, whose changes lapse nothing of this one's otherwise."""
    give_numbers(other_enterprise, "+4940555000", "+4940555009")
    stranger = f"sip:+4940555007@{other_enterprise.sip_domain};user=phone"
    sign(network, rob.tn, stranger)
    with CaptureQueriesContext(connection) as again:
        sign(network, rob.tn, stranger)
    assert again.captured_queries == []
    assert not facts.call_context(rob.tn, stranger).facts.caller_known

    their_admin = AdminFactory(enterprise=other_enterprise)  # not the system: no operator bump
    services.identity_create(
        actor=Actor(user=their_admin),
        owner=UserFactory(enterprise=other_enterprise),
        services=["voice"],
        tn="+4940555007",
    )
    assert facts.call_context(rob.tn, stranger).facts.caller_known


def _colleague_with_grant(enterprise, rob):
    colleague = make_identity(UserFactory(enterprise=enterprise))
    sync.push_identity(colleague.pk)
    grant = services.grant_create(
        actor=Actor(user=rob.owner), identity=rob, grantee=colleague.owner
    )
    return f"sip:{colleague.tn}@{enterprise.sip_domain};user=phone", grant


def test_every_change_that_decides_a_call_reaches_the_next_signing(
    network, rob, enterprise, staff, staff_client
):
    """Each write path through which a decision's facts change (services, the sync
    engine, operator staff in Django admin) makes the cached facts stale."""
    system = Actor.system()
    impu, grant = _colleague_with_grant(enterprise, rob)
    assert attest(sign(network, rob.tn, impu)) == "A"

    services.grant_revoke(actor=Actor(user=rob.owner), grant=grant)
    assert attest(sign(network, rob.tn, impu)) == "B"

    assert attest(sign(network, rob.tn)) == "A"
    services.identity_suspend(actor=system, identity=rob)
    assert attest(sign(network, rob.tn)) == "C"  # a suspended identity vouches for nobody
    services.identity_resume(actor=system, identity=rob)
    assert attest(sign(network, rob.tn)) == "B"  # not in step with the HSS yet
    sync.push_identity(rob.pk)  # the sync engine records it synced
    assert attest(sign(network, rob.tn)) == "A"

    # Operator staff in Django admin: the business name, then the delegate certificate.
    assert "identities" not in sign(network, rob.tn)
    name = CallerName.objects.create(enterprise=enterprise, name="Swift Delivery")
    staff_client.post(
        reverse("admin:telephony_callername_change", args=[name.pk]),
        {"enterprise": enterprise.pk, "name": "Swift Delivery", "vetting": "vetted"},
    )
    assert len(sign(network, rob.tn)["identities"]) == 2
    delegate = SigningCredential.objects.get(kind="delegate")
    assert f"/{delegate.slug}.pem" in sign(network, rob.tn)["identity"]
    staff_client.post(
        reverse("admin:telephony_signingcredential_change", args=[delegate.pk]),
        {"name": delegate.name, "active": ""},
    )
    assert f"/{delegate.slug}.pem" not in sign(network, rob.tn)["identity"]

    # The number leaves: removed with its identity, C (nobody holds it now).
    services.identity_remove(actor=system, identity=rob)
    assert attest(sign(network, rob.tn)) == "C"


def test_a_relocated_number_is_decided_afresh(network, rob, employee):
    old_tn = rob.tn
    assert attest(sign(network, old_tn)) == "A"
    services.identity_relocate(actor=Actor.system(), identity=rob, tn="+4930123450")
    rob.refresh_from_db()
    assert attest(sign(network, old_tn)) == "C"  # the old number is nobody's now


def test_an_offboarded_employees_number_gets_c_at_once(network, rob, employee):
    assert attest(sign(network, rob.tn)) == "A"
    services.employee_offboard(actor=Actor.system(), user=employee)
    assert attest(sign(network, rob.tn)) == "C"


def test_a_revoked_network_credential_stops_working_at_once(network, rob):
    assert sign(network, rob.tn)
    client = rob.enterprise.network_clients.get()
    network_client_revoke(actor=Actor.system(), client=client)
    body = {"signingRequest": {"orig": {"tn": rob.tn[1:]}, "dest": {"tn": ["4940123499"]},
                               "iat": int(time.time())}}  # fmt: skip
    answer = network.post("/network/v1/stir/signing", body, content_type="application/json")
    assert answer.status_code == 401


def test_a_grant_that_expires_ends_with_no_change_to_any_row(network, rob, enterprise, monkeypatch):
    impu, grant = _colleague_with_grant(enterprise, rob)
    Grant.objects.filter(pk=grant.pk).update(valid_until=timezone.now() + timedelta(minutes=5))
    generations.bump_after_commit(enterprise_id=enterprise.pk)  # the update above is a test's
    assert attest(sign(network, rob.tn, impu)) == "A"
    later = timezone.now() + timedelta(minutes=6)
    monkeypatch.setattr(facts.timezone, "now", lambda: later)
    assert attest(sign(network, rob.tn, impu)) == "B"


def test_facts_read_while_a_change_commits_are_not_used_after_it(enterprise):
    """A reader that loads while a change commits keeps what it read under the
    generation it read before: the next reader does not take it."""
    scope = enterprise.pk

    def load_while_changed(value):
        def load():
            generations.bump_after_commit(enterprise_id=scope)  # commits meanwhile
            return value, {scope}

        return load

    reader = generations.Reader()
    reader.fetch([], {scope})
    assert reader.value("k", load_while_changed("old")) == "old"
    assert generations.Reader().value("k", lambda: ("new", {scope})) == "new"

    # A reader that learns of the enterprise only from the load reads its generation,
    # then loads again: that second load is what it keeps.
    loads = iter(["old", "new"])
    reader = generations.Reader()
    assert reader.value("k2", lambda: (next(loads), {scope})) == "new"
    assert generations.Reader().value("k2", lambda: ("other", {scope})) == "new"


def test_a_writer_gone_for_long_leaves_the_group_and_one_holding_records_stays(
    network, rob, stream, settings, monkeypatch
):
    settings.CALL_RECORD_CLAIM_IDLE_SECONDS = 3600  # nobody's entries are taken over here
    records.store_pending()  # the group exists
    stream.xgroup_createconsumer(records.STREAM, records.GROUP, "gone-1")
    sign(network, rob.tn)
    stream.xreadgroup(records.GROUP, "holding-2", {records.STREAM: ">"}, count=10)
    monkeypatch.setattr(records, "FORGET_IDLE_WRITERS_SECONDS", 0)

    records.store_pending()

    names = {w["name"] for w in stream.xinfo_consumers(records.STREAM, records.GROUP)}
    names = {n.decode() if isinstance(n, bytes) else n for n in names}
    assert "gone-1" not in names
    assert "holding-2" in names


def test_a_redelivered_record_is_written_once(network, rob, stream):
    sign(network, rob.tn)
    consumer = "writer-that-dies"
    records._ensure_group(stream)
    taken = stream.xreadgroup(records.GROUP, consumer, {records.STREAM: ">"}, count=10)
    _, fields = taken[0][1][0]
    # The writer wrote the batch, and died before acknowledging it.
    records._write([records._decode(fields[b"r"])])
    assert CallRecord.objects.count() == 1
    with override_settings(CALL_RECORD_CLAIM_IDLE_SECONDS=0):
        assert records.store_pending() == 1  # claimed from the dead writer
    assert CallRecord.objects.count() == 1
    assert stream.xlen(records.STREAM) == 0
    assert stream.xpending(records.STREAM, records.GROUP)["pending"] == 0


def test_a_calls_record_is_appended_once_its_answer_is_sent(network, rob, stream):
    """The SBC does not wait on the stream: the server holds the whole answer before the
    record is appended, and the record goes when the server closes the answer."""
    request = RequestFactory().post(
        "/network/v1/stir/signing",
        {"signingRequest": {"orig": {"tn": rob.tn.lstrip("+")}, "dest": {"tn": ["4940123499"]},
                            "iat": int(time.time())}},
        content_type="application/json",
        HTTP_AUTHORIZATION=network.defaults["HTTP_AUTHORIZATION"],
    )  # fmt: skip
    statuses: list[str] = []
    # As Django's test client does: the test's transaction stays open across the request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        answer = WSGIHandler()(request.environ, lambda status, headers: statuses.append(status))
        sent = b"".join(answer)
        assert statuses == ["200 OK"] and b"signingResponse" in sent
        assert stream.xlen(records.STREAM) == 0
        answer.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    assert stream.xlen(records.STREAM) == 1
    assert records.store_pending() == 1
    assert CallRecord.objects.get().attestation == "A"


def test_records_held_for_an_answer_never_closed_go_with_the_next_request(rob, stream):
    records.answer_first()
    try:
        held = records.keep(CallRecord(direction="outgoing", orig_tn=rob.tn, attestation="A"))
        assert stream.xlen(records.STREAM) == 0
        records.answer_first()  # the next request of this thread
        assert stream.xlen(records.STREAM) == 1
    finally:
        records.append_held()
    assert records.store_pending() == 1
    assert CallRecord.objects.get().record_id == held.record_id


@pytest.mark.django_db(transaction=True)  # as after an answer: no transaction around it
def test_a_held_record_nobody_takes_is_said_in_the_log_and_holds_up_no_other(
    rob, stream, monkeypatch, caplog
):
    def refuse(*args, **kwargs):
        raise redis.ConnectionError("the stream is away")

    monkeypatch.setattr(redis.Redis, "xadd", refuse)
    records.answer_first()
    lost = records.keep(
        CallRecord(direction="outgoing", orig_tn=rob.tn, origid="call\x00id", attestation="A")
    )
    kept = records.keep(CallRecord(direction="outgoing", orig_tn=rob.tn, attestation="A"))
    records.append_held()
    assert f"call record {lost.record_id} lost" in caplog.text
    assert CallRecord.objects.get().record_id == kept.record_id


def test_a_record_keeps_every_field_through_the_stream(rob, enterprise, stream):
    """The writer maps the stream's JSON onto the table in one statement, with no model
    instance per record: each column must come out as it went in."""
    client = NetworkClient.objects.create(name="I-CSCF", key_hash="0" * 64)
    sent = records.keep(
        CallRecord(enterprise=enterprise, identity=rob, network_client=client,
                   direction="incoming", orig_tn=rob.tn, dest_tns=["+4940123499", "+4940123498"],
                   attestation="B", verstat="TN-Validation-Passed", reason="grant “ü” ends",
                   checks=[["Caller known", True, "détail"], ["Grant", False, "none"]],
                   origid="o-1", caller_name="Swift Delivery", request_id="r-1")
    )  # fmt: skip
    assert records.store_pending() == 1
    stored = CallRecord.objects.get(record_id=sent.record_id)
    columns = (*records.FIELDS, "created_at")
    assert {c: getattr(stored, c) for c in columns} == {c: getattr(sent, c) for c in columns}


@pytest.mark.django_db(transaction=True)  # the reference is checked when the batch commits
def test_a_record_of_a_client_deleted_since_the_call_is_kept_without_it(network, rob, stream):
    sign(network, rob.tn)
    NetworkClient.objects.all().delete()
    assert records.store_pending() == 1
    record = CallRecord.objects.get()
    assert record.network_client_id is None
    assert (record.identity, record.attestation) == (rob, "A")


def test_a_record_the_database_refuses_holds_up_no_other(network, rob, stream, caplog):
    """A value PostgreSQL cannot hold (the APIs refuse a NUL at the door; this one came
    round them) costs its own record, said in the log, not the batch's: a batch refused
    whole would be claimed again and fail for ever, and every record after it wait."""
    sign(network, rob.tn)
    refused = records.keep(
        CallRecord(direction="outgoing", orig_tn=rob.tn, origid="call\x00id", attestation="A")
    )
    sign(network, rob.tn)
    assert records.store_pending() == 3
    assert CallRecord.objects.count() == 2
    assert not CallRecord.objects.filter(record_id=refused.record_id).exists()
    assert f"call record {refused.record_id} refused by the database" in caplog.text
    assert stream.xlen(records.STREAM) == 0
    assert stream.xpending(records.STREAM, records.GROUP)["pending"] == 0


# --- With a real worker on Redis: the changes commit, as in production ----------------


@pytest.mark.worker
@pytest.mark.parametrize("change", ["suspension", "grant revocation", "number removal"])
def test_a_change_reaches_the_next_signing_within_a_second(
    celery_worker, network, rob, enterprise, change
):
    impu, grant = _colleague_with_grant(enterprise, rob)
    caller = impu if change == "grant revocation" else ""
    assert attest(sign(network, rob.tn, caller)) == "A"
    assert attest(sign(network, rob.tn, caller)) == "A"  # now from the cache
    system = Actor.system()
    started = time.monotonic()
    if change == "suspension":
        services.identity_suspend(actor=system, identity=rob)
    elif change == "grant revocation":
        services.grant_revoke(actor=Actor(user=rob.owner), grant=grant)
    else:
        services.identity_remove(actor=system, identity=rob)
    committed = time.monotonic()
    answer = sign(network, rob.tn, caller)  # the next call after the commit
    seen = time.monotonic() - committed
    assert attest(answer) == ("B" if change == "grant revocation" else "C")
    assert seen < 1.0, f"the {change} took {seen:.3f}s to reach the call path"
    assert time.monotonic() - started < 5


@pytest.mark.worker
def test_the_workers_sync_record_reaches_the_next_signing(celery_worker, network, rob):
    """The worker's own commit (the identity in step with the HSS again) lapses the
    facts the web process cached: the generations are shared, not per process, and
    another process's change reaches this one's calls within a second."""
    assert attest(sign(network, rob.tn)) == "A"
    celery_worker.pause()  # the push waits, so that the call path caches "pending"
    services.identity_update(actor=Actor.system(), identity=rob, display_name="Rob S")
    assert attest(sign(network, rob.tn)) == "B"
    assert attest(sign(network, rob.tn)) == "B"
    celery_worker.resume()
    wait_for(lambda: IdentitySync.objects.get(pk=rob.pk).state == "synced", interval=0.01)
    committed = time.monotonic()
    while (answered := attest(sign(network, rob.tn))) == "B" and time.monotonic() - committed < 2:
        time.sleep(0.02)
    seen = time.monotonic() - committed
    assert answered == "A"
    assert seen < 1.0, f"the worker's commit took {seen:.3f}s to reach the call path"


@pytest.mark.worker
def test_ten_thousand_signings_leave_ten_thousand_records_though_the_writer_is_killed(
    transactional_db, network, rob, stream, settings
):
    """The record stream's writer (a Celery worker) is killed with SIGKILL while it holds
    a batch it has not acknowledged; a new one takes the batch over: every call has its
    record, none twice."""
    from portal.celery import app
    from portal.testing import CeleryWorker
    from telephony.callauth import signing
    from telephony.tasks import store_call_records

    env = {
        "CALL_RECORD_STREAM_URL": settings.CALL_RECORD_STREAM_URL,
        "CALL_RECORD_CLAIM_IDLE_SECONDS": "1",
    }
    client = rob.enterprise.network_clients.get()
    calls = 10_000
    signed = threading.Event()
    done = threading.Event()

    def make_calls():
        try:
            for n in range(calls):
                signing.sign_call(
                    client=client, orig_tn=rob.tn, dest_tns=["+4940123499"], iat=int(time.time()),
                    origid=f"call-{n}",
                )  # fmt: skip
        finally:
            signed.set()
            connection.close()

    def beat():  # as beat does every second, only more often
        while not done.is_set():
            store_call_records.delay()
            done.wait(0.2)

    records._ensure_group(stream)
    app.conf.task_always_eager = False
    writer = CeleryWorker(env, queues=("celery",)).start()
    caller = threading.Thread(target=make_calls)
    beating = threading.Thread(target=beat)
    try:
        caller.start()
        beating.start()
        # Kill it while a batch is taken and not yet acknowledged (written or not).
        wait_for(
            lambda: stream.xpending(records.STREAM, records.GROUP)["pending"] > 0,
            timeout=60,
            interval=0.002,
        )
        writer.kill()
        stranded = stream.xpending(records.STREAM, records.GROUP)["pending"]
        assert stranded > 0
        writer = CeleryWorker(env, queues=("celery",)).start()
        assert signed.wait(timeout=120)
        wait_for(
            lambda: stream.xlen(records.STREAM) == 0 and CallRecord.objects.count() >= calls,
            timeout=120,
        )
    finally:
        done.set()
        caller.join(timeout=120)
        beating.join(timeout=10)
        writer.stop()
        app.conf.task_always_eager = True
    assert CallRecord.objects.count() == calls
    assert CallRecord.objects.values("origid").distinct().count() == calls
    assert stream.xpending(records.STREAM, records.GROUP)["pending"] == 0


def test_with_the_cache_away_a_call_is_decided_from_the_database(network, rob, monkeypatch):
    class Away:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise redis.ConnectionError("the cache is away")

            return fail

    monkeypatch.setattr(generations, "_cache", lambda: Away())
    assert attest(sign(network, rob.tn)) == "A"
    services.identity_suspend(actor=Actor.system(), identity=rob)
    assert attest(sign(network, rob.tn)) == "C"
