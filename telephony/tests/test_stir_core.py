"""The pure STIR/SHAKEN core: PASSporTs, Identity headers, TNAuthList DER, STI chains.

No database. Keys are made once per module; certificates per test where they differ.
"""

import contextlib
import datetime as dt
import functools
import json
import time

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from telephony.callauth.stir import certificates, passport
from telephony.callauth.stir.certificates import CertificateError, TnAuthList
from telephony.callauth.stir.passport import PassportError

KEY = certificates.generate_key()
OTHER_KEY = certificates.generate_key()
X5U = "https://cert.operator.example/shaken/709J.pem"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _segments(token: str) -> list[bytes]:
    return [passport.b64url_decode(part) for part in token.split(".")]


def _shaken(**overrides) -> str:
    claims = {
        "orig_tn": "+1 202 555 0100",
        "dest_tns": ["+12025550199"],
        "attest": "A",
        "origid": "123e4567-e89b-12d3-a456-426655440000",
        "iat": int(time.time()),
        "x5u": X5U,
        "private_key": KEY,
    }
    return passport.shaken_passport(**{**claims, **overrides})


def _token(header: dict, payload: dict, signature: bytes = b"\x01" * 64) -> str:
    """A JWS with arbitrary header and payload JSON (not necessarily canonical)."""
    parts = (json.dumps(header).encode(), json.dumps(payload).encode(), signature)
    return ".".join(passport.b64url_encode(p) for p in parts)


