import re
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import services
from accounts.audit import Actor
from accounts.models import AuditEvent, Enterprise, User
from accounts.tests.factories import PASSWORD, TOTPDeviceFactory, UserFactory
from portal.testing import totp_code

pytestmark = pytest.mark.django_db


def sign_in(client, user, password=PASSWORD, next_url=""):
    url = reverse("accounts:login") + (f"?next={next_url}" if next_url else "")
    return client.post(url, {"username": user.email, "password": password})


def wait_out_throttling(device):
    """After a wrong code django-otp makes the next try wait a second or more."""
    type(device).objects.filter(pk=device.pk).update(
        throttling_failure_timestamp=timezone.now() - timedelta(minutes=10)
    )


# --- Sign-in and the second factor ----------------------------------------------------


def test_an_admin_with_a_device_must_enter_a_code_before_any_page(client, admin):
    device = TOTPDeviceFactory(user=admin)
    response = sign_in(client, admin)
    assert response.status_code == 302
    assert response.url.startswith(reverse("accounts:two_factor"))

    # The password alone reaches nothing.
    for url in (reverse("home"), reverse("telephony:employees"), reverse("admin:index")):
        assert client.get(url).url.startswith(reverse("accounts:two_factor"))

    response = client.post(reverse("accounts:two_factor"), {"method": "totp", "token": "000000"})
    assert response.status_code == 200
    assert "not valid" in response.content.decode()
    wait_out_throttling(device)

    response = client.post(
        reverse("accounts:two_factor"), {"method": "totp", "token": totp_code(device)}
    )
    assert response.status_code == 302
    assert client.get(reverse("telephony:employees")).status_code == 200
    assert AuditEvent.objects.filter(action="user.signed_in", actor_user=admin).count() == 1


def test_an_admin_without_a_device_is_sent_to_enrol_and_then_gets_backup_codes(client, admin):
    sign_in(client, admin)
    response = client.get(reverse("home"))
    assert client.get(response.url).url.startswith(reverse("accounts:two_factor_setup"))

    page = client.get(reverse("accounts:two_factor_setup"))
    assert "<svg" in page.content.decode()
    device = TOTPDevice.objects.get(user=admin, confirmed=False)
    response = client.post(reverse("accounts:two_factor_setup"), {"token": totp_code(device)})
    assert response.status_code == 302
    device.refresh_from_db()
    assert device.confirmed

    codes_page = client.get(response.url).content.decode()
    codes = re.findall(r"<li><code>(\w+)</code></li>", codes_page)
    assert len(codes) == 10
    # Shown once only.
    assert "<li><code>" not in client.get(reverse("accounts:backup_codes")).content.decode()
    assert client.get(reverse("telephony:employees")).status_code == 200


def test_a_backup_code_works_once_instead_of_the_app(client, admin):
    TOTPDeviceFactory(user=admin)
    codes = services.backup_codes_regenerate(actor=Actor(user=admin), user=admin)
    sign_in(client, admin)
    response = client.post(reverse("accounts:two_factor"), {"method": "backup", "token": codes[0]})
    assert response.status_code == 302
    assert client.get(reverse("home")).status_code == 200
    assert StaticToken.objects.filter(device__user=admin).count() == 9


def test_repeated_wrong_codes_are_throttled(client, admin):
    device = TOTPDeviceFactory(user=admin)
    sign_in(client, admin)
    for _ in range(3):
        client.post(reverse("accounts:two_factor"), {"method": "totp", "token": "000000"})
    response = client.post(
        reverse("accounts:two_factor"), {"method": "totp", "token": totp_code(device)}
    )
    assert "Too many wrong codes" in response.content.decode()
    assert client.get(reverse("home")).status_code == 302


def test_an_employee_signs_in_without_a_code_unless_the_contract_requires_one(client, employee):
    sign_in(client, employee)
    assert client.get(reverse("home")).status_code == 200

    employee.enterprise.contract.employee_2fa_required = True
    employee.enterprise.contract.save()
    client.logout()
    sign_in(client, employee)
    assert client.get(reverse("home")).url.startswith(reverse("accounts:two_factor"))


def test_an_employee_who_enrolled_voluntarily_must_use_the_device(client, employee):
    TOTPDeviceFactory(user=employee)
    response = sign_in(client, employee)
    assert response.url.startswith(reverse("accounts:two_factor"))
    assert client.get(reverse("home")).status_code == 302


def test_operator_staff_reach_django_admin_only_with_a_verified_device(client, staff):
    sign_in(client, staff)
    assert client.get(reverse("admin:index")).status_code == 302
    device = TOTPDeviceFactory(user=staff)
    client.logout()
    sign_in(client, staff, next_url=reverse("admin:index"))
    response = client.post(
        reverse("accounts:two_factor") + "?next=/admin/",
        {"method": "totp", "token": totp_code(device)},
    )
    assert response.url == "/admin/"
    assert client.get(reverse("admin:index")).status_code == 200


