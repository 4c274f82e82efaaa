"""Registration reports from the IMS core: RFC 3680 reginfo documents and their JSON twin.

The S-CSCF tells the portal which devices are registered for which public identities by
posting ``application/reginfo+xml`` (RFC 3680 §5 with the RFC 5628 GRUU extension) or the
same information as JSON to ``/network/v1/registrations``. Both come from the network
and are treated as hostile: they become frozen dataclasses, or raise ReginfoError with a
message that names the field and where it is, never anything else.

What is accepted, and why:

- XML is parsed by defusedxml with DTDs, entity declarations and external references
  refused: reginfo needs none of them, and they are how entity-expansion (billion laughs,
  quadratic blow-up) and file-disclosure attacks get in. The body must be UTF-8, and an
  encoding declaration naming anything else is refused.
- The RFC 3680 schema: its required attributes and enumerations, ``xs:unsignedLong``
  counters (the version, a ``nonNegativeInteger``, is held to the same 64-bit bound),
  exactly one ``<uri>`` and at most one ``<display-name>`` per contact; child order is
  not enforced. Elements and attributes of other namespaces are extensions (the schema's
  ``##other``) and are ignored. An unknown element of the reginfo namespace, or of none,
  is refused: it is most likely a misplaced ``<contact>`` or ``<uri>`` whose data would
  otherwise be lost without a word.
- The RFC 3680 state machines: a contact's event names the transition into its state, so
  registered/created/refreshed/shortened go with ``active`` and expired/deactivated/
  probation/unregistered/rejected with ``terminated``; a registration in ``init`` or
  ``terminated`` has no active contact. Ids are unique among the registrations of a
  document and among the contacts of a registration (the same device appears under every
  AoR of an implicit registration set), and an AoR is reported once.
- RFC 5628 ``gr:pub-gruu`` and ``gr:temp-gruu``, at most one each; the temp GRUU's
  required ``first-cseq`` is checked but not kept.
- The portal's own namespace EXT_NS: optional ``<user-agent>``, ``<access-network>``
  (P-Access-Network-Info) and ``<source-ip>`` children of a contact, which the IMS core
  may fill in from the REGISTER it saw. The source IP must be an address and is kept in
  canonical form.
- ``+sip.instance`` (RFC 5626) is lifted out of the unknown-params into
  ``ContactInfo.instance`` without quotes and angle brackets, since the portal keys
  devices on it; the other unknown-params keep their order and lose surrounding quotes.
- AoRs and contact URIs are ``sip:``, ``sips:`` or ``tel:`` URIs, GRUUs ``sip:`` or
  ``sips:``; they are kept as given but for surrounding whitespace.

Limits, each refused with ReginfoError: MAX_BODY_BYTES of body (checked before parsing),
MAX_REGISTRATIONS registrations, MAX_CONTACTS contacts per registration, MAX_PARAMS
unknown-params per contact and MAX_VALUE characters per value.

The JSON form (parse_registration_events) carries the same fields under snake_case keys,
applies the same rules and limits, and gives an equal document for equivalent input.
The writer of such XML, for tests and benchmarks, is telephony/tests/reginfo_xml.py.
"""

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NoReturn, overload
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as defused_etree
from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden

REGINFO_NS = "urn:ietf:params:xml:ns:reginfo"
GRUUINFO_NS = "urn:ietf:params:xml:ns:gruuinfo"
EXT_NS = "urn:x-enterprise-portal:params:xml:ns:reginfo-ext"

MAX_BODY_BYTES = 512 * 1024
MAX_REGISTRATIONS = 1000
MAX_CONTACTS = 100
MAX_PARAMS = 50
MAX_VALUE = 2048
# The schema's counters are xs:unsignedLong (2**64 - 1); the portal stores them in
# signed 64-bit columns, and no notifier counts that far, so it accepts up to 2**63 - 1.
MAX_COUNTER = 2**63 - 1

DOCUMENT_STATES = ("full", "partial")
REGISTRATION_STATES = ("init", "active", "terminated")
CONTACT_STATES = ("active", "terminated")
ACTIVE_EVENTS = ("registered", "created", "refreshed", "shortened")
TERMINATED_EVENTS = ("expired", "deactivated", "probation", "unregistered", "rejected")
CONTACT_EVENTS = ACTIVE_EVENTS + TERMINATED_EVENTS
INSTANCE_PARAM = "+sip.instance"


