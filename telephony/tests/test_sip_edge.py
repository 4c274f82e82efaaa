"""The SIP edge with real peers on loopback: Kamailio as the edge, a Kamailio registrar
playing the S-CSCF, sipp as UEs and as a scripted S-CSCF; the portal is a live server
on the test database. What a UE's registration at the S-CSCF becomes in the portal,
and what the edge refuses."""

import contextlib
import re
import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.audit import Actor
from accounts.services import network_client_create
from accounts.tests.factories import UserFactory
from kernel import jsonrpc
from portal.testing import CeleryWorker, require_program, sign_in_verified, wait_for
from telephony.identities import services, sync
from telephony.models import NetworkNotice, Registration, ThirdPartyRegistration
from telephony.registrations.device_settings import registration_update_settings
from telephony.registrations.signout import deregister, registration_sign_out, request_sign_out
from telephony.tests.factories import give_numbers, make_identity
from telephony.tests.sip_peers import (
    free_port,
    new_edge,
    run_scenario,
    running_baresip,
    running_registrar,
    scripted_scscf,
    trace,
)

pytestmark = [pytest.mark.peer, pytest.mark.django_db(transaction=True)]

TN = "+4930555000"


class Lab:
    """The edge, the registrar that plays its S-CSCF, and a folder for their traces."""

    def __init__(self, folder, edge, registrar, domain):
        self.folder, self.edge, self.registrar, self.domain = folder, edge, registrar, domain
        self._edge_run = contextlib.ExitStack()

    def start_edge(self) -> None:
        self.running_edge = self._edge_run.enter_context(self.edge.running())

    def stop_edge(self) -> None:
        self._edge_run.close()

    @property
    def registrar_address(self) -> str:
        return f"127.0.0.1:{self.registrar.sip_port}"

    def edge_log(self) -> str:
        return (self.edge.folder / "kamailio.out").read_text(errors="replace")


@pytest.fixture
def lab(live_server, enterprise, tmp_path):
    require_program("kamailio")
    _, token = network_client_create(
        actor=Actor.system(), name="SIP edge", enterprises=[enterprise]
    )
    edge = new_edge(tmp_path / "edge", portal_url=live_server.url, token=token)
    as_uri = f"sip:portal-as@{edge.address}"
    domain = enterprise.sip_domain
    with running_registrar(tmp_path / "registrar", domain=domain, as_uri=as_uri) as registrar:
        lab = Lab(tmp_path, edge, registrar, domain)
        lab.start_edge()
        try:
            yield lab
        finally:
            lab.stop_edge()


@pytest.fixture
def rob(employee, enterprise):
    give_numbers(enterprise, TN, TN)
    return make_identity(employee)


def register(lab, *devices, expires=600):
    """UEs register at the S-CSCF: one (number, instance UUID) per device."""
    users = lab.folder / "ues.csv"
    rows = [f"{tn};{lab.domain};{instance};{expires}" for tn, instance in devices]
    users.write_text("SEQUENTIAL\n" + "\n".join(rows) + "\n")
    run = run_scenario(
        "ue_register.xml", lab.registrar_address, lab.folder, calls=len(devices), inf=users
    )
    assert run.returncode == 0, run.stdout + run.stderr + trace(lab.folder, "ue_register.xml")


PHONE = "6c3b07f8-4a7e-4b2c-9d4e-000000000001"
TABLET = "6c3b07f8-4a7e-4b2c-9d4e-000000000002"


def active_devices(identity) -> set[str]:
    return set(
        Registration.objects.active()
        .filter(identity=identity, state=Registration.State.ACTIVE)
        .values_list("instance_id", flat=True)
    )


def test_a_ue_registering_at_the_scscf_shows_in_the_portal(lab, rob):
    register(lab, (TN, PHONE))
    assert wait_for(lambda: active_devices(rob), timeout=10) == {f"urn:uuid:{PHONE}"}


def test_a_register_from_an_untrusted_address_is_refused(lab, rob):
    run = run_scenario("untrusted_register.xml", lab.edge.address, lab.folder, local_ip="127.0.0.2")
    assert run.returncode == 0, trace(lab.folder, "untrusted_register.xml")
    assert "not a trusted S-CSCF: refused" in lab.edge_log()


def test_a_notify_for_no_subscription_gets_481(lab):
    run = run_scenario("stray_notify.xml", lab.edge.address, lab.folder)
    assert run.returncode == 0, trace(lab.folder, "stray_notify.xml")


