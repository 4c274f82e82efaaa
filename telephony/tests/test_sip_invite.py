"""INVITEs handed over by the SIP edge: the parser (which side of the call, the numbers,
hostile messages refused with a reason) and `POST /network/v1/sip/invite` (signing,
verification, verstat, the failure policy) through the network API."""

import contextlib

import jwt
import pytest
from django.test import Client
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.audit import Actor
from accounts.services import network_client_create
from telephony.callauth.stir import passport
from telephony.models import CallerName, CallRecord
from telephony.registrations.sipmessage import (
    Invite,
    NameAddress,
    SipMessageError,
    parse_invite,
)
from telephony.tests.sip_messages import CALLEE, invite, sip

ROB = "+4930123400"
ROB_AOR = f"sip:{ROB}@swift.example;user=phone"


# --- The parser ---------------------------------------------------------------------------


def test_an_invite_from_an_sbc_without_identity_is_originating():
    assert parse_invite(invite()) == Invite(
        originating=True,
        served_user="",
        calling=ROB,
        called=CALLEE,
        identity="",
        asserted=(NameAddress(display="", uri=ROB_AOR),),
        sender=NameAddress(display="Rob Smith", uri=ROB_AOR),
    )


def test_an_invite_with_identity_from_an_sbc_is_terminating():
    parsed = parse_invite(invite(identity=("abc.def.ghi;info=<https://x/c.pem>",)))
    assert not parsed.originating
    assert parsed.identity == "abc.def.ghi;info=<https://x/c.pem>"


@pytest.mark.parametrize(("sescase", "originating"), [("orig", True), ("term", False)])
def test_p_served_user_says_the_side_whatever_identity_says(sescase, originating):
    parsed = parse_invite(invite(served=sescase, identity=("a.b.c",)))
    assert parsed.originating is originating
    assert parsed.served_user == ROB_AOR


@pytest.mark.parametrize(("d", "originating"), [("0", True), ("1", False), ("2", False)])
def test_the_scscfs_isc_mark_says_the_side_and_the_served_user(d, originating):
    parsed = parse_invite(invite(mark=d))
    assert parsed.originating is originating
    assert parsed.served_user == ROB_AOR


def test_several_identity_headers_are_joined_and_the_compact_form_counts():
    parsed = parse_invite(invite(identity=("a.b.c;ppt=shaken",), extra=("y: d.e.f;ppt=rcd",)))
    assert parsed.identity == "a.b.c;ppt=shaken,d.e.f;ppt=rcd"


def test_without_p_asserted_identity_the_from_uri_names_the_caller():
    parsed = parse_invite(invite(asserted=False))
    assert parsed.calling == ROB and parsed.asserted == ()


@pytest.mark.parametrize(
    ("uri", "number"),
    [
        ("tel:+49-30-123400", "+4930123400"),
        ("sip:4930123400@swift.example;user=phone", "+4930123400"),
        ("sip:4930123400@swift.example", ""),
        ("sip:rob@swift.example", ""),
        ("tel:+12", ""),
    ],
)
def test_numbers_come_from_tel_uris_and_telephone_sip_uris(uri, number):
    data = invite(asserted=False).replace(f"<{ROB_AOR}>;tag".encode(), f"<{uri}>;tag".encode())
    assert parse_invite(data).calling == number


def refused(data: bytes) -> str:
    with pytest.raises(SipMessageError) as error:
        parse_invite(data)
    return str(error.value)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (invite().replace(b"INVITE sip:", b"BYE sip:", 1), "not an INVITE"),
        (invite().replace(b"sescase", b"x"), ""),  # no sescase header: fine, see below
        (invite(served="both"), "sescase must be orig or term"),
        (invite(mark="7"), "direction is not 0, 1 or 2"),
        (invite(mark="0").replace(b";a=", b";a=zz"), "not hex"),
        (invite(extra=("From: <sip:eve@evil.example>;tag=2",)), "exactly one From"),
        (invite(extra=("P-Served-User: <sip:a@b>;sescase=orig",) * 2), "twice"),
        (invite(extra=(f"P-Asserted-Identity: <tel:{ROB}>, <sip:x@y>",)), "more than two"),
        (invite().replace(b"INVITE sip:+4940123499@", b"INVITE http://"), "Request-URI"),
        (invite().replace(b'"Rob Smith" <', b'"Rob Smith <'), "unclosed"),
        (invite().replace(b"CSeq: 1 INVITE\r\n", b"CSeq: 1 INVITE\nX: y\r\n"), "CRLF"),
    ],
)
def test_hostile_or_malformed_invites_are_refused_with_a_reason(data, reason):
    if not reason:
        parse_invite(data)
        return
    assert reason in refused(data)


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_are_an_invite_or_a_reason(data):
    with contextlib.suppress(SipMessageError):
        parse_invite(data)


