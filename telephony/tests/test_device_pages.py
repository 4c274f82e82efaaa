"""The devices dashboard, My devices, notifications and the registrations API."""

import re

import pytest
from django.urls import reverse

from accounts.audit import Actor
from accounts.models import AuditEvent, Notification
from accounts.services import network_client_create
from accounts.tests.factories import UserFactory
from portal.testing import sign_in_verified
from telephony.models import Registration
from telephony.registrations import ingest
from telephony.registrations.reginfo import parse_registration_events
from telephony.tests.factories import give_numbers, make_identity

pytestmark = pytest.mark.django_db

PHONE = "urn:gsma:imei:35209900-176148-1"
LAPTOP = "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"


@pytest.fixture
def network(enterprise):
    client, _ = network_client_create(actor=Actor.system(), name="S-CSCF", enterprises=[enterprise])
    return client


def register(client, identity, *instances, version=1, user_agent=""):
    document = parse_registration_events(
        {
            "version": version,
            "registrations": [
                {
                    "aor": f"tel:{identity.tn}",
                    "contacts": [
                        {
                            "uri": f"sip:{identity.tn}@198.51.100.{i + 10}",
                            "state": "active",
                            "event": "registered",
                            "expires": 3600,
                            "instance": instance,
                            "user_agent": user_agent,
                        }
                        for i, instance in enumerate(instances)
                    ],
                }
            ],
        }
    )
    return ingest.apply_report(actor=Actor(network_client=client), client=client, document=document)


@pytest.fixture
def rob(employee, enterprise):
    give_numbers(enterprise)
    return make_identity(employee)


def test_the_dashboard_shows_each_employee_with_their_devices_and_filters(
    admin_client, rob, network, enterprise
):
    register(network, rob, PHONE, LAPTOP)
    page = admin_client.get(reverse("telephony:devices")).content.decode()
    assert "Phone (IMEI …1481)" in page and "Soft client (…6bf6)" in page
    many = admin_client.get(reverse("telephony:devices"), {"devices": "many"}).content.decode()
    assert rob.owner.email in many and "ada@swift.example" not in many
    none = admin_client.get(reverse("telephony:devices"), {"devices": "none"}).content.decode()
    assert "ada@swift.example" in none and rob.owner.email not in none


def test_the_dashboard_keeps_a_fixed_query_count_with_a_thousand_users(
    admin_client, enterprise, network, django_assert_max_num_queries
):
    give_numbers(enterprise, "+4930555000", "+4930556999")
    enterprise.contract.identity_quota = 2000
    enterprise.contract.save()
    people = UserFactory.create_batch(1000, enterprise=enterprise)
    for index, person in enumerate(people[:40]):
        identity = make_identity(person)
        register(network, identity, f"urn:uuid:00000000-0000-4000-8000-{index:012d}", version=1)
    with django_assert_max_num_queries(14):
        response = admin_client.get(reverse("telephony:devices"))
    assert response.status_code == 200
    with django_assert_max_num_queries(14):
        partial = admin_client.get(
            reverse("telephony:devices"), {"page": 3}, HTTP_HX_REQUEST="true"
        )
    assert "<html" not in partial.content.decode()


def test_the_dashboard_refreshes_itself(admin_client):
    page = admin_client.get(reverse("telephony:devices")).content.decode()
    assert 'hx-trigger="every 3s"' in page


def test_my_devices_lists_mine_with_their_own_settings(
    client, rob, network, employee, django_capture_on_commit_callbacks
):
    register(network, rob, PHONE, LAPTOP, user_agent="Acme/1 (Android 14)")
    sign_in_verified(client, employee)
    page = client.get(reverse("telephony:my_devices")).content.decode()
    assert page.count('data-testid="my-device"') == 2
    phone = Registration.objects.get(instance_id=PHONE)
    prefix = f"device-{phone.pk}"
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("telephony:device_settings", args=[phone.pk]),
            {f"{prefix}-enabled_services": ["voice"], f"{prefix}-default_impu": f"tel:{rob.tn}",
             f"{prefix}-do_not_disturb": "on", f"{prefix}-ring_priority": "2"},
        )  # fmt: skip
    phone.refresh_from_db()
    assert (phone.do_not_disturb, phone.ring_priority, phone.default_impu) == (
        True,
        2,
        f"tel:{rob.tn}",
    )
    assert Registration.objects.get(instance_id=LAPTOP).do_not_disturb is False


