"""Call authentication: the attestation decision, signing and verification through the
network API, certificates, and what the pages show."""

import time

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import AuditEvent
from accounts.services import network_client_create
from accounts.tests.factories import StaffFactory, UserFactory
from kernel.errors import RuleViolation
from portal.testing import sign_in_verified
from telephony.callauth import credentials, retention, verification
from telephony.callauth.stir import certificates, passport
from telephony.callauth.stir.attestation import CallFacts, apply_ceiling, attestation_for_call
from telephony.identities import services, sync
from telephony.models import CallerName, CallRecord, IdentitySync, SigningCredential
from telephony.tests.factories import give_numbers, make_identity

pytestmark = pytest.mark.django_db

FACTS = {
    "caller_known": True,
    "caller_detail": "",
    "number_in_blocks": True,
    "number_identity_active": True,
    "number_identity_synced": True,
    "caller_owns_number": True,
    "caller_has_grant": False,
}


@pytest.mark.parametrize(
    ("changes", "level", "reason"),
    [
        ({}, "A", "the caller is verified for the calling number"),
        ({"caller_owns_number": False, "caller_has_grant": True}, "A", "verified"),
        ({"caller_owns_number": False}, "B", "neither owns the number nor holds a grant"),
        ({"number_identity_synced": False}, "B", "has not reached the HSS"),
        ({"number_identity_active": False}, "B", "not assigned to an active identity"),
        ({"number_in_blocks": False, "number_identity_active": False, "number_identity_synced": False},
         "B", "not in any enterprise's number blocks"),
        ({"caller_known": False}, "C", "not authenticated"),
        ({"caller_known": False, "number_in_blocks": False}, "C", "not authenticated"),
    ],
)  # fmt: skip
def test_the_attestation_table(changes, level, reason):
    decision = attestation_for_call(CallFacts(**{**FACTS, **changes}))
    assert decision.level == level
    assert reason in decision.reason
    assert len(decision.checks) == 5


@pytest.mark.parametrize(
    ("decided", "ceiling", "result"),
    [("A", "B", "B"), ("B", "A", "B"), ("C", "A", "C"), ("A", None, "A")],
)
def test_a_requested_attestation_is_a_ceiling_never_a_way_up(decided, ceiling, result):
    assert apply_ceiling(decided, ceiling) == result


def sign(network, orig, dest="+4940123499", **extra):
    body = {"signingRequest": {"orig": {"tn": orig.lstrip("+")}, "dest": {"tn": [dest.lstrip("+")]},
                               "iat": int(time.time()), "origid": "a0b1c2d3", **extra}}  # fmt: skip
    return network.post(
        "/network/v1/stir/signing", body, content_type="application/json", HTTP_X_REQUESTID="req-1"
    )


def verify(network, identity, orig, dest="+4940123499", **extra):
    body = {"verificationRequest": {"from": {"tn": orig.lstrip("+")}, "to": {"tn": [dest.lstrip("+")]},
                                    "time": int(time.time()), "identity": identity, **extra}}  # fmt: skip
    return network.post("/network/v1/stir/verification", body, content_type="application/json")


def leaf_key(credential):
    return certificates.load_certificates(credential.certificate_pem.encode())[0].public_key()


def test_the_delegate_certificate_covers_exactly_the_enterprises_blocks(pki, enterprise):
    _, delegate = pki
    cert = x509.load_pem_x509_certificate(delegate.certificate_pem.encode())
    der = cert.extensions.get_extension_for_oid(certificates.TN_AUTH_LIST_OID).value.value
    assert certificates.decode_tn_auth_list(der).ranges == (("4930123400", 100),)
    assert delegate.private_key_encrypted and b"PRIVATE KEY" not in bytes(
        delegate.private_key_encrypted
    )


