"""RFC 3680 reginfo XML written from a ReginfoDocument, for tests and benchmarks (the
portal only reads reginfo): parsing what it writes gives the same document back."""

from collections.abc import Iterable

from telephony.registrations.reginfo import (
    EXT_NS,
    GRUUINFO_NS,
    INSTANCE_PARAM,
    REGINFO_NS,
    ContactInfo,
    ReginfoDocument,
)

# Tab, newline and carriage return are written as references, or a parser would turn them
# into spaces (attributes) or fold \r\n into \n (text).
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTRIBUTE_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\t": "&#9;",
        "\n": "&#10;",
        "\r": "&#13;",
    }
)


def render_reginfo_xml(document: ReginfoDocument) -> bytes:
    """``document`` as an RFC 3680 reginfo body (UTF-8), declaring the GRUU and portal
    extension namespaces only where a contact uses them."""
    contacts = [c for r in document.registrations for c in r.contacts]
    root = [("xmlns", REGINFO_NS)]
    if any(c.pub_gruu or c.temp_gruu for c in contacts):
        root.append(("xmlns:gr", GRUUINFO_NS))
    if any(c.user_agent or c.access_network or c.source_ip for c in contacts):
        root.append(("xmlns:ext", EXT_NS))
    root += [("version", str(document.version)), ("state", document.state)]
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', f"<reginfo{_attributes(root)}>"]
    for registration in document.registrations:
        opening = "  <registration" + _attributes(
            [
                ("aor", registration.aor),
                ("id", registration.element_id),
                ("state", registration.state),
            ]
        )
        if not registration.contacts:
            lines.append(opening + "/>")
            continue
        lines.append(opening + ">")
        for contact in registration.contacts:
            lines += _render_contact(contact)
        lines.append("  </registration>")
    lines.append("</reginfo>")
    return ("\n".join(lines) + "\n").encode()


def _attributes(pairs: Iterable[tuple[str, object]]) -> str:
    """Attributes written in order, leaving out absent ones (None or "")."""
    return "".join(
        f' {name}="{str(value).translate(_ATTRIBUTE_ESCAPES)}"'
        for name, value in pairs
        if value is not None and value != ""
    )


def _element(tag: str, text: str, attributes: Iterable[tuple[str, object]] = ()) -> str:
    return f"<{tag}{_attributes(attributes)}>{text.translate(_TEXT_ESCAPES)}</{tag}>"


def _param_text(value: str) -> str:
    """Unknown-param text that the parser reads back (unquoted) as ``value``."""
    if value != value.strip() or (len(value) >= 2 and value[0] == value[-1] == '"'):
        return f'"{value}"'
    return value


def _render_contact(contact: ContactInfo) -> list[str]:
    attributes = [
        ("id", contact.element_id),
        ("state", contact.state),
        ("event", contact.event),
        ("expires", contact.expires),
        ("duration-registered", contact.duration_registered),
        ("retry-after", contact.retry_after),
        ("callid", contact.callid),
        ("cseq", contact.cseq),
        ("q", contact.q),
    ]
    children = [_element("uri", contact.uri)]
    if contact.display_name:
        children.append(_element("display-name", contact.display_name))
    if contact.instance:
        children.append(
            _element("unknown-param", f'"<{contact.instance}>"', [("name", INSTANCE_PARAM)])
        )
    children += [
        _element("unknown-param", _param_text(value), [("name", name)])
        for name, value in contact.params
    ]
    if contact.pub_gruu:
        children.append(f"<gr:pub-gruu{_attributes([('uri', contact.pub_gruu)])}/>")
    if contact.temp_gruu:
        # The first CSeq is not kept; the last REGISTER's stands in for it.
        first_cseq = contact.cseq if contact.cseq is not None else 0
        temp = _attributes([("uri", contact.temp_gruu), ("first-cseq", first_cseq)])
        children.append(f"<gr:temp-gruu{temp}/>")
    for name, value in (
        ("user-agent", contact.user_agent),
        ("access-network", contact.access_network),
        ("source-ip", contact.source_ip),
    ):
        if value:
            children.append(_element(f"ext:{name}", value))
    return [
        f"    <contact{_attributes(attributes)}>",
        *(f"      {child}" for child in children),
        "    </contact>",
    ]