MALFORMED = [
    b"\x00\x01\x02 not SIP at all\r\n\r\n",
    b"REGISTER sip:portal-as@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\n"
    b"From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCSeq: many REGISTER\r\nContent-Length: 0\r\n\r\n",
    b"NOTIFY sip:portal-as@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKy\r\n"
    b"Call-ID: x\r\nCSeq: 1 NOTIFY\r\nContent-Length: 999999\r\n\r\n<reginfo/>",
]


def test_malformed_requests_change_nothing_and_the_edge_keeps_serving(lab, rob):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        host, port = lab.edge.address.rsplit(":", 1)
        for datagram in MALFORMED:
            sock.sendto(datagram, (host, int(port)))
    run = run_scenario("options.xml", lab.edge.address, lab.folder)
    assert run.returncode == 0, trace(lab.folder, "options.xml")
    assert not ThirdPartyRegistration.objects.exists() and not active_devices(rob)


def test_options_is_answered_and_other_methods_are_not_served(lab):
    run = run_scenario("options.xml", lab.edge.address, lab.folder)
    assert run.returncode == 0, trace(lab.folder, "options.xml")
    assert "Allow: INVITE, ACK, CANCEL, BYE, REGISTER, NOTIFY, OPTIONS" in trace(
        lab.folder, "options.xml"
    )


# --- What only a scripted S-CSCF sends ------------------------------------------------------

AOR = f"sip:{TN}@swift.example"


def reginfo(version: int, *devices: tuple[str, str], state: str = "full") -> str:
    """A reginfo document of Rob's AoR listing (instance UUID, contact host) devices."""
    contacts = "".join(
        f"""<contact id="c{n}" state="active" event="registered" expires="600"
              callid="ue-{n}@{host}" cseq="1">
          <uri>sip:{TN}@{host}:5060</uri>
          <unknown-param name="+sip.instance">"&lt;urn:uuid:{instance}&gt;"</unknown-param>
        </contact>"""
        for n, (instance, host) in enumerate(devices)
    )
    return f"""<?xml version="1.0"?>
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="{version}" state="{state}">
  <registration aor="{AOR}" id="r1" state="active">{contacts}</registration>
</reginfo>"""


HOSTILE = """<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="full">&b;</reginfo>"""

UE_REGISTER = f"""REGISTER sip:swift.example SIP/2.0\r
Via: SIP/2.0/UDP 198.51.100.20:5060;branch=z9hG4bKue1\r
From: <{AOR}>;tag=ue1\r
To: <{AOR}>\r
Call-ID: ue-0@198.51.100.20\r
CSeq: 1 REGISTER\r
Contact: <sip:{TN}@198.51.100.20:5060>;+sip.instance="<urn:uuid:{PHONE}>"\r
Expires: 600\r
User-Agent: Lab UE/1.0 (Android 14)\r
P-Access-Network-Info: 3GPP-E-UTRAN-FDD;utran-cell-id-3gpp=262011234567890\r
Content-Length: 0\r
\r
"""
UE_REGISTER_OK = f"""SIP/2.0 200 OK\r
Via: SIP/2.0/UDP 198.51.100.20:5060;branch=z9hG4bKue1\r
From: <{AOR}>;tag=ue1\r
To: <{AOR}>;tag=scscf1\r
Call-ID: ue-0@198.51.100.20\r
CSeq: 1 REGISTER\r
Contact: <sip:{TN}@198.51.100.20:5060>;expires=600;+sip.instance="<urn:uuid:{PHONE}>"\r
Content-Length: 0\r
\r
"""


def test_hostile_and_oversized_bodies_are_refused_and_the_edge_keeps_serving(lab, rob):
    with scripted_scscf(lab.edge.address) as scscf:
        assert scscf.register(AOR) == 200
        subscription = scscf.subscription()
        assert subscription.request.header("Event") == "reg"
        assert scscf.notify(subscription, HOSTILE) == 400
        oversized = reginfo(1).replace("</reginfo>", f"<!-- {'x' * 61_000} --></reginfo>")
        assert scscf.notify(subscription, oversized) == 413
        assert not active_devices(rob)

        assert scscf.notify(subscription, reginfo(2, (PHONE, "198.51.100.20"))) == 200
    assert active_devices(rob) == {f"urn:uuid:{PHONE}"}
    assert "portal refused the NOTIFY body" in lab.edge_log()