def test_enterprise_admins_cannot_enter_django_admin(admin_client):
    response = admin_client.get(reverse("admin:index"), follow=True)
    assert response.status_code == 403


def test_django_admin_sends_guests_to_the_portal_sign_in(client):
    response = client.get(reverse("admin:index"), follow=True)
    assert response.redirect_chain[-1][0] == reverse("accounts:login") + "?next=%2Fadmin%2F"


def test_password_guessing_is_locked_out_after_five_failures(client, employee):
    for _ in range(4):
        assert sign_in(client, employee, password="wrong").status_code == 200
    assert sign_in(client, employee, password="wrong").status_code == 429
    # Now even the right password is refused for a while.
    response = sign_in(client, employee)
    assert response.status_code == 429
    assert "Too many attempts" in response.content.decode()


def test_a_suspended_user_cannot_sign_in_and_loses_open_sessions(client, admin, employee):
    sign_in(client, employee)
    assert client.get(reverse("home")).status_code == 200
    services.user_suspend(actor=Actor(user=admin), user=employee)
    assert client.get(reverse("home")).status_code == 302
    assert sign_in(client, employee).status_code == 200  # the form again, with an error


# --- Invitation and password reset ----------------------------------------------------


def test_the_invitation_page_flow_sets_a_password_and_leads_to_enrolment(
    admin_client, client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("accounts:user_invite"),
            {"full_name": "Nina New", "email": "nina@swift.example", "role": "helpdesk"},
        )
    secret = re.search(r"/invitation/#(\S+)", mail.outbox[0].body).group(1)
    admin_client.logout()

    # The page's script posts the secret it reads from the link's fragment.
    assert client.get(reverse("accounts:invitation")).status_code == 200
    response = client.post(reverse("accounts:invitation"), {"secret": secret})
    assert response.url == reverse("accounts:invitation_accept")
    assert "Nina New" in client.get(response.url).content.decode()
    response = client.post(
        reverse("accounts:invitation_accept"),
        {"password": "a fine new password", "password_confirm": "a fine new password"},
    )
    assert response.status_code == 302
    # Helpdesk must enrol a second factor before anything else.
    assert client.get(reverse("home")).url.startswith(reverse("accounts:two_factor"))

    client.logout()
    response = client.post(reverse("accounts:invitation"), {"secret": secret}, follow=True)
    assert response.status_code == 410
    assert "already been used" in response.content.decode()


def test_password_reset_mails_a_link_only_to_active_accounts(client, employee):
    client.post(reverse("accounts:password_reset"), {"email": "nobody@swift.example"})
    assert mail.outbox == []
    client.post(reverse("accounts:password_reset"), {"email": employee.email.upper()})
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^/]+(/password-reset/link/)#(\S+)", mail.outbox[0].body)
    form_url = client.post(link.group(1), {"secret": link.group(2)}).url
    response = client.post(
        form_url, {"new_password1": "brand new password 7", "new_password2": "brand new password 7"}
    )
    assert response.status_code == 302
    employee.refresh_from_db()
    assert employee.check_password("brand new password 7")
    assert AuditEvent.objects.filter(
        action="user.password_reset", target_id=str(employee.pk)
    ).exists()


def test_changing_the_password_is_audited(employee_client, employee):
    response = employee_client.post(
        reverse("accounts:password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "another good password",
            "new_password2": "another good password",
        },
    )
    assert response.status_code == 302
    employee.refresh_from_db()
    assert employee.check_password("another good password")
    assert AuditEvent.objects.filter(action="user.password_changed").exists()


# --- Pages by role --------------------------------------------------------------------


def test_role_navigation_and_home_pages(admin_client, helpdesk, employee, client):
    page = admin_client.get(reverse("home")).content.decode()
    assert "Audit trail" in page and "Invite a user" in page
    settings_page = admin_client.get(reverse("accounts:enterprise")).content.decode()
    assert "API tokens" in settings_page

    from portal.testing import sign_in_verified

    client.logout()
    sign_in_verified(client, helpdesk)
    page = client.get(reverse("home")).content.decode()
    assert "Audit trail" in page and "Invite a user" not in page
    assert "API tokens" not in client.get(reverse("accounts:enterprise")).content.decode()

    client.logout()
    page = sign_in_verified(client, employee).get(reverse("home")).content.decode()
    assert "My devices" in page and "Audit trail" not in page


