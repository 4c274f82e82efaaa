"""Hostile input at every machine-facing endpoint gets a clean 4xx with the endpoint's own
error body, never a 5xx, and never costs unbounded memory or time.

What the endpoints' own test files already cover is not repeated here: reginfo entity
expansion, external entities and oversized documents (telephony/tests/test_network.py),
SCIM deep nesting, huge numbers and oversized bodies (scim/tests/test_scim.py),
PASSporT decoding (telephony/tests/test_stir_core.py: alg none, HS256, bad base64,
duplicate keys, deep nesting, oversized tokens), CSV encodings, NUL bytes and BOMs
(telephony/tests/test_bulk.py). This file adds the same attacks where they were missing:
every JSON endpoint of the REST API, the network API and the OpenID provider, XML beyond
entities, JWTs through the HTTP endpoint with any outbound connection forbidden, and the
CSV upload's header and cells.
"""

import base64
import hashlib
import hmac
import json
import socket
import time

import pytest
from cryptography.hazmat.primitives import serialization
from django.test import Client
from django.urls import reverse

from accounts.audit import Actor
from accounts.models import AuditEvent, Role
from accounts.services import network_client_create
from accounts.tests.factories import api_token
from kernel.api import parsers as strict_json
from telephony.callauth import credentials
from telephony.callauth.stir import passport
from telephony.identities import sync
from telephony.models import CallRecord, ImportJob, Registration
from telephony.tests.factories import give_numbers, make_identity

pytestmark = pytest.mark.django_db

MiB = 1024 * 1024
DEEP_JSON = b"[" * 200_000 + b"]" * 200_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000


@pytest.fixture
def api_client(enterprise):
    _, raw = api_token(enterprise, role=Role.ADMIN)
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


@pytest.fixture
def network(enterprise):
    _, raw = network_client_create(actor=Actor.system(), name="S-CSCF", enterprises=[enterprise])
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


@pytest.fixture
def rob(enterprise, employee):
    credentials.lab_pki_create(actor=Actor.system(), operator_name="iCA", spc="1234")
    give_numbers(enterprise)
    credentials.delegate_certificate_issue(actor=Actor.system(), enterprise=enterprise)
    identity = make_identity(employee)
    sync.push_identity(identity.pk)
    return identity


