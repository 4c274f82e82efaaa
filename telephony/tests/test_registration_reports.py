"""Registration reports answered at once and applied in batches (Prefer: respond-async)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import AuditEvent
from accounts.tests.factories import UserFactory
from telephony.models import Registration, RegistrationReport
from telephony.registrations import inbox
from telephony.tests.factories import give_numbers, make_identity, network_http
from telephony.tests.test_network import ROB, reginfo

pytestmark = pytest.mark.django_db

PHONE = "urn:gsma:imei:35209900-176148-1"
TABLET = "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"


@pytest.fixture
def network(enterprise):
    return network_http(enterprise)


def post_async(http, body, query=""):
    return http.post(
        f"/network/v1/reginfo{query}",
        data=body,
        content_type="application/reginfo+xml",
        headers={"Prefer": "respond-async"},
    )


def outcome(http, answer):
    return http.get(answer["Location"]).json()


def test_a_report_sent_with_respond_async_is_answered_at_once_and_applied_by_the_worker(
    network, identity
):
    answer = post_async(network, reginfo())
    assert answer.status_code == 202, answer.content
    assert answer["Preference-Applied"] == "respond-async"
    assert answer.json()["state"] == "pending"
    assert answer.json()["location"] == answer["Location"]
    assert not Registration.objects.exists()
    assert outcome(network, answer)["state"] == "pending"

    assert inbox.apply_waiting() == 1

    assert Registration.objects.active().get().instance_id == PHONE
    read = outcome(network, answer)
    assert read["state"] == "applied" and read["applied_at"]
    # What the synchronous answer says.
    assert read["outcome"] == {
        "applied": 1,
        "new_devices": 1,
        "ended": 0,
        "stale_aors": [],
        "unknown_aors": [],
        "full_state_needed_aors": [],
    }
    assert AuditEvent.objects.filter(action="registration.reported").count() == 1


def test_reports_applied_together_follow_the_version_rules_in_the_order_received(network, identity):
    answers = [
        post_async(network, reginfo(version=1, instance=PHONE)),
        # Full state: the tablet instead of the phone.
        post_async(network, reginfo(version=2, instance=TABLET)),
        # The first again (an HTTP retry): a replay, whatever came since.
        post_async(network, reginfo(version=1, instance=PHONE)),
    ]
    assert inbox.apply_waiting() == 3

    phone, tablet = (
        Registration.objects.get(instance_id=PHONE),
        Registration.objects.get(instance_id=TABLET),
    )
    assert phone.state == Registration.State.ENDED
    assert tablet.state == Registration.State.ACTIVE
    first, second, replay = (outcome(network, a)["outcome"] for a in answers)
    assert (first["new_devices"], second["new_devices"], second["ended"]) == (1, 1, 1)
    assert replay["stale_aors"] == [ROB] and replay["applied"] == 0


def test_a_report_of_an_enterprise_the_client_does_not_serve_is_refused_alone(
    network, identity, other_enterprise
):
    give_numbers(other_enterprise, "+4940123400", "+4940123409")
    outsider = make_identity(UserFactory(enterprise=other_enterprise))
    theirs = post_async(
        network, reginfo(aor=f"sip:{outsider.tn}@{other_enterprise.sip_domain};user=phone")
    )
    ours = post_async(network, reginfo())
    inbox.apply_waiting()

    refused = outcome(network, theirs)
    assert refused["state"] == "refused"
    assert "does not serve Other Co" in refused["outcome"]["reason"]
    assert not Registration.objects.filter(identity=outsider).exists()
    assert outcome(network, ours)["state"] == "applied"
    assert Registration.objects.filter(identity=identity).exists()
    # Another client's reports are not there for it, whichever enterprises it serves.
    stranger = network_http(other_enterprise, name="S-CSCF 2")
    assert stranger.get(ours["Location"]).status_code == 404
    assert stranger.get(theirs["Location"]).status_code == 404


def test_reports_applied_together_take_a_fixed_number_of_queries(network, enterprise):
    give_numbers(enterprise)
    people = [make_identity(UserFactory(enterprise=enterprise)) for _ in range(10)]

    def queries_to_apply(identities):
        for person in identities:
            aor = f"sip:{person.tn}@{enterprise.sip_domain};user=phone"
            assert post_async(network, reginfo(aor=aor)).status_code == 202
        with CaptureQueriesContext(connection) as captured:
            assert inbox.apply_batch() == len(identities)
        return len(captured)

    assert queries_to_apply(people[:2]) == queries_to_apply(people[2:])
    assert Registration.objects.active().count() == 10


def test_a_report_is_applied_once_its_answer_is_committed(
    network, identity, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert post_async(network, reginfo()).status_code == 202
    # The worker was woken (tasks run in the test process here) and applied it.
    assert RegistrationReport.objects.get().state == RegistrationReport.State.APPLIED
    assert Registration.objects.active().exists()


def test_a_report_kept_while_its_process_skips_the_wake_up_is_not_left_waiting(
    network, identity, monkeypatch, django_capture_on_commit_callbacks
):
    """A process that found the wake-up queued does not ask the cache again for a while;
    one of its reports kept just as the worker lets the wake-up go is found by the
    worker's last look."""
    from django.core.cache import cache

    woken = []
    monkeypatch.setattr(inbox, "_wake_held_until", 0.0)
    monkeypatch.setattr(inbox, "_queue_wake", lambda: woken.append(1) or False)

    def report_meanwhile(seconds):
        if cache.get(inbox.WAKE_KEY) is not None:  # the worker lingers, holding it
            real_sleep(seconds)
            inbox._wake()  # a report's process finds it queued: held for WAKE_HELD_SECONDS
            assert woken == [1]
        else:  # the worker has let it go: that process's next report does not ask
            with django_capture_on_commit_callbacks(execute=True):
                assert post_async(network, reginfo()).status_code == 202
            assert woken == [1]
            real_sleep(seconds)

    real_sleep = inbox.time.sleep
    monkeypatch.setattr(inbox.time, "sleep", report_meanwhile)
    cache.add(inbox.WAKE_KEY, 1)
    assert inbox.apply_waiting() == 0  # the worker's run: nothing waited when it looked
    assert cache.get(inbox.WAKE_KEY) is None
    assert woken == [1, 1]  # its last look found the report and queued a wake-up


