"""The STI-VS facing the whole network: hostile input never reaches a 5xx."""

import json
import time

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.audit import Actor
from telephony.callauth import credentials
from telephony.callauth.stir import passport
from telephony.identities import sync
from telephony.models import CallRecord, SigningCredential
from telephony.tests.factories import give_numbers, make_identity

pytestmark = pytest.mark.django_db

DEST = "4940123499"


def verify(network, identity, orig, **extra):
    body = {
        "verificationRequest": {
            "from": {"tn": orig.lstrip("+")},
            "to": {"tn": [DEST]},
            "time": int(time.time()),
            "identity": identity,
            **extra,
        }
    }
    return network.post("/network/v1/stir/verification", body, content_type="application/json")


def token(delegate, *, x5u=None, orig="4930123400", header=None, payload=None):
    """A PASSporT signed with the delegate's key; header and payload fields replaced."""
    url = x5u if x5u is not None else credentials.x5u(delegate)
    claims = {"attest": "A", "dest": {"tn": [DEST]}, "iat": int(time.time()),
              "orig": {"tn": orig}, "origid": "o", **(payload or {})}  # fmt: skip
    head = {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": url, **(header or {})}
    # Signed as ES256 whatever the header says, so that only the header is wrong.
    signed = passport.sign({**head, "alg": "ES256"}, claims, credentials.unseal(delegate))
    head_b64 = passport.b64url_encode(passport.canonical_json(head))
    return ".".join([head_b64, *signed.split(".")[1:]])


def identity(jws, x5u):
    return f"{jws};info=<{x5u}>;alg=ES256;ppt=shaken"


def anchor_url():
    anchor = SigningCredential.objects.get(kind=SigningCredential.Kind.TRUST_ANCHOR)
    return credentials.x5u(anchor)


def test_an_x5u_naming_a_trust_anchor_is_a_bad_identity_info_not_a_500(network, rob, pki):
    _, delegate = pki
    url = anchor_url()
    response = verify(network, identity(token(delegate, x5u=url), url), rob.tn)
    assert response.status_code == 200
    answer = response.json()["verificationResponse"]
    assert (answer["verstat"], answer["reasonCode"]) == ("TN-Validation-Failed", 436)
    assert CallRecord.objects.get().reason.startswith("Bad Identity Info")


def _hostile_identities(delegate):
    own = credentials.x5u(delegate)
    repository = own.rsplit("/", 1)[0]
    return [
        identity(token(delegate, x5u=anchor_url()), anchor_url()),
        identity(token(delegate, x5u=f"{repository}/.pem"), f"{repository}/.pem"),
        identity(token(delegate, x5u=f"{repository}/../admin.pem"), f"{repository}/../admin.pem"),
        identity(token(delegate, x5u=f"{repository}/{'x' * 5000}.pem"), f"{repository}/x.pem"),
        identity(token(delegate, x5u="file:///etc/passwd"), "file:///etc/passwd"),
        identity(token(delegate, x5u="gopher://127.0.0.1:6379/_"), "gopher://127.0.0.1:6379/_"),
        identity(token(delegate, x5u="https://127.0.0.1:1/c.pem"), "https://127.0.0.1:1/c.pem"),
        identity(token(delegate, x5u="https://[::1]:1/c.pem"), "https://[::1]:1/c.pem"),
        identity(token(delegate, x5u="https://169.254.169.254/"), "https://169.254.169.254/"),
        identity(token(delegate, x5u="https://user:pw@a.invalid/"), "https://user:pw@a.invalid/"),
        identity(token(delegate, x5u="https://a.invalid:99999/"), "https://a.invalid:99999/"),
        identity(token(delegate, x5u="https://[zz/"), "https://[zz/"),
        identity(token(delegate, x5u="https://\u00e9\u00e9.invalid/"), "https://xn--9caa.invalid/"),
        identity(token(delegate, x5u="https://"), "https://"),
        identity(token(delegate, x5u="x" * 3000), "x" * 3000),
        identity(token(delegate, header={"x5u": 7}), own),
        identity(token(delegate, header={"alg": "none"}), own),
        identity(token(delegate, header={"ppt": ["shaken"]}), own),
        identity(token(delegate, payload={"orig": {"uri": "sip:a@b"}}), own),
        identity(token(delegate, payload={"dest": {"uri": ["sip:a@b"]}}), own),
        identity(token(delegate, payload={"orig": {"tn": "+49 30 12-34"}}), own),
        identity(token(delegate, payload={"orig": {"tn": "\u0663\u0663"}}), own),
        identity(token(delegate, payload={"iat": 2**62}), own),
        identity(token(delegate, payload={"attest": "Z"}), own),
        f"{token(delegate)};info=<{own}>;ppt=rcd,{token(delegate)};info=<{own}>;ppt=rcd",
        f"{token(delegate)};info=<{own}>;ppt=shaken;ppt=rcd",
        f"{token(delegate)};info=<{own}",
        f"{token(delegate)};info={own}",
        "a.b.c;info=<x>;ppt=shaken",
        "...",
        ";" * 100,
        "\x00" * 10,
        "\ud800",
        "," * 20,
    ]


def test_no_hostile_identity_header_gets_a_5xx(network, rob, pki):
    _, delegate = pki
    for value in _hostile_identities(delegate):
        response = verify(network, value, rob.tn)
        assert response.status_code < 500, (value[:200], response.content[:300])
        if response.status_code == 200:
            answer = response.json()["verificationResponse"]
            assert answer["verstat"] != "TN-Validation-Passed", value[:200]


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[]",
        b'{"verificationRequest": []}',
        b'{"verificationRequest": {"from": {"tn": 1}, "to": {"tn": ["1"]}, "identity": ""}}',
        b'{"verificationRequest": {"from": {"tn": "1"}, "to": {"tn": [1]}, "identity": ""}}',
        b'{"verificationRequest": {"from": {"tn": "12345678"}, "to": {"tn": ["12345678"]}, '
        b'"identity": "x", "time": 1e400}}',
        b'{"verificationRequest": {"from": {"tn": "12345678"}, "to": {"tn": ["12345678"]}, '
        b'"identity": "x", "time": -1}}',
        b'{"verificationRequest": {"from": {"tn": "12345678"}, "to": {"tn": ["12345678"]}, '
        b'"identity": ["x"]}}',
        json.dumps(
            {
                "verificationRequest": {
                    "from": {"tn": "1" * 10_000},
                    "to": {"tn": ["1"]},
                    "identity": "x",
                }
            }
        ).encode(),
    ],
)
def test_no_hostile_request_body_gets_a_5xx(network, rob, body):
    response = network.post("/network/v1/stir/verification", body, content_type="application/json")
    assert 400 <= response.status_code < 500 or response.status_code == 200
    assert response.status_code != 200 or (
        response.json()["verificationResponse"]["verstat"] != "TN-Validation-Passed"
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=st.one_of(
        st.text(max_size=300),
        st.lists(
            st.sampled_from(["eyJ", "a", ".", ";", "info=", "<", ">", "ppt=shaken", ",", '"', " "]),
            max_size=40,
        ).map("".join),
    )
)
def test_no_identity_header_text_gets_a_5xx(network, rob, value):
    response = verify(network, value, rob.tn)
    assert response.status_code < 500
    if response.status_code == 200:
        assert response.json()["verificationResponse"]["verstat"] != "TN-Validation-Passed"