def test_the_ues_own_register_and_its_200_describe_the_device(lab, rob):
    with scripted_scscf(lab.edge.address) as scscf:
        assert scscf.register(AOR, parts=(UE_REGISTER, UE_REGISTER_OK)) == 200
        subscription = scscf.subscription()
        assert scscf.notify(subscription, reginfo(2, (PHONE, "198.51.100.20"))) == 200
    phone = Registration.objects.get(identity=rob, instance_id=f"urn:uuid:{PHONE}")
    assert phone.user_agent == "Lab UE/1.0 (Android 14)"
    assert phone.access_network.startswith("3GPP-E-UTRAN-FDD")
    assert phone.label.startswith("Android phone")


def test_each_register_takes_a_new_subscription_and_versions_count_per_subscription(lab, rob):
    """Kamailio's S-CSCF sends no NOTIFY when a second contact registers, and starts every
    subscription at version 2: the second device is learnt from a new subscription whose
    first document has a version the AoR has already seen."""
    with scripted_scscf(lab.edge.address) as scscf:
        assert scscf.register(AOR) == 200
        first = scscf.subscription()
        assert scscf.notify(first, reginfo(2, (PHONE, "198.51.100.20"))) == 200
        assert scscf.notify(first, reginfo(3, (PHONE, "198.51.100.20"))) == 200

        assert scscf.register(AOR) == 200
        second = scscf.subscription()
        assert second.call_id != first.call_id
        both = reginfo(2, (PHONE, "198.51.100.20"), (TABLET, "198.51.100.21"))
        assert scscf.notify(second, both) == 200
    assert active_devices(rob) == {f"urn:uuid:{PHONE}", f"urn:uuid:{TABLET}"}


def test_a_refused_or_ended_subscription_is_taken_again(lab, rob):
    with scripted_scscf(lab.edge.address) as scscf:
        assert scscf.register(AOR) == 200
        scscf.subscription(answer=481)
        # The edge subscribes again at its next tick (a second here).
        again = scscf.subscription(timeout=5)
        assert scscf.notify(again, reginfo(2, (PHONE, "198.51.100.20")), state="terminated") == 200
        # The notifier ended it while the registration lasts: subscribed once more.
        third = scscf.subscription(timeout=5)
        assert third.call_id != again.call_id
        assert scscf.notify(again, reginfo(3, (PHONE, "198.51.100.20"))) == 481


def test_a_deregistration_ends_the_edges_interest(lab, rob):
    with scripted_scscf(lab.edge.address) as scscf:
        assert scscf.register(AOR) == 200
        subscription = scscf.subscription()
        assert scscf.notify(subscription, reginfo(2, (PHONE, "198.51.100.20"))) == 200
        assert scscf.register(AOR, expires=0) == 200
        ended = reginfo(3).replace('state="active"', 'state="terminated"')
        assert scscf.notify(subscription, ended, state="terminated") == 200
        with pytest.raises(AssertionError, match="sent nothing"):
            scscf.subscription(timeout=2.5)
    assert not active_devices(rob)


def test_a_removed_identity_is_forgotten_by_the_edge(lab, rob, admin, settings):
    settings.SIP_EDGE_RPC_URL = lab.edge.rpc_url
    with scripted_scscf(lab.edge.address) as scscf:
        assert scscf.register(AOR) == 200
        subscription = scscf.subscription()
        assert "result" in lab.running_edge.rpc("htable.get", "reg", AOR)
        services.identity_remove(actor=Actor(user=admin), identity=rob)
        sync.push_identity(rob.pk)
        assert "error" in lab.running_edge.rpc("htable.get", "reg", AOR)
        # The notifier ends the subscription: the edge, which would subscribe again for
        # a registration it knows (test_a_refused_or_ended_subscription_is_taken_again),
        # does not.
        assert scscf.notify(subscription, reginfo(2), state="terminated") == 200
        with pytest.raises(AssertionError, match="sent nothing"):
            scscf.subscription(timeout=2.5)


# --- Sign-out at the S-CSCF ------------------------------------------------------------------


def signing_out(rob, contact: str) -> Registration:
    """A device of Rob's the portal holds, with its sign-out requested."""
    reg = Registration.objects.create(
        enterprise=rob.enterprise,
        identity=rob,
        user=rob.owner,
        device_key=f"contact:{contact}",
        label="Laptop",
        impus=[AOR],
        contact_uri=contact,
        expires_at=timezone.now() + timedelta(minutes=10),
    )
    request_sign_out(Actor(user=rob.owner), reg)
    return reg


