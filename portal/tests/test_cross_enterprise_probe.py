"""Cross-enterprise probes that test_tenancy.py's URL walk does not make.

test_tenancy.py checks every URL that has an object in its path, with an admin session and
an API token, and that no list shows another enterprise's data. This file closes what
that walk leaves open:

- Django admin (every ``admin:`` URL), which the walk skips: an enterprise's people and
  tokens get nowhere near it.
- Objects named in a body or a query rather than the path (``owner``, ``grantee``,
  ``user``, ``identity``; ``tn`` and ``imsi`` name inventory): found from the OpenAPI
  schema, so a new field that names an object fails until it is listed here.
- The same for the pages' forms that name objects.
- Every machine-facing route (network API, SCIM, OpenID provider): each is listed with
  the test that shows a credential of one enterprise reaches nothing of another.
"""

import json

import pytest
from django.test import Client
from django.urls import reverse

from accounts import audit
from accounts.models import AuditEvent, Role
from accounts.services import network_client_create
from accounts.tests.factories import UserFactory, api_token
from portal.testing import sign_in_verified, url_patterns
from telephony.models import Grant, Identity, Registration
from telephony.tests.factories import give_line, give_numbers, make_identity

pytestmark = pytest.mark.django_db

CANARY = "CANARY-OTHER-ENTERPRISE"


# --- Django admin ------------------------------------------------------------------------

# Values for the admin's URL parameters; the admin refuses before it looks anything up.
ADMIN_KWARGS = {"object_id": "1", "app_label": "accounts", "content_type_id": "1", "id": "1",
                "pk": "1", "url": "x"}  # fmt: skip


def _admin_urls():
    urls = []
    for name, route, params in url_patterns():
        # Logging out ends only the caller's own session (and would end the probe's).
        if name.startswith("admin:") and name != "admin:logout" and "(?P<url>" not in route:
            urls.append(reverse(name, kwargs={p: ADMIN_KWARGS[p] for p in params}))
    return urls


def test_no_admin_url_answers_an_enterprise_admin_or_an_api_token(enterprise, admin):
    UserFactory(enterprise=enterprise, full_name=f"{CANARY} member")
    session = sign_in_verified(Client(), admin)
    _, raw = api_token(enterprise)
    token = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    urls = _admin_urls()
    assert len(urls) > 100
    for url in urls:
        for client in (session, token):
            for method in (client.get, client.post):
                response = method(url)
                assert response.status_code in (302, 403, 404, 405), (url, response.status_code)
                if response.status_code == 302:
                    assert "/login/" in response["Location"], (url, response["Location"])
                assert CANARY not in response.content.decode(errors="replace"), url


# --- Objects named in bodies and queries ---------------------------------------------------

# Body and query fields that name an object, and the kind of object.
REFERENCES = {"owner": "user", "grantee": "user", "user": "user", "identity": "identity"}
# Fields that name inventory by its natural key.
INVENTORY = {"tn": "tn", "imsi": "imsi"}
# Integer fields and parameters that name nothing.
NOT_REFERENCES = {"page", "page_size", "limit", "ring_priority", "id"}


def _schema_fields(schema):
    """(method, path, where, name, type) of every body property and query parameter."""
    components = schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query":
                    kind = parameter.get("schema", {}).get("type")
                    yield method.upper(), path, "query", parameter["name"], kind
            content = operation.get("requestBody", {}).get("content", {})
            body = content.get("application/json", {}).get("schema", {})
            ref = body.get("$ref", "").rsplit("/", 1)[-1]
            for name, prop in components.get(ref, {}).get("properties", {}).items():
                yield method.upper(), path, "body", name, prop.get("type")


@pytest.fixture
def schema(client):
    return client.get("/api/schema/?format=json").json()


def test_every_field_that_names_an_object_is_probed(schema):
    unknown = {
        (method, path, where, name)
        for method, path, where, name, kind in _schema_fields(schema)
        if kind == "integer" and name not in REFERENCES and name not in NOT_REFERENCES
    }
    assert not unknown, f"list these in REFERENCES or NOT_REFERENCES: {sorted(unknown)}"


