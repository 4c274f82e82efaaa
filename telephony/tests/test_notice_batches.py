"""The network notices one transaction queues go out a batch to a task; in a batch each
notice keeps its own claim, attempts, answer and retry."""

import json
from datetime import timedelta

import pytest
from celery import current_app
from django.conf import settings
from django.utils import timezone

from accounts.audit import Actor
from accounts.services import network_client_create
from telephony import tasks
from telephony.models import NetworkNotice
from telephony.registrations import ingest, notices, notify
from telephony.registrations.notify import Answer, NoticeError
from telephony.tests.factories import give_numbers, make_device, make_identity
from telephony.tests.test_devices import ROB_IMEI, ROB_TABLET, SIP_AOR, contact, doc, reg

pytestmark = pytest.mark.django_db

PHONE, TABLET, LAPTOP = "sip:rob@198.51.100.9", "sip:rob@198.51.100.10", "sip:rob@198.51.100.11"


@pytest.fixture
def devices(employee, enterprise):
    give_numbers(enterprise)
    identity = make_identity(employee)
    return [
        make_device(identity, contact=uri, key=str(n))
        for n, uri in enumerate((PHONE, TABLET, LAPTOP))
    ]


def notice_to(registration) -> NetworkNotice:
    return NetworkNotice.objects.create(
        enterprise=registration.enterprise,
        registration=registration,
        kind="logged_on_elsewhere",
        message="Your iPhone is now also signed in.",
    )


@pytest.fixture
def backend(monkeypatch):
    """The notification backend: the contacts it was asked to reach, in order; a contact
    in ``busy`` answers 503 (a transient fault), every other 200."""
    reached: list[str] = []
    busy: set[str] = set()

    class Backend:
        def send(self, notice):
            contact_uri = notice.registration.contact_uri
            reached.append(contact_uri)
            if contact_uri in busy:
                raise NoticeError(
                    "not delivered (503)", transient=True, answer=Answer("sip", 503, "Busy")
                )
            return Answer("sip", 200, "OK")

    monkeypatch.setattr(notify, "notifier", Backend)
    return reached, busy


@pytest.fixture
def queued(monkeypatch):
    """The tasks queued, as (task name, arguments, options), held instead of run; the
    arguments round-trip through JSON, as a broker carries them."""
    held: list[tuple[str, list, dict]] = []

    class Held:
        def __init__(self, name):
            self.task = current_app.tasks[name]
            self.short_name = name.rsplit(".", 1)[1]

        def __getattr__(self, attribute):  # the task's own settings (its backoff)
            return getattr(self.task, attribute)

        def delay(self, *args):
            self.apply_async(args)

        def apply_async(self, args, **options):
            held.append((self.short_name, json.loads(json.dumps(list(args))), options))

    monkeypatch.setattr("kernel.enqueue.task", Held)
    return held


def test_the_notices_of_one_report_go_out_as_one_task(
    employee, enterprise, queued, django_capture_on_commit_callbacks
):
    give_numbers(enterprise)
    make_identity(employee)
    client, _ = network_client_create(
        actor=Actor.system(), name="S-CSCF 1", enterprises=[enterprise]
    )
    report = {"actor": Actor(network_client=client), "client": client}
    ingest.apply_report(**report, document=doc(1, reg(SIP_AOR, contact(ROB_IMEI))))
    with django_capture_on_commit_callbacks(execute=True):
        ingest.apply_report(
            **report, document=doc(2, reg(SIP_AOR, contact(ROB_IMEI), contact(ROB_TABLET)))
        )
    sent = list(NetworkNotice.objects.order_by("pk").values_list("pk", flat=True))
    assert len(sent) == 2  # to the tablet, and to the phone
    network_notices = [task for task in queued if "network_notice" in task[0]]
    assert network_notices == [("send_network_notices", [sent], {})]


def test_many_notices_go_out_in_batches_and_one_alone_in_a_task_of_its_own(queued):
    notices.send_in_batches(list(range(1, 121)))
    assert [(name, len(args[0])) for name, args, _ in queued] == [
        ("send_network_notices", 50),
        ("send_network_notices", 50),
        ("send_network_notices", 20),
    ]
    queued.clear()
    notices.send_in_batches([7])
    assert queued == [("send_network_notice", [7], {})]


