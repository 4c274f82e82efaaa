"""The API tokens a leaver created belong to the enterprise: offboarding says it keeps
them, and offers to revoke them too, on the confirmation page and on the receipt."""

import pytest
from django.test import Client
from django.urls import reverse

from accounts.audit import Actor
from accounts.models import ApiToken, AuditEvent
from accounts.tests.factories import AdminFactory, api_token
from portal.testing import sign_in_verified
from telephony.identities import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def leaver(enterprise):
    return AdminFactory(enterprise=enterprise, full_name="Lena Leaver", email="lena@swift.example")


@pytest.fixture
def leavers_tokens(enterprise, leaver):
    """An HR system's API token and a SCIM token she created, and one a colleague made."""
    hr, _ = api_token(enterprise, name="HR system")
    scim, _ = api_token(enterprise, name="Okta")
    ApiToken.objects.filter(pk=scim.pk).update(purpose=ApiToken.Purpose.SCIM)
    ApiToken.objects.filter(pk__in=[hr.pk, scim.pk]).update(created_by=leaver)
    api_token(enterprise, name="Someone else's")
    return [hr, scim]


def active_names(enterprise) -> set[str]:
    return set(
        ApiToken.objects.filter(enterprise=enterprise, revoked_at__isnull=True).values_list(
            "name", flat=True
        )
    )


def test_offboarding_keeps_the_leavers_tokens_and_the_receipt_says_so(
    admin, enterprise, leaver, leavers_tokens
):
    receipt = services.employee_offboard(actor=Actor(user=admin), user=leaver)

    assert active_names(enterprise) == {"HR system", "Okta", "Someone else's"}
    assert {
        "step": "API tokens they created kept active, as the enterprise's: 2",
        "outcome": "done",
    } in receipt.steps


def test_offboarding_can_revoke_the_leavers_tokens_too(admin, enterprise, leaver, leavers_tokens):
    receipt = services.employee_offboard(
        actor=Actor(user=admin), user=leaver, revoke_api_tokens=True
    )

    assert active_names(enterprise) == {"Someone else's"}
    assert {"step": "API tokens they created revoked: 2", "outcome": "done"} in receipt.steps
    audited = AuditEvent.objects.filter(action="api_token.revoked", actor_user=admin)
    assert sorted(audited.values_list("target_id", flat=True)) == sorted(
        str(token.pk) for token in leavers_tokens
    )


def test_the_confirmation_page_lists_the_tokens_and_its_checkbox_revokes_them(
    admin_client, enterprise, leaver, leavers_tokens
):
    url = reverse("telephony:employee_offboard", args=[leaver.pk])
    page = admin_client.get(url).content.decode()
    assert "revoke the API tokens" not in page  # the old promise that was not kept
    assert "offboarding keeps them active" in page
    assert "HR system" in page and "Okta" in page and "Someone else" not in page
    assert 'name="revoke_api_tokens"' in page

    admin_client.post(url, {"revoke_api_tokens": "on"})
    assert active_names(enterprise) == {"Someone else's"}


def test_the_receipt_offers_to_revoke_them_later(
    admin_client, helpdesk, enterprise, leaver, leavers_tokens, admin
):
    helpdesk_client = sign_in_verified(Client(), helpdesk)
    receipt = services.employee_offboard(actor=Actor(user=admin), user=leaver)
    receipt_url = reverse("telephony:receipt", args=[receipt.pk])
    revoke_url = reverse("telephony:receipt_revoke_api_tokens", args=[receipt.pk])
    page = admin_client.get(receipt_url).content.decode()
    assert "HR system" in page and revoke_url in page

    # Helpdesk sees the receipt but changes nothing.
    assert revoke_url not in helpdesk_client.get(receipt_url).content.decode()
    assert helpdesk_client.post(revoke_url).status_code == 403
    assert active_names(enterprise) == {"HR system", "Okta", "Someone else's"}

    response = admin_client.post(revoke_url, follow=True)
    assert "Revoked 2 API tokens." in response.content.decode()
    assert active_names(enterprise) == {"Someone else's"}
    assert "HR system" not in admin_client.get(receipt_url).content.decode()


def test_the_api_offboards_keeping_or_revoking_the_leavers_tokens(
    api, admin, enterprise, leaver, leavers_tokens
):
    response = api.post(
        "/api/v1/offboarding/", {"user": leaver.pk, "revoke_api_tokens": True}, format="json"
    )
    assert response.status_code == 201, response.content
    assert {"step": "API tokens they created revoked: 2", "outcome": "done"} in [
        {key: step[key] for key in ("step", "outcome")} for step in response.json()["steps"]
    ]
    assert active_names(enterprise) == {"Someone else's", "Test token"}  # the API's own