@pytest.fixture
def no_outbound_connections(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"an outbound connection was attempted: {args!r}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def assert_api_error(response, status=None):
    """The REST API's one error body."""
    assert response.status_code < 500, response.content[:300]
    assert 400 <= response.status_code < 500, response.content[:300]
    if status is not None:
        assert response.status_code == status, response.content[:300]
    body = response.json()
    assert set(body) >= {"status", "code", "detail"}, body
    assert body["status"] == response.status_code
    return body


# --- JSON at the REST API and the network API -------------------------------------------

HOSTILE_JSON = [
    pytest.param(DEEP_JSON, id="deeply nested arrays"),
    pytest.param(DEEP_OBJECT, id="deeply nested objects"),
    pytest.param(b'{"email": "a@swift.example", "email": "b@swift.example"}', id="duplicate keys"),
    pytest.param(b'{"full_name": "\xff\xfe\x00x"}', id="not UTF-8"),
    pytest.param('{"full_name": "Ünïcode"}'.encode("utf-16"), id="UTF-16"),
    pytest.param(b'{"full_name": NaN}', id="NaN"),
    pytest.param(b'{"n": 1e999999}', id="a number beyond float"),
    # PostgreSQL holds NUL in neither text nor jsonb: refused at the door, at any depth.
    pytest.param(b'{"full_name": "Rob\\u0000"}', id="a NUL in a string"),
    pytest.param(b'{"x": [{"y": ["\\u0000"]}]}', id="a NUL deep in arrays"),
    pytest.param(b'{"\\u0000": 1}', id="a NUL in a key"),
    pytest.param(b'{"n": ' + b"9" * 5000 + b"}", id="an integer of 5000 digits"),
    pytest.param(b'{"full_name": "' + b"x" * (3 * MiB) + b'"}', id="a 3 MiB string"),
    pytest.param(b"[]", id="an array"),
    pytest.param(b"null", id="null"),
    pytest.param(b'"text"', id="a string"),
    pytest.param(b"", id="empty"),
    pytest.param(b"{", id="truncated"),
]


@pytest.mark.parametrize("body", HOSTILE_JSON)
@pytest.mark.parametrize(
    "path",
    ["/api/v1/users/", "/api/v1/onboarding/", "/api/v1/identities/", "/api/v1/grants/"],
)
def test_hostile_json_at_the_rest_api_is_a_clean_4xx(api_client, enterprise, path, body):
    before = AuditEvent.objects.count()
    response = api_client.post(path, body, content_type="application/json")
    assert_api_error(response)
    assert AuditEvent.objects.count() == before


WRONG_TYPES = [
    ("/api/v1/users/", {"email": ["a@swift.example"], "full_name": {"x": 1}}),
    ("/api/v1/users/", {"email": "a@swift.example", "full_name": "A", "role": ["admin"]}),
    ("/api/v1/users/", {"email": "a@swift.example", "full_name": "x" * 100_000}),
    ("/api/v1/users/", {"email": "a@swift.example", "full_name": "A\x00B"}),
    ("/api/v1/onboarding/", {"email": "a@swift.example", "full_name": "A", "services": "voice"}),
    ("/api/v1/onboarding/", {"email": "a@swift.example", "full_name": "A", "services": [{"x": 1}]}),
    (
        "/api/v1/onboarding/",
        {
            "email": "a@swift.example",
            "full_name": "A",
            "services": ["voice"],
            "send_invitation": "perhaps",
        },
    ),
    (
        "/api/v1/onboarding/",
        {
            "email": "a@swift.example",
            "full_name": "A",
            "services": ["voice"],
            "tn": "+" + "9" * 10_000,
        },
    ),
    ("/api/v1/identities/", {"owner": 2**70, "services": ["voice"]}),
    ("/api/v1/identities/", {"owner": -(2**70), "services": ["voice"]}),
    ("/api/v1/identities/", {"owner": 1.5, "services": ["voice"]}),
    ("/api/v1/identities/", {"owner": True, "services": ["voice"]}),
    ("/api/v1/grants/", {"identity": 2**63, "grantee": 2**63}),
    ("/api/v1/offboarding/", {"user": 2**64}),
    ("/api/v1/offboarding/", {"user": "1; DROP TABLE accounts_user"}),
    ("/api/v1/registrations/sign-out-all/", {"user": -(2**63) - 1}),
]


@pytest.mark.parametrize(("path", "body"), WRONG_TYPES)
def test_wrong_types_and_out_of_range_ids_are_a_clean_4xx(api_client, path, body):
    assert_api_error(api_client.post(path, json.dumps(body), content_type="application/json"))


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/users/99999999999999999999999/",
        "/api/v1/identities/-99999999999999999999/suspend/",
        "/api/v1/registrations/?user=99999999999999999999999",
        "/api/v1/call-records/?identity=99999999999999999999999",
        "/api/v1/audit/?since=99999-99-99",
        "/api/v1/users/?page=99999999999999999999999",
        "/api/v1/users/?page_size=99999999999999999999999",
        "/api/v1/users/?q=" + "%00" * 10,
    ],
)
def test_out_of_range_ids_in_paths_and_queries_are_a_clean_4xx_or_empty(api_client, path):
    method = api_client.post if path.endswith("suspend/") else api_client.get
    response = method(path)
    assert response.status_code < 500, response.content[:300]
    if response.status_code >= 400:
        assert_api_error(response)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "multipart/form-data; boundary=x", "application/json-seq"],
)
def test_the_rest_api_refuses_other_content_types(api_client, content_type):
    body = b'{"email": "a@swift.example", "full_name": "A"}'
    assert_api_error(api_client.post("/api/v1/users/", body, content_type=content_type), 415)


def test_an_oversized_api_body_is_refused_before_it_is_read_whole(api_client):
    body = b'{"full_name": "' + b"x" * (8 * MiB) + b'"}'
    body_error = assert_api_error(
        api_client.post("/api/v1/users/", body, content_type="application/json"), 413
    )
    assert "too large" in body_error["detail"]


