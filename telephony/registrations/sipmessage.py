"""Third-party REGISTERs and INVITEs, as the SIP edge hands them over: a small, strict
SIP message parser (RFC 3261 §7) and the facts TS 24.229 (§5.4.1.7 for a REGISTER, §5.7
for an AS's INVITE) and RFC 5502 put in them.

The edge (Kamailio) answers the S-CSCF and posts the whole REGISTER it received, start
line to body. It comes from the network and is treated as hostile: it becomes frozen
dataclasses, or raises SipMessageError with a message that says what and where. Nothing
but what is listed here is interpreted.

- A message is a start line (a request ``METHOD URI SIP/2.0`` or a response ``SIP/2.0
  code reason``), header lines, an empty line and a body. Lines end with CRLF; a bare CR
  or LF, a NUL or another control character in the headers is refused. The headers must
  be UTF-8. A line folded onto the next (RFC 3261 LWS) is joined with one space.
- Header names are tokens, matched case-insensitively; compact forms (``t``, ``m``,
  ``l``, ``i``, ``f``, ``v``, ``c``, …) mean their long names. At most MAX_HEADERS
  headers of at most MAX_HEADER_CHARS characters each, folded lines included.
- ``Content-Length`` is honoured: the body must be exactly that long (a message over
  HTTP has nothing after it). Without it the body is what follows the empty line.
- ``multipart/mixed`` bodies are split at their boundary per RFC 2046 (delimiters at a
  line's start, transport padding, the closing delimiter required, at most MAX_PARTS
  parts). Parts of type ``message/sip`` are parsed as messages; their own bodies are
  not interpreted. A multipart part inside a multipart body is refused; parts of other
  types (the iFC's service information, say) are skipped.

What a third-party REGISTER says (parse_third_party_register): the IMPU registered
(the To URI), how long (the Contact's ``expires``, else the Expires header, else
RFC 3261's default of an hour; ``Contact: *`` only with 0), the S-CSCF (the Contact
URI), and, when the iFC asked for the UE's REGISTER and the S-CSCF's 200 OK to it
(``message/sip`` bodies), the UE's contact URI, ``+sip.instance``, User-Agent and
P-Access-Network-Info — taken from its REGISTER, or from the 200 OK when that lists a
single binding.

What an INVITE says (parse_invite): which side of the call the edge serves, the calling
number, the called number, the served user, the Identity header values, and the
P-Asserted-Identity and From addresses the edge may rewrite. The side is decided by one
rule, first match wins:

1. ``P-Served-User: <uri>;sescase=orig|term`` (RFC 5502; Kamailio's S-CSCF adds it with
   ims_isc's ``add_p_served_user``);
2. the S-CSCF's ISC mark, a Route ``<sip:iscmark@scscf;lr;s=..;h=..;d=0|1|2;a=hex>``
   (Kamailio's ims_isc: d=0 originating, 1 terminating, 2 terminating unregistered; ``a``
   the served user's IMPU in hex);
3. otherwise (an SBC on a trunk): an INVITE with an Identity header is terminating
   (verify it), one without is originating (sign it).

The calling number is the first P-Asserted-Identity naming a telephone number, else the
From URI's; the called number the Request-URI's, else the To URI's. A number is a
``tel:`` URI's, or a ``sip:`` user part of ``+`` and digits (or digits with
``user=phone``).
"""

import re
from dataclasses import dataclass
from typing import NoReturn

MAX_HEADERS = 100
MAX_HEADER_CHARS = 8192
MAX_PARTS = 8
MAX_URI = 512
MAX_INSTANCE = 255
MAX_TEXT = 255  # User-Agent and P-Access-Network-Info are kept cut to this
DEFAULT_EXPIRES = 3600  # RFC 3261 §10.2.1.1
MAX_EXPIRES = 2**32 - 1  # RFC 3261 delta-seconds

