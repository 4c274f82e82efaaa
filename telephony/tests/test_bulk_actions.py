"""Acting on many employees, identities or devices at once from *Employees*, *Identities*
and *Devices*: confirmed first, then each one's own service call, with every outcome
shown."""

import csv
import io

import pytest
from django.urls import reverse

from accounts.audit import Actor
from accounts.models import AuditEvent, User
from accounts.services import network_client_create
from accounts.tests.factories import UserFactory
from portal.testing import sign_in_verified
from telephony.bulk import actions
from telephony.models import Identity, OffboardingReceipt, Registration
from telephony.tests.factories import give_numbers, make_identity
from telephony.tests.test_device_pages import LAPTOP, PHONE, register

pytestmark = pytest.mark.django_db

URL = reverse("telephony:employees_bulk")


@pytest.fixture
def crew(enterprise):
    give_numbers(enterprise)
    people = [
        UserFactory(enterprise=enterprise, full_name=name, status=User.Status.ACTIVE)
        for name in ("Ann Ames", "Ben Berg", "Cy Cole")
    ]
    for person in people:
        make_identity(person)
    return people


def ids(people):
    return [person.pk for person in people]


def test_a_bulk_action_is_confirmed_first_then_runs_for_each(admin_client, crew):
    asked = admin_client.post(URL, {"action": "suspend", "people": ids(crew[:2])})
    page = asked.content.decode()
    assert "Suspend sign-in: 2 employees" in page and "Ann Ames" in page and "Cy Cole" not in page
    assert User.objects.filter(status=User.Status.SUSPENDED).count() == 0
    done = admin_client.post(
        URL, {"action": "suspend", "people": ids(crew[:2]), "confirmed": "yes"}
    ).content.decode()
    assert done.count("Sign-in suspended") == 2
    assert set(User.objects.filter(status=User.Status.SUSPENDED)) == set(crew[:2])
    assert AuditEvent.objects.filter(action="user.suspended").count() == 2


def test_one_refusal_stops_nobody_else_and_says_why(admin_client, crew, admin):
    User.objects.filter(pk=crew[0].pk).update(status=User.Status.SUSPENDED)
    page = admin_client.post(
        URL, {"action": "suspend", "people": ids(crew), "confirmed": "yes"}
    ).content.decode()
    assert "Only an active user can be suspended" in page
    assert page.count("Sign-in suspended") == 2


def test_a_bulk_offboarding_runs_the_kill_switch_for_each_with_its_receipt(admin_client, crew):
    page = admin_client.post(
        URL, {"action": "offboard", "people": ids(crew[:2]), "confirmed": "yes"}
    ).content.decode()
    receipts = OffboardingReceipt.objects.filter(user__in=crew[:2])
    assert receipts.count() == 2
    for receipt in receipts:
        assert reverse("telephony:receipt", args=[receipt.pk]) in page
    assert User.objects.get(pk=crew[2].pk).status == User.Status.ACTIVE


def test_the_ticked_people_export_alone_and_the_export_is_audited(admin_client, crew):
    response = admin_client.post(URL, {"action": "export", "people": ids(crew[1:])})
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    names = {row["full_name"] for row in csv.DictReader(io.StringIO(text))}
    assert names == {"Ben Berg", "Cy Cole"}
    event = AuditEvent.objects.get(action="employees.exported")
    assert event.changes == {"people_ticked": [None, 2]}


def test_helpdesk_may_export_and_sign_out_but_not_suspend(client, helpdesk, crew):
    helpdesk_client = sign_in_verified(client, helpdesk)
    listing = helpdesk_client.get(reverse("telephony:employees")).content.decode()
    assert "Sign out all devices" in listing and "Suspend sign-in" not in listing
    answer = helpdesk_client.post(
        URL, {"action": "suspend", "people": ids(crew), "confirmed": "yes"}, follow=True
    )
    assert "Select a valid choice" in answer.content.decode()
    assert not User.objects.filter(status=User.Status.SUSPENDED).exists()
    page = helpdesk_client.post(
        URL, {"action": "sign_out", "people": ids(crew[:1]), "confirmed": "yes"}
    ).content.decode()
    assert "Sign-out requested for 0 devices" in page


