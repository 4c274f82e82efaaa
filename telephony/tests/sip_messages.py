"""Third-party REGISTERs as an S-CSCF sends them to an application server, modelled on
the TS 24.229 §5.4.1.7 and TS 24.228 example flows (scscf1, the UE's REGISTER with
IPsec and P-Access-Network-Info, the 200 OK listing the bindings), for tests."""

SCSCF = "sip:scscf1.ims.example"
ROB_SIP = "sip:+4930123400@swift.example;user=phone"
ROB_IMEI = "urn:gsma:imei:35209900-176148-1"
ROB_CONTACT = "sip:+4930123400@[2001:db8::aaa:bbb:ccc:ddd]:1357;comp=sigcomp"
ANDROID = "Acme Dialer/5.2 (Android 14; SM-S918B)"
LTE = "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=262011234abcd1234"


def sip(start: str, headers: list[str], body: bytes = b"", *, length: bool = True) -> bytes:
    lines = [start, *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def ue_register(
    aor: str = ROB_SIP,
    contact: str = ROB_CONTACT,
    instance: str = ROB_IMEI,
    user_agent: str = ANDROID,
    access_network: str = LTE,
) -> bytes:
    instance_param = f';+sip.instance="<{instance}>"' if instance else ""
    return sip(
        "REGISTER sip:swift.example SIP/2.0",
        [
            "Via: SIP/2.0/UDP [2001:db8::aaa:bbb:ccc:ddd]:1357;comp=sigcomp;branch=z9hG4bKnashds7",
            "Max-Forwards: 70",
            f"P-Access-Network-Info: {access_network}",
            f"From: <{aor}>;tag=4fa3",
            f"To: <{aor}>",
            f"Contact: <{contact}>;expires=600000{instance_param};+g.3gpp.icsi-ref="
            '"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel"',
            "Call-ID: apb03a0s09dkjdfglkj49111",
            'Authorization: Digest username="262011234567890@ims.mnc001.mcc262.3gppnetwork.org", '
            'realm="ims.example", nonce="A34Cm+Fva37UYWpGNB34JP", '
            'uri="sip:swift.example", response="6629fae49393a05397450978507c4ef1"',
            "Security-Client: ipsec-3gpp; alg=hmac-sha-1-96; spi-c=23456789; spi-s=12345678;"
            " port-c=2468; port-s=1357",
            "Require: sec-agree",
            "Proxy-Require: sec-agree",
            "CSeq: 2 REGISTER",
            "Supported: path, gruu",
            f"User-Agent: {user_agent}",
        ],
    )


def ue_ok(aor: str = ROB_SIP, contacts: tuple[str, ...] = (ROB_CONTACT,)) -> bytes:
    bindings = ", ".join(
        f'<{c}>;expires=600000;+sip.instance="<{ROB_IMEI}>"' if n == 0 else f"<{c}>;expires=300"
        for n, c in enumerate(contacts)
    )
    return sip(
        "SIP/2.0 200 OK",
        [
            "Via: SIP/2.0/UDP [2001:db8::aaa:bbb:ccc:ddd]:1357;comp=sigcomp;branch=z9hG4bKnashds7",
            f"From: <{aor}>;tag=4fa3",
            f"To: <{aor}>;tag=5ef4",
            "Call-ID: apb03a0s09dkjdfglkj49111",
            f"Contact: {bindings}",
            "CSeq: 2 REGISTER",
            "Date: Wed, 11 July 2001 08:49:37 GMT",
            "P-Associated-URI: <sip:+4930123400@swift.example;user=phone>, <tel:+4930123400>",
            f"Service-Route: <{SCSCF};lr>",
        ],
    )


def multipart(parts: list[tuple[str, bytes]], boundary: str = "boundary1") -> bytes:
    body = b""
    for content_type, content in parts:
        body += f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode() + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def third_party_register(
    impu: str = ROB_SIP,
    *,
    expires: int | None = 600000,
    scscf: str = SCSCF,
    body: bytes = b"",
    content_type: str = "",
    compact: bool = False,
    extra: tuple[str, ...] = (),
) -> bytes:
    """The REGISTER an S-CSCF sends the AS for ``impu`` (TS 24.229 §5.4.1.7): To the
    IMPU, Contact the S-CSCF, Expires how long (0: de-registration)."""
    to, contact, call_id, length = (
        ("t", "m", "i", "l")
        if compact
        else (
            "To",
            "Contact",
            "Call-ID",
            "Content-Length",
        )
    )
    headers = [
        "Via: SIP/2.0/UDP scscf1.ims.example;branch=z9hG4bK351g45.1",
        "Max-Forwards: 70",
        f"From: <{scscf}>;tag=4fa3",
        f"{to}: <{impu}>",
        f"{call_id}: apb03a0s09dkjdfglkj49111",
        "CSeq: 87 REGISTER",
        f"{contact}: <{scscf}>",
        *([f"Expires: {expires}"] if expires is not None else []),
        *([f"Content-Type: {content_type}"] if content_type else []),
        *extra,
        f"{length}: {len(body)}",
    ]
    return sip("REGISTER sip:portal-as.swift.example SIP/2.0", headers, body, length=False)


def with_ue(impu: str = ROB_SIP, *, expires: int = 600000, **ue) -> bytes:
    """A third-party REGISTER carrying the UE's REGISTER and the 200 OK to it."""
    body = multipart(
        [
            ("application/3gpp-ims+xml", b"<ims-3gpp version='1'><service-info/></ims-3gpp>"),
            ("message/sip", ue_register(aor=impu, **ue)),
            ("message/sip", ue_ok(aor=impu)),
        ]
    )
    return third_party_register(
        impu, expires=expires, body=body, content_type='multipart/mixed;boundary="boundary1"'
    )


# --- INVITEs at the edge (TS 24.229 §5.7, RFC 5502) ------------------------------------------

CALLEE = "+4940123499"


def invite(
    *,
    caller: str = "+4930123400",
    callee: str = CALLEE,
    asserted: bool = True,
    served: str = "",
    mark: str = "",
    identity: tuple[str, ...] = (),
    display: str = "Rob Smith",
    extra: tuple[str, ...] = (),
    sdp: bytes = b"v=0\r\no=- 1 1 IN IP4 198.51.100.20\r\ns=-\r\nc=IN IP4 198.51.100.20\r\n"
    b"t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
) -> bytes:
    """An INVITE as the S-CSCF (``served``: the P-Served-User's sescase; ``mark``: the
    ISC mark's d=) or an SBC hands it to the edge."""
    aor = f"sip:{caller}@swift.example;user=phone"
    routes = ["Route: <sip:portal-as@192.0.2.20:5070;lr>"]
    if mark:
        hexed = aor.encode().hex()
        routes = [
            f"Route: <sip:portal-as@192.0.2.20:5070;lr>, "
            f"<sip:iscmark@192.0.2.10:5060;lr;s=1;h=0;d={mark};a={hexed}>"
        ]
    return sip(
        f"INVITE sip:{callee}@ims.example;user=phone SIP/2.0",
        [
            "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK77ef4c2312983.1",
            "Max-Forwards: 69",
            *routes,
            f'From: "{display}" <{aor}>;tag=9fxced76sl',
            f"To: <sip:{callee}@ims.example;user=phone>",
            "Call-ID: 3848276298220188511@198.51.100.20",
            "CSeq: 1 INVITE",
            *([f"P-Asserted-Identity: <{aor}>"] if asserted else []),
            *([f"P-Served-User: <{aor}>;sescase={served};regstate=reg"] if served else []),
            *(f"Identity: {value}" for value in identity),
            f"Contact: <sip:{caller}@198.51.100.20:5060>",
            "Content-Type: application/sdp",
            *extra,
        ],
        sdp,
    )