def test_a_binding_the_scscf_no_longer_holds_is_signed_out_at_once(lab, rob, settings):
    settings.SIGN_OUT_VIA, settings.SIP_SCSCF_RPC_URL = "scscf", lab.registrar.rpc_url
    settings.SIP_SCSCF_URI = f"sip:{lab.registrar_address}"
    reg = signing_out(rob, f"sip:{TN}@198.51.100.9:5060")  # the task runs on commit
    reg.refresh_from_db()
    assert (reg.state, reg.end_reason) == ("ended", "signed_out")
    assert reg.sign_out_sent_at is not None and not reg.sign_out_error


def test_an_scscf_out_of_reach_is_tried_again(rob, settings):
    settings.SIGN_OUT_VIA = "scscf"
    settings.SIP_SCSCF_RPC_URL = f"http://127.0.0.1:{free_port()}/RPC"  # nobody listens
    settings.SIP_SCSCF_URI = "sip:127.0.0.1:5060"
    reg = signing_out(rob, f"sip:{TN}@198.51.100.9:5060")
    with pytest.raises(jsonrpc.RpcUnavailable):
        deregister(reg.pk)
    reg.refresh_from_db()
    assert reg.state == "sign_out_requested" and reg.sign_out_error.startswith("retrying:")


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ({"code": 403, "text": "Forbidden - Not Subscribed"}, "failed"),
        ({"code": 408, "text": "Request Timeout"}, "retried"),
        ({"code": 503, "text": "Service Unavailable"}, "retried"),
        ({"status": "no code"}, "retried"),
    ],
)
def test_the_scscfs_answer_to_its_de_register_decides_the_sign_out(
    rob, settings, monkeypatch, answer, outcome
):
    """What the S-CSCF answered the de-REGISTER it sent itself (tm.t_uac_wait_block's
    result): a refusal is final and shown, no answer in time or a server error is tried
    again, and the device stays *sign-out requested* either way."""
    settings.SIGN_OUT_VIA = "scscf"
    settings.SIP_SCSCF_RPC_URL = f"http://127.0.0.1:{free_port()}/RPC"  # nobody listens
    settings.SIP_SCSCF_URI = "sip:127.0.0.1:5060"
    reg = signing_out(rob, f"sip:{TN}@198.51.100.9:5060")  # its task: unreachable, left
    monkeypatch.setattr(jsonrpc, "call", lambda *args, **kwargs: answer)
    if outcome == "failed":
        assert deregister(reg.pk) == "failed"
    else:
        with pytest.raises(jsonrpc.RpcUnavailable):
            deregister(reg.pk)
    reg.refresh_from_db()
    assert reg.state == "sign_out_requested"
    if outcome == "failed":
        assert reg.sign_out_error == (
            "the S-CSCF refused the de-REGISTER (403 Forbidden - Not Subscribed)"
        )
    else:
        assert reg.sign_out_error.startswith("retrying: the S-CSCF's de-REGISTER got ")


# --- A restart ----------------------------------------------------------------------------


def test_a_restarted_edge_subscribes_again_and_loses_nothing(lab, enterprise):
    """100 users registered; the edge stops; 10 of them de-register meanwhile (the
    S-CSCF retransmits their third-party REGISTERs until the edge is back); the edge
    starts again, takes the registrations from the portal and subscribes to each: when
    the S-CSCF then drops 10 more (administratively: no REGISTER, only the reg event
    tells), the portal learns it through the new subscriptions."""
    first, count = 4930555100, 100
    give_numbers(enterprise, f"+{first}", f"+{first + count - 1}")
    identities = [make_identity(UserFactory(enterprise=enterprise)) for _ in range(count)]
    tns = sorted(i.tn for i in identities)
    devices = [(tn, f"00000000-0000-4000-8000-{n:012d}") for n, tn in enumerate(tns)]
    register(lab, *devices)
    wait_for(lambda: active_count(identities) == count, timeout=30)

    lab.stop_edge()
    register(lab, *devices[:10], expires=0)
    lab.start_edge()
    # 90 or 100: the S-CSCF's retransmissions may reach the edge before or after it asks.
    wait_for(lambda: re.search(r"restored (90|100) registrations", lab.edge_log()), timeout=30)
    wait_for(lambda: active_count(identities) == 90, timeout=30)

    dropped = tns[10:20]
    for tn in dropped:
        contact = Registration.objects.get(identity__number__e164=tn).contact_uri
        lab.registrar.rpc("ul.rm_contact", "location", f"{tn}@{lab.domain}", contact)
    wait_for(lambda: active_count(identities) == 80, timeout=30)
    ended = Registration.objects.filter(identity__in=identities, state=Registration.State.ENDED)
    assert sorted(ended.values_list("identity__number__e164", flat=True)) == tns[:20]


