"""Reversible deactivation by an admin (pages, API) and the offboarding that follows it.
The identity providers' shapes of the same flow: scim/tests/test_scim.py."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import services as account_services
from accounts.audit import Actor
from accounts.models import AuditEvent, Enterprise, Role, User
from accounts.tests.factories import PASSWORD, EnterpriseFactory, UserFactory, api_token
from kernel.errors import RuleViolation
from portal.testing import sign_in_verified
from telephony.identities import services
from telephony.models import Grant, Identity, OffboardingReceipt, SimulatedSubscription
from telephony.tests.factories import give_numbers, make_identity

pytestmark = pytest.mark.django_db


@pytest.fixture
def numbers(enterprise):
    return give_numbers(enterprise)


@pytest.fixture
def admin_actor(admin):
    return Actor(user=admin, ip="198.51.100.7")


@pytest.fixture
def rob(employee, enterprise, numbers, django_capture_on_commit_callbacks):
    """Rob with an identity synced to the HSS and a grant on it to a colleague."""
    colleague = UserFactory(enterprise=enterprise, email="cleo@swift.example")
    with django_capture_on_commit_callbacks(execute=True):
        identity = make_identity(employee)
        make_identity(colleague)
        services.grant_create(actor=Actor(user=employee), identity=identity, grantee=colleague)
    return employee


def enabled(user) -> list[bool]:
    tns = Identity.objects.filter(owner=user).values_list("number__e164", flat=True)
    return [SimulatedSubscription.objects.get(msisdn=tn).enabled for tn in tns]


def test_an_admin_deactivates_and_reactivates_with_receipts_and_audit_rows(
    admin_actor, admin, rob, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        receipt = services.employee_deactivate(actor=admin_actor, user=rob)
    rob.refresh_from_db()
    assert rob.status == User.Status.DEACTIVATED
    assert enabled(rob) == [False]
    assert Grant.objects.get(identity__owner=rob).paused_at is not None
    assert receipt.kind == OffboardingReceipt.Kind.DEACTIVATION
    events = AuditEvent.objects.filter(actor_user=admin)
    assert set(events.values_list("action", flat=True)) >= {
        "user.deactivated",
        "identity.suspended",
        "grant.paused",
    }
    with django_capture_on_commit_callbacks(execute=True):
        services.employee_reactivate(actor=admin_actor, user=rob)
    rob.refresh_from_db()
    assert rob.status == User.Status.ACTIVE
    assert enabled(rob) == [True]
    assert Grant.objects.get(identity__owner=rob).is_active
    assert {"user.reactivated", "identity.resumed", "grant.resumed"} <= set(
        events.values_list("action", flat=True)
    )


def test_a_paused_grant_can_be_revoked_and_then_stays_ended(admin_actor, rob):
    services.employee_deactivate(actor=admin_actor, user=rob)
    grant = Grant.objects.get(identity__owner=rob)
    services.grant_revoke(actor=admin_actor, grant=grant)
    services.employee_reactivate(actor=admin_actor, user=rob)
    grant.refresh_from_db()
    assert grant.has_ended and grant.end_reason == "revoked"


def test_an_identity_of_a_deactivated_user_resumes_only_with_them(admin_actor, rob):
    services.employee_deactivate(actor=admin_actor, user=rob)
    identity = Identity.objects.get(owner=rob)
    with pytest.raises(RuleViolation, match="reactivate them"):
        services.identity_resume(actor=admin_actor, identity=identity)
    identity.refresh_from_db()
    assert identity.status == Identity.Status.SUSPENDED


def test_the_grace_period_task_leaves_a_user_reactivated_meanwhile(admin_actor, rob, monkeypatch):
    services.employee_deactivate(actor=admin_actor, user=rob)
    User.objects.filter(pk=rob.pk).update(deactivated_at=timezone.now() - timedelta(days=31))
    reactivate_first = User.objects.select_for_update

    def reactivated_meanwhile(*args, **kwargs):  # the admin wins the race for the row
        User.objects.filter(pk=rob.pk).update(status=User.Status.ACTIVE, deactivated_at=None)
        return reactivate_first(*args, **kwargs)

    monkeypatch.setattr(User.objects, "select_for_update", reactivated_meanwhile)
    assert services.deactivations_expire() == 0
    assert User.objects.get(pk=rob.pk).status == User.Status.ACTIVE


def test_a_suspended_enterprise_deactivates_and_reactivates_nobody(
    admin_actor, rob, enterprise, staff
):
    services.employee_deactivate(actor=admin_actor, user=rob)
    account_services.enterprise_set_status(
        actor=Actor(user=staff), enterprise=enterprise, status=Enterprise.Status.SUSPENDED
    )
    with pytest.raises(RuleViolation, match="suspended by the operator"):
        services.employee_reactivate(actor=admin_actor, user=rob)
    colleague = User.objects.get(email="cleo@swift.example")
    with pytest.raises(RuleViolation, match="suspended by the operator"):
        services.employee_deactivate(actor=admin_actor, user=colleague)
    assert User.objects.get(pk=rob.pk).status == User.Status.DEACTIVATED
    assert User.objects.get(pk=colleague.pk).status == User.Status.ACTIVE


def test_deactivation_refuses_oneself_the_last_admin_and_the_offboarded(
    admin_actor, admin, enterprise
):
    with pytest.raises(RuleViolation, match="your own account"):
        services.employee_deactivate(actor=admin_actor, user=admin)
    with pytest.raises(RuleViolation, match="only active admin"):
        services.employee_deactivate(actor=Actor.system(), user=admin)
    leaver = UserFactory(enterprise=enterprise, status=User.Status.OFFBOARDED)
    with pytest.raises(RuleViolation, match="not deactivated"):
        services.employee_deactivate(actor=admin_actor, user=leaver)
    with pytest.raises(RuleViolation, match="Only a deactivated user"):
        services.employee_reactivate(actor=admin_actor, user=admin)
    assert not OffboardingReceipt.objects.exists()


def test_a_deactivated_user_is_signed_out_and_cannot_sign_in(
    employee_client, employee, admin_actor
):
    home = reverse("telephony:my_devices")
    assert employee_client.get(home).status_code == 200
    services.employee_deactivate(actor=admin_actor, user=employee)
    assert employee_client.get(home).status_code == 302  # to the sign-in page
    fresh = Client()
    login = fresh.post(
        reverse("accounts:login"), {"username": employee.email, "password": PASSWORD}
    )
    assert login.status_code == 200 and "_auth_user_id" not in fresh.session


def test_each_enterprise_has_its_own_grace_period(enterprise, admin_actor):
    brief = EnterpriseFactory(slug="brief")
    brief.contract.deactivation_grace_days = 1
    brief.contract.save()
    AdminOfBrief = UserFactory(enterprise=brief, role=Role.ADMIN, email="boss@brief.example")
    quick = UserFactory(enterprise=brief, email="quick@brief.example")
    slow = UserFactory(enterprise=enterprise, email="slow@swift.example")
    services.employee_deactivate(actor=Actor(user=AdminOfBrief), user=quick)
    services.employee_deactivate(actor=admin_actor, user=slow)
    two_days_ago = timezone.now() - timedelta(days=2)
    User.objects.filter(pk__in=[quick.pk, slow.pk]).update(deactivated_at=two_days_ago)
    assert services.deactivations_expire() == 1
    assert User.objects.get(pk=quick.pk).status == User.Status.OFFBOARDED
    assert User.objects.get(pk=slow.pk).status == User.Status.DEACTIVATED
    event = AuditEvent.objects.get(action="user.offboarded", target_id=str(quick.pk))
    assert event.actor_kind == AuditEvent.ActorKind.SYSTEM


def test_the_employee_page_deactivates_reactivates_and_offboards_now(admin_client, rob):
    page = reverse("telephony:employee_detail", args=[rob.pk])
    assert "Deactivate" in admin_client.get(page).content.decode()
    response = admin_client.post(reverse("telephony:employee_deactivate", args=[rob.pk]))
    receipt = OffboardingReceipt.objects.get(user=rob)
    assert response.url == reverse("telephony:receipt", args=[receipt.pk])
    assert "Deactivation of Rob Smith" in admin_client.get(response.url).content.decode()
    html = admin_client.get(page).content.decode()
    assert "Reactivate" in html and "Offboard now" in html and "unless reactivated" in html
    assert ">paused<" in html  # the grant Rob gave, and it can still be revoked
    assert reverse("telephony:grant_revoke", args=[Grant.objects.get().pk]) in html
    admin_client.post(reverse("telephony:employee_reactivate", args=[rob.pk]))
    assert User.objects.get(pk=rob.pk).status == User.Status.ACTIVE
    admin_client.post(reverse("telephony:employee_deactivate", args=[rob.pk]))
    admin_client.post(reverse("telephony:employee_offboard", args=[rob.pk]))
    assert User.objects.get(pk=rob.pk).status == User.Status.OFFBOARDED
    assert Identity.objects.get(owner=rob).status == Identity.Status.REMOVED


def test_helpdesk_and_other_enterprises_cannot_deactivate(
    helpdesk_client, employee, other_enterprise, client, admin
):
    url = reverse("telephony:employee_deactivate", args=[employee.pk])
    assert helpdesk_client.post(url).status_code == 403
    outsider = UserFactory(enterprise=other_enterprise)
    admin_client = sign_in_verified(client, admin)
    outside = reverse("telephony:employee_deactivate", args=[outsider.pk])
    assert admin_client.post(outside).status_code == 404
    assert (
        admin_client.get(reverse("telephony:employee_deactivate", args=[employee.pk])).status_code
        == 405
    )
    assert User.objects.get(pk=employee.pk).status == User.Status.ACTIVE
    assert User.objects.get(pk=outsider.pk).status == User.Status.ACTIVE


def test_the_api_deactivates_and_reactivates(api, rob, enterprise):
    response = api.post("/api/v1/deactivations/", {"user": rob.pk}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["kind"] == "deactivation"
    assert User.objects.get(pk=rob.pk).status == User.Status.DEACTIVATED
    listed = api.get("/api/v1/offboarding/").json()["results"]
    assert [r["kind"] for r in listed] == ["deactivation"]
    response = api.post("/api/v1/reactivations/", {"user": rob.pk}, format="json")
    assert response.status_code == 201 and response.json()["kind"] == "reactivation"
    again = api.post("/api/v1/reactivations/", {"user": rob.pk}, format="json")
    assert again.status_code == 400
    _, read_only = api_token(enterprise, role=Role.HELPDESK)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {read_only}")
    assert api.post("/api/v1/deactivations/", {"user": rob.pk}, format="json").status_code == 403
    assert User.objects.get(pk=rob.pk).status == User.Status.ACTIVE