SHAKEN_HEADER = {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": X5U}
SHAKEN_PAYLOAD = {
    "attest": "B",
    "dest": {"tn": ["12025550199"]},
    "iat": 1700000000,
    "orig": {"tn": "12025550100"},
    "origid": "abc",
}


# --- Encodings --------------------------------------------------------------------------------


def test_canonical_json_sorts_keys_at_every_level_without_whitespace():
    value = {"b": 1, "a": {"d": [1, {"z": 0, "y": "Zoë"}], "c": 2}}
    assert (
        passport.canonical_json(value) == '{"a":{"c":2,"d":[1,{"y":"Zoë","z":0}]},"b":1}'.encode()
    )


def test_canonical_json_refuses_what_json_cannot_say():
    with pytest.raises(PassportError):
        passport.canonical_json({"iat": float("nan")})
    with pytest.raises(PassportError):
        passport.canonical_json({"key": object()})


@given(st.binary(max_size=64))
def test_b64url_round_trips_without_padding(data):
    text = passport.b64url_encode(data)
    assert "=" not in text
    assert passport.b64url_decode(text) == data


@pytest.mark.parametrize("text", ["YQ==", "YQ=", "a+b/", "ab c", "abcde", "YR", "YW\n"])
def test_b64url_decode_is_strict(text):
    # padding, the standard alphabet, whitespace, an impossible length, stray bits
    with pytest.raises(PassportError):
        passport.b64url_decode(text)


@pytest.mark.parametrize(
    ("given_number", "expected"),
    [
        ("+12025550100", "12025550100"),
        ("+1 (202) 555-0100", "12025550100"),
        ("4930.1234", "49301234"),
    ],
)
def test_tn_is_the_digits_of_the_e164_number(given_number, expected):
    assert passport.tn(given_number) == expected


@pytest.mark.parametrize("bad", ["", "+", "12025550100x", "+1+202", "1234567890123456", "١٢٣"])
def test_tn_refuses_what_is_not_an_e164_number(bad):
    with pytest.raises(PassportError):
        passport.tn(bad)


# --- Signing ----------------------------------------------------------------------------------


def test_shaken_passport_verifies_independently_and_signs_canonical_json():
    iat = int(time.time())
    token = _shaken(iat=iat)

    claims = jwt.decode(
        token, KEY.public_key(), algorithms=["ES256"], options={"verify_aud": False}
    )
    expected_payload = {
        "attest": "A",
        "dest": {"tn": ["12025550199"]},
        "iat": iat,
        "orig": {"tn": "12025550100"},
        "origid": "123e4567-e89b-12d3-a456-426655440000",
    }
    assert claims == expected_payload
    header, payload, signature = _segments(token)
    assert header == passport.canonical_json(SHAKEN_HEADER)
    assert payload == passport.canonical_json(expected_payload)
    assert len(signature) == 64


def test_rcd_passport_carries_name_and_logo_in_rcd_and_the_reason_in_crn():
    iat = int(time.time())
    token = passport.rcd_passport(
        orig_tn="+12025550100",
        dest_tns=["+12025550199", "+12025550198"],
        iat=iat,
        x5u=X5U,
        name="Swift Delivery",
        logo_url="https://brand.example/swift.png",
        call_reason="Your parcel is at the door",
        private_key=KEY,
    )

    claims = jwt.decode(
        token, KEY.public_key(), algorithms=["ES256"], options={"verify_aud": False}
    )
    expected_payload = {
        "crn": "Your parcel is at the door",
        "dest": {"tn": ["12025550199", "12025550198"]},
        "iat": iat,
        "orig": {"tn": "12025550100"},
        "rcd": {"icn": "https://brand.example/swift.png", "nam": "Swift Delivery"},
    }
    assert claims == expected_payload
    header, payload, _ = _segments(token)
    assert header == passport.canonical_json({**SHAKEN_HEADER, "ppt": "rcd"})
    assert payload == passport.canonical_json(expected_payload)
    assert passport.decode(token).payload == expected_payload


def test_rcd_passport_leaves_out_logo_and_reason_when_not_given():
    token = passport.rcd_passport(
        orig_tn="+12025550100",
        dest_tns=["+12025550199"],
        iat=1,
        x5u=X5U,
        name="Swift",
        private_key=KEY,
    )
    payload = passport.decode(token).payload
    assert payload["rcd"] == {"nam": "Swift"}
    assert "crn" not in payload


@pytest.mark.parametrize(
    "overrides",
    [
        {"attest": "D"},
        {"origid": ""},
        {"dest_tns": []},
        {"dest_tns": "+12025550199"},
        {"iat": 1.5},
        {"iat": True},
        {"x5u": "https://cert.example/a b.pem"},
        {"x5u": "https://cert.example/a.pem\r\nVia: injected"},
        {"private_key": ec.generate_private_key(ec.SECP384R1())},
    ],
)
def test_shaken_passport_refuses_what_it_cannot_sign(overrides):
    with pytest.raises(PassportError):
        _shaken(**overrides)


# --- Verification -----------------------------------------------------------------------------


def test_decode_and_verify_a_token_of_our_own():
    token = _shaken(attest="C")
    decoded = passport.decode(token)
    assert decoded.header == SHAKEN_HEADER
    assert decoded.payload["attest"] == "C"
    assert decoded.signing_input == token.rsplit(".", 1)[0].encode()
    assert passport.verify_signature(decoded, KEY.public_key())


def test_a_token_with_another_implementations_json_verifies_as_received():
    # PyJWT keeps the payload's key order and, asked to, the header's: not canonical JSON.
    payload = {"origid": "x-1", "orig": {"tn": "12025550100"}, "iat": 1700000000}
    payload |= {"dest": {"tn": ["12025550199"]}, "attest": "A"}
    token = jwt.encode(
        payload,
        KEY,
        algorithm="ES256",
        headers={"x5u": X5U, "ppt": "shaken", "typ": "passport"},
        sort_headers=False,
    )
    header_bytes, payload_bytes, _ = _segments(token)
    assert header_bytes != passport.canonical_json(json.loads(header_bytes))
    assert payload_bytes != passport.canonical_json(payload)

    decoded = passport.decode(token)
    assert decoded.payload == payload
    assert passport.verify_signature(decoded, KEY.public_key())


def _swap(token: str, index: int, replacement: str) -> str:
    parts = token.split(".")
    parts[index] = replacement
    return ".".join(parts)


def test_tampering_breaks_the_signature():
    token = _shaken(attest="B")
    forged_payload = {**passport.decode(token).payload, "attest": "A"}
    forged_header = {**SHAKEN_HEADER, "x5u": "https://evil.example/cert.pem"}
    signature = bytearray(passport.decode(token).signature)
    signature[10] ^= 0x01
    tampered = [
        _swap(token, 1, passport.b64url_encode(passport.canonical_json(forged_payload))),
        _swap(token, 0, passport.b64url_encode(passport.canonical_json(forged_header))),
        _swap(token, 2, passport.b64url_encode(bytes(signature))),
    ]
    for forged in tampered:
        assert not passport.verify_signature(passport.decode(forged), KEY.public_key())


def test_another_key_or_curve_does_not_verify():
    decoded = passport.decode(_shaken())
    assert not passport.verify_signature(decoded, OTHER_KEY.public_key())
    assert not passport.verify_signature(
        decoded, ec.generate_private_key(ec.SECP384R1()).public_key()
    )


def test_alg_none_and_hs256_are_refused():
    unsigned = _token({**SHAKEN_HEADER, "alg": "none"}, SHAKEN_PAYLOAD)
    hmac = jwt.encode(
        SHAKEN_PAYLOAD,
        "a-shared-secret-of-32-bytes-long!",
        algorithm="HS256",
        headers={"ppt": "shaken", "x5u": X5U},
    )
    for token in (unsigned, hmac, unsigned.rsplit(".", 1)[0] + "."):
        with pytest.raises(PassportError, match=r"alg|three base64url"):
            passport.decode(token)
    with pytest.raises(PassportError, match="alg 'none'"):
        passport.decode(unsigned)


@pytest.mark.parametrize(
    "token",
    [
        "eyJhIjoxfQ.eyJhIjoxfQ",  # two segments
        "eyJhIjoxfQ.eyJhIjoxfQ.AAAA.AAAA",  # four segments
        "eyJhIjoxfQ..AAAA",  # an empty payload (compact form is not accepted)
        "eyJhIjoxfQ=.eyJhIjoxfQ.AAAA",  # padding
        "eyJhIjoxfQ.ey!hIjoxfQ.AAAA",  # a character outside base64url
        "eyJhIjoxfQ.bm90IGpzb24.AAAA",  # "not json"
        "eyJhIjoxfQ.WzFd.AAAA",  # [1], not an object
        " " + "a" * 9000,  # oversized
        12345,  # not a string
    ],
)
def test_decode_refuses_malformed_tokens(token):
    with pytest.raises(PassportError):
        passport.decode(token)


def test_decode_refuses_an_oversized_but_well_formed_token():
    token = _token(SHAKEN_HEADER, {**SHAKEN_PAYLOAD, "padding": "x" * 8000})
    with pytest.raises(PassportError, match="over 8 KiB"):
        passport.decode(token)


@pytest.mark.parametrize(
    ("header_changes", "payload_changes"),
    [
        ({"typ": "JWT"}, {}),
        ({"ppt": None}, {}),
        ({"x5u": None}, {}),
        ({"crit": ["ppt"]}, {}),
        ({}, {"iat": "1700000000"}),
        ({}, {"iat": 1.7e9}),
        ({}, {"iat": True}),
        ({}, {"orig": {"tn": "12025550100", "uri": "sip:a@b"}}),
        ({}, {"orig": {"tn": 12025550100}}),
        ({}, {"orig": None}),
        ({}, {"dest": {"tn": "12025550199"}}),
        ({}, {"dest": {"tn": []}}),
        ({}, {"dest": {}}),
        ({}, {"attest": "D"}),
        ({}, {"attest": ["A"]}),
        ({}, {"origid": None}),
        ({"ppt": "rcd"}, {"rcd": {"icn": "https://brand.example/x.png"}}),
        ({"ppt": "rcd"}, {"rcd": {"nam": "Swift"}, "crn": 7}),
    ],
)
def test_decode_refuses_passports_of_the_wrong_shape(header_changes, payload_changes):
    header = {k: v for k, v in {**SHAKEN_HEADER, **header_changes}.items() if v is not None}
    payload = {k: v for k, v in {**SHAKEN_PAYLOAD, **payload_changes}.items() if v is not None}
    with pytest.raises(PassportError):
        passport.decode(passport.sign(header, payload, KEY))


def test_decode_refuses_duplicate_keys_and_deep_nesting():
    duplicate = '{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"u","alg":"none"}'
    deep = "[" * 3000 + "]" * 3000
    for header_json in (duplicate, '{"alg":"ES256","n":' + deep + "}"):
        token = ".".join(
            [passport.b64url_encode(header_json.encode()), passport.b64url_encode(b"{}"), "AAAA"]
        )
        with pytest.raises(PassportError):
            passport.decode(token)


def test_the_header_key_material_is_never_used():
    # A forger signs with its own key and offers it in the header: verification uses
    # only the key the caller found through x5u and a trusted chain.
    header = {**SHAKEN_HEADER, "jwk": {"kty": "EC"}, "x5c": ["MIIB"]}
    decoded = passport.decode(passport.sign(header, SHAKEN_PAYLOAD, OTHER_KEY))
    assert not passport.verify_signature(decoded, KEY.public_key())


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150)
@given(header=_json_values, payload=_json_values, signature=st.binary(max_size=70))
def test_any_json_in_a_token_ends_in_passport_error_or_a_valid_decode(header, payload, signature):
    token = ".".join(
        passport.b64url_encode(part)
        for part in (json.dumps(header).encode(), json.dumps(payload).encode(), signature)
    )
    try:
        decoded = passport.decode(token)
    except PassportError:
        return
    assert decoded.header["alg"] == "ES256"
    assert isinstance(decoded.payload["iat"], int)