@pytest.fixture
def theirs(other_enterprise):
    """Objects of another enterprise, each named in a field."""
    give_numbers(other_enterprise, "+4940123400", "+4940123449")
    line = give_line(other_enterprise, 77)
    owner = UserFactory(enterprise=other_enterprise, full_name=f"{CANARY} owner")
    identity = make_identity(owner, imsi=line.imsi)
    free_line = give_line(other_enterprise, 78)
    return {
        "user": owner.pk,
        "email": owner.email,  # the sharing pickers name a person by email
        "identity": identity.pk,
        "number": identity.tn,  # and an identity by its number
        "tn": "+4940123449",  # free, but theirs
        "imsi": free_line.imsi,
    }


@pytest.fixture
def ours(enterprise, employee):
    give_numbers(enterprise)
    identity = make_identity(employee)
    colleague = UserFactory(enterprise=enterprise, full_name="Chen Wei")
    return {
        "user": employee.pk,
        "identity": identity.pk,
        "number": identity.tn,
        "colleague": colleague.pk,
        "colleague_email": colleague.email,
    }


def _valid_body(path, ours):
    """A body that would succeed with our own objects."""
    return {
        "/api/v1/identities/": {"owner": ours["colleague"], "services": ["voice"]},
        "/api/v1/onboarding/": {"email": "new@swift.example", "full_name": "New", "services": ["voice"]},
        "/api/v1/grants/": {"identity": ours["identity"], "grantee": ours["colleague"]},
        "/api/v1/offboarding/": {"user": ours["colleague"]},
        "/api/v1/registrations/sign-out-all/": {"user": ours["user"]},
        "/api/v1/identities/{id}/relocate/": {},
    }.get(path, {})  # fmt: skip


def _probes(schema):
    for method, path, where, name, _ in _schema_fields(schema):
        if name in REFERENCES or name in INVENTORY:
            yield method, path, where, name


def test_another_enterprises_objects_named_in_bodies_and_queries_are_not_found(
    schema, enterprise, other_enterprise, ours, theirs
):
    _, raw = api_token(enterprise)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    probed = 0
    for method, path, where, name in _probes(schema):
        kind = REFERENCES.get(name) or INVENTORY[name]
        url = path.replace("{id}", str(ours["identity"]))
        before = (
            AuditEvent.objects.for_enterprise(other_enterprise).count(),
            Identity.objects.filter(enterprise=other_enterprise).count(),
            Grant.objects.count(),
            Registration.objects.count(),
        )
        if where == "query":
            response = api.get(url, {name: theirs[kind]})
        else:
            body = {**_valid_body(path, ours), name: theirs[kind]}
            response = api.generic(method, url, json.dumps(body), content_type="application/json")
        expected = (404,) if kind in ("user", "identity") else (400,)
        assert response.status_code in expected, (method, path, name, response.content[:300])
        assert CANARY not in response.content.decode()
        after = (
            AuditEvent.objects.for_enterprise(other_enterprise).count(),
            Identity.objects.filter(enterprise=other_enterprise).count(),
            Grant.objects.count(),
            Registration.objects.count(),
        )
        assert after == before, (method, path, name)
        probed += 1
    assert probed >= 10


