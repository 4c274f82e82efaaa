"""Django admin for operator staff: every edit audited, flows through services."""

import pytest
from django.core import mail
from django.urls import reverse

from accounts.models import AuditEvent, Enterprise, User
from accounts.tests.factories import EnterpriseFactory, UserFactory

pytestmark = pytest.mark.django_db


def contract_inline(**terms):
    data = {
        "contract-TOTAL_FORMS": "1",
        "contract-INITIAL_FORMS": "0",
        "contract-MIN_NUM_FORMS": "1",
        "contract-MAX_NUM_FORMS": "1",
        "contract-0-identity_quota": "20",
        "contract-0-max_ues_per_user": "3",
        "contract-0-ue_limit_policy": "notify",
        "contract-0-allowed_services": ["voice", "video"],
        "contract-0-may_create_identities": "on",
        "contract-0-deactivation_grace_days": "30",
    }
    data.update(terms)
    return data


def test_staff_create_an_enterprise_with_its_contract_and_both_are_audited(staff_client, staff):
    response = staff_client.post(
        reverse("admin:accounts_enterprise_add"),
        {"name": "Acme", "slug": "acme", "sip_domain": "acme.example", **contract_inline()},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    acme = Enterprise.objects.get(slug="acme")
    assert acme.contract.allowed_services == ["voice", "video"]
    actions = set(AuditEvent.objects.filter(enterprise=acme).values_list("action", flat=True))
    assert actions == {"enterprise.created", "servicecontract.created"}
    assert AuditEvent.objects.filter(actor_user=staff).count() == 2


def test_changing_a_contract_records_before_and_after(staff_client):
    acme = EnterpriseFactory()
    contract = acme.contract
    inline = contract_inline(
        **{
            "contract-INITIAL_FORMS": "1",
            "contract-0-id": str(contract.pk),
            "contract-0-enterprise": str(acme.pk),
            "contract-0-identity_quota": "7",
            "contract-0-allowed_services": ["voice", "video", "messaging"],
        }
    )
    data = {"name": acme.name, "slug": acme.slug, "sip_domain": acme.sip_domain, **inline}
    response = staff_client.post(reverse("admin:accounts_enterprise_change", args=[acme.pk]), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    event = AuditEvent.objects.get(action="servicecontract.changed")
    assert event.changes["identity_quota"] == [100, 7]


def test_the_suspend_action_suspends_through_the_service(staff_client):
    acme = EnterpriseFactory()
    staff_client.post(
        reverse("admin:accounts_enterprise_changelist"),
        {"action": "suspend", "_selected_action": [acme.pk]},
    )
    acme.refresh_from_db()
    assert acme.status == Enterprise.Status.SUSPENDED
    assert AuditEvent.objects.get(action="enterprise.suspended").changes == {
        "status": ["active", "suspended"]
    }


def test_adding_a_member_in_admin_sends_an_invitation(
    staff_client, django_capture_on_commit_callbacks
):
    acme = EnterpriseFactory()
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("admin:accounts_user_add"),
            {"email": "first.admin@acme.example", "full_name": "First Admin",
             "enterprise": acme.pk, "role": "admin"},
        )  # fmt: skip
    assert response.status_code == 302
    user = User.objects.get(email="first.admin@acme.example")
    assert (user.status, user.role, user.enterprise) == ("invited", "admin", acme)
    assert len(mail.outbox) == 1


def test_the_lists_search_and_filter(staff_client):
    acme = EnterpriseFactory(name="Acme Findable")
    UserFactory(enterprise=acme, full_name="Lola Findme")
    page = staff_client.get(reverse("admin:accounts_enterprise_changelist") + "?q=findable")
    assert "Acme Findable" in page.content.decode()
    page = staff_client.get(reverse("admin:accounts_user_changelist") + "?q=findme&status=active")
    assert "Lola Findme" in page.content.decode()


def test_the_audit_log_is_read_only_in_admin(staff_client, staff):
    acme = EnterpriseFactory()
    staff_client.post(
        reverse("admin:accounts_enterprise_changelist"),
        {"action": "suspend", "_selected_action": [acme.pk]},
    )
    event = AuditEvent.objects.get(action="enterprise.suspended")
    assert staff_client.get(reverse("admin:accounts_auditevent_changelist")).status_code == 200
    assert staff_client.get(reverse("admin:accounts_auditevent_add")).status_code == 403
    assert (
        staff_client.get(reverse("admin:accounts_auditevent_delete", args=[event.pk])).status_code
        == 403
    )
    response = staff_client.post(
        reverse("admin:accounts_auditevent_change", args=[event.pk]), {"action": "x"}
    )
    assert response.status_code == 403


def test_the_admin_index_names_things_as_operator_staff_know_them(staff_client):
    page = staff_client.get("/admin/").content.decode()
    for name in (
        "SIM lines",
        "API tokens",
        "Sign-in lockouts",
        "Second factor: authenticator apps",
        "Second factor: backup codes",
        "OAuth 2.0 and OpenID Connect",
        "Portal health",
    ):
        assert name in page, name
    for raw in (
        "Sim lines",
        "Api tokens",
        "Otp_Totp",
        "Otp_Static",
        ">Axes<",
        "Django OAuth Toolkit",
    ):
        assert raw not in page, raw