def test_rob_calls_with_attestation_a_and_the_vetted_business_name(network, rob, enterprise, pki):
    CallerName.objects.create(
        enterprise=enterprise, name="Swift Delivery", call_reason="Your parcel", vetting="vetted"
    )
    response = sign(network, rob.tn, attest="A")
    assert response.status_code == 200, response.content
    assert response["X-RequestID"] == "req-1"
    body = response.json()["signingResponse"]
    shaken_value, rcd_value = body["identities"]
    assert body["identity"] == shaken_value
    _, delegate = pki
    assert f";info=<{credentials.x5u(delegate)}>;alg=ES256;ppt=shaken" in shaken_value
    claims = jwt.decode(shaken_value.split(";")[0], leaf_key(delegate), algorithms=["ES256"])
    assert claims == {
        "attest": "A",
        "dest": {"tn": ["4940123499"]},
        "iat": claims["iat"],
        "orig": {"tn": rob.tn.lstrip("+")},
        "origid": "a0b1c2d3",
    }
    rcd = jwt.decode(rcd_value.split(";")[0], leaf_key(delegate), algorithms=["ES256"])
    assert rcd["rcd"]["nam"] == "Swift Delivery" and rcd["crn"] == "Your parcel"
    record = CallRecord.objects.get(direction="outgoing")
    assert (record.attestation, record.identity, record.caller_name) == ("A", rob, "Swift Delivery")

    verified = verify(network, ",".join(body["identities"]), rob.tn)
    assert verified.json()["verificationResponse"] == {
        "verstat": "TN-Validation-Passed",
        "attest": "A",
        "caller": {"name": "Swift Delivery", "logo": "", "reason": "Your parcel"},
    }


def test_an_unvetted_name_is_not_sent(network, rob, enterprise):
    CallerName.objects.create(enterprise=enterprise, name="Swift Delivery")
    body = sign(network, rob.tn).json()["signingResponse"]
    assert "identities" not in body


def test_a_number_outside_the_blocks_gets_c_with_the_reason(network, rob):
    body = sign(network, "+4989123456").json()["signingResponse"]
    claims = jwt.decode(body["identity"].split(";")[0], options={"verify_signature": False})
    assert claims["attest"] == "C"
    assert (
        CallRecord.objects.get().reason
        == "the caller is not authenticated as an identity of the portal"
    )


def test_an_employee_calling_with_a_colleagues_number_gets_b_until_granted(
    network, rob, enterprise
):
    colleague = make_identity(UserFactory(enterprise=enterprise))
    sync.push_identity(colleague.pk)
    impu = f"sip:{colleague.tn}@{enterprise.sip_domain};user=phone"
    body = sign(network, rob.tn, origImpu=impu).json()["signingResponse"]
    assert (
        jwt.decode(body["identity"].split(";")[0], options={"verify_signature": False})["attest"]
        == "B"
    )
    assert "neither owns the number nor holds a grant" in CallRecord.objects.latest("id").reason
    services.grant_create(actor=Actor(user=rob.owner), identity=rob, grantee=colleague.owner)
    body = sign(network, rob.tn, origImpu=impu).json()["signingResponse"]
    assert (
        jwt.decode(body["identity"].split(";")[0], options={"verify_signature": False})["attest"]
        == "A"
    )


def test_a_caller_of_another_enterprise_is_not_named_in_this_ones_call_record(
    network, rob, other_enterprise
):
    give_numbers(other_enterprise, "+4989700100", "+4989700199")
    stranger = make_identity(UserFactory(enterprise=other_enterprise, full_name="Zoe Secret"))
    impu = f"sip:{stranger.tn}@{other_enterprise.sip_domain};user=phone"
    assert sign(network, rob.tn, origImpu=impu).status_code == 200
    record = CallRecord.objects.get()
    assert record.enterprise == rob.enterprise and record.attestation == "B"
    assert "Zoe Secret" not in str(record.checks)
    assert f"{impu} belongs to another enterprise" in str(record.checks)


def test_an_identity_not_in_step_with_the_hss_gets_b(network, rob, admin):
    services.identity_update(actor=Actor(user=admin), identity=rob, display_name="Changed")
    assert IdentitySync.objects.get(pk=rob.pk).state == "pending"
    sign(network, rob.tn)
    assert CallRecord.objects.get().attestation == "B"


def test_the_requested_level_only_lowers_it(network, rob):
    sign(network, rob.tn, attest="C")
    assert CallRecord.objects.get().attestation == "C"


def _tamper(value: str, part: int, replacement: str) -> str:
    jws, rest = value.split(";", 1)
    parts = jws.split(".")
    parts[part] = replacement
    return ".".join(parts) + ";" + rest


@pytest.mark.parametrize(
    ("part", "replacement"),
    [
        (2, passport.b64url_encode(bytes(64))),  # another signature
        (1, passport.b64url_encode(b'{"attest":"A","dest":{"tn":["4940123499"]},"iat":1,"orig":{"tn":"4930123400"},"origid":"x"}')),
    ],
)  # fmt: skip
def test_a_tampered_token_fails_verification(network, rob, part, replacement):
    value = sign(network, rob.tn).json()["signingResponse"]["identity"]
    answer = verify(network, _tamper(value, part, replacement), rob.tn).json()[
        "verificationResponse"
    ]
    assert answer["verstat"] == "TN-Validation-Failed" and answer["reasonCode"] == 438