class ReginfoError(ValueError):
    """A registration report that cannot be accepted; the message says what and where."""


@dataclass(frozen=True)
class ContactInfo:
    """One binding of a device to an AoR: a reginfo ``<contact>``."""

    element_id: str
    uri: str
    state: str
    event: str
    expires: int | None
    duration_registered: int | None
    retry_after: int | None
    callid: str
    cseq: int | None
    q: str  # as given, "" if absent
    display_name: str
    instance: str  # +sip.instance without quotes and angle brackets, "" if absent
    params: tuple[tuple[str, str], ...]  # the other unknown-params, values unquoted
    pub_gruu: str
    temp_gruu: str
    user_agent: str  # EXT_NS
    access_network: str  # EXT_NS, from P-Access-Network-Info
    source_ip: str  # EXT_NS, canonical form


@dataclass(frozen=True)
class RegistrationInfo:
    """The registration state of one AoR (a public user identity)."""

    element_id: str
    aor: str
    state: str
    contacts: tuple[ContactInfo, ...]


@dataclass(frozen=True)
class ReginfoDocument:
    """One report: the full state of the registrations, or the part that changed."""

    version: int
    state: str
    registrations: tuple[RegistrationInfo, ...]


def document_as_json(document: ReginfoDocument) -> dict[str, Any]:
    """The document as JSON-ready data, to be kept until it is applied. (Its values are
    immutable: no copies, unlike dataclasses.asdict, which took longer than parsing.)"""
    return {
        "version": document.version,
        "state": document.state,
        "registrations": [
            {**vars(r), "contacts": [vars(c) for c in r.contacts]} for r in document.registrations
        ],
    }


def document_from_json(data: dict[str, Any]) -> ReginfoDocument:
    """The document document_as_json kept: equal to the one parsed."""
    return ReginfoDocument(
        version=data["version"],
        state=data["state"],
        registrations=tuple(
            RegistrationInfo(
                element_id=r["element_id"],
                aor=r["aor"],
                state=r["state"],
                contacts=tuple(
                    ContactInfo(**{**c, "params": tuple(tuple(p) for p in c["params"])})
                    for c in r["contacts"]
                ),
            )
            for r in data["registrations"]
        ),
    )


# --- Field rules, shared by the XML and the JSON parser ----------------------------------

# Characters XML 1.0 cannot carry, not even as references. JSON can, so they are refused
# there too: every document must be writable as reginfo.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_URI = re.compile(r"(?:sips?|tel):\S+", re.IGNORECASE)
_SIP_URI = re.compile(r"sips?:\S+", re.IGNORECASE)
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")  # RFC 3261 qvalue
_XSD_INTEGER = re.compile(r"[+-]?[0-9]+")
_INSTANCE_WRAPPING = re.compile(r'[\s"<>]*')


def _fail(where: str, message: str) -> NoReturn:
    raise ReginfoError(f"{where}: {message}" if where else message)


def _brief(text: str) -> str:
    """Untrusted text cut short enough for an error message."""
    return text if len(text) <= 60 else text[:59] + "…"


def _registration_where(number: int, aor: str) -> str:
    return f"registration {number} (aor {_brief(aor)})"


def _value(where: str, label: str, value: str) -> str:
    if len(value) > MAX_VALUE:
        _fail(where, f"{label} is longer than {MAX_VALUE} characters")
    if _NOT_XML_CHAR.search(value):
        _fail(where, f"{label} contains a character that XML cannot carry")
    return value


def _identifier(where: str, label: str, raw: str) -> str:
    if not raw:
        _fail(where, f"{label} must not be empty")
    return _value(where, label, raw)


def _text(where: str, label: str, raw: str) -> str:
    return _value(where, label, raw.strip())


def _choice(where: str, label: str, raw: str, options: tuple[str, ...]) -> str:
    if raw not in options:
        _fail(where, f"{label} must be one of {', '.join(options)}, not {_brief(repr(raw))}")
    return raw


def _uri(where: str, label: str, raw: str) -> str:
    uri = _value(where, label, raw.strip())
    if not _URI.fullmatch(uri):
        _fail(where, f"{label} must be a sip:, sips: or tel: URI, not {_brief(repr(uri))}")
    return uri


