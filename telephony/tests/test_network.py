"""The network API the IMS core calls: authentication, scoping, hostile bodies."""

import pytest
from django.test import Client

from accounts.audit import Actor
from accounts.models import AuditEvent
from accounts.services import network_client_revoke
from accounts.tests.factories import UserFactory
from telephony.models import Registration
from telephony.tests.factories import give_numbers, make_identity, network_http

pytestmark = pytest.mark.django_db

ROB = "sip:+4930123400@swift.example;user=phone"


def reginfo(version=1, aor=ROB, instance="urn:gsma:imei:35209900-176148-1", state="full"):
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" xmlns:gr="urn:ietf:params:xml:ns:gruuinfo"
         version="{version}" state="{state}">
  <registration aor="{aor}" id="a7" state="active">
    <contact id="76" state="active" event="registered" expires="3600" callid="hy76@pc.example" cseq="2" q="0.8">
      <uri>sip:+4930123400@198.51.100.20:5060;transport=tcp</uri>
      <display-name>Rob</display-name>
      <unknown-param name="+sip.instance">"&lt;{instance}&gt;"</unknown-param>
      <gr:pub-gruu uri="sip:+4930123400@swift.example;gr={instance}"/>
    </contact>
  </registration>
</reginfo>""".encode()


@pytest.fixture
def network(enterprise):
    return network_http(enterprise)


def post_xml(http, body, content_type="application/reginfo+xml"):
    return http.post("/network/v1/reginfo", data=body, content_type=content_type)


def test_a_reginfo_document_is_applied_and_answered_with_a_report(network, identity):
    response = post_xml(network, reginfo())
    assert response.status_code == 200, response.content
    assert response.json() == {
        "applied": 1,
        "new_devices": 1,
        "ended": 0,
        "stale_aors": [],
        "unknown_aors": [],
        "full_state_needed_aors": [],
    }
    record = Registration.objects.get()
    assert record.pub_gruu.startswith("sip:+4930123400@swift.example;gr=")
    assert (record.callid, record.cseq, record.q, record.display_name) == (
        "hy76@pc.example",
        2,
        "0.8",
        "Rob",
    )
    event = AuditEvent.objects.get(action="registration.reported")
    assert event.actor_kind == "network_client" and "S-CSCF 1" in event.actor_label


def test_an_http_retry_of_a_notify_is_answered_without_changing_anything(network, identity):
    first = reginfo(version=0)
    assert post_xml(network, first).json()["new_devices"] == 1
    tablet = reginfo(
        version=1, state="partial", instance="urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
    )
    assert post_xml(network, tablet).json()["new_devices"] == 1
    # The first NOTIFY again: its answer was lost and the SIP edge tries once more.
    retry = post_xml(network, first)
    assert retry.status_code == 200
    assert retry.json()["stale_aors"] == [ROB] and retry.json()["applied"] == 0
    assert Registration.objects.active().count() == 2


def test_a_version_gap_is_answered_so_that_the_edge_subscribes_again(network, identity):
    post_xml(network, reginfo(version=1))
    answer = post_xml(network, reginfo(version=4, state="partial")).json()
    assert answer["full_state_needed_aors"] == [ROB] and answer["applied"] == 1
    answer = post_xml(network, reginfo(version=0)).json()  # the new subscription's full state
    assert answer["full_state_needed_aors"] == [] and answer["stale_aors"] == []


def test_json_events_are_applied_the_same_way(network, identity):
    body = {
        "version": 1,
        "state": "partial",
        "registrations": [
            {
                "aor": f"tel:{identity.tn}",
                "contacts": [
                    {
                        "uri": "sip:rob@198.51.100.50:5060",
                        "state": "active",
                        "event": "registered",
                        "expires": 600,
                        "instance": "urn:uuid:2a9a8b3c-0000-4000-8000-000000000001",
                        "user_agent": "Acme Softphone/1.0 (Windows 11)",
                        "access_network": "IEEE-802.11;i-wlan-node-id=ffffff",
                        "source_ip": "198.51.100.50",
                    }
                ],
            }
        ],
    }
    response = network.post("/network/v1/registrations", data=body, content_type="application/json")
    assert response.status_code == 200, response.content
    record = Registration.objects.get()
    assert record.label == "Windows PC (…0001)"
    assert record.access_network.startswith("IEEE-802.11")


def test_without_a_valid_credential_nothing_is_applied(network, identity, enterprise):
    assert post_xml(Client(), reginfo()).status_code == 401
    assert post_xml(Client(HTTP_AUTHORIZATION="Bearer ntk_forged"), reginfo()).status_code == 401
    network_client_revoke(actor=Actor.system(), client=network.network_client)
    assert post_xml(network, reginfo()).status_code == 401
    assert not Registration.objects.exists()


def test_an_api_token_or_a_session_is_not_a_network_credential(admin_client, api, identity):
    assert post_xml(admin_client, reginfo()).status_code in (401, 403)
    assert (
        api.post(
            "/network/v1/reginfo", reginfo(), content_type="application/reginfo+xml"
        ).status_code
        == 401
    )


def test_a_client_cannot_report_on_an_enterprise_it_does_not_serve(
    network, identity, other_enterprise
):
    give_numbers(other_enterprise, "+4940123400", "+4940123409")
    outsider = make_identity(UserFactory(enterprise=other_enterprise))
    response = post_xml(
        network, reginfo(aor=f"sip:{outsider.tn}@{other_enterprise.sip_domain};user=phone")
    )
    assert response.status_code == 403
    assert "does not serve Other Co" in response.json()["detail"]
    assert not Registration.objects.exists()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<reginfo", "Not a valid reginfo document"),
        (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
            b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="full">&b;</reginfo>',
            "Not a valid reginfo document",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="full">&x;</reginfo>',
            "Not a valid reginfo document",
        ),
        (reginfo().replace(b'version="1"', b'version="-1"'), "version"),
    ],
)
def test_malformed_or_hostile_bodies_get_a_400_with_a_reason(network, identity, body, reason):
    response = post_xml(network, body)
    assert response.status_code == 400
    assert reason in response.json()["detail"]
    assert not Registration.objects.exists()


def test_a_body_over_the_limit_gets_a_413_unread(network, identity):
    response = post_xml(network, b"<x>" + b" " * (600 * 1024) + b"</x>")
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    assert "larger than 512 KiB" in response.json()["detail"]
    assert not Registration.objects.exists()


def test_the_wrong_content_type_is_refused(network, identity):
    assert post_xml(network, reginfo(), content_type="application/xml").status_code == 415


def test_the_network_api_is_in_the_schema(client):
    paths = client.get("/api/schema/?format=json").json()["paths"]
    assert "/network/v1/reginfo" in paths and "/network/v1/registrations" in paths