def test_another_enterprises_people_and_too_many_are_refused(
    admin_client, crew, other_enterprise, monkeypatch
):
    stranger = UserFactory(enterprise=other_enterprise, status=User.Status.ACTIVE)
    answer = admin_client.post(
        URL, {"action": "suspend", "people": [stranger.pk], "confirmed": "yes"}, follow=True
    )
    assert "not an employee here" in answer.content.decode()
    assert User.objects.get(pk=stranger.pk).status == User.Status.ACTIVE
    monkeypatch.setattr(actions, "MAX_SELECTED", 2)
    answer = admin_client.post(URL, {"action": "suspend", "people": ids(crew)}, follow=True)
    assert "Tick at most 2 people at once" in answer.content.decode()
    answer = admin_client.post(URL, {"action": "suspend"}, follow=True)
    assert "Tick the people first." in answer.content.decode()


IDENTITIES_URL = reverse("telephony:identities_bulk")


def test_ticked_identities_are_suspended_after_a_confirmation_and_resumed(admin_client, crew):
    ticked = [person.identities.get() for person in crew[:2]]
    asked = admin_client.post(
        IDENTITIES_URL, {"action": "suspend", "identities": [i.pk for i in ticked]}
    ).content.decode()
    assert "Suspend: 2 identities" in asked and ticked[0].tn in asked
    assert not Identity.objects.filter(status=Identity.Status.SUSPENDED).exists()
    body = {"action": "suspend", "identities": [i.pk for i in ticked], "confirmed": "yes"}
    assert admin_client.post(IDENTITIES_URL, body).content.decode().count("Suspended") >= 2
    assert set(Identity.objects.filter(status=Identity.Status.SUSPENDED)) == set(ticked)
    assert AuditEvent.objects.filter(action="identity.suspended").count() == 2
    again = admin_client.post(IDENTITIES_URL, body).content.decode()
    assert again.count("not done") == 2  # already suspended: said, nothing changed
    body["action"] = "resume"
    admin_client.post(IDENTITIES_URL, body)
    assert not Identity.objects.filter(status=Identity.Status.SUSPENDED).exists()


def test_identities_of_another_enterprise_and_helpdesk_are_refused(
    admin_client, client, helpdesk, crew, other_enterprise
):
    give_numbers(other_enterprise, "+4940111000", "+4940111099")
    theirs = make_identity(UserFactory(enterprise=other_enterprise))
    answer = admin_client.post(
        IDENTITIES_URL,
        {"action": "suspend", "identities": [theirs.pk], "confirmed": "yes"},
        follow=True,
    )
    assert "not one of yours any more" in answer.content.decode()
    helpdesk_client = sign_in_verified(client, helpdesk)
    mine = crew[0].identities.get()
    answer = helpdesk_client.post(
        IDENTITIES_URL, {"action": "suspend", "identities": [mine.pk], "confirmed": "yes"}
    )
    assert answer.status_code == 403
    assert not Identity.objects.filter(status=Identity.Status.SUSPENDED).exists()


DEVICES_URL = reverse("telephony:devices_bulk")


@pytest.fixture
def reporter(enterprise):
    """The IMS core's network client, reporting registrations."""
    client, _ = network_client_create(actor=Actor.system(), name="S-CSCF", enterprises=[enterprise])
    return client


@pytest.fixture
def devices(crew, reporter):
    """Ann's phone and laptop, Ben's phone."""
    register(reporter, crew[0].identities.get(), PHONE, LAPTOP)
    register(reporter, crew[1].identities.get(), PHONE)
    return list(Registration.objects.order_by("user__full_name", "label"))