def _gruu(where: str, label: str, raw: str) -> str:
    gruu = _value(where, label, raw.strip())
    if not _SIP_URI.fullmatch(gruu):
        _fail(where, f"{label} must be a sip: or sips: URI, not {_brief(repr(gruu))}")
    return gruu


def _qvalue(where: str, label: str, raw: str) -> str:
    q = raw.strip()
    if q and not _QVALUE.fullmatch(q):
        _fail(where, f"{label} must be a number from 0 to 1 with at most three decimals")
    return q


def _source_ip(where: str, label: str, raw: str) -> str:
    text = _text(where, label, raw)
    if not text:
        return ""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    # A zone (fe80::1%eth0) names an interface of the host that saw the address: no use
    # here, and free text besides.
    if address is None or getattr(address, "scope_id", None):
        _fail(where, f"{label} must be an IPv4 or IPv6 address, not {_brief(repr(text))}")
    return str(address)


def _counter(where: str, label: str, value: int) -> int:
    if value < 0:
        _fail(where, f"{label} must be a non-negative integer")
    if value > MAX_COUNTER:
        _fail(where, f"{label} must be at most {MAX_COUNTER}")
    return value


def _unquote(raw: str) -> str:
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


def _wrapping_length(text: str) -> int:
    found = _INSTANCE_WRAPPING.match(text)  # the pattern matches the empty string too
    return found.end() if found else 0


def _unwrap_instance(raw: str) -> str:
    """``"<urn:…>"`` → ``urn:…``. Two anchored scans keep it linear on hostile input."""
    start = _wrapping_length(raw)
    end = len(raw) - _wrapping_length(raw[::-1])
    return raw[start:end] if start < end else ""