def test_a_stale_a_misdirected_and_a_foreign_token_fail(network, rob, pki):
    _, delegate = pki
    key = credentials.unseal(delegate)
    old = passport.shaken_passport(orig_tn=rob.tn[1:], dest_tns=["4940123499"], attest="A", origid="x",
                                   iat=int(time.time()) - 3600, x5u=credentials.x5u(delegate), private_key=key)  # fmt: skip
    stale = verify(
        network, passport.identity_header(old, x5u=credentials.x5u(delegate), ppt="shaken"), rob.tn
    )
    assert stale.json()["verificationResponse"]["reasonCode"] == 403

    value = sign(network, rob.tn).json()["signingResponse"]["identity"]
    wrong_tn = verify(network, value, "+4930123401").json()["verificationResponse"]
    assert wrong_tn["reasonCode"] == 438 and "calling number differs" in wrong_tn["reasonString"]

    other_key = certificates.generate_key()
    forged = passport.shaken_passport(orig_tn=rob.tn[1:], dest_tns=["4940123499"], attest="A", origid="x",
                                      iat=int(time.time()), x5u=credentials.x5u(delegate), private_key=other_key)  # fmt: skip
    wrong_key = verify(
        network,
        passport.identity_header(forged, x5u=credentials.x5u(delegate), ppt="shaken"),
        rob.tn,
    )
    assert wrong_key.json()["verificationResponse"]["reasonCode"] == 438

    elsewhere = passport.identity_header(forged, x5u="https://evil.example/cert.pem", ppt="shaken")
    assert verify(network, elsewhere, rob.tn).json()["verificationResponse"]["reasonCode"] == 436


def test_a_number_outside_the_delegate_certificate_is_not_covered(network, rob, pki):
    _, delegate = pki
    token = passport.shaken_passport(orig_tn="4989123456", dest_tns=["4940123499"], attest="A", origid="x",
                                     iat=int(time.time()), x5u=credentials.x5u(delegate), private_key=credentials.unseal(delegate))  # fmt: skip
    answer = verify(
        network,
        passport.identity_header(token, x5u=credentials.x5u(delegate), ppt="shaken"),
        "+4989123456",
    )
    assert answer.json()["verificationResponse"]["reasonCode"] == 437


def test_a_chain_to_no_trusted_anchor_fails(network, rob):
    value = sign(network, rob.tn).json()["signingResponse"]["identity"]
    SigningCredential.objects.filter(kind="anchor").update(active=False)
    answer = verify(network, value, rob.tn).json()["verificationResponse"]
    assert answer["reasonCode"] == 437 and answer["verstat"] == "TN-Validation-Failed"


def test_an_expired_certificate_fails(network, rob, pki, monkeypatch):
    _, delegate = pki
    later = timezone.now() + timezone.timedelta(days=400)  # the delegate lasts 90 days
    token = passport.shaken_passport(orig_tn=rob.tn[1:], dest_tns=["4940123499"], attest="A", origid="x",
                                     iat=int(later.timestamp()), x5u=credentials.x5u(delegate), private_key=credentials.unseal(delegate))  # fmt: skip
    monkeypatch.setattr(verification, "clock", lambda: later)
    answer = verify(network, passport.identity_header(token, x5u=credentials.x5u(delegate), ppt="shaken"), rob.tn,
                    time=int(later.timestamp())).json()["verificationResponse"]  # fmt: skip
    assert answer["reasonCode"] == 437 and "expired" in answer["reasonString"]


def test_a_token_made_by_another_implementation_verifies(network, rob, pki):
    _, delegate = pki
    pem = certificates.private_key_pem(credentials.unseal(delegate))
    token = jwt.encode(
        {"orig": {"tn": rob.tn[1:]}, "dest": {"tn": ["4940123499"]}, "iat": int(time.time()), "attest": "A", "origid": "o"},
        serialization.load_pem_private_key(pem, None),
        algorithm="ES256",
        headers={"ppt": "shaken", "typ": "passport", "x5u": credentials.x5u(delegate)},
    )  # fmt: skip
    value = passport.identity_header(token, x5u=credentials.x5u(delegate), ppt="shaken")
    assert (
        verify(network, value, rob.tn).json()["verificationResponse"]["verstat"]
        == "TN-Validation-Passed"
    )