def test_a_failing_notice_in_a_batch_retries_alone_while_the_others_are_sent(
    devices, backend, queued
):
    reached, busy = backend
    to_phone, to_tablet, to_laptop = (notice_to(device) for device in devices)
    busy.add(TABLET)
    tasks.send_network_notices.apply(([to_phone.pk, to_tablet.pk, to_laptop.pk],))
    assert reached == [PHONE, TABLET, LAPTOP]
    for notice in (to_phone, to_tablet, to_laptop):
        notice.refresh_from_db()
    assert [(n.state, n.attempts, n.delivery_code) for n in (to_phone, to_laptop)] == [
        ("sent", 1, 200),
        ("sent", 1, 200),
    ]
    assert (to_tablet.state, to_tablet.attempts, to_tablet.delivery_code) == ("pending", 1, 503)
    assert to_tablet.claimed_until is None and "503" in to_tablet.last_error
    # Its own chain, from its first retry: the single task's backoff (0–2 s, jittered).
    [(name, args, options)] = queued
    assert (name, args, options["retries"]) == ("send_network_notice", [to_tablet.pk], 1)
    assert 0 <= options["countdown"] <= 2


def test_a_notice_that_keeps_failing_stops_after_the_usual_attempts_alone(
    devices, backend, monkeypatch
):
    reached, busy = backend
    to_phone, to_tablet, to_laptop = (notice_to(device) for device in devices)
    busy.add(TABLET)
    # Eager: each retry runs at once, as the worker would run it after its backoff
    # (Celery runs an eager retry in place only if it does not propagate it).
    monkeypatch.setitem(current_app.conf, "task_eager_propagates", False)
    tasks.send_network_notices.apply(([to_phone.pk, to_tablet.pk, to_laptop.pk],))
    to_tablet.refresh_from_db()
    assert (to_tablet.state, to_tablet.attempts) == ("failed", settings.SYNC_MAX_ATTEMPTS)
    assert reached.count(TABLET) == settings.SYNC_MAX_ATTEMPTS
    assert (reached.count(PHONE), reached.count(LAPTOP)) == (1, 1)


def test_a_notice_another_task_holds_is_skipped_and_the_rest_of_its_batch_sent(
    devices, backend, queued
):
    reached, _ = backend
    to_phone, to_tablet, to_laptop = (notice_to(device) for device in devices)
    # A redelivered task, or the sweep's, holds it while it waits for the tablet's answer.
    held_until = timezone.now() + timedelta(seconds=30)
    NetworkNotice.objects.filter(pk=to_tablet.pk).update(claimed_until=held_until)
    results = notify.send_notices([to_phone.pk, to_tablet.pk, to_laptop.pk])
    assert {pk: attempt.outcome for pk, attempt in results.items()} == {
        to_phone.pk: "sent",
        to_tablet.pk: "skipped",
        to_laptop.pk: "sent",
    }
    assert reached == [PHONE, LAPTOP]
    to_tablet.refresh_from_db()
    assert (to_tablet.state, to_tablet.attempts, to_tablet.claimed_until) == (
        "pending",
        0,
        held_until,
    )
    notices.follow_up(results)
    assert queued == []  # the holder sends it


def test_a_batch_a_slow_backend_delays_hands_back_the_rest_to_go_again(
    devices, backend, queued, monkeypatch
):
    reached, _ = backend
    to_phone, to_tablet, to_laptop = (notice_to(device) for device in devices)
    monkeypatch.setattr(notify, "_HALF_LEASE", 0)  # the first send took half the lease
    tasks.send_network_notices.apply(([to_phone.pk, to_tablet.pk, to_laptop.pk],))
    assert reached == [PHONE]
    untried = NetworkNotice.objects.filter(pk__in=[to_tablet.pk, to_laptop.pk])
    assert [(n.attempts, n.claimed_until) for n in untried] == [(0, None), (0, None)]
    assert queued == [("send_network_notices", [[to_tablet.pk, to_laptop.pk]], {})]


def test_the_sweep_sends_lost_notices_in_batches(devices, queued):
    lost = [notice_to(device).pk for device in devices]
    NetworkNotice.objects.update(created_at=timezone.now() - timedelta(hours=1))
    assert notices.sweep() == 3
    [(name, [ids], _)] = queued
    assert (name, sorted(ids)) == ("send_network_notices", lost)


def test_a_send_that_breaks_keeps_its_lease_and_hands_back_the_rest(devices, monkeypatch):
    to_phone, to_tablet, to_laptop = (notice_to(device) for device in devices)

    class Broken:
        def send(self, notice):
            if notice.registration.contact_uri == TABLET:
                raise RuntimeError("a bug")
            return Answer()

    monkeypatch.setattr(notify, "notifier", Broken)
    with pytest.raises(RuntimeError):
        notify.send_notices([to_phone.pk, to_tablet.pk, to_laptop.pk])
    for notice in (to_phone, to_tablet, to_laptop):
        notice.refresh_from_db()
    assert to_phone.state == "sent"
    # As a task that died mid-send leaves it: the sweep sends it once the lease is gone.
    assert (to_tablet.state, to_tablet.attempts) == ("pending", 0)
    assert to_tablet.claimed_until > timezone.now()
    assert (to_laptop.state, to_laptop.attempts, to_laptop.claimed_until) == ("pending", 0, None)