@given(st.text(max_size=300))
def test_any_text_ends_in_passport_error_or_a_value(text):
    for parse in (passport.decode, passport.parse_identity_headers, passport.b64url_decode):
        with contextlib.suppress(PassportError):
            parse(text)


# --- Identity header --------------------------------------------------------------------------


def test_identity_header_round_trip():
    token = _shaken()
    value = passport.identity_header(token, x5u=X5U, ppt="shaken")
    assert value == f"{token};info=<{X5U}>;alg=ES256;ppt=shaken"
    parsed = passport.parse_identity_header(value)
    assert parsed == passport.IdentityHeader(
        jws=token, info=X5U, alg="ES256", ppt="shaken", params={}
    )


def test_identity_header_refuses_what_would_break_out_of_it():
    token = _shaken()
    for x5u, ppt in [
        ("https://a.example/x.pem>;ppt=rcd", "shaken"),
        (X5U, "shaken;x=1"),
        (X5U, ""),
    ]:
        with pytest.raises(PassportError):
            passport.identity_header(token, x5u=x5u, ppt=ppt)
    with pytest.raises(PassportError):
        passport.identity_header("not.a jws.!", x5u=X5U, ppt="shaken")


def test_identity_header_parsing_tolerates_spaces_case_and_quotes():
    token = _shaken()
    value = f' {token} ;  INFO = <{X5U}> ;Alg= ES256 ; PPT="shaken";extra = "a \\"b\\""; flag '
    parsed = passport.parse_identity_header(value)
    assert (parsed.jws, parsed.info, parsed.alg, parsed.ppt) == (token, X5U, "ES256", "shaken")
    assert parsed.params == {"extra": 'a "b"', "flag": ""}