@pytest.mark.parametrize(
    ("reported", "shown"),
    [
        ("3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=262011234abcd1234", "Mobile network (4G)"),
        ("3GPP-NR-TDD; utran-cell-id-3gpp=2620112345678901", "Mobile network (5G)"),
        ("3GPP-UTRAN-FDD; utran-cell-id-3gpp=262011234abcd12", "Mobile network (3G)"),
        ("IEEE-802.11ac; i-wlan-node-id=ffeeddccbbaa", "Wi-Fi"),
        ("3GPP-WLAN", "Wi-Fi"),
        ("ADSL; dsl-location=0a1b2c", "DSL internet"),
        ("ieee-802.3", "Wired network"),
        ("X-CARRIER-PIGEON", "X-CARRIER-PIGEON"),  # a type nobody named: as reported
    ],
)
def test_a_device_shows_its_access_network_in_plain_words(
    client, rob, network, employee, reported, shown
):
    register(network, rob, PHONE)
    Registration.objects.update(access_network=reported)
    sign_in_verified(client, employee)
    page = client.get(reverse("telephony:my_devices")).content.decode()
    assert f'<dd title="{reported}">{shown}</dd>' in page


def test_an_employee_signs_out_a_device_and_all_of_them(
    client, rob, network, employee, django_capture_on_commit_callbacks
):
    register(network, rob, PHONE, LAPTOP)
    sign_in_verified(client, employee)
    phone = Registration.objects.get(instance_id=PHONE)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("telephony:device_sign_out", args=[phone.pk]))
    phone.refresh_from_db()
    assert phone.end_reason == "signed_out"  # the builtin network confirms at once
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("telephony:devices_sign_out_all", args=[employee.pk]))
    assert not Registration.objects.active().exists()


def test_employees_cannot_sign_out_or_configure_a_colleagues_device(
    client, rob, network, enterprise
):
    register(network, rob, PHONE)
    phone = Registration.objects.get()
    colleague = UserFactory(enterprise=enterprise)
    sign_in_verified(client, colleague)
    assert client.post(reverse("telephony:device_sign_out", args=[phone.pk])).status_code == 403
    assert client.post(reverse("telephony:device_settings", args=[phone.pk])).status_code == 404
    assert (
        client.post(reverse("telephony:devices_sign_out_all", args=[rob.owner_id])).status_code
        == 403
    )
    assert client.get(reverse("telephony:devices")).status_code == 403
    phone.refresh_from_db()
    assert phone.state == "active"


def test_helpdesk_signs_out_a_device_from_the_employee_page(
    helpdesk_client, rob, network, django_capture_on_commit_callbacks
):
    register(network, rob, PHONE)
    phone = Registration.objects.get()
    detail = helpdesk_client.get(
        reverse("telephony:employee_detail", args=[rob.owner_id])
    ).content.decode()
    assert "Phone (IMEI …1481)" in detail
    with django_capture_on_commit_callbacks(execute=True):
        helpdesk_client.post(reverse("telephony:device_sign_out", args=[phone.pk]))
    phone.refresh_from_db()
    assert phone.state == "ended"


def test_the_already_logged_on_notice_shows_in_the_portal(client, rob, network, employee):
    register(network, rob, PHONE)
    register(network, rob, LAPTOP, version=2)
    sign_in_verified(client, employee)
    home = client.get(reverse("home")).content.decode()
    assert 'data-testid="unread-count">1<' in home
    page = client.get(reverse("accounts:notifications")).content.decode()
    assert "is now also signed in" in page
    client.post(reverse("accounts:notifications_read"))
    assert not Notification.objects.filter(user=employee, read_at=None).exists()


def test_the_registrations_api(
    api, client, rob, network, employee, enterprise, django_capture_on_commit_callbacks
):
    register(network, rob, PHONE, LAPTOP)
    listed = api.get("/api/v1/registrations/").json()
    assert listed["count"] == 2
    phone = Registration.objects.get(instance_id=PHONE)
    with django_capture_on_commit_callbacks(execute=True):
        signed = api.post(f"/api/v1/registrations/{phone.pk}/sign-out/").json()
    assert signed["state"] in ("sign_out_requested", "ended")
    # Settings belong to the device's user: a token cannot change them, the user can.
    laptop = Registration.objects.get(instance_id=LAPTOP)
    refused = api.patch(
        f"/api/v1/registrations/{laptop.pk}/settings/", {"do_not_disturb": True}, format="json"
    )
    assert refused.status_code == 403
    sign_in_verified(client, employee)
    changed = client.patch(
        f"/api/v1/registrations/{laptop.pk}/settings/",
        {"do_not_disturb": True, "ring_priority": 1},
        content_type="application/json",
    )
    assert changed.status_code == 200 and changed.json()["do_not_disturb"] is True
    colleague = UserFactory(enterprise=enterprise)
    sign_in_verified(client, colleague)
    assert client.get("/api/v1/registrations/").json()["count"] == 0
    assert client.get(f"/api/v1/registrations/{laptop.pk}/").status_code == 404
    assert api.post(
        "/api/v1/registrations/sign-out-all/", {"user": employee.pk}, format="json"
    ).json() == {"requested": 1}


# --- Live updates: My devices and the notifications badge poll ---------------------------

HTMX = {"HTTP_HX_REQUEST": "true"}