NETWORK_JSON_PATHS = [
    "/network/v1/registrations",
    "/network/v1/stir/signing",
    "/network/v1/stir/verification",
]


@pytest.mark.parametrize("body", HOSTILE_JSON)
@pytest.mark.parametrize("path", NETWORK_JSON_PATHS)
def test_hostile_json_at_the_network_api_is_a_clean_4xx(network, path, body):
    response = network.post(path, body, content_type="application/json")
    assert 400 <= response.status_code < 500, response.content[:300]
    answer = response.json()
    if path.startswith("/network/v1/stir/"):
        assert "requestError" in answer or answer["status"] == response.status_code
    else:
        assert answer["status"] == response.status_code
    assert not Registration.objects.exists()


@pytest.mark.parametrize("field", ["origid", "origImpu"])
def test_a_nul_in_a_signing_request_is_refused_and_records_nothing(network, rob, field):
    """Otherwise valid: answered with a signature before, and its call record then failed
    the record writer's every batch (PostgreSQL holds no NUL in text)."""
    body = {"signingRequest": {"orig": {"tn": rob.tn[1:]}, "dest": {"tn": ["4940123499"]},
                               "iat": int(time.time()), field: "sip:rob\u0000@swift.example"}}  # fmt: skip
    response = network.post(
        "/network/v1/stir/signing", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 400, response.content[:300]
    assert response.json()["requestError"]["serviceException"]["messageId"] == "SVC4000"
    assert not CallRecord.objects.exists()


def test_an_escaped_backslash_before_u0000_is_text_not_a_nul():
    assert strict_json.loads(b'{"a": ["\\\\u0000"]}') == {"a": ["\\u0000"]}


@pytest.mark.parametrize(
    "request_body",
    [
        {"signingRequest": {"orig": {"tn": "4930123400"}, "dest": {"tn": ["4940123499"]}, "iat": 10**400}},
        {"signingRequest": {"orig": {"tn": "4930123400"}, "dest": {"tn": ["4940123499"]}, "iat": -(10**30)}},
        {"signingRequest": {"orig": {"tn": "4930123400"}, "dest": {"tn": ["4940123499"]}, "iat": 1, "origid": "x" * 100_000}},
        {"signingRequest": {"orig": {"tn": "9" * 10_000}, "dest": {"tn": ["4940123499"]}, "iat": 1}},
        {"signingRequest": {"orig": {"tn": "4930123400"}, "dest": {"tn": ["4940123499"] * 51}, "iat": 1}},
        {"signingRequest": {"orig": {"tn": "4930123400"}, "dest": {"tn": [None]}, "iat": 1}},
        {"signingRequest": {"orig": {"tn": "4930123400"}, "dest": {"tn": ["4940123499"]}, "iat": 1, "attest": "Z"}},
        {"signingRequest": {"orig": {"tn": "4930123400"}, "dest": {"tn": ["4940123499"]}, "iat": 1, "origImpu": ["x"]}},
        {"verificationRequest": {"from": {"tn": "4930123400"}, "to": {"tn": ["4940123499"]}, "time": 10**400, "identity": "x"}},
        {"verificationRequest": {"from": {"tn": "4930123400"}, "to": {"tn": ["4940123499"]}, "time": -(10**30), "identity": "x"}},
        {"verificationRequest": {"from": {"tn": "4930123400"}, "to": {"tn": ["4940123499"]}, "identity": "x" * 400_000}},
        {"verificationRequest": {"from": {"tn": "4930123400"}, "to": {"tn": ["4940123499"]}, "identity": ",".join(["a.b.c"] * 10_000)}},
    ],
)  # fmt: skip
def test_out_of_range_stir_requests_are_request_errors_or_failed_verifications(
    network, rob, request_body
):
    path = (
        "/network/v1/stir/signing"
        if "signingRequest" in request_body
        else "/network/v1/stir/verification"
    )
    response = network.post(path, json.dumps(request_body), content_type="application/json")
    assert response.status_code < 500, response.content[:300]
    answer = response.json()
    if response.status_code >= 400:
        assert answer["requestError"]["serviceException"]["messageId"].startswith("SVC")
    else:
        assert answer["verificationResponse"]["verstat"] != "TN-Validation-Passed"


# --- PASSporTs through the verification endpoint ------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256(signing_input: str, key: bytes) -> str:
    digest = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(digest)


def _header_value(token: str, x5u: str) -> str:
    return f"{token};info=<{x5u}>;alg=ES256;ppt=shaken"


def _claims(rob) -> dict:
    return {"attest": "A", "dest": {"tn": ["4940123499"]}, "iat": int(time.time()),
            "orig": {"tn": rob.tn[1:]}, "origid": "o"}  # fmt: skip


def _public_pem(rob) -> bytes:
    credential = rob.enterprise.signing_credentials.filter(kind="delegate").first()
    return (
        credentials.unseal(credential)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _hostile_tokens(rob, x5u):
    header = {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": x5u}
    claims = _claims(rob)
    body = _b64(json.dumps(claims).encode())
    return {
        "alg none": _b64(json.dumps({**header, "alg": "none"}).encode()) + "." + body + ".",
        # Key confusion: an HMAC keyed with the (public) verification key.
        "HS256 keyed with the public key": _hs256(
            _b64(json.dumps({**header, "alg": "HS256"}).encode()) + "." + body, _public_pem(rob)
        ),
        "an oversized header": _b64(json.dumps({**header, "pad": "x" * 6000}).encode())
        + "."
        + body
        + "."
        + _b64(b"s" * 64),
        "bad base64": "eyJ!!!." + body + ".AAAA",
        "a header that is not JSON": _b64(b"\xff\xfe{") + "." + body + "." + _b64(b"s" * 64),
        "deeply nested header": _b64(b"[" * 5000 + b"]" * 5000) + "." + body + "." + _b64(b"s"),
    }


@pytest.mark.parametrize(
    "x5u",
    [
        "https://attacker.example/cert.pem",
        "http://127.0.0.1:1/cert.pem",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
    ],
)
def test_hostile_passports_fail_verification_and_x5u_is_never_fetched(
    network, rob, x5u, no_outbound_connections
):
    for name, token in _hostile_tokens(rob, x5u).items():
        request_body = {"verificationRequest": {
            "from": {"tn": rob.tn[1:]}, "to": {"tn": ["4940123499"]},
            "time": int(time.time()), "identity": _header_value(token, x5u)}}  # fmt: skip
        response = network.post(
            "/network/v1/stir/verification",
            json.dumps(request_body),
            content_type="application/json",
        )
        assert response.status_code == 200, (name, response.content[:300])
        answer = response.json()["verificationResponse"]
        assert answer["verstat"] == "TN-Validation-Failed", (name, answer)
        assert answer["reasonCode"] in (436, 437, 438), (name, answer)
    assert no_outbound_connections == []


@pytest.mark.parametrize(
    "x5u", ["https://attacker.example/cert.pem", "https://169.254.169.254/latest/meta-data/"]
)
def test_a_genuine_passport_naming_an_unresolvable_or_private_x5u_never_connects(
    network, rob, x5u, no_outbound_connections
):
    # Other carriers' x5u are fetched (telephony/callauth/stir/fetch.py), but only from public
    # addresses: a name that does not resolve or an internal address ends before connecting.
    credential = rob.enterprise.signing_credentials.filter(kind="delegate").first()
    token = passport.shaken_passport(
        orig_tn=rob.tn[1:], dest_tns=["4940123499"], attest="A", origid="o",
        iat=int(time.time()), x5u=x5u, private_key=credentials.unseal(credential),
    )  # fmt: skip
    request_body = {"verificationRequest": {"from": {"tn": rob.tn[1:]}, "to": {"tn": ["4940123499"]},
                                            "identity": passport.identity_header(token, x5u=x5u, ppt="shaken")}}  # fmt: skip
    response = network.post(
        "/network/v1/stir/verification", json.dumps(request_body), content_type="application/json"
    )
    answer = response.json()["verificationResponse"]
    assert (answer["verstat"], answer["reasonCode"]) == ("TN-Validation-Failed", 436)
    assert no_outbound_connections == []


# --- XML at /network/v1/reginfo -------------------------------------------------------------

NS = b'xmlns="urn:ietf:params:xml:ns:reginfo"'
HOSTILE_XML = [
    pytest.param(
        b'<?xml version="1.0"?><!DOCTYPE reginfo SYSTEM "http://127.0.0.1:1/reginfo.dtd">'
        b"<reginfo " + NS + b' version="1" state="full"/>',
        id="external DTD",
    ),
    pytest.param(
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x">%p;]>'
        b"<reginfo " + NS + b' version="1" state="full"/>',
        id="parameter entity",
    ),
    pytest.param(
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "' + b"x" * 50_000 + b'">]>'
        b"<reginfo " + NS + b' version="1" state="full">' + b"&a;" * 5 + b"</reginfo>",
        id="quadratic blow-up",
    ),
    pytest.param(
        b"<reginfo " + NS + b' version="1" state="full" xmlns:xi="http://www.w3.org/2001/XInclude">'
        b'<xi:include href="file:///etc/passwd" parse="text"/></reginfo>',
        id="XInclude",
    ),
    pytest.param(
        b"<reginfo "
        + NS
        + b' version="1" state="full">'
        + b"<a>" * 50_000
        + b"</a>" * 50_000
        + b"</reginfo>",
        id="deeply nested elements",
    ),
    pytest.param(
        b"<reginfo "
        + NS
        + b' xmlns:x="urn:example:other" version="1" state="full">'
        + b"<x:a>" * 40_000
        + b"</x:a>" * 40_000
        + b"</reginfo>",
        id="deeply nested extension elements",
    ),
    pytest.param(
        b'<reginfo xmlns="urn:example:not-reginfo" version="1" state="full"/>',
        id="wrong namespace",
    ),
    pytest.param(
        b'<r:reginfo xmlns:r="urn:ietf:params:xml:ns:reginfo" version="1" state="full">'
        b'<registration aor="tel:+4930123400" id="a" state="active"/></r:reginfo>',
        id="children outside the namespace",
    ),
    pytest.param(
        b'<?xml version="1.0" encoding="ISO-8859-1"?><reginfo '
        + NS
        + b' version="1" state="full"/>',
        id="another encoding declared",
    ),
    pytest.param(
        '<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="full"/>'.encode(
            "utf-16"
        ),
        id="UTF-16",
    ),
    pytest.param(b"\xff\xfe\x00<reginfo", id="not UTF-8"),
    pytest.param(
        b"<reginfo "
        + NS
        + b' version="1" state="full" '
        + b" ".join(b'a%d="x"' % i for i in range(20_000))
        + b"/>",
        id="twenty thousand attributes",
    ),
    pytest.param(
        b"<?xml-stylesheet href='http://127.0.0.1:1/x.xsl'?><reginfo "
        + NS
        + b' version="1" state="full"/>',
        id="a processing instruction",
    ),
    pytest.param(b"", id="empty"),
]


@pytest.mark.parametrize("body", HOSTILE_XML)
def test_hostile_xml_is_a_clean_4xx_and_nothing_is_fetched(
    network, rob, body, no_outbound_connections
):
    response = network.post("/network/v1/reginfo", body, content_type="application/reginfo+xml")
    assert response.status_code in (200, 400), response.content[:300]
    if response.status_code == 400:
        assert response.json()["status"] == 400
    else:
        # A harmless document that names nobody: nothing is applied.
        assert response.json()["applied"] == 0
    assert not Registration.objects.exists()
    assert no_outbound_connections == []


# --- The OpenID provider's machine endpoints ------------------------------------------------


@pytest.mark.parametrize(
    ("path", "credential"),
    [("oauth2_provider:token", None), ("oauth2_provider:revoke-token", None),
     ("oauth2_provider:introspect", "network")],
)  # fmt: skip
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (DEEP_JSON, "application/json"),
        (b'{"token": ' + b"9" * 5000 + b"}", "application/json"),
        (
            b"grant_type=authorization_code&code=" + b"x" * (3 * MiB),
            "application/x-www-form-urlencoded",
        ),
        (
            b"grant_type=authorization_code&code=\xff\xfe&client_id=\x00",
            "application/x-www-form-urlencoded",
        ),
        (
            b"token=" + b"%00" * 1000 + b"&token_type_hint=access_token",
            "application/x-www-form-urlencoded",
        ),
        (b"&".join(b"a%d=b" % i for i in range(50_000)), "application/x-www-form-urlencoded"),
        (b"<x/>", "application/xml"),
        (b"", "application/x-www-form-urlencoded"),
    ],
)
def test_hostile_bodies_at_the_openid_provider_are_a_clean_4xx(
    network, path, credential, body, content_type
):
    http = network if credential else Client()
    response = http.post(reverse(path), body, content_type=content_type)
    assert response.status_code < 500, response.content[:300]
    if path == "oauth2_provider:introspect" and response.status_code == 200:
        assert response.json() == {"active": False}
    else:
        assert 400 <= response.status_code < 500, response.content[:300]