def test_several_identity_headers_split_on_commas_outside_uris_and_quotes():
    shaken, rcd = _shaken(), _shaken(attest="B")
    url = "https://cert.example/a;b,c.pem"
    value = f'{shaken};info=<{url}>;ppt="x,y" , {rcd};info=<{X5U}>;ppt=rcd'
    first, second = passport.parse_identity_headers(value)
    assert (first.jws, first.info, first.ppt) == (shaken, url, "x,y")
    assert (second.jws, second.info, second.ppt, second.alg) == (rcd, X5U, "rcd", None)
    with pytest.raises(PassportError, match="expected one"):
        passport.parse_identity_header(value)


@pytest.mark.parametrize(
    "value",
    [
        "{jws};alg=ES256;ppt=shaken",  # no info
        "{jws};info=;ppt=shaken",  # an empty info
        "{jws};info=<https://a.example/x.pem",  # unterminated <
        "{jws};info=<https://a.example/ x.pem>",  # a space inside <>
        '{jws};info=<https://a.example/x.pem>;ppt="shaken',  # unterminated quote
        "{jws};info=<https://a.example/x.pem>;ppt=shaken;PPT=rcd",  # repeated parameter
        "{jws};info=<https://a.example/x.pem> junk",
        "{jws};=x;info=<https://a.example/x.pem>",  # a parameter without a name
        "eyJhIjoxfQ.eyJhIjoxfQ;info=<https://a.example/x.pem>",  # two segments
        "eyJhIjoxfQ.eyJhIjoxfQ.AA.AA;info=<https://a.example/x.pem>",  # four segments
        "{jws};info=<https://a.example/x.pem>,",  # an empty second value
        "{jws};info=<https://a.example/x.pem>;pad=" + "x" * 9000,  # oversized
    ],
)
def test_identity_header_refuses_malformed_values(value):
    with pytest.raises(PassportError):
        passport.parse_identity_header(value.replace("{jws}", "eyJhIjoxfQ.eyJhIjoxfQ.AAAA"))


def test_identity_headers_are_bounded_in_number():
    one = f"eyJhIjoxfQ.eyJhIjoxfQ.AAAA;info=<{X5U}>"
    assert len(passport.parse_identity_headers(",".join([one] * 8))) == 8
    with pytest.raises(PassportError, match="more than 8"):
        passport.parse_identity_headers(",".join([one] * 9))


# --- TNAuthList DER ---------------------------------------------------------------------------

EXAMPLE_LIST = TnAuthList(spcs=("709J",), ranges=(("12025550100", 200),), numbers=("14155550123",))
# Derived by hand from the RFC 8226 module (EXPLICIT TAGS): each choice tag wraps a whole TLV.
EXAMPLE_DER = bytes.fromhex(
    "302c"  # TNAuthorizationList SEQUENCE, 44 bytes
    "a006"
    "1604"
    "3730394a"  # spc [0] { IA5String "709J" }
    "a113"
    "3011"  # range [1] { SEQUENCE, 17 bytes
    "160b"
    "3132303235353530313030"  # start IA5String "12025550100"
    "020200c8"  # count INTEGER 200 (a leading 00: the top bit of C8 is set)
    "a20d"
    "160b"
    "3134313535353530313233"  # one [2] { IA5String "14155550123" }
)


def test_tn_auth_list_der_matches_the_hand_derived_bytes():
    assert certificates.encode_tn_auth_list(TnAuthList(spcs=("1234",))) == bytes.fromhex(
        "3008a006160431323334"
    )
    assert certificates.encode_tn_auth_list(EXAMPLE_LIST) == EXAMPLE_DER
    assert certificates.decode_tn_auth_list(EXAMPLE_DER) == EXAMPLE_LIST


def test_tn_auth_list_long_lengths_round_trip():
    many = TnAuthList(numbers=tuple(f"1202555{i:04d}" for i in range(40)))
    der = certificates.encode_tn_auth_list(many)
    assert der[:2] == b"\x30\x82"  # 40 × 15 bytes needs two length bytes
    assert certificates.decode_tn_auth_list(der) == many


@st.composite
def _ranges(draw):
    digits = draw(st.integers(1, 15))
    start = draw(st.integers(0, 10**digits - 2))
    count = draw(st.integers(2, 10**digits - start))
    return str(start).zfill(digits), count


@st.composite
def tn_auth_lists(draw):
    printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
    spcs = draw(st.lists(st.text(printable, min_size=1, max_size=8), max_size=3))
    ranges = draw(st.lists(_ranges(), max_size=3))
    numbers = draw(st.lists(st.text("0123456789#*", min_size=1, max_size=15), max_size=3))
    assume(spcs or ranges or numbers)
    return TnAuthList(tuple(spcs), tuple(ranges), tuple(numbers))


@given(tn_auth_lists())
def test_tn_auth_list_der_round_trips(tal):
    assert certificates.decode_tn_auth_list(certificates.encode_tn_auth_list(tal)) == tal


