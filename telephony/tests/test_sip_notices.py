"""The sip notification backend: each notice goes to its UE as a SIP MESSAGE that a real
Kamailio edge sends when asked over JSON-RPC, to a sipp UE on loopback; the answer is kept
on the notice and shown with the device."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accounts.audit import Actor
from accounts.services import network_client_create
from portal.testing import sign_in_verified
from telephony.models import NetworkNotice, Registration
from telephony.registrations import ingest, notify
from telephony.registrations.notify import NoticeError, SipEdgeNotifier
from telephony.registrations.reginfo import ContactInfo, ReginfoDocument, RegistrationInfo
from telephony.tests.factories import make_device
from telephony.tests.sip_peers import (
    free_port,
    new_edge,
    running_sipp,
    uas_scenario,
)

pytestmark = pytest.mark.django_db
NOTICES_FROM = "sip:notices@portal.example"


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    """The real edge for the module's tests (a MESSAGE times out after 2 s). No portal
    listens at its portal URL: these tests only ask it to send."""
    edge = new_edge(
        tmp_path_factory.mktemp("edge"),
        portal_url=f"http://127.0.0.1:{free_port()}",
        token="ntk_" + "x" * 32,
        transaction_seconds=2,
    )
    with edge.running() as running:
        yield running


@pytest.fixture
def sip_backend(settings, edge):
    settings.NETWORK_NOTIFY_BACKEND = "sip"
    settings.SIP_EDGE_RPC_URL = edge.rpc_url
    settings.SIP_EDGE_SCSCF_URI = ""
    settings.SIP_NOTICE_FROM = NOTICES_FROM
    return edge


def registration(identity, *, contact: str, gruu: str = "", key: str = "1") -> Registration:
    impus = [f"tel:{identity.tn}", f"sip:{identity.tn}@swift.example;user=phone"]
    return make_device(identity, contact=contact, key=key, pub_gruu=gruu, impus=impus)


def notice_for(
    reg: Registration, message="Your Jürgen's Tablet is now also signed in."
) -> NetworkNotice:
    return NetworkNotice.objects.create(
        enterprise=reg.enterprise, registration=reg, kind="logged_on_elsewhere", message=message
    )


# --- Against the real edge -----------------------------------------------------------


def test_a_notice_reaches_the_phone_at_its_gruu_and_the_page_says_so(
    sip_backend, identity, client, tmp_path
):
    with running_sipp(uas_scenario(200, "OK"), tmp_path) as ue:
        gruu = f"{ue.uri(identity.tn)};gr=urn:uuid:1"
        # The contact is not reachable: the GRUU is the route.
        notice = notice_for(registration(identity, contact="sip:rob@192.0.2.1:5060", gruu=gruu))
        assert notify.send_notice(notice.pk) == "sent"
        [message] = ue.received("MESSAGE")

    assert message.request_uri == gruu
    assert message.header("To") == f"<tel:{identity.tn}>"  # the first IMPU
    sender = message.header("From")
    assert sender.startswith(f"<{NOTICES_FROM}>;tag=") and sender.count("tag=") == 1
    assert message.header("Content-Type") == "text/plain;charset=utf-8"
    assert message.body == "Your Jürgen's Tablet is now also signed in."
    notice.refresh_from_db()
    assert (notice.state, notice.channel, notice.delivery_code, notice.delivery_reason) == (
        "sent", "sip", 200, "OK",
    )  # fmt: skip
    assert notice.answered_at is not None and notice.attempts == 1

    page = sign_in_verified(client, identity.owner).get("/my/devices/")
    assert "Delivered to the phone (200 OK)" in page.content.decode()


def test_without_a_gruu_the_contact_is_reached_through_the_scscf(
    sip_backend, settings, identity, tmp_path
):
    # sipp plays the S-CSCF: the MESSAGE must come to it, addressed to the contact.
    with running_sipp(uas_scenario(202, "Accepted"), tmp_path) as scscf:
        settings.SIP_EDGE_SCSCF_URI = f"sip:127.0.0.1:{scscf.port}"
        contact = "sip:+4930123400@198.51.100.20:5060;transport=udp"
        notice = notice_for(registration(identity, contact=contact))
        assert notify.send_notice(notice.pk) == "sent"
        [message] = scscf.received("MESSAGE")
    assert message.request_uri == contact
    notice.refresh_from_db()
    assert (notice.delivery_code, notice.outcome) == (202, "Delivered to the phone (202 Accepted)")


def test_a_refusal_is_final_and_the_admin_sees_why(sip_backend, identity, admin_client, tmp_path):
    with running_sipp(uas_scenario(415, "Unsupported Media Type"), tmp_path) as ue:
        notice = notice_for(registration(identity, contact=ue.uri("rob")))
        assert notify.send_notice(notice.pk) == "failed"
        assert len(ue.received("MESSAGE")) == 1
    notice.refresh_from_db()
    assert (notice.state, notice.delivery_code, notice.attempts) == ("failed", 415, 1)
    assert "415" in notice.last_error

    page = admin_client.get(f"/employees/{identity.owner.pk}/")
    assert "Refused by the phone (415 Unsupported Media Type)" in page.content.decode()


def test_no_answer_is_tried_again_then_given_up(sip_backend, settings, identity, tmp_path):
    settings.SYNC_MAX_ATTEMPTS = 2
    with running_sipp(uas_scenario(None), tmp_path) as ue:  # takes the MESSAGE, never answers
        notice = notice_for(registration(identity, contact=ue.uri("rob")))
        with pytest.raises(NoticeError) as raised:
            notify.send_notice(notice.pk)
        assert raised.value.transient
        assert ue.received("MESSAGE")  # it reached the UE, which kept quiet
    notice.refresh_from_db()
    assert (notice.state, notice.delivery_code) == ("pending", 408)
    assert notice.outcome == "Phone did not answer (408); trying again"

    assert notify.send_notice(notice.pk) == "failed"  # nobody there now; the last try
    notice.refresh_from_db()
    assert (notice.state, notice.attempts, notice.outcome) == (
        "failed", 2, "Phone did not answer (408)",
    )  # fmt: skip


def test_the_notices_of_a_second_device_reach_both_phones(
    sip_backend, identity, enterprise, tmp_path, django_capture_on_commit_callbacks
):
    """The whole path: the network reports a second device while the first is active;
    each of the two UEs gets its own MESSAGE (R-6.11-001)."""
    client, _ = network_client_create(actor=Actor.system(), name="S-CSCF", enterprises=[enterprise])
    aor = f"sip:{identity.tn}@swift.example;user=phone"

    def report(version, *contacts):
        document = ReginfoDocument(
            version=version,
            state="partial",
            registrations=(RegistrationInfo(aor, aor, "active", tuple(contacts)),),
        )
        ingest.apply_report(actor=Actor(network_client=client), client=client, document=document)

    def contact(uri, instance, user_agent):
        return ContactInfo(
            element_id=instance, uri=uri, state="active", event="registered", expires=3600,
            duration_registered=None, retry_after=None, callid=instance, cseq=1, q="",
            display_name="", instance=instance, params=(), pub_gruu="", temp_gruu="",
            user_agent=user_agent, access_network="", source_ip="",
        )  # fmt: skip

    with (
        running_sipp(uas_scenario(200, "OK"), tmp_path / "phone") as phone,
        running_sipp(uas_scenario(200, "OK"), tmp_path / "tablet") as tablet,
    ):
        report(1, contact(phone.uri("rob"), "urn:uuid:phone", "Acme Phone/2.1"))
        with django_capture_on_commit_callbacks(execute=True):
            report(2, contact(tablet.uri("rob"), "urn:uuid:tablet", "Linphone/5.2"))
        [to_phone], [to_tablet] = phone.received("MESSAGE"), tablet.received("MESSAGE")

    assert to_phone.body.startswith("Your Linphone") and "is now also signed in" in to_phone.body
    assert to_tablet.body.startswith("You are also signed in on: ")
    assert set(NetworkNotice.objects.values_list("state", "delivery_code")) == {("sent", 200)}


# --- Without the edge ------------------------------------------------------------------


def test_an_edge_that_does_not_answer_is_a_transient_fault(settings, identity):
    settings.NETWORK_NOTIFY_BACKEND = "sip"
    settings.SIP_EDGE_RPC_URL = f"http://127.0.0.1:{free_port()}/RPC"  # nobody listens
    notice = notice_for(registration(identity, contact="sip:rob@198.51.100.9"))
    with pytest.raises(NoticeError, match="SIP edge unreachable"):
        notify.send_notice(notice.pk)
    notice.refresh_from_db()
    assert (notice.state, notice.channel, notice.delivery_code) == ("pending", "sip", None)
    assert notice.outcome == "The SIP edge did not take it; trying again"


@pytest.mark.parametrize(
    "uri", ["sip:rob@198.51.100.9\r\nX-Injected: 1", "sip:rob <sip:evil@example.net>", "http://x"]
)
def test_a_reported_uri_cannot_add_headers_to_the_message(settings, identity, uri):
    settings.NETWORK_NOTIFY_BACKEND = "sip"
    settings.SIP_EDGE_RPC_URL = f"http://127.0.0.1:{free_port()}/RPC"
    notice = notice_for(registration(identity, contact=uri))
    assert notify.send_notice(notice.pk) == "failed"  # refused before anything is sent
    notice.refresh_from_db()
    assert "no usable request URI" in notice.last_error


@pytest.mark.parametrize(
    ("answer", "transient", "code"),
    [
        ({"result": {"code": 200, "text": "OK"}}, None, 200),
        ({"result": {"code": 480, "text": "Temporarily Unavailable"}}, False, 480),
        ({"result": {"code": 603, "text": "Decline"}}, False, 603),
        ({"result": {"code": 408, "text": "Request Timeout"}}, True, 408),
        ({"result": {"code": 503, "text": "Service Unavailable"}}, True, 503),
        ({"error": {"code": 400, "message": 'Invalid request uri "x"'}}, False, None),
        ({"error": {"code": 500, "message": "server error occurred (7/RPC/UAC)"}}, True, None),
        ({"result": {"code": "200"}}, True, None),
        ({"result": {"code": 99}}, True, None),
        ([1, 2], True, None),
    ],
)
def test_the_edges_answers_are_classified(answer, transient, code):
    raw = json.dumps({"jsonrpc": "2.0", "id": 1, **answer} if isinstance(answer, dict) else answer)
    try:
        got = SipEdgeNotifier()._answer(200, raw.encode())
    except NoticeError as exc:
        assert (exc.transient, exc.answer.code) == (transient, code)
    else:
        assert transient is None and got.code == code


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_answer_of_the_edge_is_delivered_or_a_notice_error(raw):
    try:
        answer = SipEdgeNotifier()._answer(200, raw)
    except NoticeError as exc:
        answer = exc.answer
    assert "\n" not in answer.reason and len(answer.reason) <= 120


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps({"result": {"code": 200, "text": "x" * 70_000}}).encode(),  # too long
        b"[" * 60_000,  # nested deeper than the parser's stack
        json.dumps({"result": {"code": True}}).encode(),  # a bool is no status
    ],
)
def test_an_answer_that_is_not_the_edges_is_a_transient_fault(raw):
    with pytest.raises(NoticeError) as raised:
        SipEdgeNotifier()._answer(200, raw)
    assert raised.value.transient and raised.value.answer.code is None


def test_a_notice_not_yet_tried_reads_as_sending(identity):
    notice = notice_for(registration(identity, contact="sip:rob@198.51.100.9"))
    assert notice.outcome == "Sending…"


# --- Pages -------------------------------------------------------------------------------


def test_the_pages_read_notices_in_a_fixed_number_of_queries(identity, admin, client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def read(user, url):
        sign_in_verified(client, user)
        with CaptureQueriesContext(connection) as captured:
            page = client.get(url)
        assert page.status_code == 200
        return len(captured), page.content.decode()

    mine, theirs = "/my/devices/", f"/employees/{identity.owner.pk}/"
    notice_for(registration(identity, contact="sip:rob@198.51.100.1"))
    few = read(identity.owner, mine)[0], read(admin, theirs)[0]
    for key in range(2, 12):
        reg = registration(identity, contact=f"sip:rob@198.51.100.{key}", key=str(key))
        for _ in range(5):
            notice_for(reg)
    (mine_count, page), (theirs_count, _) = read(identity.owner, mine), read(admin, theirs)
    assert (mine_count, theirs_count) == few
    # Every device shows its notices, at most the last three each.
    assert page.count('data-testid="device-notices"') == 11
    assert page.count("<q>") == 1 + 10 * 3


def test_my_devices_refreshes_when_a_notice_is_answered(identity, client):
    notice = notice_for(registration(identity, contact="sip:rob@198.51.100.9"))
    sign_in_verified(client, identity.owner)
    version = client.get("/my/devices/").context["version"]
    poll = {"seen": version}
    assert client.get("/my/devices/", poll, HTTP_HX_REQUEST="true").status_code == 204
    NetworkNotice.objects.filter(pk=notice.pk).update(
        state="sent", attempts=1, channel="sip", delivery_code=200, delivery_reason="OK"
    )
    refreshed = client.get("/my/devices/", poll, HTTP_HX_REQUEST="true")
    assert "Delivered to the phone (200 OK)" in refreshed.content.decode()
