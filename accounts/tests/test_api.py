import pytest
from django.core import mail
from rest_framework.test import APIClient

from accounts import services
from accounts.audit import Actor
from accounts.models import ApiToken, AuditEvent, Enterprise, Role, User
from accounts.tests.factories import UserFactory, api_token
from portal.testing import sign_in_verified

pytestmark = pytest.mark.django_db


def test_requests_without_a_token_get_401_with_a_bearer_challenge():
    response = APIClient().get("/api/v1/users/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json() == {
        "status": 401,
        "code": "not_authenticated",
        "detail": "Authentication credentials were not provided.",
    }


@pytest.mark.parametrize("header", ["Bearer ptk_wrong", "Bearer ptk_a ptk_b", "Bearer ptk_\xe9"])
def test_a_bad_token_is_refused(header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/api/v1/users/").status_code == 401


def test_a_revoked_token_stops_working_at_once(api, admin):
    assert api.get("/api/v1/users/").status_code == 200
    services.api_token_revoke(actor=Actor(user=admin), token=api.token)
    assert api.get("/api/v1/users/").status_code == 401


def test_a_token_sees_only_its_own_enterprise(api, enterprise, other_enterprise, employee):
    outsider = UserFactory(enterprise=other_enterprise)
    emails = [u["email"] for u in api.get("/api/v1/users/").json()["results"]]
    assert employee.email in emails and outsider.email not in emails
    assert api.get(f"/api/v1/users/{outsider.pk}/").status_code == 404
    assert (
        api.patch(f"/api/v1/users/{outsider.pk}/", {"full_name": "X"}, format="json").status_code
        == 404
    )
    assert api.post(f"/api/v1/users/{outsider.pk}/suspend/").status_code == 404
    assert api.get("/api/v1/enterprise/").json()["slug"] == enterprise.slug
    outsider.refresh_from_db()
    assert outsider.status == User.Status.ACTIVE


def test_creating_a_user_invites_them_and_is_audited_as_the_token(
    api, enterprise, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/users/",
            {"email": "Nora@swift.example", "full_name": "Nora", "role": "employee"},
            format="json",
        )
    assert response.status_code == 201
    assert response.json()["status"] == "invited"
    assert response.json()["email"] == "nora@swift.example"
    assert len(mail.outbox) == 1
    event = AuditEvent.objects.get(action="user.invited")
    assert event.actor_kind == "api_token"
    assert event.actor_token == api.token
    assert "Test token" in event.actor_label


def test_invalid_input_gets_a_400_listing_each_field(api):
    response = api.post("/api/v1/users/", {"email": "not-an-email", "role": "king"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert set(body["errors"]) == {"email", "full_name", "role"}


def test_a_rule_violation_gets_a_400_with_the_reason_and_changes_nothing(api, employee):
    response = api.post(
        "/api/v1/users/", {"email": employee.email, "full_name": "Dup"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "status": 400,
        "code": "duplicate",
        "detail": f"{employee.email} already has an account.",
        "errors": {"email": [f"{employee.email} already has an account."]},
    }


def test_update_suspend_and_resume_through_the_api(api, employee):
    url = f"/api/v1/users/{employee.pk}/"
    assert api.patch(url, {"full_name": "Robert"}, format="json").json()["full_name"] == "Robert"
    assert api.post(url + "suspend/").json()["status"] == "suspended"
    assert api.post(url + "resume/").json()["status"] == "active"
    assert api.delete(url).status_code == 405  # leavers go through /api/v1/offboarding/


def test_a_suspended_enterprise_refuses_writes_but_allows_reads(api, enterprise, employee):
    services.enterprise_set_status(
        actor=Actor.system(), enterprise=enterprise, status=Enterprise.Status.SUSPENDED
    )
    assert api.get("/api/v1/users/").status_code == 200
    response = api.post(f"/api/v1/users/{employee.pk}/suspend/")
    assert response.status_code == 400
    assert response.json()["code"] == "enterprise_suspended"


def test_a_read_only_token_cannot_write(enterprise, employee):
    _, raw = api_token(enterprise, role=Role.HELPDESK)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/users/").status_code == 200
    assert client.post(f"/api/v1/users/{employee.pk}/suspend/").status_code == 403
    assert (
        client.post(
            "/api/v1/users/", {"email": "x@swift.example", "full_name": "X"}, format="json"
        ).status_code
        == 403
    )


def test_the_list_filters_and_paginates_with_a_fixed_query_count(
    api, enterprise, django_assert_max_num_queries
):
    UserFactory.create_batch(60, enterprise=enterprise)
    UserFactory(enterprise=enterprise, full_name="Quentin Rare", role=Role.HELPDESK)
    with django_assert_max_num_queries(5):
        body = api.get("/api/v1/users/?page_size=20").json()
    assert body["count"] == 61 and len(body["results"]) == 20 and body["next"]
    body = api.get("/api/v1/users/?q=quentin&role=helpdesk").json()
    assert [u["full_name"] for u in body["results"]] == ["Quentin Rare"]
    assert api.get("/api/v1/users/?role=king").status_code == 400


def test_the_audit_trail_is_readable_filterable_and_read_only(api, admin, employee):
    services.user_update(actor=Actor(user=admin), user=employee, full_name="Changed Name")
    body = api.get("/api/v1/audit/?q=user.updated").json()
    assert body["results"][0]["changes"]["full_name"][1] == "Changed Name"
    assert api.get("/api/v1/audit/?actor_kind=system").json()["count"] == 0
    event_id = body["results"][0]["id"]
    assert api.delete(f"/api/v1/audit/{event_id}/").status_code == 405
    assert api.post("/api/v1/audit/", {}, format="json").status_code == 405


def test_the_browser_session_works_for_the_api_only_after_the_second_factor(client, admin):
    client.force_login(admin, backend="accounts.backends.EmailBackend")
    assert client.get("/api/v1/users/").status_code == 401
    sign_in_verified(client, admin)
    assert client.get("/api/v1/users/").status_code == 200
    # Session writes need the CSRF token, as any form does.
    csrf_client = type(client)(enforce_csrf_checks=True)
    sign_in_verified(csrf_client, admin)
    assert csrf_client.post(f"/api/v1/users/{admin.pk}/reset-2fa/").status_code == 403


def test_employees_cannot_use_the_admin_api_but_can_read_their_enterprise(employee_client):
    assert employee_client.get("/api/v1/users/").status_code == 403
    assert employee_client.get("/api/v1/enterprise/").status_code == 200


def test_operator_staff_have_no_enterprise_api(staff_client):
    assert staff_client.get("/api/v1/users/").status_code == 403


def test_the_token_records_when_it_was_last_used(api):
    api.get("/api/v1/users/")
    assert ApiToken.objects.get(pk=api.token.pk).last_used_at is not None


def test_the_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/?format=json").json()
    assert "/api/v1/users/" in schema["paths"]
    assert "/api/v1/users/{id}/suspend/" in schema["paths"]
    assert "/api/v1/audit/" in schema["paths"]
    assert client.get("/api/docs/").status_code == 200