def _tlv(tag: int, content: bytes) -> bytes:
    """A DER TLV with the shortest length form, written here apart from the module's."""
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes(1 if size < 0x100 else 2, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _range_entry(start: bytes, count_der: bytes) -> bytes:
    return _tlv(0xA1, _tlv(0x30, _tlv(0x16, start) + count_der))


def _nested(depth: int) -> bytes:
    inner = _tlv(0x16, b"1")
    for _ in range(depth):
        inner = _tlv(0x30, inner)
    return inner


@pytest.mark.parametrize(
    "der",
    [
        pytest.param(EXAMPLE_DER[:-1], id="truncated"),
        pytest.param(EXAMPLE_DER + b"\x00", id="trailing junk"),
        pytest.param(_tlv(0x30, b"\xa0\x00"), id="an entry without its IA5String"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\x30\x00", id="SIZE (1..MAX)"),
        pytest.param(_tlv(0x30, _range_entry(b"1202555", b"\x02\x01\x01")), id="count 1"),
        pytest.param(_tlv(0x30, _range_entry(b"1202555", b"\x02\x01\x00")), id="count 0"),
        pytest.param(_tlv(0x30, _range_entry(b"1202555", b"\x02\x01\xff")), id="count -1"),
        pytest.param(
            _tlv(0x30, _range_entry(b"1202555", b"\x02\x02\x00\x05")), id="INTEGER not minimal"
        ),
        pytest.param(_tlv(0x30, _range_entry(b"1202555", b"\x02\x00")), id="empty INTEGER"),
        pytest.param(
            _tlv(0x30, _range_entry(b"1202555", b"\x02\x09" + b"\x01" * 9)), id="huge count"
        ),
        pytest.param(
            _tlv(0x30, _range_entry(b"9999999", b"\x02\x01\x02")), id="past the last 7-digit number"
        ),
        pytest.param(
            _tlv(0x30, _range_entry(b"12#4", b"\x02\x01\x02")), id="a range start must be digits"
        ),
        pytest.param(_tlv(0x30, _range_entry(b"1202555", b"")), id="no count"),
        pytest.param(
            _tlv(0x30, _tlv(0xA1, _tlv(0x16, b"1202555"))), id="IMPLICIT-style range, no SEQUENCE"
        ),
        pytest.param(_tlv(0x30, _tlv(0x80, b"709J")), id="IMPLICIT-tagged spc"),
        pytest.param(_tlv(0x30, _tlv(0xA0, _tlv(0x0C, b"709J"))), id="UTF8String, not IA5String"),
        pytest.param(_tlv(0x30, _tlv(0xA0, _tlv(0x16, b""))), id="an empty SPC"),
        pytest.param(
            _tlv(0x30, _tlv(0xA0, _tlv(0x16, b"70\x009"))), id="a control character in an SPC"
        ),
        pytest.param(_tlv(0x30, _tlv(0xA0, _tlv(0x16, "7ü".encode()))), id="not IA5"),
        pytest.param(_tlv(0x30, _tlv(0xA2, _tlv(0x16, b"1" * 16))), id="16 digits"),
        pytest.param(
            _tlv(0x30, _tlv(0xA2, _tlv(0x16, b"+12025550100"))), id="'+' is not a TN character"
        ),
        pytest.param(_tlv(0x30, _tlv(0xA3, _tlv(0x16, b"1"))), id="an unknown choice"),
        pytest.param(
            _tlv(0x30, _tlv(0xA2, _tlv(0x16, b"1") + b"\x05\x00")), id="junk inside an entry"
        ),
        pytest.param(
            b"\x30\x80" + _tlv(0xA2, _tlv(0x16, b"1")) + b"\x00\x00", id="indefinite length"
        ),
        pytest.param(b"\x30\x84\xff\xff\xff\xff", id="a huge length"),
        pytest.param(b"\x30\x82\xff\xff" + b"\x00" * 16, id="a length past the end"),
        pytest.param(
            b"\x30\x81\x05" + _tlv(0xA2, _tlv(0x16, b"1")), id="long form where short fits"
        ),
        pytest.param(b"\x30\x82\x00\x85" + b"\x00" * 0x85, id="a leading zero length byte"),
        pytest.param(b"\x30\x81", id="the length is cut off"),
        pytest.param(_tlv(0x30, _nested(200)), id="deep nesting"),
        pytest.param(b"\x30" * 70000, id="over the size cap"),
    ],
)
def test_hostile_der_is_refused(der):
    with pytest.raises(CertificateError):
        certificates.decode_tn_auth_list(der)


def test_range_extension_additions_are_skipped():
    # TelephoneNumberRange ends in "...": a later version may add components.
    der = _tlv(0x30, _tlv(0xA1, _tlv(0x30, _tlv(0x16, b"1202555") + b"\x02\x01\x0a\x05\x00")))
    assert certificates.decode_tn_auth_list(der) == TnAuthList(ranges=(("1202555", 10),))


@given(st.binary(max_size=200))
def test_random_bytes_end_in_certificate_error_or_a_list(der):
    with contextlib.suppress(CertificateError):
        assert isinstance(certificates.decode_tn_auth_list(der), TnAuthList)


@given(st.integers(0, len(EXAMPLE_DER) - 1), st.integers(0, 255))
def test_corrupted_der_ends_in_certificate_error_or_a_list(index, byte):
    der = bytearray(EXAMPLE_DER)
    der[index] = byte
    with contextlib.suppress(CertificateError):
        assert isinstance(certificates.decode_tn_auth_list(bytes(der)), TnAuthList)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"ranges": (("1202555", 1),)},
        {"ranges": (("1202555", True),)},
        {"ranges": (("99", 2),)},
        {"ranges": (("1202555",),)},
        {"numbers": ("",)},
        {"spcs": ("",)},
    ],
)
def test_tn_auth_list_refuses_entries_it_cannot_encode(kwargs):
    with pytest.raises(CertificateError):
        TnAuthList(**kwargs)