def _unknown_params(
    where: str, raw_params: Iterable[tuple[str, str]]
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """(instance, other params) from (name, value) pairs as written."""
    instance = None
    params = []
    for raw_name, raw_value in raw_params:
        name = _value(where, "parameter name", raw_name.strip())
        if not name:
            _fail(where, "parameter name must not be empty")
        if name.lower() == INSTANCE_PARAM:
            if instance is not None:
                _fail(where, f"more than one {INSTANCE_PARAM}")
            instance = _value(where, INSTANCE_PARAM, _unwrap_instance(raw_value))
            if not instance:
                _fail(where, f"{INSTANCE_PARAM} is empty")
        else:
            label = f"parameter {_brief(repr(name))}"
            params.append((name, _value(where, label, _unquote(raw_value))))
    return instance or "", tuple(params)


def _checked_contact(where: str, contact: ContactInfo) -> ContactInfo:
    expected = "active" if contact.event in ACTIVE_EVENTS else "terminated"
    if contact.state != expected:
        _fail(where, f"event {contact.event} leaves a contact {expected}, not {contact.state}")
    return contact


def _checked_registration(where: str, registration: RegistrationInfo) -> RegistrationInfo:
    first_with_id: dict[str, int] = {}
    for number, contact in enumerate(registration.contacts, 1):
        earlier = first_with_id.setdefault(contact.element_id, number)
        if earlier != number:
            _fail(where, f"contact {number}: id is already used by contact {earlier}")
        if contact.state == "active" and registration.state != "active":
            _fail(where, f"contact {number} is active but the registration is {registration.state}")
    return registration


def _checked_document(document: ReginfoDocument) -> ReginfoDocument:
    first_with_id: dict[str, int] = {}
    first_with_aor: dict[str, int] = {}
    for number, registration in enumerate(document.registrations, 1):
        where = _registration_where(number, registration.aor)
        earlier = first_with_id.setdefault(registration.element_id, number)
        if earlier != number:
            _fail(where, f"id is already used by registration {earlier}")
        earlier = first_with_aor.setdefault(registration.aor, number)
        if earlier != number:
            _fail(where, f"aor is already reported by registration {earlier}")
    return document


# --- XML ---------------------------------------------------------------------------------

_XML_ENCODING = re.compile(r"""\A\ufeff?<\?xml\s[^>]*?\bencoding\s*=\s*["']([^"']*)["']""")
_EXTENSION_ELEMENTS = ("user-agent", "access-network", "source-ip")


def parse_reginfo_xml(body: bytes) -> ReginfoDocument:
    """The document in an ``application/reginfo+xml`` body; ReginfoError if unacceptable."""
    root = _parse_xml(body)
    if root.tag != f"{{{REGINFO_NS}}}reginfo":
        _fail("", f"the root element must be reginfo of namespace {REGINFO_NS}")
    where = "reginfo"
    version = _xml_counter(where, "version", _required(where, root, "version"))
    state = _choice(where, "state", _required(where, root, "state"), DOCUMENT_STATES)
    registrations: list[RegistrationInfo] = []
    for child in root:
        namespace, name = _split(child.tag)
        if (namespace, name) == (REGINFO_NS, "registration"):
            if len(registrations) == MAX_REGISTRATIONS:
                _fail(where, f"more than {MAX_REGISTRATIONS} registrations")
            registrations.append(_registration_from_xml(len(registrations) + 1, child))
        elif namespace in ("", REGINFO_NS):
            _fail(where, f"unexpected element {_brief(name)}")
    return _checked_document(ReginfoDocument(version, state, tuple(registrations)))


def _parse_xml(body: bytes) -> Element:
    if len(body) > MAX_BODY_BYTES:
        _fail("", f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ReginfoError(f"the body is not UTF-8 (byte {error.start})") from error
    declared = _XML_ENCODING.match(text)
    if declared and declared.group(1).lower() not in ("utf-8", "utf8"):
        _fail("", f"the body must be UTF-8, not {_brief(declared.group(1))}")
    try:
        return defused_etree.fromstring(
            body, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DTDForbidden as error:
        raise ReginfoError("document type declarations (DTDs) are not accepted") from error
    except EntitiesForbidden as error:
        raise ReginfoError("entity declarations are not accepted") from error
    except ExternalReferenceForbidden as error:
        raise ReginfoError("external references are not accepted") from error
    except defused_etree.ParseError as error:
        raise ReginfoError(f"the body is not well-formed XML: {error}") from error


def _split(tag: str) -> tuple[str, str]:
    """(namespace, local name) of an ElementTree tag; "" for no namespace."""
    if tag.startswith("{"):
        namespace, _, name = tag[1:].partition("}")
        return namespace, name
    return "", tag


def _required(where: str, element: Element, attribute: str, label: str = "") -> str:
    value = element.get(attribute)
    if value is None:
        _fail(where, f"{label or attribute} is required")
    return value


@overload
def _xml_counter(where: str, label: str, raw: str) -> int: ...
@overload
def _xml_counter(where: str, label: str, raw: str | None) -> int | None: ...
def _xml_counter(where: str, label: str, raw: str | None) -> int | None:
    if raw is None:
        return None
    text = raw.strip(" \t\r\n")  # xs:unsignedLong collapses whitespace
    if len(text) > MAX_VALUE or not _XSD_INTEGER.fullmatch(text):
        _fail(where, f"{label} must be a non-negative integer")
    return _counter(where, label, int(text))


def _simple_text(where: str, element: Element, label: str) -> str:
    if len(element):
        _fail(where, f"{label} must hold text only")
    return element.text or ""


def _registration_from_xml(number: int, element: Element) -> RegistrationInfo:
    where = f"registration {number}"
    aor = _uri(where, "aor", _required(where, element, "aor"))
    where = _registration_where(number, aor)
    element_id = _identifier(where, "id", _required(where, element, "id"))
    state = _choice(where, "state", _required(where, element, "state"), REGISTRATION_STATES)
    contacts: list[ContactInfo] = []
    for child in element:
        namespace, name = _split(child.tag)
        if (namespace, name) == (REGINFO_NS, "contact"):
            if len(contacts) == MAX_CONTACTS:
                _fail(where, f"more than {MAX_CONTACTS} contacts")
            contacts.append(_contact_from_xml(f"{where}: contact {len(contacts) + 1}", child))
        elif namespace in ("", REGINFO_NS):
            _fail(where, f"unexpected element {_brief(name)}")
    return _checked_registration(where, RegistrationInfo(element_id, aor, state, tuple(contacts)))


def _contact_from_xml(where: str, element: Element) -> ContactInfo:
    uris: list[str] = []
    display_names: list[str] = []
    raw_params: list[tuple[str, str]] = []
    gruus: dict[str, str] = {}
    extensions: dict[str, str] = {}
    for child in element:
        namespace, name = _split(child.tag)
        if namespace == REGINFO_NS and name == "uri":
            uris.append(_simple_text(where, child, name))
        elif namespace == REGINFO_NS and name == "display-name":
            display_names.append(_simple_text(where, child, name))  # its xml:lang is not kept
        elif namespace == REGINFO_NS and name == "unknown-param":
            if len(raw_params) == MAX_PARAMS:
                _fail(where, f"more than {MAX_PARAMS} unknown-params")
            param_name = _required(where, child, "name", "unknown-param name")
            raw_params.append((param_name, _simple_text(where, child, name)))
        elif namespace == GRUUINFO_NS and name in ("pub-gruu", "temp-gruu"):
            if name in gruus:
                _fail(where, f"more than one {name}")
            gruus[name] = _gruu(where, name, _required(where, child, "uri", f"{name} uri"))
            if name == "temp-gruu":
                label = "temp-gruu first-cseq"
                _xml_counter(where, label, _required(where, child, "first-cseq", label))
        elif namespace == EXT_NS and name in _EXTENSION_ELEMENTS:
            if name in extensions:
                _fail(where, f"more than one {name}")
            extensions[name] = _simple_text(where, child, name)
        elif namespace in ("", REGINFO_NS):
            _fail(where, f"unexpected element {_brief(name)}")
    if len(uris) != 1:
        _fail(where, f"a contact must have exactly one uri, not {len(uris)}")
    if len(display_names) > 1:
        _fail(where, "more than one display-name")
    uri = _uri(where, "uri", uris[0])
    instance, params = _unknown_params(where, raw_params)
    contact = ContactInfo(
        element_id=_identifier(where, "id", _required(where, element, "id")),
        uri=uri,
        state=_choice(where, "state", _required(where, element, "state"), CONTACT_STATES),
        event=_choice(where, "event", _required(where, element, "event"), CONTACT_EVENTS),
        expires=_xml_counter(where, "expires", element.get("expires")),
        duration_registered=_xml_counter(
            where, "duration-registered", element.get("duration-registered")
        ),
        retry_after=_xml_counter(where, "retry-after", element.get("retry-after")),
        callid=_value(where, "callid", element.get("callid", "")),
        cseq=_xml_counter(where, "cseq", element.get("cseq")),
        q=_qvalue(where, "q", element.get("q", "")),
        display_name=_text(where, "display-name", "".join(display_names)),
        instance=instance,
        params=params,
        pub_gruu=gruus.get("pub-gruu", ""),
        temp_gruu=gruus.get("temp-gruu", ""),
        user_agent=_text(where, "user-agent", extensions.get("user-agent", "")),
        access_network=_text(where, "access-network", extensions.get("access-network", "")),
        source_ip=_source_ip(where, "source-ip", extensions.get("source-ip", "")),
    )
    return _checked_contact(where, contact)


# --- JSON --------------------------------------------------------------------------------

_DOCUMENT_KEYS = frozenset({"version", "state", "registrations"})
_REGISTRATION_KEYS = frozenset({"aor", "state", "id", "contacts"})
_CONTACT_KEYS = frozenset(
    {
        "id",
        "uri",
        "state",
        "event",
        "expires",
        "duration_registered",
        "retry_after",
        "callid",
        "cseq",
        "q",
        "display_name",
        "instance",
        "params",
        "pub_gruu",
        "temp_gruu",
        "user_agent",
        "access_network",
        "source_ip",
    }
)


def parse_registration_events(data: object) -> ReginfoDocument:
    """The document in a decoded JSON body posted to /network/v1/registrations.

    Keys are those of the dataclasses, plus ``params`` as an object of name: value. An
    optional key may be left out or null: the version defaults to 0, the document state
    to partial, a registration's state to active, a registration id to its AoR and a
    contact id to its instance, else its URI.
    """
    fields = _json_object("the document", data, _DOCUMENT_KEYS)
    version = _json_counter("", fields, "version")
    state = _choice("", "state", _json_string("", fields, "state", "partial"), DOCUMENT_STATES)
    items = _json_list("", fields, "registrations", MAX_REGISTRATIONS, required=True)
    registrations = tuple(
        _registration_from_json(number, item) for number, item in enumerate(items, 1)
    )
    return _checked_document(ReginfoDocument(version or 0, state, registrations))


def _json_object(what: str, data: object, keys: frozenset[str]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ReginfoError(f"{what} must be a JSON object")
    unknown = sorted(_brief(repr(key)) for key in data if key not in keys)
    if unknown:
        raise ReginfoError(
            f"{what}: unknown key {', '.join(unknown[:5])}; expected {', '.join(sorted(keys))}"
        )
    return data


def _json_string(where: str, fields: dict[str, Any], key: str, default: str = "") -> str:
    value = fields.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        _fail(where, f"{key} must be a string")
    return value


def _json_required(where: str, fields: dict[str, Any], key: str) -> str:
    if fields.get(key) is None:
        _fail(where, f"{key} is required")
    return _json_string(where, fields, key)


def _json_counter(where: str, fields: dict[str, Any], key: str) -> int | None:
    value = fields.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(where, f"{key} must be a non-negative integer")
    return _counter(where, key, value)


def _json_list(
    where: str, fields: dict[str, Any], key: str, limit: int, *, required: bool = False
) -> list[Any]:
    value = fields.get(key)
    if value is None:
        if required:
            _fail(where, f"{key} is required")
        return []
    if not isinstance(value, list):
        _fail(where, f"{key} must be a list")
    if len(value) > limit:
        _fail(where, f"more than {limit} {key}")
    return value


def _registration_from_json(number: int, data: object) -> RegistrationInfo:
    where = f"registration {number}"
    fields = _json_object(where, data, _REGISTRATION_KEYS)
    aor = _uri(where, "aor", _json_required(where, fields, "aor"))
    where = _registration_where(number, aor)
    element_id = _identifier(where, "id", _json_string(where, fields, "id", aor))
    state = _choice(
        where, "state", _json_string(where, fields, "state", "active"), REGISTRATION_STATES
    )
    items = _json_list(where, fields, "contacts", MAX_CONTACTS)
    contacts = tuple(
        _contact_from_json(f"{where}: contact {index}", item) for index, item in enumerate(items, 1)
    )
    return _checked_registration(where, RegistrationInfo(element_id, aor, state, contacts))


def _contact_from_json(where: str, data: object) -> ContactInfo:
    fields = _json_object(where, data, _CONTACT_KEYS)
    uri = _uri(where, "uri", _json_required(where, fields, "uri"))
    instance, params = _unknown_params(where, _json_params(where, fields))
    pub_gruu = _json_string(where, fields, "pub_gruu")
    temp_gruu = _json_string(where, fields, "temp_gruu")
    contact = ContactInfo(
        element_id=_identifier(where, "id", _json_string(where, fields, "id", instance or uri)),
        uri=uri,
        state=_choice(where, "state", _json_required(where, fields, "state"), CONTACT_STATES),
        event=_choice(where, "event", _json_required(where, fields, "event"), CONTACT_EVENTS),
        expires=_json_counter(where, fields, "expires"),
        duration_registered=_json_counter(where, fields, "duration_registered"),
        retry_after=_json_counter(where, fields, "retry_after"),
        callid=_value(where, "callid", _json_string(where, fields, "callid")),
        cseq=_json_counter(where, fields, "cseq"),
        q=_qvalue(where, "q", _json_string(where, fields, "q")),
        display_name=_text(where, "display_name", _json_string(where, fields, "display_name")),
        instance=instance,
        params=params,
        pub_gruu=_gruu(where, "pub_gruu", pub_gruu) if pub_gruu.strip() else "",
        temp_gruu=_gruu(where, "temp_gruu", temp_gruu) if temp_gruu.strip() else "",
        user_agent=_text(where, "user_agent", _json_string(where, fields, "user_agent")),
        access_network=_text(
            where, "access_network", _json_string(where, fields, "access_network")
        ),
        source_ip=_source_ip(where, "source_ip", _json_string(where, fields, "source_ip")),
    )
    return _checked_contact(where, contact)


def _json_params(where: str, fields: dict[str, Any]) -> list[tuple[str, str]]:
    """The instance and params as (name, value) pairs, as if written as unknown-params."""
    instance = _json_string(where, fields, "instance")
    params = fields.get("params")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        _fail(where, "params must be an object of name: value strings")
    pairs = [(INSTANCE_PARAM, instance)] if _unwrap_instance(instance) else []
    if len(pairs) + len(params) > MAX_PARAMS:
        _fail(where, f"more than {MAX_PARAMS} params")
    for name, value in params.items():
        if not isinstance(name, str) or not isinstance(value, str):
            _fail(where, f"params {_brief(repr(name))} must map a name to a string")
        pairs.append((name, value))
    return pairs