def test_our_certificates_carry_the_shaken_profile_and_the_configured_crl(
    settings, enterprise, network, employee
):
    settings.STIR_CRL_URL = "https://sti-pa.example/crl"
    settings.STIR_CRL_ISSUER = "CN=STI-PA CRL,O=Policy Administrator"
    operator = credentials.lab_pki_create(actor=Actor.system(), operator_name="iCA", spc="1234")
    give_numbers(enterprise)
    delegate = credentials.delegate_certificate_issue(actor=Actor.system(), enterprise=enterprise)
    for credential in (operator, delegate):
        cert = x509.load_pem_x509_certificate(credential.certificate_pem.encode())
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
        assert [p.policy_identifier.dotted_string for p in policies] == ["2.16.840.1.114569.1.1.1"]
        (point,) = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        assert point.full_name == [x509.UniformResourceIdentifier("https://sti-pa.example/crl")]
        assert point.crl_issuer == [
            x509.DirectoryName(x509.Name.from_rfc4514_string(settings.STIR_CRL_ISSUER))
        ]
    rob = make_identity(employee)
    sync.push_identity(rob.pk)
    answer = verify(
        network, identity(token(delegate, orig=rob.tn[1:]), credentials.x5u(delegate)), rob.tn
    )
    assert answer.json()["verificationResponse"]["verstat"] == "TN-Validation-Passed"