# RFC 3261 §7.3.3 and the IANA registry of compact forms.
COMPACT_FORMS = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_HEADER = re.compile(r"([^:\s]+)[ \t]*:[ \t]*(.*)", re.DOTALL)
_REQUEST_LINE = re.compile(r"([A-Za-z0-9.!%*_+`'~-]+) (\S+) SIP/2\.0", re.IGNORECASE)
_STATUS_LINE = re.compile(r"SIP/2\.0 ([1-6][0-9]{2}) ([^\r\n]*)", re.IGNORECASE)
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
_SIP_URI = re.compile(r"sips?:[^\s<>\"]+", re.IGNORECASE)
_AOR_URI = re.compile(r"(?:sips?|tel):[^\s<>\"]+", re.IGNORECASE)
_DIGITS = re.compile(r"[0-9]{1,10}")
_CSEQ = re.compile(r"[0-9]{1,10}[ \t]+([A-Za-z0-9.!%*_+`'~-]+)")
# RFC 2046 bchars: 1 to 70 of them, not ending in a space.
_NUMBER = re.compile(r"\+?[0-9]{6,15}")
_TEL_SEPARATORS = re.compile(r"[-.()]")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2}){1,256}")
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")


class SipMessageError(ValueError):
    """A message that cannot be accepted; the message says what and where."""


@dataclass(frozen=True)
class SipMessage:
    """One SIP request or response. Header names are lower-case long forms."""

    method: str  # "" for a response
    request_uri: str
    status: int | None  # None for a request
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


@dataclass(frozen=True)
class UeRegistration:
    """The UE behind a third-party REGISTER, as its own REGISTER (or the 200 OK to it)
    describes it."""

    contact_uri: str
    instance: str  # +sip.instance without quotes and angle brackets, "" if absent
    user_agent: str
    access_network: str  # P-Access-Network-Info


@dataclass(frozen=True)
class ThirdPartyRegister:
    impu: str
    expires: int  # seconds; 0 is a de-registration
    scscf: str  # "" for ``Contact: *``
    ue: UeRegistration | None


@dataclass(frozen=True)
class NameAddress:
    """A From or P-Asserted-Identity entry: the display name (unquoted) and the URI."""

    display: str
    uri: str


@dataclass(frozen=True)
class Invite:
    """What the edge needs decided about an INVITE (see the module's rule)."""

    originating: bool  # the edge serves the caller (sign); else the callee (verify)
    served_user: str  # the IMPU the S-CSCF serves (P-Served-User or the ISC mark), or ""
    calling: str  # "+digits", "" when no URI names a number
    called: str  # "+digits", "" when no URI names a number
    identity: str  # the Identity header values joined with commas, "" if none
    asserted: tuple[NameAddress, ...]  # P-Asserted-Identity entries
    sender: NameAddress  # From


def is_plain_sip_uri(value: str) -> bool:
    """Whether ``value`` is a SIP URI that can go between angle brackets in a header of a
    request we build, as it is (no white space, line break, bracket or quote)."""
    return len(value) <= 500 and bool(_SIP_URI.fullmatch(value))


def _fail(where: str, message: str) -> NoReturn:
    raise SipMessageError(f"{where}: {message}")


def _brief(text: str) -> str:
    """Untrusted text cut short enough for an error message."""
    return text if len(text) <= 60 else text[:59] + "…"


# --- Messages ---------------------------------------------------------------------------


def _header_lines(head: str, where: str) -> list[tuple[str, str]]:
    """The (name, value) of each header line of ``head`` (CRLF-separated), unfolded."""
    headers: list[list[str]] = []
    for line in head.split("\r\n") if head else []:
        if len(line) > MAX_HEADER_CHARS:
            _fail(where, f"a header line is longer than {MAX_HEADER_CHARS} characters")
        if line[:1] in (" ", "\t"):
            if not headers:
                _fail(where, "a folded line continues no header")
            headers[-1][1] = f"{headers[-1][1]} {line.strip()}"
            if len(headers[-1][0]) + len(headers[-1][1]) > MAX_HEADER_CHARS:
                _fail(where, f"a header is longer than {MAX_HEADER_CHARS} characters")
            continue
        match = _HEADER.fullmatch(line)
        if not match or not _TOKEN.fullmatch(match.group(1)):
            _fail(where, f"not a header line: {_brief(repr(line))}")
        if len(headers) == MAX_HEADERS:
            _fail(where, f"more than {MAX_HEADERS} headers")
        name = match.group(1).lower()
        headers.append([COMPACT_FORMS.get(name, name), match.group(2)])
    return [(name, value.strip()) for name, value in headers]