def test_no_identity_header_is_no_validation(network, rob):
    answer = verify(network, "", rob.tn).json()["verificationResponse"]
    assert (answer["verstat"], answer["reasonCode"]) == ("No-TN-Validation", 428)


@pytest.mark.parametrize(
    ("body", "message_id", "variable"),
    [
        ("not json", "SVC4000", "signingRequest"),
        ({"signingRequest": {"dest": {"tn": ["1"]}, "iat": 1}}, "SVC4001", "orig"),
        ({"signingRequest": {"orig": {"tn": "4930123400"}, "dest": {"tn": "x"}, "iat": 1}}, "SVC4002", "dest.tn"),
        ({"signingRequest": {"orig": {"tn": "4930123400"}, "dest": {"tn": ["1"]}, "iat": "now"}}, "SVC4002", "iat"),
        ({"signingRequest": {"orig": {"tn": "4930123400"}, "dest": {"tn": ["4940123499"]}, "iat": 1, "attest": "Z"}}, "SVC4002", "attest"),
    ],
)  # fmt: skip
def test_bad_requests_get_atis_request_errors(network, rob, body, message_id, variable):
    response = network.post(
        "/network/v1/stir/signing",
        body,
        content_type="application/json",
    )
    assert response.status_code == 400
    error = response.json()["requestError"]["serviceException"]
    assert error["messageId"] == message_id and variable in error["variables"]
    assert response["X-RequestID"]
    assert not CallRecord.objects.exists()


def test_a_client_signs_only_for_enterprises_it_serves(rob, other_enterprise):
    _, raw = network_client_create(
        actor=Actor.system(), name="Other SBC", enterprises=[other_enterprise]
    )
    response = sign(Client(HTTP_AUTHORIZATION=f"Bearer {raw}"), rob.tn)
    assert response.status_code == 403
    assert response.json()["requestError"]["policyException"]["messageId"] == "POL4050"
    assert sign(Client(), rob.tn).status_code == 401


def test_the_certificate_repository_serves_the_chain(client, pki):
    _, delegate = pki
    response = client.get(reverse("telephony:certificate", args=[delegate.slug]))
    assert response["Content-Type"] == "application/x-pem-file"
    chain = certificates.load_certificates(response.content)
    assert len(chain) == 2  # the delegate and the operator's issuing CA, not the anchor


def test_pages_show_attestation_status_and_the_why_panel(
    admin_client, network, rob, employee, admin
):
    sign(network, rob.tn)
    devices_page = admin_client.get(reverse("telephony:devices")).content.decode()
    assert "last A" in devices_page and "100% A of 1 in 24 h" in devices_page
    calls_page = admin_client.get(reverse("telephony:calls")).content.decode()
    assert "100%" in calls_page and "<svg" in calls_page
    # The chart's figures as a table too: today's one call, attested A.
    today = timezone.localdate().strftime("%d.%m")
    assert f"<tr><td>{today}</td><td>1</td><td>0</td><td>0</td><td>1</td></tr>" in calls_page
    services.identity_suspend(actor=Actor(user=admin), identity=rob)
    panel = admin_client.get(reverse("telephony:identity_detail", args=[rob.pk])).content.decode()
    assert "Why calls are not shown as verified" in panel
    assert "not assigned to an active identity" in panel


def test_the_calls_page_without_calls_says_where_they_come_from(admin_client):
    page = admin_client.get(reverse("telephony:calls")).content.decode()
    assert "No calls yet. They show here as your people call" in page
    assert "Calls from this number" in page and reverse("telephony:identities") in page
    outgoing = admin_client.get(reverse("telephony:calls"), {"direction": "outgoing"})
    assert "No outgoing calls yet." in outgoing.content.decode()


def test_call_records_expire_after_the_retention_period(network, rob, settings):
    sign(network, rob.tn)
    CallRecord.objects.update(created_at=timezone.now() - timezone.timedelta(days=91))
    assert retention.purge_call_records() == 1


