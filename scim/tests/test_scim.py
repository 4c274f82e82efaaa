"""The SCIM 2.0 service provider at /scim/v2/, checked against RFC 7643 and RFC 7644 as
an identity provider (and a compliance checker) would use it."""

import json
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_application_model

from accounts import services as account_services
from accounts.audit import Actor
from accounts.models import AuditEvent, DirectoryGroup, DirectoryRecord, Role, User
from accounts.tests.factories import UserFactory, api_token
from telephony.identities import services as telephony_services
from telephony.models import Identity, IdentitySync, OffboardingReceipt, SimulatedSubscription
from telephony.tests.factories import give_numbers, make_identity

pytestmark = pytest.mark.django_db

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


class Scim:
    """A client for /scim/v2/ with a bearer token; bodies are sent as SCIM JSON."""

    def __init__(self, raw_token: str | None = None, token=None):
        headers = {"Authorization": f"Bearer {raw_token}"} if raw_token else None
        self.client = Client(headers=headers)
        self.token = token

    def _send(self, method, path, body=None, content_type="application/scim+json", **headers):
        data = body if isinstance(body, str | bytes) else json.dumps(body)
        kwargs = {"data": data, "content_type": content_type} if body is not None else {}
        return getattr(self.client, method)(f"/scim/v2{path}", **kwargs, **headers)

    def get(self, path, params=None, **headers):
        return self.client.get(f"/scim/v2{path}", params or {}, **headers)

    def post(self, path, body, **kwargs):
        return self._send("post", path, body, **kwargs)

    def put(self, path, body, **kwargs):
        return self._send("put", path, body, **kwargs)

    def patch(self, path, *operations, **kwargs):
        return self._send(
            "patch", path, {"schemas": [PATCH_OP], "Operations": list(operations)}, **kwargs
        )

    def delete(self, path, **headers):
        return self.client.delete(f"/scim/v2{path}", **headers)


def scim_client(enterprise, role=Role.ADMIN) -> Scim:
    token, raw = account_services.api_token_create(
        actor=Actor.system(), enterprise=enterprise, name="IdP", role=role, purpose="scim"
    )
    return Scim(raw, token)


@pytest.fixture
def scim(enterprise, admin):
    return scim_client(enterprise)


@pytest.fixture
def numbers(enterprise):
    return give_numbers(enterprise)


def user_body(user_name, **attributes):
    return {"schemas": [USER, ENTERPRISE], "userName": user_name, **attributes}


def create_user(scim, user_name, **attributes) -> dict:
    response = scim.post("/Users", user_body(user_name, **attributes))
    assert response.status_code == 201, response.content
    return response.json()


def assert_error(response, status, scim_type=None):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/scim+json")
    body = response.json()
    assert body["schemas"] == [ERROR]
    assert body["status"] == str(status)
    assert body["detail"]
    if scim_type:
        assert body["scimType"] == scim_type
    return body


