"""The SIP message parser that reads the S-CSCF's third-party REGISTERs: real-looking
messages, and hostile ones refused with a reason."""

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.registrations.sipmessage import (
    MAX_HEADERS,
    SipMessageError,
    ThirdPartyRegister,
    UeRegistration,
    parse_message,
    parse_third_party_register,
)
from telephony.tests.sip_messages import (
    ANDROID,
    LTE,
    ROB_CONTACT,
    ROB_IMEI,
    ROB_SIP,
    SCSCF,
    multipart,
    sip,
    third_party_register,
    ue_ok,
    ue_register,
    with_ue,
)

ROB_UE = UeRegistration(
    contact_uri=ROB_CONTACT, instance=ROB_IMEI, user_agent=ANDROID, access_network=LTE
)


def refused(data: bytes) -> str:
    with pytest.raises(SipMessageError) as error:
        parse_third_party_register(data)
    return str(error.value)


# --- What a third-party REGISTER says ----------------------------------------------------


def test_a_third_party_register_without_bodies_names_the_impu_its_expiry_and_the_scscf():
    assert parse_third_party_register(third_party_register()) == ThirdPartyRegister(
        impu=ROB_SIP, expires=600000, scscf=SCSCF, ue=None
    )


def test_compact_header_names_mean_their_long_forms():
    assert parse_third_party_register(third_party_register(compact=True)).impu == ROB_SIP


def test_the_ues_register_and_the_200_in_multipart_mixed_describe_the_ue():
    assert parse_third_party_register(with_ue()).ue == ROB_UE


def test_a_single_message_sip_body_is_the_ues_register():
    message = third_party_register(body=ue_register(), content_type="message/sip")
    assert parse_third_party_register(message).ue == ROB_UE


def test_the_200_alone_describes_the_ue_only_when_it_lists_one_binding():
    alone = third_party_register(body=ue_ok(), content_type="message/sip")
    assert parse_third_party_register(alone).ue == UeRegistration(
        contact_uri=ROB_CONTACT, instance=ROB_IMEI, user_agent="", access_network=""
    )
    two = ue_ok(contacts=(ROB_CONTACT, "sip:+4930123400@198.51.100.7:5060"))
    message = third_party_register(body=two, content_type="message/sip")
    assert parse_third_party_register(message).ue is None


def test_the_contacts_expires_wins_over_the_expires_header():
    message = third_party_register(expires=3600).replace(
        f"Contact: <{SCSCF}>".encode(), f"Contact: <{SCSCF}>;expires=0".encode()
    )
    assert parse_third_party_register(message).expires == 0


def test_without_either_expiry_rfc_3261s_hour_applies():
    assert parse_third_party_register(third_party_register(expires=None)).expires == 3600


def test_a_de_registration_keeps_nothing_about_the_ue():
    register = parse_third_party_register(with_ue(expires=0))
    assert (register.expires, register.ue) == (0, None)


def test_contact_star_is_a_de_registration_only():
    star = third_party_register(expires=0).replace(f"Contact: <{SCSCF}>".encode(), b"Contact: *")
    assert parse_third_party_register(star) == ThirdPartyRegister(
        impu=ROB_SIP, expires=0, scscf="", ue=None
    )
    assert "only for a de-registration" in refused(star.replace(b"Expires: 0", b"Expires: 60"))


def test_folded_header_lines_are_joined():
    message = third_party_register(
        extra=(
            "Subject: a long",
            " \tsubject",
        )
    )
    parsed = parse_message(message)
    assert parsed.values("subject") == ["a long subject"]


def test_other_parts_are_skipped_and_the_epilogue_is_not_read():
    body = multipart([("application/3gpp-ims+xml", b"<x/>")]) + b"epilogue \x00\xff"
    message = third_party_register(body=body, content_type="multipart/mixed; boundary=boundary1")
    assert parse_third_party_register(message).ue is None


def test_a_part_without_headers_is_plain_text_and_skipped():
    body = b"preamble\r\n--b\r\n\r\nhello\r\n--b--"
    message = third_party_register(body=body, content_type="multipart/mixed; boundary=b")
    assert parse_third_party_register(message).ue is None


def test_a_sips_scscf_and_a_tel_impu_are_fine():
    message = third_party_register("tel:+4930123400", scscf="sips:scscf1.ims.example:5061")
    assert parse_third_party_register(message).scscf == "sips:scscf1.ims.example:5061"


