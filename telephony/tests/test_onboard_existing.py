"""*Onboard* with the email of someone who is already a member asks before giving them
another number, and says that the name and role typed are not used."""

import pytest
from django.urls import reverse

from accounts.models import AuditEvent, User
from telephony.models import Identity
from telephony.tests.factories import give_numbers, make_identity

pytestmark = pytest.mark.django_db


@pytest.fixture
def robs_first_number(enterprise, employee):
    give_numbers(enterprise)
    return make_identity(employee)


def onboard(client, email, **extra):
    return client.post(
        reverse("telephony:employee_onboard"),
        {"full_name": "Robert Smyth", "email": email, "role": "admin", "services": ["voice"],
         **extra},
    )  # fmt: skip


def test_an_existing_members_email_asks_first_and_changes_nothing(
    admin_client, admin, employee, robs_first_number
):
    response = onboard(admin_client, employee.email.upper())

    assert response.status_code == 200
    page = response.content.decode()
    assert f"{employee.email} is already Rob Smith’s account" in page
    assert robs_first_number.tn in page
    assert "the name and role typed below are not used" in page
    assert f'name="existing" value="{employee.pk}"' in page
    assert "Give Rob Smith another number" in page
    assert Identity.objects.filter(owner=employee).count() == 1
    assert not AuditEvent.objects.filter(action="identity.created", actor_user=admin).exists()


def test_confirming_gives_them_another_number_on_the_same_account(
    admin_client, employee, robs_first_number
):
    response = onboard(admin_client, employee.email, existing=str(employee.pk))

    second = Identity.objects.filter(owner=employee).exclude(pk=robs_first_number.pk).get()
    assert response.url == reverse("telephony:identity_detail", args=[second.pk])
    employee.refresh_from_db()
    assert (employee.full_name, employee.role) == ("Rob Smith", "employee")
    assert User.objects.filter(email__iexact=employee.email).count() == 1


def test_a_confirmation_for_someone_else_asks_again(
    admin_client, admin, employee, robs_first_number
):
    response = onboard(admin_client, employee.email, existing=str(admin.pk))

    assert response.status_code == 200
    assert "Give Rob Smith another number" in response.content.decode()
    assert Identity.objects.filter(owner=employee).count() == 1


def test_a_new_address_onboards_at_once(admin_client, enterprise, robs_first_number):
    response = onboard(admin_client, "nina.new@swift.example")

    nina = User.objects.get(email="nina.new@swift.example")
    assert nina.full_name == "Robert Smyth"
    assert response.url == reverse("telephony:identity_detail", args=[nina.identities.get().pk])