def poll_url(page: str) -> str:
    """The URL the page's devices list polls, with the version it was drawn from."""
    found = re.search(r'id="my-devices" hx-get="([^"]+)" hx-trigger="every 3s"', page)
    assert found, "the page has no polling devices list"
    return found[1].replace("&amp;", "&")


def test_my_devices_polls_and_swaps_only_when_the_devices_changed(employee_client, rob, network):
    register(network, rob, PHONE)
    page = employee_client.get(reverse("telephony:my_devices")).content.decode()
    url = poll_url(page)

    assert employee_client.get(url, **HTMX).status_code == 204  # nothing new

    register(network, rob, PHONE, LAPTOP, version=2)
    fragment = employee_client.get(url, **HTMX)
    assert fragment.status_code == 200
    body = fragment.content.decode()
    assert body.count('data-testid="my-device"') == 2
    assert "<html" not in body and "Sign out all devices" in body
    assert employee_client.get(poll_url(body), **HTMX).status_code == 204


def test_the_notification_badge_shows_the_unread_count(employee_client, employee):
    url = reverse("accounts:notification_badge")
    assert 'data-testid="unread-count"' not in employee_client.get(url).content.decode()
    Notification.objects.create(
        enterprise=employee.enterprise, user=employee, kind="multi_ue", title="Another device"
    )
    badge = employee_client.get(url).content.decode()
    assert re.search(r'data-testid="unread-count">1<', badge)
    assert f'hx-get="{url}"' in badge  # it goes on polling


def test_the_badge_stops_polling_once_signed_out(client):
    response = client.get(reverse("accounts:notification_badge"), **HTMX)
    assert response.status_code == 286  # htmx's "stop polling"
    assert response.content == b""


# --- What helpdesk may change (README, Roles) ---------------------------------------------


def test_helpdesk_signs_out_every_device_of_an_employee_and_it_is_audited(
    helpdesk_client, helpdesk, rob, network, django_capture_on_commit_callbacks
):
    register(network, rob, PHONE, LAPTOP)
    detail = helpdesk_client.get(
        reverse("telephony:employee_detail", args=[rob.owner_id])
    ).content.decode()
    sign_out_all = reverse("telephony:devices_sign_out_all", args=[rob.owner_id])
    assert sign_out_all in detail
    with django_capture_on_commit_callbacks(execute=True):
        response = helpdesk_client.post(sign_out_all)
    assert response.status_code == 302
    assert not Registration.objects.active().filter(user_id=rob.owner_id).exists()
    requested = AuditEvent.objects.filter(
        action="registration.sign_out_requested", actor_user=helpdesk
    )
    assert requested.count() == 2


def test_helpdesk_changes_nothing_else_of_an_employee(
    helpdesk_client, rob, network, employee, enterprise
):
    register(network, rob, PHONE)
    phone = Registration.objects.get()
    refused = {
        "onboard": ("telephony:employee_onboard", []),
        "offboard": ("telephony:employee_offboard", [employee.pk]),
        "suspend the identity": ("telephony:identity_action", [rob.pk, "suspend"]),
        "suspend the person": ("accounts:user_action", [employee.pk, "suspend"]),
        "edit the person": ("accounts:user_edit", [employee.pk]),
    }
    for change, (name, args) in refused.items():
        assert helpdesk_client.post(reverse(name, args=args)).status_code == 403, change
    # A device's settings are its owner's alone.
    settings_url = reverse("telephony:device_settings", args=[phone.pk])
    assert helpdesk_client.post(settings_url, {"do_not_disturb": "on"}).status_code == 404
    phone.refresh_from_db()
    rob.refresh_from_db()
    employee.refresh_from_db()
    assert (phone.state, phone.do_not_disturb) == ("active", False)
    assert rob.status == "active" and employee.status == "active"
    assert not AuditEvent.objects.filter(actor_user__role="helpdesk").exists()


def test_a_colleagues_sign_out_is_a_403_page_with_the_reason_and_changes_nothing(
    client, rob, network, enterprise
):
    register(network, rob, PHONE)
    phone = Registration.objects.get()
    sign_in_verified(client, UserFactory(enterprise=enterprise))
    audit_rows = AuditEvent.objects.count()
    response = client.post(reverse("telephony:device_sign_out", args=[phone.pk]))
    assert response.status_code == 403
    assert "Employees sign out their own devices only." in response.content.decode()
    phone.refresh_from_db()
    assert phone.state == "active"
    assert AuditEvent.objects.count() == audit_rows


def test_a_token_changing_a_devices_settings_is_refused_403_with_the_reason(api, rob, network):
    register(network, rob, PHONE)
    phone = Registration.objects.get()
    refused = api.patch(
        f"/api/v1/registrations/{phone.pk}/settings/", {"do_not_disturb": True}, format="json"
    )
    assert refused.status_code == 403
    assert refused.json() == {
        "status": 403,
        "code": "not_allowed",
        "detail": "A device's settings belong to its user.",
    }
    phone.refresh_from_db()
    assert phone.do_not_disturb is False