def test_page_forms_refuse_another_enterprises_objects(
    admin_client, employee, enterprise, ours, theirs
):
    employee_client = sign_in_verified(Client(), employee)
    grants_before = Grant.objects.count()
    rights = {"can_make_calls": "on"}
    response = employee_client.post(
        reverse("telephony:grants"),
        {"identity": theirs["identity"], "grantee": ours["colleague_email"], **rights},
    )
    assert response.status_code == 200  # the form again, with its error
    response = employee_client.post(
        reverse("telephony:grants"),
        {"identity": ours["identity"], "grantee": theirs["email"], **rights},
    )
    assert "No colleague you may share with has that email" in response.content.decode()
    # The admin's picker, which names identities by number.
    response = admin_client.post(
        reverse("telephony:grants"),
        {"identity": theirs["number"], "grantee": ours["colleague_email"], **rights},
    )
    assert "No identity you may share has that number" in response.content.decode()
    response = admin_client.post(
        reverse("telephony:grants"),
        {"identity": ours["number"], "grantee": theirs["email"], **rights},
    )
    assert "No colleague you may share with has that email" in response.content.decode()
    assert Grant.objects.count() == grants_before

    identities_before = Identity.objects.count()
    for field in ("tn", "imsi"):
        response = admin_client.post(
            reverse("telephony:identity_create", kwargs={"owner_pk": ours["colleague"]}),
            {"services": ["voice"], "display_name": "Chen", field: theirs[field]},
        )
        assert response.status_code == 200, field
        response = admin_client.post(
            reverse("telephony:identity_relocate", kwargs={"pk": ours["identity"]}),
            {field: theirs[field]},
        )
        assert response.status_code == 200, field
    assert Identity.objects.count() == identities_before
    assert Identity.objects.get(pk=ours["identity"]).tn.startswith("+4930")

    page = admin_client.get(reverse("telephony:employees"), {"identity": theirs["identity"]})
    assert CANARY not in page.content.decode()


# --- Machine-facing routes -----------------------------------------------------------------

# Every machine-facing route, and where a credential of one enterprise is shown to reach
# nothing of another.
MACHINE_ROUTES = {
    "network-reginfo": "telephony/tests/test_network.py::test_a_client_cannot_report_on_an_enterprise_it_does_not_serve",
    "network-registrations": f"{__name__}::test_network_json_events_for_another_enterprise_are_refused",
    "network-report": "telephony/tests/test_registration_reports.py::test_a_report_of_an_enterprise_the_client_does_not_serve_is_refused_alone",
    "network-sip-register": "telephony/tests/test_third_party.py::test_an_impu_of_an_enterprise_the_client_does_not_serve_is_refused_and_never_listed",
    "network-sip-invite": "telephony/tests/test_sip_invite.py::test_a_client_signs_and_verifies_nothing_for_an_enterprise_it_does_not_serve",
    "network-stir-signing": "telephony/tests/test_calls.py::test_a_client_signs_only_for_enterprises_it_serves",
    "network-stir-verification": f"{__name__}::test_verification_for_another_enterprises_callee_is_refused",
    "scim:service_provider_config": "public discovery, the same for every enterprise",
    "scim:resource_types": "public discovery, the same for every enterprise",
    "scim:resource_type": "public discovery, the same for every enterprise",
    "scim:schemas": "public discovery, the same for every enterprise",
    "scim:schema": "public discovery, the same for every enterprise",
    "scim:search": "scim/tests/test_scim.py::test_another_enterprises_users_and_groups_do_not_exist",
    "scim:users": "scim/tests/test_scim.py::test_another_enterprises_users_and_groups_do_not_exist",
    "scim:users_search": "scim/tests/test_scim.py::test_another_enterprises_users_and_groups_do_not_exist",
    "scim:user": "scim/tests/test_scim.py::test_another_enterprises_users_and_groups_do_not_exist",
    "scim:groups": "scim/tests/test_scim.py::test_another_enterprises_users_and_groups_do_not_exist",
    "scim:groups_search": "scim/tests/test_scim.py::test_another_enterprises_users_and_groups_do_not_exist",
    "scim:group": "scim/tests/test_scim.py::test_another_enterprises_users_and_groups_do_not_exist",
    "oauth2_provider:authorize": "accounts/tests/test_oidc.py::test_another_enterprises_app_is_refused",
    # Codes and refresh tokens are bound to the client and the PKCE verifier.
    "oauth2_provider:token": "accounts/tests/test_oidc.py::test_the_wrong_verifier_gets_no_token",
    "oauth2_provider:revoke-token": f"{__name__}::test_one_enterprises_app_cannot_revoke_another_enterprises_token",
    "oauth2_provider:introspect": "accounts/tests/test_oidc.py::test_the_flow_end_to_end_with_pkce_and_a_network_element_introspecting",
    "oauth2_provider:user-info": "answers the token's own user only",
    "oauth2_provider:jwks-info": "public keys",
    "oidc-discovery": "public discovery",
    "telephony:certificate": "public certificates (a PASSporT's x5u)",
    "network-ping": "answers the credential's own name, nothing of any enterprise",
}  # fmt: skip