def active_count(identities) -> int:
    return (
        Registration.objects.active()
        .filter(identity__in=identities, state=Registration.State.ACTIVE)
        .count()
    )


# --- Two phones of one person --------------------------------------------------------------


@pytest.fixture
def network_worker(lab):
    """A real worker that sends notices through the edge and sign-outs to the S-CSCF."""
    from portal.celery import app

    worker = CeleryWorker(
        {
            "NETWORK_NOTIFY_BACKEND": "sip",
            "SIP_EDGE_RPC_URL": lab.edge.rpc_url,
            "SIP_EDGE_SCSCF_URI": "",  # loopback UEs: straight to each contact
            "SIGN_OUT_VIA": "scscf",
            "SIP_SCSCF_RPC_URL": lab.registrar.rpc_url,
            "SIP_SCSCF_URI": f"sip:{lab.registrar_address}",
        }
    ).start()
    app.conf.task_always_eager = False
    try:
        yield worker
    finally:
        app.conf.task_always_eager = True
        worker.stop()


@pytest.mark.worker
def test_two_baresip_phones_of_rob_through_the_core(lab, rob, network_worker, client):
    """Rob's two baresip clients register at the S-CSCF: both show on his devices page
    with settings of their own, the "already logged on" notice reaches both as a SIP
    MESSAGE, and signing one out in the portal removes it from the S-CSCF and the page."""
    aor = f"sip:{TN}@{lab.domain}"
    ue = {"aor": aor, "registrar": lab.registrar_address}
    with (
        running_baresip(lab.folder / "phone", instance=PHONE, **ue) as phone,
        running_baresip(lab.folder / "tablet", instance=TABLET, **ue) as tablet,
    ):
        both = {f"urn:uuid:{PHONE}", f"urn:uuid:{TABLET}"}
        wait_for(lambda: active_devices(rob) == both, timeout=10)
        devices = {r.instance_id: r for r in Registration.objects.filter(identity=rob)}
        rob_acts = Actor(user=rob.owner)
        registration_update_settings(
            actor=rob_acts, registration=devices[f"urn:uuid:{PHONE}"], do_not_disturb=True
        )
        dnd = dict(
            Registration.objects.filter(identity=rob).values_list("instance_id", "do_not_disturb")
        )
        assert dnd == {f"urn:uuid:{PHONE}": True, f"urn:uuid:{TABLET}": False}

        # Whichever registered second, each phone got its MESSAGE from the portal, and
        # the portal kept each phone's answer.
        notices = NetworkNotice.objects.filter(registration__identity=rob)
        try:
            wait_for(lambda: notices.filter(delivery_code=200).count() == 2)
        finally:
            print(list(notices.values("kind", "state", "delivery_code", "last_error", "attempts")))
        assert notices.count() == 2
        for ue_peer in (phone, tablet):
            assert "MESSAGE sip:" in ue_peer.output()
        said = phone.output() + tablet.output()
        assert "is now also signed in" in said and "You are also signed in on" in said
        page = sign_in_verified(client, rob.owner).get("/my/devices/").content.decode()
        assert page.count("Delivered to the phone (200 OK)") == 2

        tablet_record = devices[f"urn:uuid:{TABLET}"]
        registration_sign_out(actor=rob_acts, registration=tablet_record)
        tablet_record.refresh_from_db()
        wait_for(
            lambda: Registration.objects.get(pk=tablet_record.pk).state == Registration.State.ENDED,
            timeout=10,
        )
        assert Registration.objects.get(pk=tablet_record.pk).end_reason == "signed_out"
        bindings = str(lab.registrar.rpc("ul.dump"))
        assert f"{tablet.port}" not in bindings and f"{phone.port}" in bindings
        assert active_devices(rob) == {f"urn:uuid:{PHONE}"}
        page = client.get("/my/devices/").content.decode()
        assert "signed out" in page.lower()
