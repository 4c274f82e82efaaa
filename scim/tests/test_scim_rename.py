"""SCIM rename (userName, Entra's UPN change) of a person who has not yet accepted their
invitation, and a rename to an address that is taken."""

import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEvent, Invitation, User
from accounts.services import address_unavailable
from accounts.tests.factories import EnterpriseFactory, StaffFactory, UserFactory
from scim.tests.test_scim import USER, assert_error, create_user, scim_client

pytestmark = pytest.mark.django_db
PASSWORD = "a fine new password 7"


@pytest.fixture
def scim(enterprise, admin):
    return scim_client(enterprise)


def rename(scim, user_id, user_name):
    return scim.patch(
        f"/Users/{user_id}", {"op": "Replace", "path": "userName", "value": user_name}
    )


def invitation_secret_sent_to(address):
    body = next(m.body for m in reversed(mail.outbox) if m.to == [address])
    return re.search(r"/invitation/#(\S+)", body).group(1)


def accept(secret):
    browser = Client()
    browser.post(reverse("accounts:invitation"), {"secret": secret})
    return browser.post(
        reverse("accounts:invitation_accept"), {"password": PASSWORD, "password_confirm": PASSWORD}
    )


def test_renaming_an_invited_person_invites_the_new_address_and_stops_the_old_link(
    scim, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        created = create_user(scim, "nina@swift.example", displayName="Nina New")
    old_secret = invitation_secret_sent_to("nina@swift.example")

    with django_capture_on_commit_callbacks(execute=True):
        response = rename(scim, created["id"], "nina.new@swift.example")
    assert response.status_code == 200, response.content
    assert response.json()["userName"] == "nina.new@swift.example"
    new_secret = invitation_secret_sent_to("nina.new@swift.example")
    assert new_secret != old_secret

    assert accept(old_secret).status_code == 410
    assert accept(new_secret).status_code == 302
    nina = User.objects.get(pk=created["id"])
    assert nina.email == "nina.new@swift.example" and nina.status == User.Status.ACTIVE
    assert AuditEvent.objects.filter(action="user.invitation_resent", target_id=str(nina.pk))


def test_renaming_an_active_person_sends_no_invitation(scim, employee):
    before = Invitation.objects.count()
    assert rename(scim, employee.pk, "rob.smith@swift.example").status_code == 200
    assert len(mail.outbox) == 0 and Invitation.objects.count() == before
    employee.refresh_from_db()
    assert employee.email == "rob.smith@swift.example"


def test_renaming_a_person_whose_invitation_was_never_sent_sends_none(
    scim, enterprise, django_capture_on_commit_callbacks
):
    invited = UserFactory(enterprise=enterprise, status=User.Status.INVITED)
    with django_capture_on_commit_callbacks(execute=True):
        assert rename(scim, invited.pk, "later@swift.example").status_code == 200
    assert mail.outbox == [] and not Invitation.objects.filter(user=invited).exists()


def test_a_rename_to_a_taken_address_does_not_say_whose_it_is(scim, employee):
    """Another enterprise's member and operator staff get the same answer (F-04)."""
    elsewhere = UserFactory(enterprise=EnterpriseFactory(name="Rival Couriers"))
    staff = StaffFactory()
    details = []
    for holder in (elsewhere, staff):
        response = rename(scim, employee.pk, holder.email.upper())
        assert_error(response, 409, "uniqueness")
        detail = response.json()["detail"]
        assert detail == address_unavailable(holder.email)
        details.append(detail.replace(holder.email, "<address>"))
    assert details[0] == details[1]
    assert "Rival" not in details[0] and str(elsewhere.pk) not in details[0]
    employee.refresh_from_db()
    assert employee.email == "rob@swift.example"
    # The same through a PUT (Okta's way).
    put = scim.put(f"/Users/{employee.pk}", {"schemas": [USER], "userName": elsewhere.email})
    assert put.json()["detail"] == address_unavailable(elsewhere.email)


def test_the_settings_page_says_what_active_false_does(admin_client, enterprise):
    """Deactivation, not offboarding (the page said "offboards them" before)."""
    enterprise.contract.deactivation_grace_days = 14
    enterprise.contract.save()
    page = admin_client.get(reverse("accounts:identity_provider")).content.decode()
    assert "deactivates them here, reversibly for 14 days" in page
    assert "deleting a user offboards them" in page