def test_a_report_is_kept_as_the_orm_would_keep_it(network, identity):
    """receive writes its INSERT out; what it keeps reads back as the ORM's would."""
    from accounts.audit import Actor
    from telephony.registrations.reginfo import document_from_json, parse_reginfo_xml

    document = parse_reginfo_xml(reginfo())
    client = network.network_client
    kept = [
        inbox.receive(actor=Actor(network_client=client, ip=ip), client=client, document=document)
        for ip in ("2001:DB8:0:0::1", "", None, "192.0.2.7")
    ]
    read = RegistrationReport.objects.filter(pk__in=[k.pk for k in kept]).order_by("pk")
    assert [r.ip for r in read] == ["2001:db8::1", None, None, "192.0.2.7"]
    for report, kept_report in zip(read, kept, strict=True):
        assert report.state == RegistrationReport.State.PENDING
        assert document_from_json(report.document) == document
        assert report.received_at == kept_report.received_at
        assert report.client_id == client.pk and report.subscription == ""


def test_a_malformed_subscription_is_refused_before_the_report_is_kept(network, identity):
    answer = post_async(network, reginfo(), query="?subscription=two%20words")
    assert answer.status_code == 400
    assert not RegistrationReport.objects.exists()


def test_outcomes_are_forgotten_after_a_day_but_waiting_reports_are_not(network, identity):
    post_async(network, reginfo(version=1))
    inbox.apply_waiting()
    post_async(network, reginfo(version=2))
    RegistrationReport.objects.update(received_at=timezone.now() - timedelta(days=2))
    assert inbox.prune() == 1
    assert RegistrationReport.objects.get().state == RegistrationReport.State.PENDING


def test_a_report_the_portal_cannot_apply_holds_up_no_other(
    network, identity, enterprise, monkeypatch
):
    from telephony.registrations import ingest

    broken = make_identity(UserFactory(enterprise=enterprise))
    policy = ingest.new_device_policy

    def failing(batch):
        if any(reg.identity_id == broken.pk for reg in batch.new_devices):
            raise RuntimeError("a fault of the portal")
        policy(batch)

    monkeypatch.setattr(ingest, "new_device_policy", failing)
    bad = post_async(network, reginfo(aor=f"tel:{broken.tn}"))
    good = post_async(network, reginfo())
    assert inbox.apply_waiting() == 2

    assert outcome(network, good)["state"] == "applied"
    failed = outcome(network, bad)
    assert failed["state"] == "refused"
    assert "could not apply" in failed["outcome"]["reason"]
    assert not Registration.objects.filter(identity=broken).exists()


def test_a_second_worker_leaves_the_reports_to_the_one_applying_them(network, identity):
    import psycopg2

    if connection.vendor != "postgresql":
        pytest.skip("the lock is PostgreSQL's")
    post_async(network, reginfo())
    # Another worker's batch holds the lock (its own connection).
    other = psycopg2.connect(**connection.get_connection_params())
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [inbox.LOCK])
        assert inbox.apply_batch() is None
        assert inbox.apply_waiting() == 0
        assert RegistrationReport.objects.get().state == RegistrationReport.State.PENDING
        # Released by a statement, which has taken effect once it answers; a closed
        # connection's lock is released whenever the server gets to it.
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [inbox.LOCK])
    finally:
        other.close()
    assert inbox.apply_waiting() == 1