# --- Hostile and malformed ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "no empty line"),
        (third_party_register().replace(b"\r\n", b"\n"), "no empty line"),
        (
            third_party_register().replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\n"),
            "does not end with CRLF",
        ),
        (
            third_party_register().replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r"),
            "does not end with CRLF",
        ),
        (third_party_register().replace(b"70", b"7\x000"), "control character"),
        (
            third_party_register(extra=("Subject: caf\xe9",)).replace(b"caf\xc3\xa9", b"caf\xe9"),
            "not UTF-8",
        ),
        (bytes(range(128, 256)) * 4 + b"\r\n\r\n", "not UTF-8"),
        (
            third_party_register().replace(b"Content-Length: 0", b"Content-Length: 12"),
            "says 12 bytes",
        ),
        (third_party_register() + b"trailing", "says 0 bytes, the body has 8"),
        (
            third_party_register().replace(b"Content-Length: 0", b"Content-Length: -1"),
            "not a number",
        ),
        (
            third_party_register().replace(b"Content-Length: 0", b"Content-Length: 99999999999"),
            "not a number",
        ),
        (third_party_register(extra=("Content-Length: 5",)), "given twice"),
        (
            third_party_register(extra=tuple(f"X-H{n}: v" for n in range(MAX_HEADERS))),
            "more than 100 headers",
        ),
        (third_party_register(extra=("Subject: " + "a" * 9000,)), "longer than 8192"),
        (
            third_party_register(extra=("Subject: a", *(" b" * 1 for _ in range(5000)))),
            "longer than 8192",
        ),
        (b" folded\r\nTo: x\r\n\r\n", "not a SIP request"),
        (third_party_register().replace(b"REGISTER sip", b"INVITE sip", 1), "not a REGISTER"),
        (third_party_register().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), "not a SIP request"),
        (sip("SIP/2.0 200 OK", ["To: <sip:a@b>"]), "not a REGISTER"),
        (third_party_register().replace(b"To: <", b"X: <"), "exactly one To header"),
        (third_party_register(extra=(f"t: <{ROB_SIP}>",)), "exactly one To header"),
        (third_party_register("mailto:rob@swift.example"), "must be a sip:, sips: or tel: URI"),
        (third_party_register(scscf="tel:+4930123400"), "must be a sip: or sips: URI"),
        (third_party_register().replace(b"To: <sip", b'To: "Rob <sip'), "unclosed quoted"),
        (
            third_party_register().replace(b"Expires: 600000", b"Expires: soon"),
            "not a number of seconds",
        ),
        (third_party_register(extra=("Expires: 5",)), "Expires is given twice"),
        (
            third_party_register().replace(
                f"Contact: <{SCSCF}>".encode(), f"Contact: <{SCSCF}>, <{SCSCF}>".encode()
            ),
            "the S-CSCF alone",
        ),
        (third_party_register("sip:" + "a" * 600 + "@x"), "longer than 512"),
    ],
)
def test_malformed_or_hostile_messages_are_refused_with_a_reason(data, reason):
    assert reason in refused(data)


def boundary_body(body: bytes, content_type: str = "multipart/mixed; boundary=b") -> bytes:
    return third_party_register(body=body, content_type=content_type)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (boundary_body(b"--b\r\nContent-Type: text/plain\r\n\r\nno end"), "no closing boundary"),
        (boundary_body(b"no boundary at all"), "has no boundary"),
        (boundary_body(b"--b\r\n\r\nx\r\n--b--", "multipart/mixed"), "boundary is missing"),
        (
            boundary_body(b"--b\r\n\r\nx", 'multipart/mixed; boundary="' + "b" * 71 + '"'),
            "not RFC 2046",
        ),
        (boundary_body(b"--bx\r\n\r\nx\r\n--b--"), "followed by other text"),
        (boundary_body(b"--b\r\n\r\nx\r\n" * 9 + b"--b--"), "more than 8 parts"),
        (
            boundary_body(
                multipart(
                    [
                        (
                            "multipart/mixed; boundary=c",
                            multipart([("message/sip", ue_register())], "c"),
                        )
                    ]
                ),
                "multipart/mixed; boundary=boundary1",
            ),
            "multipart part inside a multipart body",
        ),
        (
            boundary_body(b"--b\r\nContent-Type: message/sip\r\n\r\nnot sip\r\n--b--"),
            "part 1 (message/sip)",
        ),
        (
            boundary_body(
                multipart([("message/sip", ue_register().replace(b"\r\n", b"\n"))]),
                "multipart/mixed; boundary=boundary1",
            ),
            "no empty line",
        ),
        (
            boundary_body(
                multipart([("message/sip", ue_register()), ("message/sip", ue_register())]),
                "multipart/mixed; boundary=boundary1",
            ),
            "more than one REGISTER",
        ),
        (
            boundary_body(
                multipart([("message/sip", sip("INVITE sip:a@b SIP/2.0", ["CSeq: 1 INVITE"]))]),
                "multipart/mixed; boundary=boundary1",
            ),
            "neither a REGISTER nor an answer",
        ),
        (
            boundary_body(
                multipart([("message/sip", ue_register(instance="x" * 300))]),
                "multipart/mixed; boundary=boundary1",
            ),
            "+sip.instance is longer",
        ),
        (boundary_body(b"\x00\xff" * 100, "message/sip"), "message/sip body"),
        (boundary_body(b"", "not a type"), None),
        (boundary_body(b"x", "not a type"), "not a media type"),
    ],
)
def test_hostile_bodies_are_refused_with_a_reason(data, reason):
    if reason is None:  # an empty body is no body, whatever its type says
        assert parse_third_party_register(data).ue is None
    else:
        assert reason in refused(data)


def test_a_huge_header_count_is_refused_before_it_is_all_read():
    data = third_party_register(extra=tuple(f"X-{n}: v" for n in range(50_000)))
    assert "more than 100 headers" in refused(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_parse_or_are_refused_with_a_reason(data):
    try:
        parse_third_party_register(data)
    except SipMessageError as error:
        assert str(error).startswith("the REGISTER")


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(with_ue()) - 1), st.binary(min_size=1, max_size=8))
def test_a_real_message_damaged_anywhere_parses_or_is_refused_with_a_reason(position, garbage):
    data = with_ue()
    with contextlib.suppress(SipMessageError):
        parse_third_party_register(data[:position] + garbage + data[position + len(garbage) :])