def test_covers_ranges_and_single_numbers():
    tal = TnAuthList(spcs=("709J",), ranges=(("12025550100", 100),), numbers=("14155550123", "*67"))
    assert tal.has_spc
    assert tal.covers("12025550100")
    assert tal.covers("12025550199")
    assert not tal.covers("12025550200")
    assert not tal.covers("12025550099")
    assert not tal.covers("012025550150")  # another length is another number
    assert tal.covers("14155550123")
    assert tal.covers("*67")
    assert not tal.covers("14155550124")
    assert not TnAuthList(numbers=("1",)).has_spc


def test_within_follows_rfc_9060():
    block = TnAuthList(ranges=(("12025550100", 100), ("12025550200", 50)), numbers=("12025550250",))
    assert TnAuthList(ranges=(("12025550150", 101),)).within(
        block
    )  # spans both blocks and the number
    assert not TnAuthList(ranges=(("12025550150", 102),)).within(block)
    assert TnAuthList(numbers=("12025550100",)).within(block)
    assert not TnAuthList(numbers=("12025550300",)).within(block)
    operator = TnAuthList(spcs=("709J",))
    assert TnAuthList(ranges=(("4930123400", 100),)).within(operator)
    assert TnAuthList(spcs=("709J",)).within(operator)
    assert not TnAuthList(spcs=("123K",)).within(operator)
    assert not TnAuthList(spcs=("709J",)).within(block)


# --- Certificates -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki():
    """A lab STI-CA, an operator certificate with its SPC, and an enterprise's delegate."""
    root_key, root = certificates.make_root_ca("Lab STI-CA")
    operator_key = certificates.generate_key()
    operator = certificates.issue(
        issuer_key=root_key,
        issuer_cert=root,
        subject_cn="Operator SHAKEN 709J",
        subject_o="Operator",
        public_key=operator_key.public_key(),
        tn_auth_list=TnAuthList(spcs=("709J",)),
        days=365,
        ca=True,
        path_length=0,
    )
    delegate_key = certificates.generate_key()
    delegate = certificates.issue(
        issuer_key=operator_key,
        issuer_cert=operator,
        subject_cn="Swift Delivery SHAKEN delegate",
        public_key=delegate_key.public_key(),
        tn_auth_list=TnAuthList(ranges=(("12025550100", 100),)),
        days=90,
        ca=False,
    )
    return {
        "root_key": root_key,
        "root": root,
        "operator_key": operator_key,
        "operator": operator,
        "delegate_key": delegate_key,
        "delegate": delegate,
    }


def test_a_certificate_carries_the_tn_auth_list_as_cryptography_reads_it(pki):
    tal = TnAuthList(ranges=(("12025550100", 100),))
    extension = pki["delegate"].extensions.get_extension_for_oid(certificates.TN_AUTH_LIST_OID)
    assert not extension.critical
    assert extension.value.value == certificates.encode_tn_auth_list(tal)
    assert certificates.tn_auth_list_of(pki["delegate"]) == tal
    assert certificates.tn_auth_list_of(pki["root"]) is None


def test_issued_certificates_follow_the_profile(pki):
    delegate, operator = pki["delegate"], pki["operator"]
    assert delegate.signature_hash_algorithm.name == "sha256"
    assert isinstance(delegate.public_key(), ec.EllipticCurvePublicKey)
    constraints = delegate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    usage = delegate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    operator_usage = operator.extensions.get_extension_for_class(x509.KeyUsage).value
    assert operator_usage.digital_signature and operator_usage.key_cert_sign
    authority = delegate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    subject_key = operator.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert authority.key_identifier == subject_key.digest
    assert delegate.not_valid_before_utc < _now()
    assert delegate.serial_number != operator.serial_number


def test_the_delegate_chain_verifies(pki):
    chain = certificates.verify_chain(
        pki["delegate"], intermediates=[pki["operator"]], anchors=[pki["root"]], at=_now()
    )
    assert chain == [pki["delegate"], pki["operator"], pki["root"]]


@pytest.mark.parametrize(
    ("offset", "message"),
    [(dt.timedelta(days=91), "expired"), (-dt.timedelta(hours=1), "not yet valid")],
)
def test_a_chain_is_valid_only_in_its_time(pki, offset, message):
    with pytest.raises(CertificateError, match=message):
        certificates.verify_chain(
            pki["delegate"],
            intermediates=[pki["operator"]],
            anchors=[pki["root"]],
            at=_now() + offset,
        )


def test_a_chain_must_end_in_a_trust_anchor(pki):
    _, other_root = certificates.make_root_ca("Another STI-CA")
    with pytest.raises(CertificateError, match="not issued by a trust anchor"):
        certificates.verify_chain(
            pki["delegate"], intermediates=[pki["operator"]], anchors=[other_root], at=_now()
        )
    with pytest.raises(CertificateError, match="not issued by a trust anchor"):
        certificates.verify_chain(pki["delegate"], anchors=[pki["root"]], at=_now())


