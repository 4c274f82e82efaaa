import json
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ApiToken, Enterprise, User
from telephony.callauth import credentials
from telephony.callauth.stir import certificates
from telephony.models import Identity, SigningCredential

pytestmark = pytest.mark.django_db


def seed_json() -> dict:
    out = StringIO()
    call_command("seed_demo", "--json", stdout=out)
    return json.loads(out.getvalue())


def test_seed_demo_is_idempotent_and_prints_usable_credentials(settings, client):
    settings.DEBUG = True
    first = seed_json()
    counts = (User.objects.count(), Enterprise.objects.count(), ApiToken.objects.count())
    second = seed_json()
    assert first == second
    assert counts == (User.objects.count(), Enterprise.objects.count(), ApiToken.objects.count())

    by_email = {u["email"]: u for u in first["users"]}
    rob = by_email["rob.smith@swift-delivery.example"]
    assert rob["role"] == "employee" and rob["enterprise"] == "Swift Delivery"
    assert rob["otpauth"].startswith("otpauth://totp/")
    assert {u["role"] for u in first["users"]} == {"operator", "admin", "helpdesk", "employee"}
    response = client.post("/login/", {"username": rob["email"], "password": rob["password"]})
    assert response.status_code == 302 and response.url.startswith("/account/2fa/")

    assert first["network_token"].startswith("ntk_")
    assert first["scim_token"].startswith("stk_")
    assert first["oidc_client"]["client_id"] == "demo-softphone"
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {first['api_token']}")
    emails = {u["email"] for u in api.get("/api/v1/users/").json()["results"]}
    assert "rob.smith@swift-delivery.example" in emails


def test_seed_demo_refuses_to_run_in_production(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("seed_demo")
    assert not User.objects.exists()


def demo_calls_verify(network_token: str) -> None:
    """Rob's call (Swift Delivery's delegate certificate) and a call from a number of no
    enterprise (the operator's signing certificate), signed and then verified."""
    network = Client(HTTP_AUTHORIZATION=f"Bearer {network_token}")
    rob = Identity.objects.live().get(owner__email="rob.smith@swift-delivery.example")
    Kind = SigningCredential.Kind
    for orig, kind in ((rob.tn, Kind.DELEGATE), ("+4989123456", Kind.OPERATOR)):
        now = int(time.time())
        signing = {"orig": {"tn": orig[1:]}, "dest": {"tn": ["4940123499"]}, "iat": now}
        signed = network.post(
            "/network/v1/stir/signing", {"signingRequest": signing}, content_type="application/json"
        ).json()["signingResponse"]
        signer = SigningCredential.objects.get(kind=kind, active=True)
        assert f";info=<{credentials.x5u(signer)}>" in signed["identity"]
        verification = {"from": {"tn": orig[1:]}, "to": {"tn": ["4940123499"]}, "time": now,
                        "identity": ",".join(signed.get("identities", [signed["identity"]]))}  # fmt: skip
        answer = network.post(
            "/network/v1/stir/verification",
            {"verificationRequest": verification},
            content_type="application/json",
        ).json()["verificationResponse"]
        assert answer["verstat"] == "TN-Validation-Passed", answer


def current_signing_certificate():
    signing = SigningCredential.objects.get(kind=SigningCredential.Kind.OPERATOR, active=True)
    return certificates.load_certificates(signing.certificate_pem.encode())[0]


def test_seed_demo_calls_verify(settings):
    settings.DEBUG = True
    demo = seed_json()
    assert not certificates.is_ca(current_signing_certificate())
    demo_calls_verify(demo["network_token"])


def test_seed_demo_gives_a_database_whose_operator_signs_with_a_ca_a_proper_pki(settings):
    settings.DEBUG = True
    demo = seed_json()
    # The lab PKI as it was before the operator had an issuing CA: its one certificate,
    # a CA, both issued Swift Delivery's delegate certificate and signed calls.
    Kind = SigningCredential.Kind
    SigningCredential.objects.filter(kind=Kind.OPERATOR).delete()
    SigningCredential.objects.filter(kind=Kind.OPERATOR_CA).update(kind=Kind.OPERATOR)
    assert certificates.is_ca(current_signing_certificate())
    old = set(SigningCredential.objects.filter(active=True).exclude(kind=Kind.TRUST_ANCHOR))

    assert seed_json() == demo
    assert not certificates.is_ca(current_signing_certificate())
    assert not old & set(SigningCredential.objects.filter(active=True))
    delegate = SigningCredential.objects.get(kind=Kind.DELEGATE, active=True)
    assert delegate.issuer.kind == Kind.OPERATOR_CA and delegate.issuer.active
    demo_calls_verify(demo["network_token"])
    credentials = SigningCredential.objects.count()
    seed_json()
    assert SigningCredential.objects.count() == credentials