@pytest.mark.parametrize(
    "token",
    [
        "x" * 100_000,
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",
        "\x00\x01",
        "a.b.c.d.e",
    ],
)
def test_hostile_tokens_at_userinfo_and_introspection_are_refused(network, token):
    assert Client(HTTP_AUTHORIZATION=f"Bearer {token}").get(
        reverse("oauth2_provider:user-info")
    ).status_code in (400, 401, 403)
    from urllib.parse import urlencode

    response = network.post(
        reverse("oauth2_provider:introspect"),
        urlencode({"token": token}),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.json() == {"active": False}


# --- SCIM: what its own tests leave out ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "\xff"}', "application/scim+json"),
        ('{"userName": "ü"}'.encode("utf-16"), "application/scim+json"),
        (b'{"userName": "a@swift.example"}', "text/plain"),
        (b"<User/>", "application/xml"),
        (DEEP_OBJECT, "application/scim+json"),
    ],
)  # fmt: skip
def test_hostile_scim_bodies_are_scim_errors(enterprise, admin, body, content_type):
    from accounts import services as account_services

    _, raw = account_services.api_token_create(
        actor=Actor.system(), enterprise=enterprise, name="IdP", role=Role.ADMIN, purpose="scim"
    )
    http = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = http.post("/scim/v2/Users", body, content_type=content_type)
    assert 400 <= response.status_code < 500, response.content[:300]
    assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