def test_a_forged_issuer_with_the_same_name_does_not_verify(pki):
    impostor_key = certificates.generate_key()
    impostor = certificates.issue(
        issuer_key=pki["root_key"],
        issuer_cert=pki["root"],
        subject_cn="Operator SHAKEN 709J",
        subject_o="Operator",
        public_key=impostor_key.public_key(),
        tn_auth_list=TnAuthList(spcs=("709J",)),
        days=365,
        ca=True,
    )
    with pytest.raises(CertificateError, match="signature does not match"):
        certificates.verify_chain(
            pki["delegate"], intermediates=[impostor], anchors=[pki["root"]], at=_now()
        )


def _issue(pki, **overrides):
    arguments = {
        "issuer_key": pki["operator_key"],
        "issuer_cert": pki["operator"],
        "subject_cn": "Test",
        "public_key": certificates.generate_key().public_key(),
        "tn_auth_list": TnAuthList(ranges=(("12025550100", 100),)),
        "days": 30,
        "ca": False,
    }
    return certificates.issue(**{**arguments, **overrides})


def test_an_issuer_must_be_a_ca(pki):
    not_a_ca_key = certificates.generate_key()
    not_a_ca = _issue(
        pki,
        issuer_key=pki["root_key"],
        issuer_cert=pki["root"],
        public_key=not_a_ca_key.public_key(),
    )
    leaf = _issue(pki, issuer_key=not_a_ca_key, issuer_cert=not_a_ca)
    with pytest.raises(CertificateError, match="cA must be asserted in a CA certificate"):
        certificates.verify_chain(leaf, intermediates=[not_a_ca], anchors=[pki["root"]], at=_now())


def test_a_delegate_list_must_lie_within_its_issuers(pki):
    block_key = certificates.generate_key()
    block_ca = _issue(
        pki,
        issuer_key=pki["root_key"],
        issuer_cert=pki["root"],
        public_key=block_key.public_key(),
        ca=True,
    )
    inside = _issue(
        pki,
        issuer_key=block_key,
        issuer_cert=block_ca,
        tn_auth_list=TnAuthList(ranges=(("12025550150", 50),)),
    )
    outside = _issue(
        pki,
        issuer_key=block_key,
        issuer_cert=block_ca,
        tn_auth_list=TnAuthList(ranges=(("12025550150", 51),)),
    )
    missing = _issue(pki, issuer_key=block_key, issuer_cert=block_ca, tn_auth_list=None)
    certificates.verify_chain(inside, intermediates=[block_ca], anchors=[pki["root"]], at=_now())
    for leaf, message in (
        (outside, "not within its issuer's TNAuthList"),
        (missing, "no TNAuthList"),
    ):
        with pytest.raises(CertificateError, match=message):
            certificates.verify_chain(
                leaf, intermediates=[block_ca], anchors=[pki["root"]], at=_now()
            )


def _build(
    pki,
    *,
    key_usage: x509.KeyUsage,
    extra: x509.ExtensionType | None = None,
    policy: str = certificates.SHAKEN_CERTIFICATE_POLICY,
) -> x509.Certificate:
    """A certificate outside what issue() makes, signed by the operator."""
    key = certificates.generate_key()
    operator_key_id = pki["operator"].extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Odd")]))
        .issuer_name(pki["operator"].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=1))
        .not_valid_after(_now() + dt.timedelta(days=1))
        .add_extension(key_usage, critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(operator_key_id.value),
            critical=False,
        )
        .add_extension(
            x509.UnrecognizedExtension(
                certificates.TN_AUTH_LIST_OID,
                certificates.encode_tn_auth_list(TnAuthList(numbers=("12025550100",))),
            ),
            critical=False,
        )
    )
    if policy:
        builder = builder.add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(policy), None)]),
            critical=False,
        )
    if extra is not None:
        builder = builder.add_extension(extra, critical=True)
    return builder.sign(pki["operator_key"], hashes.SHA256())


_USAGE = dict.fromkeys(
    (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    ),
    False,
)


def test_a_leaf_must_be_for_digital_signatures(pki):
    leaf = _build(pki, key_usage=x509.KeyUsage(**{**_USAGE, "key_agreement": True}))
    with pytest.raises(CertificateError, match="digitalSignature"):
        certificates.verify_chain(
            leaf, intermediates=[pki["operator"]], anchors=[pki["root"]], at=_now()
        )
    signing = _build(pki, key_usage=x509.KeyUsage(**{**_USAGE, "digital_signature": True}))
    certificates.verify_chain(
        signing, intermediates=[pki["operator"]], anchors=[pki["root"]], at=_now()
    )


def test_an_unknown_critical_extension_fails_the_chain(pki):
    leaf = _build(
        pki,
        key_usage=x509.KeyUsage(**{**_USAGE, "digital_signature": True}),
        extra=x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
    )
    with pytest.raises(CertificateError, match="unaccounted-for critical extension"):
        certificates.verify_chain(
            leaf, intermediates=[pki["operator"]], anchors=[pki["root"]], at=_now()
        )