def test_the_call_records_api_and_summary(api, network, rob):
    sign(network, rob.tn)
    sign(network, "+4989123456")
    listed = api.get("/api/v1/call-records/?direction=outgoing").json()
    assert listed["count"] == 1  # the second call belongs to no enterprise
    assert listed["results"][0]["checks"][0] == [
        "Caller authenticated",
        True,
        "the network vouches for the number's own subscriber",
    ]
    summary = api.get("/api/v1/call-records/summary/").json()
    assert (summary["signed"], summary["a"], summary["a_share"]) == (1, 1, 100)
    assert len(summary["days"]) == 14 and summary["days"][-1]["A"] == 1


def _cert(credential):
    return certificates.load_certificates(credential.certificate_pem.encode())[0]


def test_a_call_signed_with_the_operators_end_entity_certificate_verifies(network, rob, pki):
    operator, _ = pki
    cert = _cert(operator)
    assert not certificates.is_ca(cert)
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert certificates.tn_auth_list_of(cert).spcs == ("1234",)
    assert operator.issuer.kind == SigningCredential.Kind.TRUST_ANCHOR
    # A number of no enterprise's blocks: no delegate covers it, the operator signs.
    value = sign(network, "+4989123456").json()["signingResponse"]["identity"]
    assert f";info=<{credentials.x5u(operator)}>" in value
    answer = verify(network, value, "+4989123456").json()["verificationResponse"]
    assert answer == {"verstat": "TN-Validation-Passed", "attest": "C"}


def test_a_delegate_certificate_chains_root_to_operator_ca_to_delegate(client, network, rob, pki):
    operator, delegate = pki
    issuing_ca = delegate.issuer
    assert issuing_ca.kind == SigningCredential.Kind.OPERATOR_CA
    assert certificates.is_ca(_cert(issuing_ca)) and issuing_ca.issuer == operator.issuer
    served = client.get(f"/certs/{delegate.slug}.pem").content
    assert certificates.load_certificates(served) == [_cert(delegate), _cert(issuing_ca)]
    chain = certificates.verify_chain(
        _cert(delegate),
        intermediates=[_cert(issuing_ca)],
        anchors=[_cert(operator.issuer)],
        at=timezone.now(),
    )
    assert chain == [_cert(delegate), _cert(issuing_ca), _cert(operator.issuer)]
    value = sign(network, rob.tn).json()["signingResponse"]["identity"]
    assert f";info=<{credentials.x5u(delegate)}>" in value
    answer = verify(network, value, rob.tn).json()["verificationResponse"]
    assert answer == {"verstat": "TN-Validation-Passed", "attest": "A"}


def test_a_key_for_a_certificate_of_another_algorithm_is_refused_at_import():
    # An Ed25519 trust anchor with a P-256 key: refused as not its key, not a crash on
    # comparing key numbers Ed25519 does not have.
    anchor_key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Ed25519 anchor")])
    now = timezone.now()
    anchor = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(anchor_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timezone.timedelta(days=1))
        .sign(anchor_key, None)
    )
    other_key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(RuleViolation, match="does not belong to the certificate"):
        credentials.credential_import(
            actor=Actor.system(),
            kind=SigningCredential.Kind.TRUST_ANCHOR,
            name="Ed25519 anchor",
            certificate_pem=anchor.public_bytes(serialization.Encoding.PEM).decode(),
            private_key_pem=certificates.private_key_pem(other_key).decode(),
        )
    assert not SigningCredential.objects.filter(name="Ed25519 anchor").exists()


def test_a_ca_is_refused_as_a_signing_credential_at_import(pki, enterprise):
    operator, delegate = pki
    Kind = SigningCredential.Kind

    def imported(credential, kind, **extra):
        return credentials.credential_import(
            actor=Actor.system(),
            kind=kind,
            name=f"Imported {kind}",
            certificate_pem=credential.certificate_pem,
            private_key_pem=certificates.private_key_pem(credentials.unseal(credential)).decode(),
            **extra,
        )

    for kind, extra in ((Kind.OPERATOR, {}), (Kind.DELEGATE, {"enterprise": enterprise})):
        with pytest.raises(RuleViolation, match=r"is a CA .* cannot be a signing certificate"):
            imported(delegate.issuer, kind, **extra)
    with pytest.raises(RuleViolation, match=r"is not a CA .* cannot issue"):
        imported(operator, Kind.OPERATOR_CA)
    before = SigningCredential.objects.count()
    assert imported(delegate.issuer, Kind.OPERATOR_CA).kind == Kind.OPERATOR_CA
    assert imported(operator, Kind.OPERATOR).kind == Kind.OPERATOR
    assert SigningCredential.objects.count() == before + 2