def user_names(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {r["userName"] for r in response.json()["Resources"]}


# --- Discovery --------------------------------------------------------------------------


def test_the_service_provider_config_says_what_is_supported(scim):
    response = scim.get("/ServiceProviderConfig")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/scim+json")
    config = response.json()
    assert config["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"]
    assert config["patch"] == {"supported": True}
    assert config["bulk"]["supported"] is False
    assert config["filter"] == {"supported": True, "maxResults": 200}
    assert config["changePassword"] == {"supported": False}
    assert config["sort"] == {"supported": True}
    assert config["etag"] == {"supported": True}
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    assert config["meta"]["resourceType"] == "ServiceProviderConfig"


def test_resource_types_are_users_and_groups(scim):
    listing = scim.get("/ResourceTypes").json()
    assert listing["schemas"] == [LIST]
    assert (listing["totalResults"], listing["itemsPerPage"], listing["startIndex"]) == (2, 2, 1)
    assert {r["id"] for r in listing["Resources"]} == {"User", "Group"}
    user = scim.get("/ResourceTypes/User").json()
    assert user["endpoint"] == "/Users" and user["schema"] == USER
    assert user["schemaExtensions"] == [{"schema": ENTERPRISE, "required": False}]
    assert user["meta"]["location"].endswith("/scim/v2/ResourceTypes/User")
    assert scim.get("/ResourceTypes/Group").json()["schema"] == GROUP
    assert_error(scim.get("/ResourceTypes/Printer"), 404)


def attribute(described, name):
    """An attribute of a schema, or a sub-attribute of an attribute."""
    listed = described.get("attributes") or described["subAttributes"]
    return next(a for a in listed if a["name"] == name)


def test_schemas_describe_user_group_and_enterprise_user_as_rfc_7643_does(scim):
    listing = scim.get("/Schemas").json()
    assert listing["totalResults"] == 3 and len(listing["Resources"]) == 3
    assert {s["id"] for s in listing["Resources"]} == {USER, GROUP, ENTERPRISE}
    user = scim.get(f"/Schemas/{USER}").json()
    assert user["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:Schema"]
    user_name = attribute(user, "userName")
    assert user_name | {"description": ""} == {
        "name": "userName",
        "type": "string",
        "multiValued": False,
        "description": "",
        "required": True,
        "caseExact": False,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "server",
    }
    password = attribute(user, "password")
    assert (password["mutability"], password["returned"]) == ("writeOnly", "never")
    emails = attribute(user, "emails")
    assert emails["type"] == "complex" and emails["multiValued"] is True
    assert {s["name"] for s in emails["subAttributes"]} == {"value", "display", "type", "primary"}
    assert attribute(user, "groups")["mutability"] == "readOnly"
    assert attribute(user, "active")["type"] == "boolean"
    group = scim.get(f"/Schemas/{GROUP}").json()
    members = attribute(group, "members")
    assert attribute(members, "value")["mutability"] == "immutable"
    manager = attribute(scim.get(f"/Schemas/{ENTERPRISE}").json(), "manager")
    assert attribute(manager, "displayName")["mutability"] == "readOnly"
    assert_error(scim.get("/Schemas/urn:example:nothing"), 404)


@pytest.mark.parametrize("path", ["/Schemas", "/ResourceTypes", "/ServiceProviderConfig"])
def test_discovery_endpoints_refuse_a_filter(scim, path):
    assert_error(scim.get(path, {"filter": 'id eq "User"'}), 403)


# --- Creating users -----------------------------------------------------------------------


def test_creating_a_user_invites_them_and_audits_the_token(
    scim, enterprise, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = scim.post(
            "/Users",
            user_body(
                "Bjensen@Swift.example",
                externalId="701984",
                name={"givenName": "Barbara", "familyName": "Jensen", "formatted": "Ms. B. Jensen"},
                displayName="Babs Jensen",
                title="Tour Guide",
                userType="Employee",
                locale="en-US",
                emails=[
                    {"value": "bjensen@swift.example", "type": "work", "primary": True},
                    {"value": "babs@jensen.example", "type": "home"},
                ],
                **{ENTERPRISE: {"employeeNumber": "701984", "department": "Tour Operations"}},
            ),
        )
    assert response.status_code == 201
    assert response["Content-Type"].startswith("application/scim+json")
    created = response.json()
    assert response["Location"] == created["meta"]["location"]
    assert created["meta"]["location"].endswith(f"/scim/v2/Users/{created['id']}")
    assert response["ETag"] == created["meta"]["version"]
    assert created["meta"]["version"].startswith('W/"')
    assert created["meta"]["resourceType"] == "User"
    assert created["userName"] == "bjensen@swift.example"
    assert created["displayName"] == "Babs Jensen"
    assert created["name"]["formatted"] == "Ms. B. Jensen"
    assert created["active"] is True
    assert created["emails"] == [
        {"value": "bjensen@swift.example", "type": "work", "primary": True},
        {"value": "babs@jensen.example", "type": "home"},
    ]
    assert created[ENTERPRISE] == {"employeeNumber": "701984", "department": "Tour Operations"}
    assert set(created["schemas"]) == {USER, ENTERPRISE}
    assert "password" not in created
    user = User.objects.get(pk=int(created["id"]))
    assert (user.status, user.role, user.full_name, user.enterprise) == (
        User.Status.INVITED,
        Role.EMPLOYEE,
        "Babs Jensen",
        enterprise,
    )
    assert [m.to for m in mail.outbox] == [["bjensen@swift.example"]]
    events = AuditEvent.objects.filter(actor_token=scim.token, enterprise=enterprise)
    assert {"user.invited", "directory_record.created"} <= set(
        events.values_list("action", flat=True)
    )
    assert events.get(action="directory_record.created").changes["title"] == [None, "Tour Guide"]


def test_a_work_number_in_the_blocks_onboards_the_user_with_an_identity_on_it(
    scim, enterprise, numbers, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as queued:
        created = create_user(
            scim,
            "lee@swift.example",
            displayName="Lee Wong",
            phoneNumbers=[{"value": "+49 30 1234 05", "type": "work"}],
        )
    identity = Identity.objects.get(owner_id=int(created["id"]))
    assert identity.number.e164 == "+4930123405"
    assert identity.services == ["voice"]
    assert identity.enterprise == enterprise
    assert IdentitySync.objects.get(identity=identity).state == IdentitySync.State.PENDING
    assert queued, "the identity's sync and the invitation are queued after commit"
    for callback in queued:
        callback()
    assert IdentitySync.objects.get(identity=identity).state == IdentitySync.State.SYNCED
    assert created["phoneNumbers"] == [{"value": "+4930123405", "type": "work"}]
    assert AuditEvent.objects.filter(action="identity.created", actor_token=scim.token).exists()


def test_a_work_number_outside_the_blocks_is_only_stored(scim, numbers):
    phones = [
        {"value": "+4940999999", "type": "work"},
        {"value": "+44 7700 900123", "type": "mobile"},
    ]
    created = create_user(scim, "kim@swift.example", phoneNumbers=phones)
    assert not Identity.objects.filter(owner_id=int(created["id"])).exists()
    assert created["phoneNumbers"] == phones


def test_a_number_of_the_blocks_that_is_taken_is_refused_and_nothing_is_created(
    scim, enterprise, numbers
):
    make_identity(UserFactory(enterprise=enterprise), tn="+4930123405")
    response = scim.post(
        "/Users",
        user_body("lee@swift.example", phoneNumbers=[{"value": "+4930123405", "type": "work"}]),
    )
    assert_error(response, 400, "invalidValue")
    assert not User.objects.filter(email="lee@swift.example").exists()
    assert not DirectoryRecord.objects.exists()


def test_a_contract_without_identities_refuses_an_onboarding_and_changes_nothing(
    scim, enterprise, numbers
):
    enterprise.contract.may_create_identities = False
    enterprise.contract.save()
    response = scim.post(
        "/Users",
        user_body("lee@swift.example", phoneNumbers=[{"value": "+4930123405", "type": "work"}]),
    )
    assert "does not allow" in assert_error(response, 400, "invalidValue")["detail"]
    assert not User.objects.filter(email="lee@swift.example").exists()


def test_a_user_name_that_is_taken_is_a_uniqueness_conflict(
    scim, enterprise, other_enterprise, admin
):
    assert_error(scim.post("/Users", user_body("ADA@swift.example")), 409, "uniqueness")
    outsider = UserFactory(enterprise=other_enterprise, email="out@other.example")
    body = assert_error(scim.post("/Users", user_body(outsider.email)), 409, "uniqueness")
    assert "Other Co" not in body["detail"]
    leaver = UserFactory(enterprise=enterprise, email="gone@swift.example", status="offboarded")
    body = assert_error(scim.post("/Users", user_body(leaver.email)), 409, "uniqueness")
    assert "offboarded" in body["detail"]


@pytest.mark.parametrize(
    "body",
    [
        user_body("not-an-email"),
        user_body(""),
        user_body(5),
        user_body("a@swift.example", active="yes"),
        user_body("a@swift.example", emails={"value": "a@swift.example"}),
        user_body("a@swift.example", name="Ann"),
        user_body("a@swift.example", title=["x"]),
        user_body("a@swift.example", externalId="x" * 256),
    ],
)
def test_values_of_the_wrong_type_are_invalid(scim, body):
    assert_error(scim.post("/Users", body), 400, "invalidValue")
    assert not User.objects.filter(email="a@swift.example").exists()


def test_a_body_without_the_resource_schema_is_invalid_syntax(scim):
    assert_error(scim.post("/Users", {"userName": "a@swift.example"}), 400, "invalidSyntax")
    assert_error(scim.post("/Users", [user_body("a@swift.example")]), 400, "invalidSyntax")


def test_malformed_json_is_invalid_syntax(scim):
    assert_error(scim.post("/Users", '{"schemas": ['), 400, "invalidSyntax")
    assert_error(scim.post("/Users", '{"count": NaN}'), 400, "invalidSyntax")
    assert_error(scim.post("/Users", b"\xff\xfe"), 400, "invalidSyntax")


def test_a_key_given_twice_is_invalid_syntax_not_last_one_wins(scim):
    """A body that means two things at once (a proxy or log may read the first value)."""
    body = json.dumps(user_body("a@swift.example"))[:-1] + ', "active": true, "active": false}'
    response = scim.post("/Users", body)
    assert_error(response, 400, "invalidSyntax")
    assert "appears twice" in response.json()["detail"]
    assert not User.objects.filter(email="a@swift.example").exists()


def test_plain_json_is_accepted_and_other_media_types_are_not(scim):
    response = scim.post("/Users", user_body("a@swift.example"), content_type="application/json")
    assert response.status_code == 201
    assert response["Content-Type"].startswith("application/scim+json")
    assert_error(scim.post("/Users", "userName=x", content_type="text/plain"), 415)


def test_a_body_over_one_mebibyte_is_refused(scim):
    huge = user_body("a@swift.example", title="x" * (1024 * 1024))
    assert_error(scim.post("/Users", huge), 413)
    assert not User.objects.filter(email="a@swift.example").exists()


# --- Reading and filtering ---------------------------------------------------------------


@pytest.fixture
def directory(scim, enterprise, numbers, admin):
    """Four provisioned users besides the admin (ada@swift.example), by their names."""
    people = {
        "alice": create_user(
            scim,
            "alice@swift.example",
            externalId="E-1",
            name={"givenName": "Alice", "familyName": "Smith"},
            displayName="Alice Smith",
            title="Engineer",
            emails=[
                {"value": "alice@swift.example", "type": "work", "primary": True},
                {"value": "alice.home@example.org", "type": "home"},
            ],
            phoneNumbers=[{"value": "+4930123405", "type": "work"}],
            **{ENTERPRISE: {"employeeNumber": "100", "department": "R&D"}},
        ),
        "bob": create_user(
            scim,
            "bob@swift.example",
            emails=[{"value": "bob@swift.example", "type": "work", "primary": True}],
            externalId="E-2",
            name={"givenName": "Bob", "familyName": "Jones"},
            displayName="Bob Jones",
            title="Manager",
            phoneNumbers=[{"value": "+447700900123", "type": "mobile"}],
            **{ENTERPRISE: {"employeeNumber": "200", "department": "Sales"}},
        ),
        "carol": create_user(
            scim,
            "carol@swift.example",
            emails=[{"value": "carol@swift.example", "type": "work", "primary": True}],
            externalId="E-3",
            name={"givenName": "Carol", "familyName": "Smithers"},
            displayName="Carol Smithers",
            title="Manager",
            **{ENTERPRISE: {"employeeNumber": "300", "department": "Sales"}},
        ),
        "dave": create_user(
            scim,
            "dave@other-domain.example",
            displayName="Dave Null",
            emails=[{"value": "dave@other-domain.example", "type": "work", "primary": True}],
        ),
    }
    return people


EVERYONE = {
    "ada@swift.example",
    "alice@swift.example",
    "bob@swift.example",
    "carol@swift.example",
    "dave@other-domain.example",
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('userName eq "ALICE@swift.example"', {"alice@swift.example"}),
        ('userName ne "alice@swift.example"', EVERYONE - {"alice@swift.example"}),
        ('displayName co "SMITH"', {"alice@swift.example", "carol@swift.example"}),
        ('userName sw "b"', {"bob@swift.example"}),
        ('userName ew "@other-domain.example"', {"dave@other-domain.example"}),
        ("title pr", {"alice@swift.example", "bob@swift.example", "carol@swift.example"}),
        ('externalId eq "E-1"', {"alice@swift.example"}),
        ('externalId eq "e-1"', set()),  # caseExact
        (f'{ENTERPRISE}:employeeNumber gt "200"', {"carol@swift.example"}),
        (f'{ENTERPRISE}:employeeNumber ge "200"', {"bob@swift.example", "carol@swift.example"}),
        (f'{ENTERPRISE}:employeeNumber lt "200"', {"alice@swift.example"}),
        (f'{ENTERPRISE}:employeeNumber le "200"', {"alice@swift.example", "bob@swift.example"}),
        (f'{ENTERPRISE}:department eq "sales"', {"bob@swift.example", "carol@swift.example"}),
        ('name.familyName eq "smith"', {"alice@swift.example"}),
        ('name.givenName sw "C"', {"carol@swift.example"}),
        ('emails[type eq "work" and value co "alice"]', {"alice@swift.example"}),
        ('emails[type eq "home"]', {"alice@swift.example"}),
        ('emails.value eq "alice.home@EXAMPLE.org"', {"alice@swift.example"}),
        ('emails co "other-domain"', {"dave@other-domain.example"}),
        ('emails.type eq "work"', EVERYONE),
        ('phoneNumbers.value eq "+4930123405"', {"alice@swift.example"}),
        ('phoneNumbers[type eq "mobile" and value sw "+44"]', {"bob@swift.example"}),
        ('title eq "Manager" and userName sw "c"', {"carol@swift.example"}),
        (
            'title eq "Engineer" or title eq "Manager"',
            {"alice@swift.example", "bob@swift.example", "carol@swift.example"},
        ),
        # not > and > or: Engineer or (Manager and c…)
        (
            'title eq "Engineer" or title eq "Manager" and userName sw "c"',
            {"alice@swift.example", "carol@swift.example"},
        ),
        (
            '(title eq "Engineer" or title eq "Manager") and userName sw "c"',
            {"carol@swift.example"},
        ),
        ('not (title eq "Manager")', EVERYONE - {"bob@swift.example", "carol@swift.example"}),
        (
            'not (title pr) and not (userName sw "ada")',
            {"dave@other-domain.example"},
        ),
        ('not (emails[type eq "home"]) and title pr', {"bob@swift.example", "carol@swift.example"}),
        ('USERNAME EQ "bob@swift.example"', {"bob@swift.example"}),
        ('DisplayName Co "jones" AND Title Pr', {"bob@swift.example"}),
        ("active eq true", EVERYONE),
        ("active eq false", set()),
        ("active ne true", set()),
        ('meta.created gt "2000-01-01T00:00:00Z"', EVERYONE),
        ('meta.lastModified lt "2000-01-01T00:00:00Z"', set()),
        (
            'urn:ietf:params:scim:schemas:core:2.0:User:userName eq "bob@swift.example"',
            {"bob@swift.example"},
        ),
        ('userName eq "a\\"b@swift.example"', set()),
    ],
)
def test_filters_select_users(scim, directory, expression, expected):
    assert user_names(scim.get("/Users", {"filter": expression})) == expected


def test_filters_by_id_and_by_the_moment_of_creation(scim, directory):
    bob = directory["bob"]
    assert user_names(scim.get("/Users", {"filter": f'id eq "{bob["id"]}"'})) == {bob["userName"]}
    created = bob["meta"]["created"]
    later = user_names(scim.get("/Users", {"filter": f'meta.created gt "{created}"'}))
    assert bob["userName"] not in later and "carol@swift.example" in later
    assert bob["userName"] in user_names(
        scim.get(
            "/Users", {"filter": f'meta.created ge "{created}" and meta.created le "{created}"'}
        )
    )


def test_deactivated_users_are_found_by_active_false(scim, directory):
    scim.patch(
        f"/Users/{directory['bob']['id']}", {"op": "replace", "path": "active", "value": False}
    )
    assert user_names(scim.get("/Users", {"filter": "active eq false"})) == {"bob@swift.example"}


@pytest.mark.parametrize(
    "expression",
    [
        "userName eq",
        'userName zz "x"',
        '(userName eq "a"',
        'userName eq "a")',
        'userName eq "a" and',
        'not userName eq "a"',
        'emails[type eq "work"',
        'emails[type eq "work" and value[x eq "y"]]',
        "userName eq unquoted",
        'userName eq "unterminated',
        "active gt true",
        'active eq "true"',
        'meta.created eq "yesterday"',
        "userName eq 5",
        'name eq "x"',
        "",
        "   ",
        "(" * 200 + 'userName eq "a"' + ")" * 200,
        'userName eq "a" ' + 'or userName eq "a" ' * 400,
    ],
)
def test_malformed_filters_are_invalid(scim, expression):
    assert_error(scim.get("/Users", {"filter": expression}), 400, "invalidFilter")


@pytest.mark.parametrize(
    "expression",
    [
        'nickname2 eq "x"',
        'emails[kind eq "work"]',
        f'{ENTERPRISE}:shoeSize eq "9"',
        'members.value eq "1"',
    ],
)
def test_unknown_attributes_in_a_filter_are_invalid(scim, expression):
    body = assert_error(scim.get("/Users", {"filter": expression}), 400, "invalidFilter")
    assert "nknown" in body["detail"]


def test_getting_a_user_returns_what_the_identity_provider_sent(scim, directory):
    alice = directory["alice"]
    response = scim.get(f"/Users/{alice['id']}")
    assert response.status_code == 200
    assert response["ETag"] == alice["meta"]["version"]
    got = response.json()
    assert got["id"] == alice["id"] and isinstance(got["id"], str)
    assert got["externalId"] == "E-1"
    assert got["name"] == {"givenName": "Alice", "familyName": "Smith"}
    assert got["title"] == "Engineer"
    assert got[ENTERPRISE] == {"employeeNumber": "100", "department": "R&D"}
    assert {"value": "+4930123405", "type": "work"} in got["phoneNumbers"]


def test_pagination_is_one_based_and_count_zero_gives_the_total_only(scim, directory):
    first = scim.get("/Users", {"startIndex": 1, "count": 2, "sortBy": "userName"}).json()
    assert (first["totalResults"], first["startIndex"], first["itemsPerPage"]) == (5, 1, 2)
    assert [r["userName"] for r in first["Resources"]] == [
        "ada@swift.example",
        "alice@swift.example",
    ]
    last = scim.get("/Users", {"startIndex": 5, "count": 2, "sortBy": "userName"}).json()
    assert [r["userName"] for r in last["Resources"]] == ["dave@other-domain.example"]
    assert last["itemsPerPage"] == 1
    beyond = scim.get("/Users", {"startIndex": 9}).json()
    assert beyond["totalResults"] == 5 and beyond["Resources"] == []
    only_total = scim.get("/Users", {"count": 0}).json()
    assert only_total["totalResults"] == 5 and "Resources" not in only_total
    assert scim.get("/Users", {"count": -3}).json()["itemsPerPage"] == 0
    below_one = scim.get("/Users", {"startIndex": 0, "count": 1}).json()
    assert below_one["startIndex"] == 1 and below_one["itemsPerPage"] == 1
    assert scim.get("/Users", {"startIndex": 10**30}).json()["Resources"] == []
    assert_error(scim.get("/Users", {"count": "ten"}), 400, "invalidValue")


def test_sorting_by_attributes_in_either_order(scim, directory):
    def order(params):
        return [r["userName"] for r in scim.get("/Users", params).json()["Resources"]]

    by_family = order({"sortBy": "name.familyName", "filter": "title pr"})
    assert by_family == ["bob@swift.example", "alice@swift.example", "carol@swift.example"]
    by_number = order({"sortBy": f"{ENTERPRISE}:employeeNumber", "sortOrder": "descending"})
    assert by_number[:3] == ["carol@swift.example", "bob@swift.example", "alice@swift.example"]
    descending = order({"sortBy": "USERNAME", "sortOrder": "descending"})
    assert descending == sorted(EVERYONE, reverse=True)
    # A multi-valued attribute without a column sorts in Python, values first.
    by_phone = order({"sortBy": "phoneNumbers.value"})
    assert by_phone[:2] == ["bob@swift.example", "alice@swift.example"]  # "+44…" < "+49…"
    assert_error(scim.get("/Users", {"sortBy": "shoeSize"}), 400, "invalidValue")
    assert_error(scim.get("/Users", {"sortBy": "userName", "sortOrder": "up"}), 400, "invalidValue")


def test_attributes_and_excluded_attributes_choose_what_is_returned(scim, directory):
    alice_id = directory["alice"]["id"]
    only = scim.get(f"/Users/{alice_id}", {"attributes": "userName,name.givenName"}).json()
    assert only == {
        "schemas": [USER, ENTERPRISE],
        "id": alice_id,
        "userName": "alice@swift.example",
        "name": {"givenName": "Alice"},
    }
    department = scim.get(f"/Users/{alice_id}", {"attributes": f"{ENTERPRISE}:department"}).json()
    assert department[ENTERPRISE] == {"department": "R&D"} and "userName" not in department
    emails = scim.get(f"/Users/{alice_id}", {"attributes": "emails.value"}).json()
    assert emails["emails"] == [
        {"value": "alice@swift.example"},
        {"value": "alice.home@example.org"},
    ]
    without = scim.get(
        f"/Users/{alice_id}", {"excludedAttributes": "emails,meta,id,name.familyName"}
    ).json()
    assert "emails" not in without and "meta" not in without
    assert without["id"] == alice_id  # returned: always
    assert without["name"] == {"givenName": "Alice"}
    listed = scim.get("/Users", {"attributes": "displayName", "filter": 'userName sw "bob"'}).json()
    assert listed["Resources"] == [
        {"schemas": [USER, ENTERPRISE], "id": directory["bob"]["id"], "displayName": "Bob Jones"}
    ]


def test_search_by_post_takes_the_query_in_the_body(scim, directory):
    response = scim.post(
        "/Users/.search",
        {
            "schemas": [SEARCH],
            "filter": 'title eq "Manager"',
            "attributes": ["userName"],
            "sortBy": "userName",
            "sortOrder": "descending",
            "startIndex": 1,
            "count": 10,
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["schemas"] == [LIST] and body["totalResults"] == 2
    assert [r["userName"] for r in body["Resources"]] == [
        "carol@swift.example",
        "bob@swift.example",
    ]
    assert set(body["Resources"][0]) == {"schemas", "id", "userName"}
    assert_error(scim.post("/Users/.search", {"filter": "title pr"}), 400, "invalidSyntax")
    assert_error(
        scim.post("/Users/.search", {"schemas": [SEARCH], "filter": 5}), 400, "invalidFilter"
    )


def test_search_at_the_root_covers_users_and_groups(scim, directory):
    scim.post("/Groups", {"schemas": [GROUP], "displayName": "Sales"})
    response = scim.post(
        "/.search",
        {"schemas": [SEARCH], "filter": 'displayName sw "Sal" or userName eq "bob@swift.example"'},
    )
    found = response.json()
    assert found["totalResults"] == 2
    assert {r["meta"]["resourceType"] for r in found["Resources"]} == {"User", "Group"}
    paged = scim.post("/.search", {"schemas": [SEARCH], "startIndex": 6, "count": 1}).json()
    assert paged["totalResults"] == 6 and paged["Resources"][0]["displayName"] == "Sales"
    unknown = scim.post("/.search", {"schemas": [SEARCH], "filter": 'shoeSize eq "9"'})
    assert_error(unknown, 400, "invalidFilter")


# --- Replacing and patching users --------------------------------------------------------


def test_put_replaces_the_user(scim, directory):
    alice = directory["alice"]
    response = scim.put(
        f"/Users/{alice['id']}",
        user_body(
            "alice@swift.example",
            externalId="E-1b",
            displayName="Alice Smith-Jones",
            name={"givenName": "Alice", "familyName": "Smith-Jones"},
            **{ENTERPRISE: {"department": "Research"}},
        ),
    )
    assert response.status_code == 200
    replaced = response.json()
    assert response["ETag"] == replaced["meta"]["version"] != alice["meta"]["version"]
    assert replaced["displayName"] == "Alice Smith-Jones" and replaced["externalId"] == "E-1b"
    assert "title" not in replaced  # not sent: cleared
    assert replaced[ENTERPRISE] == {"department": "Research"}
    assert replaced["active"] is True  # not sent: unchanged
    assert User.objects.get(pk=int(alice["id"])).full_name == "Alice Smith-Jones"
    assert {"value": "+4930123405", "type": "work"} in replaced["phoneNumbers"]  # the identity's
    assert AuditEvent.objects.filter(action="user.updated", actor_token=scim.token).exists()


def test_a_new_user_name_is_the_new_sign_in_address_as_entra_renames_a_upn(scim, directory):
    url = f"/Users/{directory['alice']['id']}"
    response = scim.patch(url, op("Replace", "userName", "Alice.Jones@swift.example"))
    assert response.status_code == 200, response.content
    assert response.json()["userName"] == "alice.jones@swift.example"
    alice = User.objects.get(pk=int(directory["alice"]["id"]))
    assert alice.email == "alice.jones@swift.example"
    event = AuditEvent.objects.get(action="user.email_changed", actor_token=scim.token)
    assert event.changes == {"email": ["alice@swift.example", "alice.jones@swift.example"]}
    found = scim.get("/Users", {"filter": 'userName eq "alice.jones@swift.example"'})
    assert user_names(found) == {"alice.jones@swift.example"}
    put = scim.put(url, user_body("alice@swift.example", displayName="Alice Smith"))
    assert put.json()["userName"] == "alice@swift.example"


def test_a_user_name_held_by_another_account_is_refused(scim, directory, other_enterprise):
    UserFactory(enterprise=other_enterprise, email="taken@other.example")
    url = f"/Users/{directory['alice']['id']}"
    assert_error(scim.patch(url, op("replace", "userName", "bob@swift.example")), 409, "uniqueness")
    assert_error(
        scim.patch(url, op("replace", "userName", "taken@other.example")), 409, "uniqueness"
    )
    assert User.objects.get(pk=int(directory["alice"]["id"])).email == "alice@swift.example"


def op(name, path=None, value=None):
    operation = {"op": name}
    if path is not None:
        operation["path"] = path
    if value is not None:
        operation["value"] = value
    return operation


def test_patch_adds_replaces_and_removes_with_and_without_paths(scim, directory):
    url = f"/Users/{directory['bob']['id']}"
    response = scim.patch(
        url,
        op("add", "nickName", "Bobby"),
        op("add", value={"preferredLanguage": "de", ENTERPRISE: {"costCenter": "4130"}}),
        op("replace", "displayName", "Robert Jones"),
        op("replace", value={"name": {"givenName": "Robert"}, "title": "Director"}),
        op("remove", "userType"),
        op("remove", f"{ENTERPRISE}:department"),
        op("add", "emails", [{"value": "bob@home.example", "type": "home"}]),
    )
    assert response.status_code == 200, response.content
    bob = response.json()
    assert response["ETag"] == bob["meta"]["version"]
    assert bob["nickName"] == "Bobby" and bob["preferredLanguage"] == "de"
    assert bob["displayName"] == "Robert Jones"
    assert bob["name"] == {"givenName": "Robert", "familyName": "Jones"}  # merged
    assert bob["title"] == "Director"
    assert bob[ENTERPRISE] == {"employeeNumber": "200", "costCenter": "4130"}
    assert {"value": "bob@home.example", "type": "home"} in bob["emails"]
    assert User.objects.get(pk=int(bob["id"])).full_name == "Robert Jones"
    removed = scim.patch(url, op("remove", "nickName"), op("remove", "name.givenName")).json()
    assert "nickName" not in removed and removed["name"] == {"familyName": "Jones"}


def test_patch_replace_of_a_multi_valued_attribute_replaces_every_value(scim, directory):
    """RFC 7644 §3.5.2.3: without a filter all values are replaced; the new primary wins."""
    url = f"/Users/{directory['alice']['id']}"
    new = [{"value": "a.smith@swift.example", "type": "work", "primary": True}]
    replaced = scim.patch(url, op("replace", "emails", new)).json()
    assert replaced["emails"] == new
    added = scim.patch(
        url, op("add", "emails", [{"value": "as@home.example", "type": "home", "primary": True}])
    ).json()
    assert added["emails"] == [
        {"value": "a.smith@swift.example", "type": "work"},
        {"value": "as@home.example", "type": "home", "primary": True},
    ]
    assert scim.get(url).json()["emails"] == added["emails"]
    two = [{"value": f"{n}@swift.example", "primary": True} for n in ("x", "y")]
    assert_error(scim.patch(url, op("replace", "emails", two)), 400, "invalidValue")
    assert User.objects.get(pk=int(directory["alice"]["id"])).email == "alice@swift.example"


def test_patch_remove_takes_emails_and_name_away_and_refuses_display_name_and_active(
    scim, directory
):
    """RFC 7644 §3.5.2.2: remove the attribute, or refuse with 400 and a scimType."""
    url = f"/Users/{directory['bob']['id']}"
    removed = scim.patch(url, op("remove", "emails"), op("remove", "name"))
    assert removed.status_code == 200, removed.content
    assert "emails" not in removed.json() and "name" not in removed.json()
    assert "emails" not in scim.get(url).json()
    for attribute in ("displayName", "active"):
        body = assert_error(scim.patch(url, op("remove", attribute)), 400, "mutability")
        assert attribute in body["detail"]
    assert scim.get(url).json()["displayName"] == "Bob Jones"


def test_a_portal_user_reads_the_sign_in_address_until_the_directory_writes_emails(scim, employee):
    url = f"/Users/{employee.pk}"
    assert scim.get(url).json()["emails"] == [
        {"value": "rob@swift.example", "type": "work", "primary": True}
    ]
    assert scim.get(url).json()["name"] == {"formatted": "Rob Smith"}
    found = scim.get("/Users", {"filter": 'name.formatted eq "Rob Smith"'})
    assert user_names(found) == {"rob@swift.example"}
    group = {"schemas": [GROUP], "displayName": "Ops", "members": [{"value": str(employee.pk)}]}
    assert scim.post("/Groups", group).status_code == 201  # gives Rob a directory record
    assert scim.get(url).json()["emails"][0]["value"] == "rob@swift.example"
    assert "emails" not in scim.patch(url, op("remove", "emails")).json()
    found = scim.get("/Users", {"filter": 'name.formatted eq "Rob Smith"'})
    assert user_names(found) == {"rob@swift.example"}


def test_a_bare_extension_urn_as_path_writes_or_removes_the_whole_extension(scim, directory):
    url = f"/Users/{directory['carol']['id']}"
    replaced = scim.patch(
        url, op("replace", ENTERPRISE, {"schemas": [ENTERPRISE], "division": "EU"})
    )
    assert replaced.json()[ENTERPRISE] == {"division": "EU"}
    added = scim.patch(url, op("add", ENTERPRISE, {"costCenter": "7"})).json()
    assert added[ENTERPRISE] == {"division": "EU", "costCenter": "7"}
    assert ENTERPRISE not in scim.patch(url, op("remove", ENTERPRISE)).json()


def test_patch_with_value_filter_paths(scim, directory):
    url = f"/Users/{directory['alice']['id']}"
    replaced = scim.patch(url, op("replace", 'emails[type eq "home"].value', "alice@home.example"))
    assert {"value": "alice@home.example", "type": "home"} in replaced.json()["emails"]
    added = scim.patch(url, op("add", 'phoneNumbers[type eq "mobile"].value', "+447700900999"))
    assert {"type": "mobile", "value": "+447700900999"} in added.json()["phoneNumbers"]
    removed = scim.patch(url, op("remove", 'emails[value ew "@home.example"]')).json()
    assert [e["type"] for e in removed["emails"]] == ["work"]
    missing = scim.patch(url, op("replace", 'addresses[type eq "work"].locality', "Berlin"))
    assert_error(missing, 400, "noTarget")


def test_patch_as_microsoft_entra_sends_it(scim, directory):
    url = f"/Users/{directory['carol']['id']}"
    response = scim.patch(
        url,
        op("Replace", "displayName", "Carol S."),
        op("Add", f"{ENTERPRISE}:manager", directory["bob"]["id"]),
        op("Replace", "active", "True"),
        op("Add", value={"name.familyName": "Smythe", "title": "Head of Sales"}),
    )
    assert response.status_code == 200, response.content
    carol = response.json()
    assert carol["displayName"] == "Carol S." and carol["active"] is True
    assert carol[ENTERPRISE]["manager"] == {"value": directory["bob"]["id"]}
    assert carol["name"]["familyName"] == "Smythe" and carol["title"] == "Head of Sales"


@pytest.mark.parametrize(
    ("operation", "scim_type"),
    [
        (op("remove"), "noTarget"),
        (op("replace", "groups", []), "mutability"),
        (op("replace", "id", "9"), "mutability"),
        (op("replace", "meta.created", "2020-01-01T00:00:00Z"), "mutability"),
        (op("replace", "password", "secret"), "mutability"),
        (op("replace", "shoeSize", "9"), "invalidPath"),
        (op("replace", "emails.value", "x@y.example"), "invalidPath"),
        (op("replace", 'emails[type eq "work"', "x"), "invalidPath"),
        (op("replace", 'emails[kind eq "work"].value', "x"), "invalidPath"),
        (op("replace", "active", "maybe"), "invalidValue"),
        (op("replace", "title", 5), "invalidValue"),
        (op("remove", "userName"), "mutability"),
        (op("remove", "displayName"), "mutability"),
        (op("remove", "active"), "mutability"),
        (op("replace", value="title"), "invalidValue"),
        (op("delete", "title"), "invalidSyntax"),
    ],
)
def test_bad_patch_operations_are_refused_and_change_nothing(scim, directory, operation, scim_type):
    url = f"/Users/{directory['bob']['id']}"
    before = scim.get(url).json()
    response = scim.patch(url, op("replace", "title", "Changed first"), operation)
    assert_error(response, 400, scim_type)
    assert scim.get(url).json() == before


def test_a_patch_request_must_be_a_patch_op(scim, directory):
    url = f"/Users/{directory['bob']['id']}"
    assert_error(
        scim._send("patch", url, {"Operations": [op("add", "title", "x")]}), 400, "invalidSyntax"
    )
    assert_error(
        scim._send("patch", url, {"schemas": [PATCH_OP], "Operations": []}), 400, "invalidSyntax"
    )
    assert_error(
        scim._send("patch", url, {"schemas": [PATCH_OP], "Operations": ["x"]}), 400, "invalidSyntax"
    )


# --- Deprovisioning ------------------------------------------------------------------------


def sign_in_token(user):
    """An OpenID Connect access token that ``user`` holds in a softphone app."""
    app = get_application_model().objects.create(
        name="Softphone",
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="http://127.0.0.1:8765/callback",
    )
    return get_access_token_model().objects.create(
        user=user,
        application=app,
        token=f"at-{user.pk}",
        expires=timezone.now() + timedelta(hours=1),
        scope="openid",
    )


@pytest.fixture
def alice_at_work(directory, enterprise, django_capture_on_commit_callbacks):
    """Alice: her identity (from provisioning) synced, a second one that an admin
    suspended, a grant she gave Bob and a grant Carol gave her, an app token."""
    alice, bob, carol = (
        User.objects.get(pk=int(directory[n]["id"])) for n in directory if n != "dave"
    )
    # Provisioned users are invited; say they have joined.
    User.objects.filter(pk__in=[alice.pk, bob.pk, carol.pk]).update(status=User.Status.ACTIVE)
    for person in (alice, bob, carol):
        person.refresh_from_db()
        person.set_password("correct horse battery staple")
        person.save()
    with django_capture_on_commit_callbacks(execute=True):
        mine = Identity.objects.get(owner=alice)
        spare = make_identity(alice)
        telephony_services.identity_suspend(actor=Actor.system(), identity=spare)
        carols = make_identity(carol)
        given = telephony_services.grant_create(actor=Actor(user=alice), identity=mine, grantee=bob)
        received = telephony_services.grant_create(
            actor=Actor(user=carol), identity=carols, grantee=alice
        )
    sign_in_token(alice)
    return {"alice": alice, "mine": mine, "spare": spare, "given": given, "received": received}


def hss(identity):
    identity.refresh_from_db()
    return SimulatedSubscription.objects.get(msisdn=identity.tn)


DEACTIVATE = {
    "okta": op("replace", value={"active": False}),
    "okta-string": op("Replace", value={"active": "False"}),
    "entra": op("Replace", "active", "False"),
}
REACTIVATE = {
    "okta": op("replace", value={"active": True}),
    "okta-string": op("Replace", value={"active": "True"}),
    "entra": op("Replace", "active", "True"),
}


@pytest.mark.parametrize("shape", DEACTIVATE)
def test_active_false_deactivates_at_once_and_active_true_restores_exactly_that(
    scim, alice_at_work, shape, django_capture_on_commit_callbacks
):
    alice, mine, spare = alice_at_work["alice"], alice_at_work["mine"], alice_at_work["spare"]
    url = f"/Users/{alice.pk}"
    assert hss(mine).enabled and hss(mine).shared_msisdns
    with django_capture_on_commit_callbacks(execute=True):
        response = scim.patch(url, DEACTIVATE[shape])
    assert response.status_code == 200, response.content
    assert response.json()["active"] is False
    alice.refresh_from_db()
    assert alice.status == User.Status.DEACTIVATED and not alice.is_active
    assert alice.has_usable_password()  # kept for reactivation
    assert not get_access_token_model().objects.filter(user=alice).exists()
    assert not hss(mine).enabled and not hss(spare).enabled
    assert hss(mine).shared_msisdns == []  # Carol's grant to her is paused
    for grant in (alice_at_work["given"], alice_at_work["received"]):
        grant.refresh_from_db()
        assert grant.paused_at is not None and grant.revoked_at is None
    receipt = OffboardingReceipt.objects.get(user=alice)
    assert receipt.kind == "deactivation" and receipt.suspended_identities == [mine.pk]
    assert receipt.steps[-1]["step"].startswith("Offboarding scheduled for")
    actions = set(
        AuditEvent.objects.filter(actor_token=scim.token).values_list("action", flat=True)
    )
    assert {"user.deactivated", "identity.suspended", "grant.paused"} <= actions

    with django_capture_on_commit_callbacks(execute=True):
        response = scim.patch(url, REACTIVATE[shape])
    assert response.status_code == 200, response.content
    assert response.json()["active"] is True
    alice.refresh_from_db()
    assert alice.status == User.Status.ACTIVE and alice.deactivated_at is None
    assert hss(mine).enabled and hss(mine).shared_msisdns
    assert not hss(spare).enabled  # suspended before: stays so
    spare.refresh_from_db()
    assert spare.status == Identity.Status.SUSPENDED
    for grant in (alice_at_work["given"], alice_at_work["received"]):
        grant.refresh_from_db()
        assert grant.is_active
    reactivation = OffboardingReceipt.objects.get(user=alice, kind="reactivation")
    assert any("stays suspended" in s["step"] for s in reactivation.steps)
    assert AuditEvent.objects.filter(action="user.reactivated", actor_token=scim.token).exists()


def test_active_true_ends_active_for_one_suspended_before_the_deactivation(
    scim, alice_at_work, admin
):
    alice = alice_at_work["alice"]
    account_services.user_suspend(actor=Actor(user=admin), user=alice)
    url = f"/Users/{alice.pk}"
    assert scim.patch(url, DEACTIVATE["okta"]).json()["active"] is False
    response = scim.patch(url, REACTIVATE["okta"])
    assert response.status_code == 200, response.content
    assert response.json()["active"] is True
    assert scim.get(url).json()["active"] is True
    alice.refresh_from_db()
    assert alice.status == User.Status.ACTIVE
    actions = set(
        AuditEvent.objects.filter(actor_token=scim.token, target_id=str(alice.pk)).values_list(
            "action", flat=True
        )
    )
    assert {"user.reactivated", "user.resumed"} <= actions


def test_okta_put_with_active_false_then_true_deactivates_and_reactivates(scim, alice_at_work):
    alice = alice_at_work["alice"]
    url = f"/Users/{alice.pk}"
    body = scim.get(url).json()
    assert scim.put(url, body | {"active": False}).json()["active"] is False
    assert User.objects.get(pk=alice.pk).status == User.Status.DEACTIVATED
    assert scim.put(url, body | {"active": False}).status_code == 200  # again: no change
    assert OffboardingReceipt.objects.filter(user=alice).count() == 1
    assert scim.put(url, body | {"active": True}).json()["active"] is True
    assert User.objects.get(pk=alice.pk).status == User.Status.ACTIVE


def find(scim, user_name) -> list[dict]:
    found = scim.get(
        "/Users", {"filter": f'userName eq "{user_name}"', "startIndex": 1, "count": 100}
    )
    assert found.status_code == 200, found.content
    return found.json()["Resources"]


def test_okta_lifecycle_create_filter_put_deactivate_reactivate(scim, enterprise, admin, numbers):
    """The requests Okta's SCIM 2.0 connector sends, in its order."""
    assert find(scim, "lee.wong@swift.example") == []
    created = scim.post(
        "/Users",
        {
            "schemas": [USER],
            "userName": "lee.wong@swift.example",
            "name": {"givenName": "Lee", "familyName": "Wong"},
            "emails": [{"primary": True, "value": "lee.wong@swift.example", "type": "work"}],
            "displayName": "Lee Wong",
            "locale": "en-US",
            "externalId": "00u1ab2c3D4e5F6g7h8",
            "groups": [],
            "active": True,
        },
    )
    assert created.status_code == 201, created.content
    lee = created.json()
    assert [u["id"] for u in find(scim, "lee.wong@swift.example")] == [lee["id"]]
    url = f"/Users/{lee['id']}"
    put = scim.put(url, {**lee, "name": {"givenName": "Lee", "familyName": "Wong-Li"}})
    assert put.status_code == 200 and put.json()["name"]["familyName"] == "Wong-Li"
    assert scim.patch(url, op("replace", value={"active": False})).json()["active"] is False
    assert User.objects.get(pk=int(lee["id"])).status == User.Status.DEACTIVATED
    assert scim.patch(url, op("replace", value={"active": True})).json()["active"] is True
    assert User.objects.get(pk=int(lee["id"])).status == User.Status.INVITED  # not joined yet


def test_entra_lifecycle_create_update_rename_deactivate_reactivate_delete(
    scim, enterprise, admin, numbers
):
    """The requests Microsoft Entra ID's provisioning service sends, in its order."""
    assert find(scim, "kim.berg@swift.example") == []
    created = scim.post(
        "/Users",
        {
            "schemas": [USER, ENTERPRISE],
            "externalId": "kimb",
            "userName": "kim.berg@swift.example",
            "active": True,
            "displayName": "Kim Berg",
            "emails": [{"primary": True, "type": "work", "value": "kim.berg@swift.example"}],
            "name": {"formatted": "Kim Berg", "familyName": "Berg", "givenName": "Kim"},
            "phoneNumbers": [{"type": "work", "value": "+4930123477"}],
            ENTERPRISE: {"employeeNumber": "4711", "department": "Logistics"},
        },
    )
    assert created.status_code == 201, created.content
    url = f"/Users/{created.json()['id']}"
    kim = User.objects.get(email="kim.berg@swift.example")
    identity = Identity.objects.get(owner=kim)
    assert identity.tn == "+4930123477"
    updated = scim.patch(
        url,
        op("Replace", "displayName", "Kim Berg-Lund"),
        op("Add", 'emails[type eq "work"].value', "kim.berglund@swift.example"),
        op("Replace", f"{ENTERPRISE}:department", "Fleet"),
    )
    assert updated.status_code == 200, updated.content
    assert updated.json()[ENTERPRISE]["department"] == "Fleet"
    renamed = scim.patch(url, op("Replace", "userName", "kim.berglund@swift.example"))
    assert renamed.json()["userName"] == "kim.berglund@swift.example"
    assert [u["id"] for u in find(scim, "kim.berglund@swift.example")] == [str(kim.pk)]
    assert find(scim, "kim.berg@swift.example") == []
    assert scim.patch(url, op("Replace", "active", "False")).json()["active"] is False
    identity.refresh_from_db()
    assert identity.status == Identity.Status.SUSPENDED
    assert scim.patch(url, op("Replace", "active", "True")).json()["active"] is True
    identity.refresh_from_db()
    assert identity.status == Identity.Status.ACTIVE
    assert scim.delete(url).status_code == 204
    identity.refresh_from_db()
    assert identity.status == Identity.Status.REMOVED
    assert User.objects.get(pk=kim.pk).status == User.Status.OFFBOARDED
    assert_error(scim.get(url), 404)


def test_a_grant_stays_paused_while_its_other_party_is_still_deactivated(scim, alice_at_work):
    given = alice_at_work["given"]
    bob_url, alice_url = f"/Users/{given.grantee_id}", f"/Users/{alice_at_work['alice'].pk}"
    scim.patch(bob_url, DEACTIVATE["entra"])
    scim.patch(alice_url, DEACTIVATE["entra"])
    scim.patch(alice_url, REACTIVATE["entra"])
    given.refresh_from_db()
    assert given.paused_at is not None
    alice_at_work["received"].refresh_from_db()
    assert alice_at_work["received"].is_active
    scim.patch(bob_url, REACTIVATE["entra"])
    given.refresh_from_db()
    assert given.is_active


def test_after_the_grace_period_the_deactivated_user_is_offboarded(scim, alice_at_work, enterprise):
    enterprise.contract.deactivation_grace_days = 7
    enterprise.contract.save()
    alice, mine = alice_at_work["alice"], alice_at_work["mine"]
    scim.patch(f"/Users/{alice.pk}", DEACTIVATE["okta"])
    assert telephony_services.deactivations_expire() == 0
    User.objects.filter(pk=alice.pk).update(deactivated_at=timezone.now() - timedelta(days=7))
    body = assert_error(scim.patch(f"/Users/{alice.pk}", REACTIVATE["okta"]), 400, "mutability")
    assert "grace period" in body["detail"]
    assert telephony_services.deactivations_expire() == 1
    alice.refresh_from_db()
    mine.refresh_from_db()
    assert alice.status == User.Status.OFFBOARDED
    assert mine.status == Identity.Status.REMOVED
    for grant in (alice_at_work["given"], alice_at_work["received"]):
        grant.refresh_from_db()
        assert grant.has_ended
    assert OffboardingReceipt.objects.filter(user=alice, kind="offboarding").exists()
    body = assert_error(scim.patch(f"/Users/{alice.pk}", REACTIVATE["okta"]), 400, "mutability")
    assert "offboarded" in body["detail"] and "reactivated" in body["detail"]


def test_delete_of_a_deactivated_user_offboards_them(scim, alice_at_work):
    alice = alice_at_work["alice"]
    scim.patch(f"/Users/{alice.pk}", DEACTIVATE["entra"])
    assert scim.delete(f"/Users/{alice.pk}").status_code == 204
    alice.refresh_from_db()
    assert alice.status == User.Status.OFFBOARDED
    assert {i.status for i in Identity.objects.filter(owner=alice)} == {Identity.Status.REMOVED}
    alice_at_work["given"].refresh_from_db()
    assert alice_at_work["given"].end_reason == "owner_left"


def test_a_user_provisioned_inactive_is_deactivated_and_invited_only_once_reactivated(
    scim, enterprise, admin, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        created = scim.post("/Users", user_body("new@swift.example", active=False))
    assert created.status_code == 201, created.content
    assert created.json()["active"] is False
    assert mail.outbox == []  # the invitation was withdrawn before it was sent
    user = User.objects.get(email="new@swift.example")
    assert (user.status, user.status_before_deactivation) == ("deactivated", "invited")
    with django_capture_on_commit_callbacks(execute=True):
        scim.patch(f"/Users/{user.pk}", REACTIVATE["entra"])
    user.refresh_from_db()
    assert user.status == User.Status.INVITED
    assert [m.to for m in mail.outbox] == [["new@swift.example"]]


def test_active_true_resumes_a_suspended_user(scim, enterprise, admin):
    worker = UserFactory(enterprise=enterprise, email="sue@swift.example")
    account_services.user_suspend(actor=Actor(user=admin), user=worker)
    assert scim.get(f"/Users/{worker.pk}").json()["active"] is False
    assert scim.patch(f"/Users/{worker.pk}", op("replace", "active", True)).json()["active"] is True
    worker.refresh_from_db()
    assert worker.status == User.Status.ACTIVE


def test_delete_offboards_and_the_user_is_then_not_found(scim, directory):
    alice_id = directory["alice"]["id"]
    group = scim.post(
        "/Groups", {"schemas": [GROUP], "displayName": "Eng", "members": [{"value": alice_id}]}
    )
    response = scim.delete(f"/Users/{alice_id}")
    assert response.status_code == 204 and response.content == b""
    assert User.objects.get(pk=int(alice_id)).status == User.Status.OFFBOARDED
    assert Identity.objects.get(owner_id=int(alice_id)).status == Identity.Status.REMOVED
    assert_error(scim.get(f"/Users/{alice_id}"), 404)
    assert_error(scim.delete(f"/Users/{alice_id}"), 404)
    assert "alice@swift.example" not in user_names(scim.get("/Users"))
    assert scim.get(f"/Groups/{group.json()['id']}").json()["members"] == []
    assert AuditEvent.objects.filter(
        action="directory_record.deleted", actor_token=scim.token
    ).exists()


def test_the_last_admin_cannot_be_deprovisioned(scim, admin):
    body = assert_error(scim.delete(f"/Users/{admin.pk}"), 400, "invalidValue")
    assert "only active admin" in body["detail"]
    admin.refresh_from_db()
    assert admin.status == User.Status.ACTIVE


# --- Groups ------------------------------------------------------------------------------


def test_groups_are_created_read_listed_replaced_and_deleted(scim, directory):
    alice, bob = directory["alice"], directory["bob"]
    response = scim.post(
        "/Groups",
        {
            "schemas": [GROUP],
            "displayName": "Sales",
            "externalId": "G-1",
            "members": [{"value": bob["id"]}],
        },
    )
    assert response.status_code == 201
    group = response.json()
    assert response["Location"] == group["meta"]["location"]
    assert response["ETag"] == group["meta"]["version"]
    assert group["members"] == [
        {
            "value": bob["id"],
            "$ref": bob["meta"]["location"],
            "display": "Bob Jones",
            "type": "User",
        }
    ]
    url = f"/Groups/{group['id']}"
    assert scim.get(url).json()["displayName"] == "Sales"
    listed = scim.get("/Groups", {"filter": 'displayName eq "SALES"'}).json()
    assert [g["id"] for g in listed["Resources"]] == [group["id"]]
    assert scim.get("/Groups", {"filter": 'externalId eq "G-1"'}).json()["totalResults"] == 1
    by_member = scim.get("/Groups", {"filter": f'members[value eq "{bob["id"]}"]'}).json()
    assert by_member["totalResults"] == 1
    assert (
        scim.get("/Groups", {"filter": f'members.value eq "{alice["id"]}"'}).json()["totalResults"]
        == 0
    )
    bob_groups = scim.get(f"/Users/{bob['id']}").json()["groups"]
    assert bob_groups == [
        {
            "value": group["id"],
            "$ref": group["meta"]["location"],
            "display": "Sales",
            "type": "direct",
        }
    ]
    replaced = scim.put(
        url, {"schemas": [GROUP], "displayName": "Sales EMEA", "members": [{"value": alice["id"]}]}
    )
    assert replaced.status_code == 200
    assert [m["value"] for m in replaced.json()["members"]] == [alice["id"]]
    assert "externalId" not in replaced.json()
    assert "groups" not in scim.get(f"/Users/{bob['id']}").json()
    assert scim.delete(url).status_code == 204
    assert_error(scim.get(url), 404)
    actions = set(
        AuditEvent.objects.filter(actor_token=scim.token).values_list("action", flat=True)
    )
    assert {
        "directory_group.created",
        "directory_group.updated",
        "directory_group.deleted",
    } <= actions


def test_group_members_are_patched(scim, directory):
    ids = [directory[name]["id"] for name in ("alice", "bob", "carol")]
    group = scim.post("/Groups", {"schemas": [GROUP], "displayName": "Team"}).json()
    url = f"/Groups/{group['id']}"

    def members(response):
        assert response.status_code == 200, response.content
        return sorted(m["value"] for m in response.json()["members"])

    assert members(scim.patch(url, op("add", "members", [{"value": i} for i in ids]))) == sorted(
        ids
    )
    assert members(scim.patch(url, op("add", "members", [{"value": ids[0]}]))) == sorted(ids)
    assert members(scim.patch(url, op("remove", f'members[value eq "{ids[0]}"]'))) == sorted(
        ids[1:]
    )
    # Microsoft Entra removes members by listing them in the value.
    assert members(scim.patch(url, op("Remove", "members", [{"value": ids[1]}]))) == [ids[2]]
    renamed = scim.patch(
        url,
        op("replace", "displayName", "Team B"),
        op("replace", value={"id": group["id"], "externalId": "T"}),
    )
    assert renamed.json()["displayName"] == "Team B" and renamed.json()["externalId"] == "T"
    assert members(scim.patch(url, op("remove", "members"))) == []
    assert_error(scim.patch(url, op("add", "members", [{"value": "999999"}])), 400, "invalidValue")
    assert_error(scim.patch(url, op("add", "members", [{"value": "abc"}])), 400, "invalidValue")


def test_group_names_are_unique_case_insensitively(scim):
    assert scim.post("/Groups", {"schemas": [GROUP], "displayName": "Sales"}).status_code == 201
    assert_error(
        scim.post("/Groups", {"schemas": [GROUP], "displayName": "sales"}), 409, "uniqueness"
    )
    assert_error(scim.post("/Groups", {"schemas": [GROUP]}), 400, "invalidValue")


def test_a_membership_change_changes_the_members_version(scim, directory):
    bob = directory["bob"]
    before = scim.get(f"/Users/{bob['id']}")["ETag"]
    scim.post(
        "/Groups", {"schemas": [GROUP], "displayName": "Ops", "members": [{"value": bob["id"]}]}
    )
    assert scim.get(f"/Users/{bob['id']}")["ETag"] != before


# --- Entity tags -----------------------------------------------------------------------------


def test_etags_make_reads_and_writes_conditional(scim, directory):
    url = f"/Users/{directory['bob']['id']}"
    current = scim.get(url)["ETag"]
    assert current.startswith('W/"')
    assert scim.get(url, HTTP_IF_NONE_MATCH=current).status_code == 304
    assert scim.get(url, HTTP_IF_NONE_MATCH='W/"999"').status_code == 200
    stale = scim.patch(url, op("replace", "title", "X"), HTTP_IF_MATCH='W/"999"')
    assert_error(stale, 412)
    assert scim.get(url).json()["title"] == "Manager"
    fresh = scim.patch(url, op("replace", "title", "X"), HTTP_IF_MATCH=current)
    assert fresh.status_code == 200 and fresh["ETag"] != current
    assert_error(scim.put(url, user_body("bob@swift.example"), HTTP_IF_MATCH=current), 412)
    assert_error(scim.delete(url, HTTP_IF_MATCH=current), 412)
    assert User.objects.get(email="bob@swift.example").status == User.Status.INVITED
    assert scim.delete(url, HTTP_IF_MATCH=fresh["ETag"]).status_code == 204


def test_a_change_made_in_the_portal_makes_the_identity_providers_copy_stale(
    scim, directory, admin
):
    """An admin renames Bob in the portal after the identity provider read him: the
    provider's conditional write must not overwrite the rename unseen."""
    url = f"/Users/{directory['bob']['id']}"
    read = scim.get(url)["ETag"]
    group = scim.post(
        "/Groups",
        {"schemas": [GROUP], "displayName": "Ops", "members": [{"value": directory["bob"]["id"]}]},
    )
    member_read = group["ETag"]
    bob = User.objects.get(email="bob@swift.example")
    account_services.user_update(actor=Actor(user=admin), user=bob, full_name="Robert Jones")
    assert scim.get(url)["ETag"] != read
    assert_error(scim.patch(url, op("replace", "title", "X"), HTTP_IF_MATCH=read), 412)
    assert User.objects.get(pk=bob.pk).full_name == "Robert Jones"
    # The group shows its members' names, so its tag moves with them.
    assert scim.get(f"/Groups/{group.json()['id']}")["ETag"] != member_read


def test_group_etags(scim):
    group = scim.post("/Groups", {"schemas": [GROUP], "displayName": "Ops"})
    url = f"/Groups/{group.json()['id']}"
    assert scim.get(url, HTTP_IF_NONE_MATCH=group["ETag"]).status_code == 304
    assert_error(scim.patch(url, op("replace", "displayName", "X"), HTTP_IF_MATCH='W/"7"'), 412)
    assert scim.patch(url, op("replace", "displayName", "X"), HTTP_IF_MATCH="*").status_code == 200


# --- Authentication, roles and errors -------------------------------------------------------


@pytest.mark.parametrize(
    "authorization", [None, "Bearer stk_wrong", "Bearer ptk_api-token", "Basic YTpi", "Bearer a b"]
)
def test_calls_without_a_valid_scim_token_get_401_with_a_scim_body(enterprise, authorization):
    client = Client(**({"HTTP_AUTHORIZATION": authorization} if authorization else {}))
    response = client.get("/scim/v2/Users")
    assert_error(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_api_token_or_a_session_is_not_a_scim_token(enterprise, admin_client):
    _, raw = api_token(enterprise)
    assert_error(Scim(raw).get("/Users"), 401)
    assert_error(admin_client.get("/scim/v2/Users"), 401)


def test_a_revoked_token_stops_working(scim, admin):
    assert scim.get("/Users").status_code == 200
    account_services.api_token_revoke(actor=Actor(user=admin), token=scim.token)
    assert_error(scim.get("/Users"), 401)


def test_a_read_only_token_reads_and_searches_but_cannot_write(enterprise, employee):
    reader = scim_client(enterprise, role=Role.HELPDESK)
    assert reader.get("/Users").status_code == 200
    assert reader.get(f"/Users/{employee.pk}").status_code == 200
    assert reader.post("/Users/.search", {"schemas": [SEARCH]}).status_code == 200
    assert_error(reader.post("/Users", user_body("x@swift.example")), 403)
    assert_error(reader.put(f"/Users/{employee.pk}", user_body(employee.email)), 403)
    assert_error(reader.patch(f"/Users/{employee.pk}", op("replace", "active", False)), 403)
    assert_error(reader.delete(f"/Users/{employee.pk}"), 403)
    assert_error(reader.post("/Groups", {"schemas": [GROUP], "displayName": "X"}), 403)
    employee.refresh_from_db()
    assert employee.status == User.Status.ACTIVE


@pytest.mark.parametrize(
    "path", ["/Users/999999", "/Users/abc", "/Users/" + "9" * 40, "/Groups/1", "/Groups/-1"]
)
def test_unknown_resource_ids_are_404(scim, path):
    assert_error(scim.get(path), 404)
    assert_error(scim.delete(path), 404)


def test_unknown_endpoints_methods_and_features_answer_scim_errors(scim):
    assert_error(scim.get("/Printers"), 404)
    response = scim.delete("/Users")
    assert_error(response, 405)
    assert "GET" in response["Allow"]
    assert_error(scim.put("/ServiceProviderConfig", {}), 405)
    assert_error(scim.post("/Bulk", {"schemas": []}), 501)
    assert_error(scim.get("/Me"), 501)


def test_a_suspended_enterprise_cannot_change_but_can_read(scim, enterprise):
    enterprise.status = enterprise.Status.SUSPENDED
    enterprise.save()
    assert scim.get("/Users").status_code == 200
    assert_error(scim.post("/Users", user_body("x@swift.example")), 400, "invalidValue")


@pytest.mark.parametrize(
    "body",
    [
        "[]",
        "null",
        '"text"',
        "1e999999",
        "[" * 100_000 + "]" * 100_000,
        json.dumps(user_body("x@swift.example", name={"givenName": {"deep": ["x"]}})),
        json.dumps(user_body("x@swift.example", emails=[None, 5])),
        json.dumps(user_body("x@swift.example", **{ENTERPRISE: "sales"})),
        json.dumps(
            user_body("x@swift.example", phoneNumbers=[{"value": "\u0000", "type": "work"}])
        ),
        json.dumps({"schemas": "not a list"}),
    ],
)
def test_hostile_bodies_never_cause_a_server_error(scim, admin, body):
    for method, path in (
        ("post", "/Users"),
        ("put", f"/Users/{admin.pk}"),
        ("patch", f"/Users/{admin.pk}"),
    ):
        response = scim._send(method, path, body)
        assert response.status_code == 400, response.content
        assert response.json()["schemas"] == [ERROR]


# --- Tenancy -------------------------------------------------------------------------------


def test_another_enterprises_users_and_groups_do_not_exist(enterprise, other_enterprise, admin):
    ours = scim_client(enterprise)
    member = create_user(ours, "alice@swift.example", title="Engineer")
    group = ours.post(
        "/Groups", {"schemas": [GROUP], "displayName": "Eng", "members": [{"value": member["id"]}]}
    ).json()
    UserFactory(enterprise=other_enterprise, role=Role.ADMIN, email="boss@other.example")
    theirs = scim_client(other_enterprise)
    events_before = AuditEvent.objects.for_enterprise(enterprise).count()
    for path in (f"/Users/{member['id']}", f"/Users/{admin.pk}", f"/Groups/{group['id']}"):
        assert_error(theirs.get(path), 404)
        assert_error(
            theirs.put(
                path, {"schemas": [USER, GROUP], "userName": "x@y.example", "displayName": "X"}
            ),
            404,
        )
        assert_error(theirs.patch(path, op("replace", "displayName", "Hijacked")), 404)
        assert_error(theirs.delete(path), 404)
    for listing in (
        theirs.get("/Users"),
        theirs.get("/Users", {"filter": 'userName eq "alice@swift.example"'}),
        theirs.get("/Groups"),
        theirs.post("/.search", {"schemas": [SEARCH]}),
        theirs.post("/Users/.search", {"schemas": [SEARCH], "filter": 'title eq "Engineer"'}),
    ):
        text = listing.content.decode()
        assert listing.status_code == 200
        assert "swift.example" not in text and '"Eng"' not in text
    assert theirs.get("/Users").json()["totalResults"] == 1  # their own admin
    outsider_group = theirs.post(
        "/Groups", {"schemas": [GROUP], "displayName": "X", "members": [{"value": member["id"]}]}
    )
    assert_error(outsider_group, 400, "invalidValue")
    assert AuditEvent.objects.for_enterprise(enterprise).count() == events_before
    assert User.objects.get(pk=int(member["id"])).status == User.Status.INVITED
    assert DirectoryGroup.objects.get(pk=int(group["id"])).display_name == "Eng"


# --- Query counts ------------------------------------------------------------------------------


def _populate(enterprise, count, label):
    """``count`` users with directory records, every third with an identity, all in one
    group."""
    group = DirectoryGroup.objects.create(enterprise=enterprise, display_name=f"Group {label}")
    for n in range(count):
        user = UserFactory(enterprise=enterprise, email=f"user-{label}-{n}@swift.example")
        DirectoryRecord.objects.create(
            enterprise=enterprise,
            user=user,
            attributes={
                "title": "Engineer",
                "emails": [{"value": f"{label}-{n}@home.example", "type": "home"}],
            },
        )
        if n % 3 == 0:
            make_identity(user)
        group.members.add(user)


def _queries(client, params, path="/Users") -> int:
    client.get("/ServiceProviderConfig")  # the token's last use is written once a minute
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path, params)
    assert response.status_code == 200
    return len(captured)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"filter": 'title eq "Engineer"', "sortBy": "name.familyName"},
        {"filter": 'emails[type eq "home" and value co "@home"]', "sortBy": "phoneNumbers.value"},
        {"filter": 'not (userName sw "zz") or emails.value pr', "count": 50},
    ],
)
def test_listing_users_takes_a_fixed_number_of_queries(
    scim, enterprise, numbers, params, django_assert_max_num_queries
):
    _populate(enterprise, 3, "few")
    few = _queries(scim, params)
    _populate(enterprise, 35, "many")
    with django_assert_max_num_queries(10):
        response = scim.get("/Users", params)
    assert response.json()["totalResults"] >= 38
    assert _queries(scim, params) == few


def test_listing_groups_takes_a_fixed_number_of_queries(
    scim, enterprise, numbers, django_assert_max_num_queries
):
    _populate(enterprise, 3, "few")
    few = _queries(scim, {}, "/Groups")
    _populate(enterprise, 30, "many")
    for n in range(35):
        DirectoryGroup.objects.create(enterprise=enterprise, display_name=f"Team {n}")
    with django_assert_max_num_queries(8):
        assert scim.get("/Groups").json()["totalResults"] == 37
    assert _queries(scim, {}, "/Groups") == few
