"""Operator staff register network-wide OpenID Connect apps in Django admin, through the
same service as an enterprise's settings page: audited, public with PKCE, and usable."""

import pytest
from django.contrib import admin
from django.contrib.messages import get_messages
from django.urls import reverse
from oauth2_provider.models import Application

from accounts.models import AuditEvent, ClientRegistration
from accounts.tests.test_oidc import MMTEL, REDIRECT, signed_in_tokens

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _resource_servers(settings):
    settings.OIDC_RESOURCE_SERVERS = [MMTEL]


def add(staff_client, **fields):
    data = {"name": "Operator softphone", "redirect_uris": REDIRECT, **fields}
    return staff_client.post(reverse("admin:accounts_clientregistration_add"), data)


def test_staff_register_a_network_wide_app_that_any_enterprises_people_sign_in_to(
    staff_client, staff, employee, enterprise
):
    enterprise.contract.may_authenticate_users = True
    enterprise.contract.save()
    response = add(staff_client, first_party="on")
    assert response.status_code == 302
    registration = ClientRegistration.objects.get()
    assert registration.enterprise is None and registration.first_party
    application = registration.application
    assert application.client_type == "public" and application.redirect_uris == REDIRECT
    assert AuditEvent.objects.get(
        action="oidc.client_registered", actor_user=staff, target_id=str(registration.pk)
    )
    listing = staff_client.get(reverse("admin:accounts_clientregistration_changelist"))
    assert application.client_id in listing.content.decode()
    assert "network-wide" in listing.content.decode()

    tokens = signed_in_tokens(employee, application)
    assert tokens["access_token"] and tokens["id_token"]


@pytest.mark.parametrize(
    ("uris", "says"),
    [
        ("javascript:alert(1)", "redirect"),
        ("https://softphone.example/cb#frag", "redirect"),
    ],
)
def test_a_refused_redirect_uri_registers_nothing_and_says_why(staff_client, uris, says):
    response = add(staff_client, redirect_uris=uris)
    assert not ClientRegistration.objects.exists() and not Application.objects.exists()
    assert response.url == reverse("admin:accounts_clientregistration_add")
    shown = " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert says.lower() in shown.lower()


def test_removing_an_app_goes_through_the_service_and_is_audited(staff_client, staff):
    add(staff_client)
    registration = ClientRegistration.objects.get()
    response = staff_client.post(
        reverse("admin:accounts_clientregistration_changelist"),
        {"action": "remove", "_selected_action": [registration.pk]},
    )
    assert response.status_code == 302
    assert not Application.objects.exists()
    assert AuditEvent.objects.get(action="oidc.client_removed", actor_user=staff)


def test_there_is_no_second_way_to_make_an_app(staff_client):
    """An app made in django-oauth-toolkit's own admin would be refused at every sign-in."""
    assert Application not in admin.site._registry
    assert staff_client.get("/admin/oauth2_provider/application/add/").status_code == 404
    page = staff_client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:accounts_clientregistration_add") in page
