"""A device signed out in the portal is told so before the network drops it: the notice
goes first, once, and its answer stays on it; the sign-out never waits on it further.
(The lab's end-to-end test shows a real baresip printing it: test_ims_core.py.)"""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import Role
from accounts.services import api_token_create
from telephony.identities.hss import HssTransientError
from telephony.identities.hss.builtin import BuiltinHss
from telephony.models import NetworkNotice, Registration
from telephony.registrations import notices, records, signout
from telephony.registrations.notify import Answer, NoticeError
from telephony.tests.factories import give_numbers, make_device, make_identity

pytestmark = pytest.mark.django_db

CONTACT = "sip:+4930123400@198.51.100.9:5060"
SIP = NetworkNotice.Channel.SIP


@pytest.fixture
def laptop(employee, enterprise):
    give_numbers(enterprise)
    return make_device(make_identity(employee), contact=CONTACT)


@pytest.fixture
def network(monkeypatch):
    """What reaches the network, in order: ("told", text) for a notice to the device,
    ("dropped", contact) for the HSS's de-registration. ``answers`` holds what the device
    answers each notice: an Answer, or a NoticeError to raise (default: 200 OK)."""
    events: list[tuple[str, str]] = []
    answers: list[Answer | NoticeError] = []

    class Device:
        def send(self, notice):
            events.append(("told", notice.message))
            answer = answers.pop(0) if answers else Answer(SIP, 200, "OK")
            if isinstance(answer, NoticeError):
                raise answer
            return answer

    deregister = BuiltinHss.deregister

    def dropped(self, msisdn, *, imsi="", contact=""):
        events.append(("dropped", contact))
        deregister(self, msisdn, imsi=imsi, contact=contact)

    monkeypatch.setattr("telephony.registrations.notify.notifier", Device)
    monkeypatch.setattr(BuiltinHss, "deregister", dropped)
    return events, answers


def the_notice(reg) -> NetworkNotice:
    return NetworkNotice.objects.get(registration=reg, kind=signout.SIGN_OUT_NOTICE)


def test_the_device_is_told_before_the_network_drops_it(
    laptop, helpdesk, network, django_capture_on_commit_callbacks
):
    events, _ = network
    with django_capture_on_commit_callbacks(execute=True):
        signout.registration_sign_out(actor=Actor(user=helpdesk), registration=laptop)
    assert events == [
        ("told", "This device was signed out in the portal by your administrator."),
        ("dropped", CONTACT),
    ]
    laptop.refresh_from_db()
    assert (laptop.state, laptop.end_reason) == ("ended", "signed_out")
    notice = the_notice(laptop)
    assert (notice.state, notice.outcome) == ("sent", "Delivered to the phone (200 OK)")
    assert notice.answered_at <= laptop.sign_out_sent_at


def test_a_device_that_does_not_answer_is_signed_out_all_the_same_and_told_once(
    laptop, employee, network, django_capture_on_commit_callbacks
):
    """A transient fault would make an ordinary notice try again; this one cannot reach
    the device once it is dropped, so its one answer is final."""
    events, answers = network
    answers.append(NoticeError("not delivered", transient=True, answer=Answer(SIP, 408)))
    with django_capture_on_commit_callbacks(execute=True):
        signout.registration_sign_out(actor=Actor(user=employee), registration=laptop)
    assert events == [
        ("told", "You signed this device out in the portal."),
        ("dropped", CONTACT),
    ]
    laptop.refresh_from_db()
    assert (laptop.state, laptop.end_reason) == ("ended", "signed_out")
    notice = the_notice(laptop)
    assert (notice.state, notice.attempts) == ("failed", 1)
    assert notice.outcome == "Phone did not answer (408)"
    # A second delivery of the sign-out's task tells nobody again.
    assert signout.deregister(laptop.pk) == "skipped"
    assert len(events) == 2


def test_a_notice_is_sent_once_when_the_de_registration_is_tried_again(
    laptop, employee, network, monkeypatch
):
    events, _ = network
    signout.request_sign_out(Actor(user=employee), laptop)  # its task left for us to run
    calls = []

    def network_down(reg):
        calls.append(reg.pk)
        if len(calls) == 1:
            raise HssTransientError("the HSS is restarting")
        return True

    monkeypatch.setattr(signout, "_send_deregistration", network_down)
    with pytest.raises(HssTransientError):
        signout.deregister(laptop.pk)
    assert signout.deregister(laptop.pk) == "sent"
    assert calls == [laptop.pk, laptop.pk]
    assert [kind for kind, _ in events] == ["told"]


def test_without_a_person_the_device_hears_why_and_no_token_is_named(laptop, admin, network):
    signout.request_sign_out(Actor.system(), laptop, reason="over the device limit")
    assert the_notice(laptop).message == (
        "This device was signed out in the portal: over the device limit."
    )
    NetworkNotice.objects.all().delete()
    token, _ = api_token_create(
        actor=Actor(user=admin), name="HR sync", enterprise=admin.enterprise, role=Role.ADMIN
    )
    signout.request_sign_out(Actor(api_token=token), laptop)
    assert the_notice(laptop).message == "This device was signed out in the portal."


def test_a_device_that_left_before_its_sign_out_went_out_is_not_told(laptop, employee, network):
    events, _ = network
    signout.request_sign_out(Actor(user=employee), laptop)  # its task not run yet
    records.end_now(laptop, Registration.EndReason.DEREGISTERED)  # its own de-REGISTER
    assert signout.deregister(laptop.pk) == "skipped"
    assert events == []
    notice = the_notice(laptop)
    assert (notice.state, notice.last_error) == ("failed", "The device had already left.")
    assert notice.outcome == "Not sent"


def test_the_sweep_leaves_a_sign_out_notice_to_its_sign_out(laptop, employee, monkeypatch):
    queued = []
    monkeypatch.setattr(
        "kernel.enqueue.task", lambda name: type("T", (), {"delay": staticmethod(queued.append)})
    )
    signout.request_sign_out(Actor(user=employee), laptop)  # its task was lost
    long_ago = timezone.now() - timedelta(hours=1)
    Registration.objects.filter(pk=laptop.pk).update(sign_out_requested_at=long_ago)
    NetworkNotice.objects.filter(pk=the_notice(laptop).pk).update(created_at=long_ago)
    assert notices.sweep() == 1
    assert queued == [laptop.pk]  # the sign-out, which tells the device first