# --- CSV import -----------------------------------------------------------------------------


def _upload(admin_client, content: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return admin_client.post(
        reverse("telephony:import"),
        {"file": SimpleUploadedFile("people.csv", content, content_type="text/csv")},
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            b"email,full_name," + b",".join(b"c%d" % i for i in range(400_000)) + b"\n",
            "more than 100 columns",
            id="400,000 columns",
        ),
        pytest.param(
            b"email,full_name," + b"email," * 700_000 + b"\n",
            "more than 100 columns",
            id="a million repeated columns",
        ),
        pytest.param(
            b'email,full_name\na@swift.example,"' + b"x" * (1024 * 1024) + b'"\n',
            "not valid CSV",
            id="a 1 MiB field",
        ),
        pytest.param(b"email,full_name\r\na@swift.example,A\x00B\r\n", "binary", id="a NUL byte"),
    ],
)
def test_hostile_csv_uploads_are_refused_with_a_reason_quickly(
    admin_client, enterprise, content, message
):
    response = _upload(admin_client, content)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ImportJob.objects.exists()


def test_a_row_of_two_million_cells_is_one_row_problem(admin_client, enterprise):
    give_numbers(enterprise)
    content = b"email,full_name\n" + b"a@swift.example,A," + b"x," * 2_000_000 + b"\n"
    response = _upload(admin_client, content)
    assert response.status_code == 302
    [problem] = ImportJob.objects.get().problems
    assert "2000003 cells but the header names 2 columns" in problem["message"]