MACHINE_PREFIXES = ("network/", "scim/", "o/", ".well-known/", "certs/")


def test_every_machine_facing_route_is_probed():
    machine = {name for name, route, _ in url_patterns() if route.startswith(MACHINE_PREFIXES)}
    assert machine == set(MACHINE_ROUTES), (
        f"add to MACHINE_ROUTES: {sorted(machine - set(MACHINE_ROUTES))}; "
        f"remove: {sorted(set(MACHINE_ROUTES) - machine)}"
    )


def test_every_test_named_for_a_machine_route_exists():
    import importlib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for where in MACHINE_ROUTES.values():
        if "::" not in where:
            continue
        module, test = where.split("::")
        if module == __name__:
            assert test in globals(), test
        else:
            assert f"def {test}(" in (root / module).read_text(), where
            importlib.import_module(module.removesuffix(".py").replace("/", "."))


@pytest.fixture
def network_of_ours(enterprise):
    _, raw = network_client_create(
        actor=audit.Actor.system(), name="Our S-CSCF", enterprises=[enterprise]
    )
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


def test_network_json_events_for_another_enterprise_are_refused(
    network_of_ours, other_enterprise, theirs
):
    identity = Identity.objects.get(pk=theirs["identity"])
    body = {"registrations": [{"aor": f"tel:{identity.tn}", "contacts": [
        {"uri": f"sip:{identity.tn}@198.51.100.9", "state": "active", "event": "registered",
         "expires": 600}]}]}  # fmt: skip
    events_before = AuditEvent.objects.for_enterprise(other_enterprise).count()
    response = network_of_ours.post(
        "/network/v1/registrations", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 403
    assert not Registration.objects.exists()
    assert AuditEvent.objects.for_enterprise(other_enterprise).count() == events_before


def test_verification_for_another_enterprises_callee_is_refused(network_of_ours, theirs):
    import time

    from telephony.models import CallRecord

    callee = Identity.objects.get(pk=theirs["identity"])
    body = {"verificationRequest": {"from": {"tn": "4989123456"}, "to": {"tn": [callee.tn[1:]]},
                                    "time": int(time.time()), "identity": ""}}  # fmt: skip
    response = network_of_ours.post(
        "/network/v1/stir/verification", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 403
    assert response.json()["requestError"]["policyException"]["messageId"] == "POL4050"
    assert not CallRecord.objects.filter(enterprise=callee.enterprise).exists()


def test_one_enterprises_app_cannot_revoke_another_enterprises_token(enterprise, other_enterprise):
    from oauth2_provider.models import AccessToken

    from accounts import oidc

    def app_of(owner_enterprise):
        owner_enterprise.contract.may_authenticate_users = True
        owner_enterprise.contract.save()
        return oidc.client_register(
            actor=audit.Actor.system(),
            enterprise=owner_enterprise,
            name=f"App of {owner_enterprise.slug}",
            redirect_uris=["https://app.example/cb"],
            first_party=True,
        ).application

    ours, theirs_app = app_of(enterprise), app_of(other_enterprise)
    from datetime import timedelta

    from django.utils import timezone

    their_user = UserFactory(enterprise=other_enterprise, role=Role.EMPLOYEE)
    token = AccessToken.objects.create(
        user=their_user,
        application=theirs_app,
        token="their-access-token-value",
        expires=timezone.now() + timedelta(hours=1),
        scope="openid",
    )
    Client().post(
        reverse("oauth2_provider:revoke-token"),
        {"token": "their-access-token-value", "client_id": ours.client_id},
    )
    assert AccessToken.objects.filter(pk=token.pk).exists()


def test_the_tenancy_walk_still_skips_only_admin():
    """test_tenancy.py leaves out admin URLs (probed above) and nothing else."""
    from portal.tests import test_tenancy

    walked = {name for name, _, _ in test_tenancy.routes()}
    every = {name for name, _, _ in url_patterns()}
    assert every - walked == {name for name in every if name.startswith("admin:")}
