"""The API does what its OpenAPI schema says: schemathesis against /api/schema/.

Every operation of the served schema is called with data generated from the schema
(valid and invalid), with the credential its security names: an enterprise admin's API
token for /api/v1/, a network client's for the network API and introspection. No answer
may be a 5xx, and every answer must be documented: its status code, content type, headers
and body. Writes with a read-only API token must answer 403 and change nothing.

Path ids and the ids inside bodies are drawn mostly from objects that exist in the
caller's enterprise, so that the operations get past the lookup to their real work.
Examples are derandomised and bounded (MAX_EXAMPLES per mode), so the run is the same in
CI every time and takes well under a minute.
"""

import json

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts import audit
from accounts.models import AuditEvent, Role
from accounts.services import network_client_create
from accounts.tests.factories import UserFactory, api_token
from telephony.callauth import credentials
from telephony.identities import services as telephony_services
from telephony.models import CallRecord
from telephony.registrations import inbox, ingest
from telephony.registrations.reginfo import parse_registration_events
from telephony.tests.factories import give_line, give_numbers, make_identity

pytestmark = pytest.mark.django_db

MAX_EXAMPLES = 8
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# The SIP edge posts a SIP message as text (its schema: a string).
schemathesis.serializer.alias("message/sip", "text/plain")


def _generated_schema() -> dict:
    return json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True)))


def _operations() -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, methods in _generated_schema()["paths"].items()
        for method in methods
    ]


OPERATIONS = _operations()