@hypothesis_settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.sampled_from(["From", "P-Asserted-Identity", "Route", "y"]))
def test_any_header_value_is_read_or_refused(value, name):
    with contextlib.suppress(SipMessageError):
        parse_invite(invite(extra=(f"{name}: {value}",)))


# --- The endpoint -------------------------------------------------------------------------

pytestmark = pytest.mark.django_db


def post(network, data: bytes, **headers):
    return network.post("/network/v1/sip/invite", data, content_type="message/sip", **headers)


@pytest.fixture
def brand(enterprise):
    return CallerName.objects.create(
        enterprise=enterprise, name="Swift Delivery", call_reason="Your parcel", vetting="vetted"
    )


def signed_identities(network, **options) -> list[str]:
    answer = post(network, invite(**options))
    assert answer.status_code == 200, answer.content
    return answer.json()["identity"]


def test_robs_invite_is_signed_with_a_and_the_business_name(network, rob, brand, pki):
    answer = post(network, invite(caller=rob.tn), HTTP_X_REQUESTID="call-1")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["originating"] and body["action"] == "relay" and body["attest"] == "A"
    shaken, rcd = body["identity"]
    assert ";ppt=shaken" in shaken and ";ppt=rcd" in rcd
    claims = jwt.decode(shaken.split(";")[0], options={"verify_signature": False})
    assert claims["orig"] == {"tn": rob.tn.lstrip("+")}
    assert claims["dest"] == {"tn": [CALLEE.lstrip("+")]}
    record = CallRecord.objects.get()
    assert record.direction == "outgoing" and record.request_id == "call-1"


def test_a_number_outside_the_enterprises_blocks_is_signed_c(network, rob, pki):
    body = post(network, invite(caller="+4969000111")).json()
    assert body["attest"] == "C" and len(body["identity"]) == 1


def test_an_invite_without_a_number_goes_unsigned_and_says_why(network, rob):
    data = invite(asserted=False).replace(f"<{ROB_AOR}>;tag".encode(), b"<sip:rob@x>;tag")
    body = post(network, data).json()
    assert body["identity"] == [] and "no calling" in body["note"]
    assert not CallRecord.objects.exists()


def test_a_served_user_who_holds_no_identity_is_signed_c(network, rob, pki):
    other = "sip:+4930123401@swift.example;user=phone"
    data = invite(caller=rob.tn, served="orig").replace(
        f"P-Served-User: <{ROB_AOR}>".encode(), f"P-Served-User: <{other}>".encode()
    )
    assert post(network, data).json()["attest"] == "C"


def test_a_signed_call_verifies_with_verstat_and_the_business_name(network, rob, brand):
    identities = signed_identities(network, caller=rob.tn)
    body = post(network, invite(caller=rob.tn, identity=tuple(identities))).json()
    assert body == {
        "originating": False,
        "action": "relay",
        "verstat": passport.VERSTAT_PASSED,
        "attest": "A",
        "asserted_identity": [f'"Swift Delivery" <{ROB_AOR};verstat=TN-Validation-Passed>'],
        "from_display": "",
        "from_uri": "",
    }


def test_without_p_asserted_identity_the_from_carries_verstat(network, rob, brand):
    identities = signed_identities(network, caller=rob.tn)
    body = post(network, invite(asserted=False, identity=tuple(identities))).json()
    assert body["from_display"] == '"Swift Delivery"'
    assert body["from_uri"] == f"{ROB_AOR};verstat=TN-Validation-Passed"


def tampered(identities: list[str]) -> tuple[str, ...]:
    jws, _, rest = identities[0].partition(";")
    head, payload, signature = jws.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    return (f"{head}.{payload}.{flipped};{rest}",)


def test_a_tampered_identity_is_marked_failed_under_the_mark_policy(network, rob):
    data = invite(caller=rob.tn, identity=tampered(signed_identities(network, caller=rob.tn)))
    body = post(network, data).json()
    assert body["action"] == "relay" and body["verstat"] == passport.VERSTAT_FAILED
    assert body["asserted_identity"] == [f"<{ROB_AOR};verstat=TN-Validation-Failed>"]