def test_ticked_devices_are_signed_out_after_a_confirmation_naming_each_and_its_owner(
    admin_client, devices, django_capture_on_commit_callbacks
):
    listing = admin_client.get(reverse("telephony:devices")).content.decode()
    for device in devices:
        assert f'name="devices" value="{device.pk}"' in listing
    assert 'id="device-tick-all" hx-preserve' in listing and "{#" not in listing
    ticked = devices[:2]  # Ann's two
    asked = admin_client.post(
        DEVICES_URL, {"action": "sign_out", "devices": [d.pk for d in ticked]}
    ).content.decode()
    assert "Sign out: 2 devices" in asked
    for device in ticked:
        assert f"{device.label} of Ann Ames" in asked
    assert "Ben Berg" not in asked
    assert Registration.objects.filter(state=Registration.State.ACTIVE).count() == 3
    with django_capture_on_commit_callbacks(execute=True):
        done = admin_client.post(
            DEVICES_URL,
            {"action": "sign_out", "devices": [d.pk for d in ticked], "confirmed": "yes"},
        ).content.decode()
    assert done.count("Sign-out requested") == 2
    assert not Registration.objects.active().filter(user=ticked[0].user).exists()
    assert Registration.objects.active().filter(pk=devices[2].pk).exists()
    events = AuditEvent.objects.filter(action="registration.sign_out_requested")
    assert {event.target_id for event in events} == {str(d.pk) for d in ticked}


def test_a_device_no_longer_registered_is_said_and_the_others_still_sign_out(admin_client, devices):
    Registration.objects.filter(pk=devices[0].pk).update(state=Registration.State.ENDED)
    done = admin_client.post(
        DEVICES_URL,
        {"action": "sign_out", "devices": [d.pk for d in devices], "confirmed": "yes"},
    ).content.decode()
    assert done.count("not done") == 1 and "is not registered now (ended)" in done
    assert done.count("Sign-out requested") == 2
    assert Registration.objects.filter(state=Registration.State.SIGN_OUT_REQUESTED).count() == 2


def test_helpdesk_signs_out_ticked_devices_and_employees_may_not(
    client, helpdesk, employee, devices
):
    helpdesk_client = sign_in_verified(client, helpdesk)
    listing = helpdesk_client.get(reverse("telephony:devices")).content.decode()
    assert '<option value="sign_out">Sign out</option>' in listing
    body = {"action": "sign_out", "devices": [devices[2].pk], "confirmed": "yes"}
    assert "Sign-out requested" in helpdesk_client.post(DEVICES_URL, body).content.decode()
    assert AuditEvent.objects.get(action="registration.sign_out_requested").actor_user == helpdesk
    helpdesk_client.logout()
    body["devices"] = [devices[0].pk]
    assert sign_in_verified(client, employee).post(DEVICES_URL, body).status_code == 403
    assert Registration.objects.get(pk=devices[0].pk).state == Registration.State.ACTIVE


def test_another_enterprises_devices_and_too_many_are_refused(
    admin_client, devices, other_enterprise, monkeypatch
):
    give_numbers(other_enterprise, "+4940111000", "+4940111099")
    stranger = make_identity(UserFactory(enterprise=other_enterprise, status=User.Status.ACTIVE))
    theirs, _ = network_client_create(
        actor=Actor.system(), name="Their S-CSCF", enterprises=[other_enterprise]
    )
    register(theirs, stranger, PHONE)
    their_phone = Registration.objects.get(enterprise=other_enterprise)
    answer = admin_client.post(
        DEVICES_URL,
        {"action": "sign_out", "devices": [devices[0].pk, their_phone.pk], "confirmed": "yes"},
        follow=True,
    )
    assert "not one of yours" in answer.content.decode()
    assert not Registration.objects.filter(state=Registration.State.SIGN_OUT_REQUESTED).exists()
    monkeypatch.setattr(actions, "MAX_SELECTED", 2)
    body = {"action": "sign_out", "devices": [d.pk for d in devices]}
    answer = admin_client.post(DEVICES_URL, body, follow=True)
    assert "Tick at most 2 devices at once" in answer.content.decode()
    answer = admin_client.post(DEVICES_URL, {"action": "sign_out"}, follow=True)
    assert "Tick the devices first." in answer.content.decode()


def test_the_ticked_devices_export_alone_and_the_export_is_audited(admin_client, devices):
    response = admin_client.post(
        DEVICES_URL, {"action": "export", "devices": [d.pk for d in devices[1:]]}
    )
    assert response["Content-Disposition"].startswith('attachment; filename="swift-devices-')
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(row["full_name"], row["device"]) for row in rows] == [
        (d.user.full_name, d.label) for d in devices[1:]
    ]
    assert rows[0]["tn"] == devices[1].identity.tn and rows[0]["state"] == "Registered"
    event = AuditEvent.objects.get(action="devices.exported")
    assert event.changes == {"devices_ticked": [None, 2]}