def test_path_length_limits_are_enforced(pki):
    # The operator certificate allows no CA below it.
    sub_ca_key = certificates.generate_key()
    sub_ca = _issue(pki, public_key=sub_ca_key.public_key(), ca=True)
    leaf = _issue(pki, issuer_key=sub_ca_key, issuer_cert=sub_ca)
    with pytest.raises(CertificateError, match="path length constraint violated"):
        certificates.verify_chain(
            leaf, intermediates=[sub_ca, pki["operator"]], anchors=[pki["root"]], at=_now()
        )


@pytest.mark.parametrize(
    ("policy", "accepted"),
    [
        (certificates.SHAKEN_CERTIFICATE_POLICY, True),
        ("2.16.840.1.114569.1.1.4", True),  # a later version of the STI-PA's policy
        ("2.16.840.1.114569.1.2", False),
        ("1.3.6.1.4.1.99999.7", False),
    ],
)
def test_a_leaf_must_name_a_shaken_certificate_policy(pki, policy, accepted):
    usage = x509.KeyUsage(**{**_USAGE, "digital_signature": True})
    leaf = _build(pki, key_usage=usage, policy=policy)
    verify = functools.partial(
        certificates.verify_chain,
        leaf,
        intermediates=[pki["operator"]],
        anchors=[pki["root"]],
        at=_now(),
    )
    if accepted:
        assert verify()[0] == leaf
    else:
        with pytest.raises(CertificateError, match="names no SHAKEN certificate policy"):
            verify()
    # An operator of another numbering plan's PKI names its own policies.
    assert certificates.verify_chain(
        leaf, intermediates=[pki["operator"]], anchors=[pki["root"]], at=_now(), policies=[policy]
    )


def test_without_policies_a_leaf_needs_none_but_still_its_tn_auth_list(pki):
    usage = x509.KeyUsage(**{**_USAGE, "digital_signature": True})
    no_policy = _build(pki, key_usage=usage, policy="")
    anchors = {"intermediates": [pki["operator"]], "anchors": [pki["root"]], "at": _now()}
    with pytest.raises(CertificateError, match="names no SHAKEN certificate policy"):
        certificates.verify_chain(no_policy, **anchors)
    assert certificates.verify_chain(no_policy, **anchors, policies=())[0] == no_policy
    no_numbers = _issue(pki, tn_auth_list=None, policy="")
    with pytest.raises(CertificateError, match="no TNAuthList"):
        certificates.verify_chain(no_numbers, **anchors, policies=())


def test_issued_certificates_carry_the_shaken_policy_and_the_crl_when_named(pki):
    for cert in (pki["operator"], pki["delegate"]):
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies)
        assert not policies.critical
        assert [p.policy_identifier.dotted_string for p in policies.value] == [
            "2.16.840.1.114569.1.1.1"
        ]
    with pytest.raises(x509.ExtensionNotFound):
        pki["delegate"].extensions.get_extension_for_class(x509.CRLDistributionPoints)
    sti_pa = x509.Name.from_rfc4514_string("CN=STI-PA CRL,O=Policy Administrator")
    with_crl = _issue(pki, crl_url="https://sti-pa.example/crl", crl_issuer=sti_pa)
    (point,) = with_crl.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert point.full_name == [x509.UniformResourceIdentifier("https://sti-pa.example/crl")]
    assert point.crl_issuer == [x509.DirectoryName(sti_pa)]
    certificates.verify_chain(
        with_crl, intermediates=[pki["operator"]], anchors=[pki["root"]], at=_now()
    )


def test_verify_chain_needs_an_aware_time(pki):
    with pytest.raises(CertificateError, match="timezone-aware"):
        certificates.verify_chain(
            pki["delegate"], anchors=[pki["root"]], at=_now().replace(tzinfo=None)
        )


def test_issue_refuses_a_key_that_is_not_the_issuers(pki):
    with pytest.raises(CertificateError, match="does not belong"):
        _issue(pki, issuer_key=pki["root_key"])
    with pytest.raises(CertificateError, match="path length"):
        _issue(pki, path_length=1)


def test_private_keys_round_trip_through_pkcs8_pem():
    data = certificates.private_key_pem(KEY)
    assert data.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = certificates.load_private_key(data)
    assert loaded.private_numbers() == KEY.private_numbers()


def test_load_private_key_refuses_other_keys_and_garbage():
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    encrypted = KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    for data in (
        p384,
        encrypted,
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"",
    ):
        with pytest.raises(CertificateError):
            certificates.load_private_key(data)


def test_pem_bundles_load_and_are_bounded(pki):
    bundle = certificates.pem(pki["delegate"]) + certificates.pem(pki["operator"])
    assert certificates.load_certificates(bundle) == [pki["delegate"], pki["operator"]]
    with pytest.raises(CertificateError, match="more than 10"):
        certificates.load_certificates(certificates.pem(pki["root"]) * 11)
    with pytest.raises(CertificateError, match="64 KiB"):
        certificates.load_certificates(b"\n" * (64 * 1024 + 1))
    for garbage in (
        b"",
        b"not pem",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ):
        with pytest.raises(CertificateError):
            certificates.load_certificates(garbage)