def test_a_tampered_identity_is_rejected_with_438_under_the_reject_policy(network, rob, settings):
    settings.STIR_SIP_VERIFICATION_POLICY = "reject"
    data = invite(caller=rob.tn, identity=tampered(signed_identities(network, caller=rob.tn)))
    body = post(network, data).json()
    assert (body["action"], body["code"], body["reason"]) == (
        "reject",
        438,
        "Invalid Identity Header",
    )


@pytest.mark.parametrize(("policy", "action"), [("reject", "relay"), ("reject-unsigned", "reject")])
def test_an_unsigned_call_is_refused_with_428_only_under_reject_unsigned(
    network, rob, settings, policy, action
):
    settings.STIR_SIP_VERIFICATION_POLICY = policy
    body = post(network, invite(served="term")).json()
    assert body["action"] == action and body["verstat"] == passport.VERSTAT_NO_VALIDATION
    if action == "reject":
        assert body["code"] == 428


def test_incoming_verstat_and_caller_names_are_replaced_not_trusted(network, rob):
    data = invite(caller=rob.tn, served="term").replace(
        f"P-Asserted-Identity: <{ROB_AOR}>".encode(),
        f'P-Asserted-Identity: "Bank\\"\r\n X" <{ROB_AOR};verstat=TN-Validation-Passed>'.encode(),
    )
    body = post(network, data).json()
    assert body["asserted_identity"] == [f'"Bank\\" X" <{ROB_AOR};verstat=No-TN-Validation>']


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\xff garbage",
        invite().replace(b"Content-Length: ", b"Content-Length: 9"),
        invite(served="sideways"),
        sip("SIP/2.0 200 OK", ["Via: SIP/2.0/UDP a;branch=z9hG4bKx"]),
        b"INVITE sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * 200 + b"\r\n",
    ],
)
def test_malformed_invites_get_400_never_500(network, rob, data):
    answer = post(network, data)
    assert answer.status_code == 400, answer.content


def test_an_invite_over_the_size_limit_gets_413(network, settings):
    settings.NETWORK_MAX_BODY_BYTES = 1000
    assert post(network, invite(extra=("X-Pad: " + "a" * 2000,))).status_code == 413


def test_the_invite_endpoint_needs_a_network_credential(client):
    answer = client.post("/network/v1/sip/invite", invite(), content_type="message/sip")
    assert answer.status_code in (401, 403)
    # Its body is read before the credential (for the call path's cache) but refused
    # only after it: a stranger learns nothing of the parser.
    answer = client.post("/network/v1/sip/invite", b"INVITE nonsense", content_type="message/sip")
    assert answer.status_code in (401, 403)


def test_a_malformed_invite_is_refused_with_its_reason(network):
    answer = post(network, b"INVITE nonsense")
    assert answer.status_code == 400 and answer.json()["detail"] != (
        "The body is empty or has no Content-Type."
    )


def test_a_client_signs_and_verifies_nothing_for_an_enterprise_it_does_not_serve(
    network, rob, other_enterprise
):
    _, raw = network_client_create(
        actor=Actor.system(), name="Another SBC", enterprises=[other_enterprise]
    )
    stranger = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    signed = post(stranger, invite(caller=rob.tn)).json()
    assert signed["identity"] == [] and "does not serve" in signed["note"]
    identities = signed_identities(network, caller=rob.tn, callee=rob.tn)
    records = CallRecord.objects.count()
    verified = post(stranger, invite(callee=rob.tn, identity=tuple(identities))).json()
    assert verified["verstat"] == passport.VERSTAT_NO_VALIDATION
    assert "Swift" not in str(verified)
    assert CallRecord.objects.count() == records


def test_a_caller_name_from_another_carrier_cannot_add_a_header(network, rob, monkeypatch):
    from telephony.callauth import verification

    def verified(**_):
        return verification.Verified(
            verstat=passport.VERSTAT_PASSED,
            attestation="A",
            caller_name='Bank"\r\nIdentity: forged\x00',
        )

    monkeypatch.setattr(verification, "verify_call", verified)
    body = post(network, invite(served="term")).json()
    (value,) = body["asserted_identity"]
    assert value == f'"Bank\\"Identity: forged" <{ROB_AOR};verstat=TN-Validation-Passed>'
    assert not any(ord(char) < 32 for char in value)