@pytest.mark.parametrize(
    "url_name",
    ["telephony:employees", "accounts:audit", "accounts:enterprise", "accounts:user_invite"],
)
def test_employees_get_403_on_enterprise_pages(employee_client, url_name):
    response = employee_client.get(reverse(url_name))
    assert response.status_code == 403
    assert "Not allowed" in response.content.decode()


def test_helpdesk_may_look_and_resend_but_not_change(helpdesk_client, enterprise):
    invited = UserFactory(enterprise=enterprise, status=User.Status.INVITED)
    assert (
        helpdesk_client.get(reverse("telephony:employee_detail", args=[invited.pk])).status_code
        == 200
    )
    assert helpdesk_client.get(reverse("accounts:user_invite")).status_code == 403
    response = helpdesk_client.post(reverse("accounts:user_action", args=[invited.pk, "suspend"]))
    assert response.status_code == 403
    response = helpdesk_client.post(
        reverse("accounts:user_action", args=[invited.pk, "resend-invitation"])
    )
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="user.invitation_resent").exists()


def test_the_user_list_searches_filters_and_keeps_a_fixed_query_count(
    admin_client, enterprise, django_assert_max_num_queries
):
    UserFactory.create_batch(30, enterprise=enterprise)
    UserFactory(enterprise=enterprise, full_name="Zelda Unique", status=User.Status.SUSPENDED)
    with django_assert_max_num_queries(8):
        page = admin_client.get(reverse("telephony:employees")).content.decode()
    assert "Page 1 of 2" in page
    page = admin_client.get(
        reverse("telephony:employees") + "?q=zelda&status=suspended"
    ).content.decode()
    assert "Zelda Unique" in page and "1 in all" in page


def test_an_admin_suspends_a_user_from_the_page(admin_client, employee):
    response = admin_client.post(reverse("accounts:user_action", args=[employee.pk, "suspend"]))
    assert response.status_code == 302
    employee.refresh_from_db()
    assert employee.status == User.Status.SUSPENDED


def test_a_rule_violation_shows_as_a_form_error(admin_client, employee):
    response = admin_client.post(
        reverse("accounts:user_invite"),
        {"full_name": "Dup", "email": employee.email, "role": "employee"},
    )
    assert response.status_code == 200
    assert "already has an account" in response.content.decode()


def test_a_suspended_enterprise_shows_a_notice_and_refuses_changes(
    admin_client, enterprise, employee
):
    services.enterprise_set_status(
        actor=Actor.system(), enterprise=enterprise, status=Enterprise.Status.SUSPENDED
    )
    assert "suspended" in admin_client.get(reverse("home")).content.decode()
    response = admin_client.post(
        reverse("accounts:user_action", args=[employee.pk, "suspend"]), follow=True
    )
    assert "changes are blocked" in response.content.decode()
    employee.refresh_from_db()
    assert employee.status == User.Status.ACTIVE


def test_a_new_api_token_is_shown_once(admin_client):
    response = admin_client.post(
        reverse("accounts:api_tokens"), {"name": "HR system", "role": "admin"}, follow=True
    )
    token = re.search(
        r'data-testid="new-api-token">(ptk_[\w-]+)<', response.content.decode()
    ).group(1)
    assert token not in admin_client.get(reverse("accounts:api_tokens")).content.decode()


def test_the_audit_page_filters_by_text_and_actor(admin_client, admin, employee):
    services.user_update(actor=Actor(user=admin), user=employee, full_name="Robbie")
    page = admin_client.get(reverse("accounts:audit") + "?q=user.updated").content.decode()
    assert "Robbie" in page
    page = admin_client.get(reverse("accounts:audit") + "?actor_kind=api_token").content.decode()
    assert "Robbie" not in page


def test_a_filter_value_that_is_not_valid_is_said_and_the_valid_ones_apply(
    admin_client, admin, employee
):
    services.user_update(actor=Actor(user=admin), user=employee, full_name="Robbie")
    url = reverse("accounts:audit")
    page = admin_client.get(url, {"q": "user.updated", "since": "yesterday-ish"}).content.decode()
    assert "Not filtered by since: Enter a valid date." in page
    assert "Robbie" in page  # the search still applies
    page = admin_client.get(url, {"since": "2026-05-02", "until": "2026-05-01"}).content.decode()
    assert "Not filtered by until: is before the first day." in page


def test_pages_carry_a_strict_content_security_policy(client):
    response = client.get(reverse("accounts:login"))
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"


def test_new_backup_codes_need_a_verified_session(client, admin):
    TOTPDeviceFactory(user=admin)
    sign_in(client, admin)  # password only
    assert client.post(reverse("accounts:backup_codes_new")).status_code == 403
    assert "<li><code>" not in client.get(reverse("accounts:backup_codes")).content.decode()