@pytest.fixture
def served_schema(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


@pytest.fixture
def wsgi_app():
    """The portal as its WSGI application, inside the test's transaction: Django's own
    test client also keeps the end of a request from closing the connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def world(enterprise, admin, employee):
    """One enterprise with an object of every kind the API addresses."""
    system = audit.Actor.system()
    give_numbers(enterprise, "+4930123400", "+4930123449")
    credentials.lab_pki_create(actor=system, operator_name="iCA", spc="1234")
    credentials.delegate_certificate_issue(actor=system, enterprise=enterprise)
    lines = [give_line(enterprise, n) for n in (1, 2, 3)]
    rob = make_identity(employee, imsi=lines[0].imsi)
    colleague = UserFactory(enterprise=enterprise, full_name="Chen Wei")
    chen = make_identity(colleague)
    leaver = UserFactory(enterprise=enterprise, full_name="Lee Leaver")
    make_identity(leaver)
    grant = telephony_services.grant_create(
        actor=audit.Actor(user=employee), identity=rob, grantee=colleague
    )
    receipt = telephony_services.employee_offboard(actor=system, user=leaver)
    client, network_raw = network_client_create(
        actor=system, name="S-CSCF", enterprises=[enterprise]
    )
    document = parse_registration_events(
        {
            "registrations": [
                {
                    "aor": f"tel:{rob.tn}",
                    "contacts": [
                        {
                            "uri": f"sip:{rob.tn}@198.51.100.9",
                            "state": "active",
                            "event": "registered",
                            "expires": 600,
                            "instance": "<urn:gsma:imei:35209900-176148-1>",
                        }
                    ],
                }
            ]
        }
    )
    ingest.apply_report(actor=audit.Actor(network_client=client), client=client, document=document)
    registration = rob.registrations.get()
    report = inbox.receive(
        actor=audit.Actor(network_client=client), client=client, document=document
    )
    call = CallRecord.objects.create(
        enterprise=enterprise,
        identity=rob,
        direction="outgoing",
        orig_tn=rob.tn,
        dest_tns=["+4940123499"],
        attestation="A",
    )
    _, admin_raw = api_token(enterprise, role=Role.ADMIN, name="HR system")
    _, reader_raw = api_token(enterprise, role=Role.HELPDESK, name="Reporting")
    ids = {
        "users": [admin.pk, employee.pk, colleague.pk, leaver.pk],
        "audit": list(
            AuditEvent.objects.for_enterprise(enterprise).values_list("pk", flat=True)[:5]
        ),
        "identities": [rob.pk, chen.pk],
        "offboarding": [receipt.pk],
        "number-blocks": [rob.number.block_id],
        "lines": [line.pk for line in lines],
        "grants": [grant.pk],
        "registrations": [registration.pk],
        "call-records": [call.pk],
        "reports": [report.pk],
    }
    return {
        "ids": ids,
        "admin_token": admin_raw,
        "reader_token": reader_raw,
        "network_token": network_raw,
    }


# Body fields that name an object, and the kind of object they name.
BODY_REFERENCES = {"owner": "users", "grantee": "users", "user": "users", "identity": "identities"}


def _resource(path: str) -> str:
    return path.removeprefix("/api/v1/").removeprefix("/network/v1/").split("/")[0]


def _cases(operation, world, mode):
    """Cases for ``operation`` whose ids name existing objects most of the time."""
    ids = world["ids"].get(_resource(operation.path), [])
    needs_id = "{id}" in operation.path

    @st.composite
    def cases(draw):
        fixed = {}
        if needs_id:
            # An object of ours, a number that names nothing, or whatever schemathesis
            # makes of the id (in negative mode: not a number at all).
            chosen = draw(st.sampled_from(ids) | st.integers(-5, 10**12) | st.none())
            if chosen is not None:
                fixed["id"] = chosen
        case = draw(operation.as_strategy(generation_mode=mode, path_parameters=fixed or None))
        if isinstance(case.body, dict):
            for key, kind in BODY_REFERENCES.items():
                if isinstance(case.body.get(key), int) and draw(st.booleans()):
                    case.body[key] = draw(st.sampled_from(world["ids"][kind]))
        return case

    return cases()


def _credential(operation, world) -> str:
    schemes = {name for option in operation.definition.raw.get("security", []) for name in option}
    return world["network_token"] if "networkClient" in schemes else world["admin_token"]


def test_the_schema_fuzzed_is_the_one_served(served_schema):
    assert served_schema["paths"].keys() == _generated_schema()["paths"].keys()
    assert {(m.upper(), p) for p, ms in served_schema["paths"].items() for m in ms} == set(
        OPERATIONS
    )


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_answers_as_documented(method, path, served_schema, world, wsgi_app):
    schema = schemathesis.openapi.from_dict(served_schema)
    schema.app = wsgi_app
    operation = schema[path][method]
    headers = {"Authorization": f"Bearer {_credential(operation, world)}"}

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=_cases(operation, world, GenerationMode.POSITIVE)
        | _cases(operation, world, GenerationMode.NEGATIVE)
    )
    def answers_as_documented(case):
        case.call_and_validate(headers=headers, checks=CHECKS)

    answers_as_documented()


WRITES = [(m, p) for m, p in OPERATIONS if m not in SAFE_METHODS and p.startswith("/api/v1/")]


@pytest.mark.parametrize(("method", "path"), WRITES, ids=[f"{m} {p}" for m, p in WRITES])
def test_a_read_only_token_cannot_write(method, path, served_schema, world, wsgi_app, enterprise):
    schema = schemathesis.openapi.from_dict(served_schema)
    schema.app = wsgi_app
    operation = schema[path][method]
    headers = {"Authorization": f"Bearer {world['reader_token']}"}
    events_before = AuditEvent.objects.for_enterprise(enterprise).count()

    @settings(
        max_examples=3,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_cases(operation, world, GenerationMode.POSITIVE))
    def refused(case):
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        assert response.status_code == 403, f"{method} {path} answered {response.status_code}"

    refused()
    assert AuditEvent.objects.for_enterprise(enterprise).count() == events_before


def test_a_read_only_token_cannot_resend_invitations_or_change_device_settings(
    world, enterprise, wsgi_app
):
    """Found by the run above: the helpdesk role may resend invitations and every role
    may reach a device's settings, so a read-only token got past the permission check."""
    from django.test import Client

    invited = UserFactory(enterprise=enterprise, status="invited", full_name="Ivy Invited")
    reader = Client(HTTP_AUTHORIZATION=f"Bearer {world['reader_token']}")
    registration = world["ids"]["registrations"][0]
    events_before = AuditEvent.objects.for_enterprise(enterprise).count()
    assert reader.post(f"/api/v1/users/{invited.pk}/resend-invitation/").status_code == 403
    response = reader.patch(
        f"/api/v1/registrations/{registration}/settings/",
        '{"do_not_disturb": true}',
        content_type="application/json",
    )
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert AuditEvent.objects.for_enterprise(enterprise).count() == events_before


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/identities/2.5e-262/",
        "/api/v1/users/1.5/suspend/",
        "/api/v1/users",
        "/api/v1/no-such-resource/",
        "/api/v1/users/1/no-such-action/",
    ],
)
def test_any_other_path_under_the_api_answers_the_apis_404(api, path):
    """Found by a longer schemathesis run: an id that is not a number missed the router
    and got the HTML page."""
    for response in (api.get(path), api.post(path, {}, format="json")):
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json()["code"] == "not_found"
