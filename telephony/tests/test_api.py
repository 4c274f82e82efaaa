import pytest
from rest_framework.test import APIClient

from accounts.models import AuditEvent, Role
from accounts.tests.factories import UserFactory, api_token
from portal.testing import sign_in_verified
from telephony.models import Identity, SimulatedSubscription
from telephony.tests.factories import give_line, give_numbers, make_identity

pytestmark = pytest.mark.django_db


@pytest.fixture
def numbers(enterprise):
    return give_numbers(enterprise)


def test_onboarding_through_the_api_returns_the_identity_with_its_sync_state(
    api, numbers, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/onboarding/",
            {
                "email": "rob.smith@swift.example",
                "full_name": "Rob Smith",
                "services": ["voice"],
                "alias": "rob",
                "send_invitation": False,
            },
            format="json",
        )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["tn"] == "+4930123400"
    assert body["impus"][-1] == "sip:rob@swift.example"
    assert body["sync"]["state"] == "pending"  # as it was when answered
    assert api.get(f"/api/v1/identities/{body['id']}/").json()["sync"]["state"] == "synced"


def test_policy_violations_answer_400_with_the_reason(api, employee, enterprise, numbers):
    enterprise.contract.may_create_identities = False
    enterprise.contract.save()
    response = api.post(
        "/api/v1/identities/", {"owner": employee.pk, "services": ["voice"]}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "contract_forbids_identities"
    assert not Identity.objects.exists()


def test_identity_flows_as_actions(
    api, employee, enterprise, numbers, django_capture_on_commit_callbacks
):
    give_numbers(enterprise, "+14155550100", "+14155550199")
    line = give_line(enterprise, 9)
    with django_capture_on_commit_callbacks(execute=True):
        created = api.post(
            "/api/v1/identities/",
            {"owner": employee.pk, "services": ["voice"], "imsi": line.imsi, "tn": "+4930123450"},
            format="json",
        ).json()
    url = f"/api/v1/identities/{created['id']}/"
    assert created["imsi"] == line.imsi and created["tn"] == "+4930123450"
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            api.patch(url, {"display_name": "Rob S"}, format="json").json()["display_name"]
            == "Rob S"
        )
        assert api.post(url + "suspend/").json()["status"] == "suspended"
        assert api.post(url + "resume/").json()["status"] == "active"
        moved = api.post(url + "relocate/", {"country": "US"}, format="json").json()
    assert moved["tn"] == "+14155550100" and moved["imsi"] == line.imsi
    assert SimulatedSubscription.objects.filter(
        msisdn="+14155550100", display_name="Rob S"
    ).exists()
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(url).status_code == 204
    removed = api.get(url).json()
    assert (removed["status"], removed["tn"], removed["former_tn"]) == (
        "removed",
        "",
        "+14155550100",
    )
    assert not SimulatedSubscription.objects.exists()
    assert api.post(url + "retry-sync/").json()["detail"] == "Only a failed sync can be retried."


def test_lists_filter_and_keep_a_fixed_query_count(
    api, enterprise, numbers, django_assert_max_num_queries
):
    for person in UserFactory.create_batch(25, enterprise=enterprise):
        make_identity(person)
    with django_assert_max_num_queries(4):
        body = api.get("/api/v1/identities/?page_size=10").json()
    assert body["count"] == 25 and len(body["results"]) == 10
    assert api.get("/api/v1/identities/?sync=failed").json()["count"] == 0
    assert api.get("/api/v1/identities/?q=%2B4930123407").json()["count"] == 1
    with django_assert_max_num_queries(4):
        numbers_page = api.get("/api/v1/numbers/?status=assigned").json()
    assert numbers_page["count"] == 25
    block = api.get("/api/v1/number-blocks/").json()["results"][0]
    assert (block["size"], block["assigned"], block["free"]) == (100, 25, 75)


def test_offboarding_through_the_api_returns_the_receipt(
    api, employee, numbers, django_capture_on_commit_callbacks
):
    make_identity(employee)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/offboarding/", {"user": employee.pk}, format="json")
    assert response.status_code == 201
    receipt = api.get(f"/api/v1/offboarding/{response.json()['id']}/").json()
    assert {step["outcome"] for step in receipt["steps"]} == {"done"}


def test_grants_through_the_api_by_the_owner_or_on_their_behalf_by_an_admin_token(
    client, employee, enterprise, api, numbers
):
    colleague = UserFactory(enterprise=enterprise)
    identity = make_identity(employee)
    body = {"identity": identity.pk, "grantee": colleague.pk, "can_receive_calls": False}
    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token(enterprise, Role.HELPDESK)[1]}")
    assert reader.post("/api/v1/grants/", body, format="json").status_code == 403
    sign_in_verified(client, employee)
    created = client.post("/api/v1/grants/", body, content_type="application/json")
    assert created.status_code == 201
    grant_id = created.json()["id"]
    assert client.get("/api/v1/grants/").json()["count"] == 1
    assert api.post(f"/api/v1/grants/{grant_id}/revoke/").json()["is_active"] is False
    # An admin token shares on the owner's behalf: audited as such, and the owner is told.
    assert api.post("/api/v1/grants/", body, format="json").status_code == 201
    event = AuditEvent.objects.filter(action="grant.created").latest("id")
    assert event.changes["on_behalf_of"] == [None, "Rob Smith"]
    assert employee.notifications.filter(kind="grant_created_for_you").count() == 1


def test_employees_read_only_their_own_identities(client, employee, enterprise, numbers):
    mine = make_identity(employee)
    theirs = make_identity(UserFactory(enterprise=enterprise))
    sign_in_verified(client, employee)
    listed = [i["id"] for i in client.get("/api/v1/identities/").json()["results"]]
    assert listed == [mine.pk]
    assert client.get(f"/api/v1/identities/{theirs.pk}/").status_code == 404
    assert client.post(f"/api/v1/identities/{mine.pk}/suspend/").status_code == 403


def test_the_schema_describes_the_telephony_api(client):
    paths = client.get("/api/schema/?format=json").json()["paths"]
    for path in (
        "/api/v1/identities/",
        "/api/v1/identities/{id}/relocate/",
        "/api/v1/identities/{id}/retry-sync/",
        "/api/v1/onboarding/",
        "/api/v1/offboarding/",
        "/api/v1/grants/{id}/revoke/",
        "/api/v1/numbers/",
        "/api/v1/lines/",
    ):
        assert path in paths, path


def test_a_token_of_another_enterprise_finds_nothing(other_enterprise, employee, numbers):
    from accounts.tests.factories import api_token

    identity = make_identity(employee)
    _, raw = api_token(other_enterprise)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get(f"/api/v1/identities/{identity.pk}/").status_code == 404
    assert client.get("/api/v1/identities/").json()["count"] == 0