def _split_head(data: bytes, where: str) -> tuple[str, bytes]:
    """The header section (start line included) as text, and the bytes after it."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        _fail(where, "no empty line (CRLF CRLF) ends the headers")
    raw = data[:end]
    if b"\r" in raw.replace(b"\r\n", b"") or b"\n" in raw.replace(b"\r\n", b""):
        _fail(where, "a header line does not end with CRLF")
    try:
        head = raw.decode("utf-8")
    except UnicodeDecodeError:
        _fail(where, "the headers are not UTF-8")
    if _CONTROL.search(head.replace("\r\n", "")):
        _fail(where, "the headers contain a control character")
    return head, data[end + 4 :]


def parse_message(data: bytes, *, where: str = "the message") -> SipMessage:
    """A SIP message from its bytes, or SipMessageError."""
    head, body = _split_head(data, where)
    start, _, rest = head.partition("\r\n")
    headers = tuple(_header_lines(rest, where))
    lengths = {value for name, value in headers if name == "content-length"}
    if len(lengths) > 1:
        _fail(where, "Content-Length is given twice, differently")
    if lengths:
        length = lengths.pop()
        if not _DIGITS.fullmatch(length):
            _fail(where, f"Content-Length is not a number of bytes: {_brief(repr(length))}")
        if int(length) != len(body):
            _fail(where, f"Content-Length says {int(length)} bytes, the body has {len(body)}")
    request = _REQUEST_LINE.fullmatch(start)
    if request:
        method, uri = request.group(1).upper(), request.group(2)
        return SipMessage(method=method, request_uri=uri, status=None, headers=headers, body=body)
    status = _STATUS_LINE.fullmatch(start)
    if status:
        code = int(status.group(1))
        return SipMessage(method="", request_uri="", status=code, headers=headers, body=body)
    _fail(where, f"not a SIP request or status line: {_brief(repr(start))}")


# --- Header values ----------------------------------------------------------------------


def _split_outside_quotes(text: str, separator: str, where: str) -> list[str]:
    """``text`` split at ``separator`` where it is neither in a quoted string nor
    between angle brackets."""
    pieces: list[str] = []
    current: list[str] = []
    quoted = angled = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"' and not angled:
            quoted = not quoted
        elif not quoted and char == "<":
            angled = True
        elif not quoted and char == ">":
            angled = False
        elif char == separator and not quoted and not angled:
            pieces.append("".join(current))
            current = []
            continue
        current.append(char)
    if quoted or angled:
        _fail(where, "an unclosed quoted string or angle bracket")
    pieces.append("".join(current))
    return pieces


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _params(text: str, where: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for piece in _split_outside_quotes(text, ";", where)[1:]:
        name, _, value = piece.partition("=")
        params.setdefault(name.strip().lower(), _unquote(value.strip()))
    return params


@dataclass(frozen=True)
class _Address:
    uri: str
    params: dict[str, str]
    display: str = ""  # the display name, unquoted


def _addresses(value: str, where: str, label: str) -> list[_Address]:
    """The name-addr / addr-spec entries of a To, From or Contact value, each with
    its header parameters (RFC 3261 §20.10: after an addr-spec, ``;`` starts them)."""
    addresses = []
    for entry in _split_outside_quotes(value, ",", where):
        entry = entry.strip()
        if not entry:
            _fail(where, f"{label} has an empty entry")
        display = ""
        if entry.startswith('"'):  # a quoted display name, then <URI>
            name = re.match(r'"(?:[^"\\]|\\.)*"', entry)
            angle = entry.find("<", name.end()) if name else -1
            if angle < 0 or name is None:
                _fail(where, f"{label} has a display name without an <address>")
            display = _unquote(name.group(0))
        else:
            angle = entry.find("<")
            display = entry[:angle].strip() if angle > 0 else ""
        if angle >= 0:
            close = entry.find(">", angle)
            if close < 0:
                _fail(where, f"{label} has an unclosed angle bracket")
            uri, rest = entry[angle + 1 : close], entry[close + 1 :]
        else:
            uri, _, rest = entry.partition(";")
            rest = f";{rest}" if rest else ""
        if rest.strip() and not rest.strip().startswith(";"):
            _fail(where, f"{label} has text after its address: {_brief(repr(rest))}")
        addresses.append(
            _Address(uri=uri.strip(), params=_params(rest.strip(), where), display=display)
        )
    return addresses


def _one(message: SipMessage, name: str, where: str) -> str:
    values = message.values(name)
    if len(values) != 1:
        _fail(where, f"exactly one {name.title()} header is needed, not {len(values)}")
    return values[0]


def _uri(uri: str, pattern: re.Pattern, where: str, label: str, kinds: str) -> str:
    if len(uri) > MAX_URI:
        _fail(where, f"{label} is longer than {MAX_URI} characters")
    if not pattern.fullmatch(uri):
        _fail(where, f"{label} must be a {kinds} URI, not {_brief(repr(uri))}")
    return uri


def _seconds(raw: str, where: str, label: str) -> int:
    if not _DIGITS.fullmatch(raw.strip()):
        _fail(where, f"{label} is not a number of seconds: {_brief(repr(raw))}")
    return min(int(raw.strip()), MAX_EXPIRES)


def _text(message: SipMessage, name: str) -> str:
    values = message.values(name)
    return values[0][:MAX_TEXT] if values else ""


# --- Bodies -----------------------------------------------------------------------------


def _content_type(value: str, where: str) -> tuple[str, dict[str, str]]:
    media, _, _ = value.partition(";")
    media = media.strip().lower()
    kind, slash, subtype = media.partition("/")
    if not slash or not _TOKEN.fullmatch(kind) or not _TOKEN.fullmatch(subtype):
        _fail(where, f"not a media type: {_brief(repr(value))}")
    return media, _params(value, where)


def _parts(body: bytes, boundary: str, where: str) -> list[tuple[list[tuple[str, str]], bytes]]:
    """RFC 2046 §5.1.1: the headers and content of each part of a multipart body."""
    if not _BOUNDARY.fullmatch(boundary):
        _fail(where, "the multipart boundary is missing or not RFC 2046's")
    dash = b"--" + boundary.encode("ascii")
    delimiter = b"\r\n" + dash
    # The first delimiter starts the body or a line after the preamble.
    if body.startswith(dash):
        position = len(dash)
    else:
        first = body.find(delimiter)
        if first < 0:
            _fail(where, "the multipart body has no boundary")
        position = first + len(delimiter)
    parts: list[tuple[list[tuple[str, str]], bytes]] = []
    while True:
        if body.startswith(b"--", position):
            return parts  # the closing delimiter; the epilogue is not read
        line_end = body.find(b"\r\n", position)
        if line_end < 0 or body[position:line_end].strip(b" \t"):
            _fail(where, "a multipart boundary is followed by other text on its line")
        if len(parts) == MAX_PARTS:
            _fail(where, f"more than {MAX_PARTS} parts")
        next_delimiter = body.find(delimiter, line_end)
        if next_delimiter < 0:
            _fail(where, "the multipart body has no closing boundary")
        content = body[line_end + 2 : next_delimiter]
        part_where = f"{where}, part {len(parts) + 1}"
        if content.startswith(b"\r\n"):  # no headers: text/plain
            parts.append(([], content[2:]))
        else:
            head, part_body = _split_head(content, part_where)
            parts.append((_header_lines(head, part_where), part_body))
        position = next_delimiter + len(delimiter)


def _embedded(message: SipMessage, where: str) -> list[SipMessage]:
    """The ``message/sip`` bodies of ``message``: one, or the parts of a multipart."""
    content_types = message.values("content-type")
    if not content_types or not message.body:
        return []
    media, params = _content_type(content_types[0], where)
    if media == "message/sip":
        return [parse_message(message.body, where=f"{where}, its message/sip body")]
    if media != "multipart/mixed":
        return []
    embedded = []
    for number, (headers, content) in enumerate(
        _parts(message.body, params.get("boundary", ""), where), start=1
    ):
        part_where = f"{where}, part {number}"
        part_type = next((value for name, value in headers if name == "content-type"), "")
        part_media = _content_type(part_type, part_where)[0] if part_type else "text/plain"
        if part_media.startswith("multipart/"):
            _fail(part_where, "a multipart part inside a multipart body is refused")
        if part_media == "message/sip":
            embedded.append(parse_message(content, where=f"{part_where} (message/sip)"))
    return embedded


# --- Third-party REGISTER ---------------------------------------------------------------


def parse_third_party_register(data: bytes) -> ThirdPartyRegister:
    """The facts of a third-party REGISTER (TS 24.229 §5.4.1.7), or SipMessageError."""
    where = "the REGISTER"
    message = parse_message(data, where=where)
    if message.method != "REGISTER":
        _fail(where, f"not a REGISTER request: {_brief(message.method or str(message.status))}")
    to = _addresses(_one(message, "to", where), where, "To")
    if len(to) != 1:
        _fail(where, "To must name one address")
    impu = _uri(to[0].uri, _AOR_URI, where, "the To URI", "sip:, sips: or tel:")
    contact_value = _one(message, "contact", where)
    expires_header = message.values("expires")
    if len(expires_header) > 1:
        _fail(where, "Expires is given twice")
    default = _seconds(expires_header[0], where, "Expires") if expires_header else None
    if contact_value.strip() == "*":
        if default != 0:
            _fail(where, "Contact: * is only for a de-registration (Expires: 0)")
        expires, scscf = 0, ""
    else:
        contacts = _addresses(contact_value, where, "Contact")
        if len(contacts) != 1:
            _fail(where, "Contact must name the S-CSCF alone")
        scscf = _uri(contacts[0].uri, _SIP_URI, where, "the Contact URI", "sip: or sips:")
        raw = contacts[0].params.get("expires")
        if raw is not None:
            expires = _seconds(raw, where, "the Contact's expires")
        else:
            expires = DEFAULT_EXPIRES if default is None else default
    # Checked in a de-registration too, though only a registration keeps what they say.
    ue = _ue(_embedded(message, where), where)
    return ThirdPartyRegister(impu=impu, expires=expires, scscf=scscf, ue=ue if expires else None)


def _ue(embedded: list[SipMessage], where: str) -> UeRegistration | None:
    registers = [m for m in embedded if m.method == "REGISTER"]
    answers = [m for m in embedded if m.status is not None and _cseq_method(m) == "REGISTER"]
    if len(registers) + len(answers) != len(embedded):
        _fail(where, "a message/sip body holds neither a REGISTER nor an answer to one")
    if len(registers) > 1 or len(answers) > 1:
        _fail(where, "more than one REGISTER or answer in the message/sip bodies")
    source = registers[0] if registers else answers[0] if answers else None
    if source is None:
        return None
    source_where = f"{where}, the UE's {'REGISTER' if registers else 'answer'}"
    values = source.values("contact")
    contacts = [
        address
        for value in values
        if value.strip() != "*"
        for address in _addresses(value, source_where, "Contact")
    ]
    if not registers and len(contacts) != 1:
        return None  # an answer listing every binding does not say which is the UE's
    if not contacts:
        return None
    contact = contacts[0]
    uri = _uri(contact.uri, _SIP_URI, source_where, "the UE's Contact URI", "sip: or sips:")
    instance = re.sub(r'^[\s"<]+|[\s">]+$', "", contact.params.get("+sip.instance", ""))
    if len(instance) > MAX_INSTANCE:
        _fail(source_where, f"+sip.instance is longer than {MAX_INSTANCE} characters")
    user_agent = _text(registers[0], "user-agent") if registers else ""
    access_network = _text(registers[0], "p-access-network-info") if registers else ""
    return UeRegistration(
        contact_uri=uri, instance=instance, user_agent=user_agent, access_network=access_network
    )


def _cseq_method(message: SipMessage) -> str:
    values = message.values("cseq")
    match = _CSEQ.fullmatch(values[0]) if len(values) == 1 else None
    return match.group(1).upper() if match else ""


# --- INVITE -----------------------------------------------------------------------------

ISC_MARK_USER = "iscmark"
ISC_DIRECTIONS = {"0": True, "1": False, "2": False}  # ims_isc: originating or not


def parse_invite(data: bytes) -> Invite:
    """The facts of an INVITE the edge was handed (the module's rule), or
    SipMessageError."""
    where = "the INVITE"
    message = parse_message(data, where=where)
    if message.method != "INVITE":
        _fail(where, f"not an INVITE request: {_brief(message.method or str(message.status))}")
    request_uri = _uri(message.request_uri, _AOR_URI, where, "the Request-URI", "sip: or tel:")
    senders = _addresses(_one(message, "from", where), where, "From")
    receivers = _addresses(_one(message, "to", where), where, "To")
    if len(senders) != 1 or len(receivers) != 1:
        _fail(where, "From and To must each name one address")
    sender = _name_address(senders[0].display, senders[0].uri, where, "the From URI")
    to_uri = _uri(receivers[0].uri, _AOR_URI, where, "the To URI", "sip:, sips: or tel:")
    asserted = tuple(
        _name_address(entry.display, entry.uri, where, "a P-Asserted-Identity URI")
        for value in message.values("p-asserted-identity")
        for entry in _addresses(value, where, "P-Asserted-Identity")
    )
    if len(asserted) > 2:  # RFC 3325: one sip: or sips: and one tel:
        _fail(where, "more than two P-Asserted-Identity addresses")
    identity = ",".join(message.values("identity"))
    originating, served_user = _session_case(message, where)
    if originating is None:
        originating = not identity
    calling = next((n for n in (_number(a.uri) for a in (*asserted, sender)) if n), "")
    return Invite(
        originating=originating,
        served_user=served_user,
        calling=calling,
        called=_number(request_uri) or _number(to_uri),
        identity=identity,
        asserted=asserted,
        sender=sender,
    )


def _name_address(display: str, uri: str, where: str, label: str) -> NameAddress:
    return NameAddress(
        display=display, uri=_uri(uri, _AOR_URI, where, label, "sip:, sips: or tel:")
    )


def _session_case(message: SipMessage, where: str) -> tuple[bool | None, str]:
    """(originating, served user) from P-Served-User, else from the ISC mark; (None, "")
    when neither says."""
    served = message.values("p-served-user")
    if len(served) > 1:
        _fail(where, "P-Served-User is given twice")
    if served:
        entries = _addresses(served[0], where, "P-Served-User")
        if len(entries) != 1:
            _fail(where, "P-Served-User must name one address")
        user = _uri(entries[0].uri, _AOR_URI, where, "the P-Served-User URI", "sip: or tel:")
        sescase = entries[0].params.get("sescase", "").lower()
        if sescase not in ("orig", "term"):
            _fail(where, "P-Served-User's sescase must be orig or term")
        return sescase == "orig", user
    for value in message.values("route"):
        for entry in _addresses(value, where, "Route"):
            scheme_user = entry.uri.split("@", 1)[0].lower()
            if scheme_user not in (f"sip:{ISC_MARK_USER}", f"sips:{ISC_MARK_USER}"):
                continue
            params = _params(entry.uri, where)
            direction = params.get("d", "")
            if direction not in ISC_DIRECTIONS:
                _fail(
                    where, f"the ISC mark's direction is not 0, 1 or 2: {_brief(repr(direction))}"
                )
            return ISC_DIRECTIONS[direction], _served_user_of_mark(params.get("a", ""), where)
    return None, ""


def _served_user_of_mark(hexed: str, where: str) -> str:
    """The IMPU an ISC mark's ``a`` names (hex of its bytes), or "" when it names none."""
    if not hexed:
        return ""
    if not _HEX.fullmatch(hexed):
        _fail(where, "the ISC mark's served user is not hex")
    try:
        impu = bytes.fromhex(hexed).decode("utf-8")
    except UnicodeDecodeError:
        _fail(where, "the ISC mark's served user is not UTF-8")
    return _uri(impu, _AOR_URI, where, "the ISC mark's served user", "sip: or tel:")


def _number(uri: str) -> str:
    """``+digits`` of a tel: URI or of a telephone-number sip: URI, else ""."""
    scheme, _, rest = uri.partition(":")
    scheme = scheme.lower()
    if scheme == "tel":
        user = _TEL_SEPARATORS.sub("", rest.split(";", 1)[0])
    elif scheme in ("sip", "sips") and "@" in rest:
        user = rest.split("@", 1)[0].split(";", 1)[0]
        if not user.startswith("+") and "user=phone" not in rest.lower():
            return ""
    else:
        return ""
    if not _NUMBER.fullmatch(user):
        return ""
    return user if user.startswith("+") else f"+{user}"