def test_the_operator_issuing_ca_shows_with_its_label_in_the_admin(pki):
    admin_site = sign_in_verified(Client(), StaffFactory())
    page = admin_site.get(reverse("admin:telephony_signingcredential_changelist"))
    assert "Operator issuing CA (for delegate certificates)" in page.content.decode()
    assert "Operator signing certificate (end entity)" in page.content.decode()
    _, delegate = pki
    refused = admin_site.post(
        reverse("admin:telephony_signingcredential_import"),
        {"kind": "operator", "name": "CA as signer", "certificate_pem": delegate.issuer.certificate_pem,
         "private_key_pem": certificates.private_key_pem(credentials.unseal(delegate.issuer)).decode()},
    )  # fmt: skip
    assert refused.status_code == 200
    assert "cannot be a signing certificate" in refused.content.decode()


def test_an_operator_signing_certificate_that_is_a_ca_signs_nothing_and_says_why(network, rob, pki):
    # A credential from before the operator had an issuing CA: its one certificate was a
    # CA, which every verifier refuses as a PASSporT's signer.
    Kind = SigningCredential.Kind
    SigningCredential.objects.filter(kind=Kind.OPERATOR).update(active=False)
    SigningCredential.objects.filter(kind=Kind.OPERATOR_CA).update(kind=Kind.OPERATOR)
    response = sign(network, "+4989123456")
    assert response.status_code == 500
    error = response.json()["requestError"]["serviceException"]
    assert error["messageId"] == "SVC4003"
    assert "the operator's signing certificate is a CA" in error["text"]
    # Rob's number is still covered by the enterprise's delegate certificate.
    assert sign(network, rob.tn).status_code == 200


def _self_signed(*, digital_signature=True, tn_auth_list=True):
    """An end-entity certificate and its key, short of the SHAKEN profile as asked."""
    key = certificates.generate_key()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Imported")])
    now = timezone.now()
    usage = dict.fromkeys(
        ["content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
         "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"], False,
    )  # fmt: skip
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timezone.timedelta(days=1))
        .add_extension(x509.KeyUsage(digital_signature=digital_signature, **usage), critical=True)
    )
    if tn_auth_list:
        der = certificates.encode_tn_auth_list(certificates.TnAuthList(spcs=("1234",)))
        builder = builder.add_extension(
            x509.UnrecognizedExtension(certificates.TN_AUTH_LIST_OID, der), critical=False
        )
    cert = builder.sign(key, hashes.SHA256())
    return certificates.pem(cert).decode(), certificates.private_key_pem(key).decode()


@pytest.mark.parametrize(
    ("shortfall", "refusal"),
    [
        ({"digital_signature": False}, "needs the digitalSignature key usage"),
        ({"tn_auth_list": False}, "carries a TNAuthList"),
    ],
)
def test_a_signing_certificate_short_of_the_shaken_profile_is_refused_at_import(shortfall, refusal):
    cert_pem, key_pem = _self_signed(**shortfall)
    with pytest.raises(RuleViolation, match=refusal):
        credentials.credential_import(
            actor=Actor.system(),
            kind=SigningCredential.Kind.OPERATOR,
            name="Imported",
            certificate_pem=cert_pem,
            private_key_pem=key_pem,
        )
    assert not SigningCredential.objects.exists()
    cert_pem, key_pem = _self_signed()
    credentials.credential_import(
        actor=Actor.system(),
        kind=SigningCredential.Kind.OPERATOR,
        name="Imported",
        certificate_pem=cert_pem,
        private_key_pem=key_pem,
    )
    assert SigningCredential.objects.count() == 1


def test_a_new_lab_pki_replaces_the_operators_credentials_with_audit_rows(pki):
    first, delegate = pki
    second = credentials.lab_pki_create(actor=Actor.system(), operator_name="iCA", spc="1234")
    Kind = SigningCredential.Kind
    current = SigningCredential.objects.filter(
        active=True, kind__in=[Kind.OPERATOR, Kind.OPERATOR_CA]
    )
    assert set(current) == {
        second,
        SigningCredential.objects.get(kind=Kind.OPERATOR_CA, active=True),
    }
    replaced = AuditEvent.objects.filter(action="signing_credential.replaced")
    assert sorted(int(e.target_id) for e in replaced) == sorted([first.pk, delegate.issuer_id])
    assert all(e.changes == {"active": [True, False]} for e in replaced)
