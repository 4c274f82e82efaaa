"""End to end on a real IMS core (``ims_core.py``): an employee onboarded in the portal
lands in the real PyHSS; UEs register with the IMPI and the SIM's ki at Kamailio's
S-CSCF, which authenticates them over Diameter Cx against PyHSS and, by the iFC PyHSS
hands it, tells the portal's SIP edge; the portal shows each device. Suspension removes
the UEs from the S-CSCF and the next REGISTER gets 403; after a resume two softphones
register and each gets the portal's notice as a SIP MESSAGE; offboarding leaves nothing
of the person in PyHSS or the S-CSCF. A call between two lab users passes the edge by the
iFC, originating (signed) and terminating (verified), and reaches the callee with our
Identity headers, verstat and the vetted business name. Each step's latency is printed
(pytest -s shows it)."""

from __future__ import annotations

import contextlib
import re
import socket
import time

import jwt
import pytest
from django.urls import reverse

from accounts.audit import Actor
from accounts.models import Service
from accounts.services import invitation_accept, network_client_create
from accounts.tests.factories import EnterpriseFactory
from portal.lab import free_port, stop
from portal.testing import require_program, sign_in_verified, wait_for
from telephony.callauth import credentials
from telephony.identities import services
from telephony.inventory import services as inventory
from telephony.models import CallerName, Identity, IdentitySync, NetworkNotice, Registration
from telephony.registrations.signout import SIGN_OUT_NOTICE
from telephony.tests.factories import give_numbers, iccid_for

from .ims_core import IFC_PATH, running_ims_core
from .pyhss_peer import IMS_DOMAIN, LAB_KI, PROVISIONING_KEY
from .sip_peers import parse_trace, run_scenario, running_baresip, trace

pytestmark = [pytest.mark.peer, pytest.mark.django_db(transaction=True)]

TN = "+4930555000"
# A lab SIM of the operator's own network (MCC 001, MNC 01): PyHSS's home, whose IMS
# domain the S-CSCF serves.
IMSI = "001010000000001"
PHONE = "6c3b07f8-4a7e-4b2c-9d4e-00000000a001"
TABLET = "6c3b07f8-4a7e-4b2c-9d4e-00000000a002"
LAPTOP = "6c3b07f8-4a7e-4b2c-9d4e-00000000a003"
DESK = "6c3b07f8-4a7e-4b2c-9d4e-00000000a004"


@pytest.fixture
def enterprise(db):
    """An enterprise whose SIP domain is the IMS domain the S-CSCF serves: the AoRs the
    S-CSCF reports are the identity's own (``sip:+E164@domain``)."""
    return EnterpriseFactory(name="Swift Delivery", slug="swift", sip_domain=IMS_DOMAIN)


@pytest.fixture
def core(live_server, enterprise, tmp_path, settings):
    require_program("kamailio")
    _, token = network_client_create(
        actor=Actor.system(), name="SIP edge", enterprises=[enterprise]
    )
    # The live server's first answers are slow on a busy machine: the edge waits longer
    # for the STI service than production's budget (the edge's own tests cover that).
    settings.SIP_EDGE_STI_BUDGET_MS = 5000
    with running_ims_core(tmp_path, portal_url=live_server.url, token=token) as core:
        settings.HSS_BACKEND = "pyhss"
        settings.HSS_PYHSS_URL = core.hss.url
        settings.HSS_PYHSS_PROVISIONING_KEY = PROVISIONING_KEY
        settings.HSS_PYHSS_IFC_PATH = IFC_PATH
        settings.HSS_TIMEOUT_SECONDS = 10
        # PyHSS's RTR never reaches the S-CSCF: the portal de-registers there itself.
        settings.SIGN_OUT_VIA = "scscf"
        settings.SIP_SCSCF_RPC_URL = core.scscf.rpc_url
        settings.SIP_SCSCF_URI = f"sip:{core.scscf_address}"
        settings.SIP_EDGE_RPC_URL = core.running_edge.rpc_url
        yield core


class Steps:
    """Each step's latency, printed as it ends."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def done(self, step: str, since: float) -> float:
        now = time.monotonic()
        print(f"{step}: {(now - since) * 1000:.0f} ms")
        return now


def register_sipp(
    core, *, impi: str, password: str, instance: str, expires: int = 600, timeout: int = 15,
    port: int = 0,
):  # fmt: skip
    """sipp REGISTERs (expires 0: de-registers) from ``port`` (a free one if 0) with the
    IMPI and ki; its contact is ``sip:<TN>@127.0.0.1:<port>``."""
    users = core.folder / "ue.csv"
    users.write_text(f"SEQUENTIAL\n{TN};{core.domain};{impi};{instance};{expires}\n")
    return run_scenario(
        "ims_register.xml",
        core.scscf_address,
        core.folder,
        inf=users,
        auth=(impi, password),
        timeout=timeout,
        local_port=port,
    )


def scscf_contacts(core, impu: str) -> dict:
    """The contacts the S-CSCF holds for ``impu`` (its usrloc), {} when it holds none."""
    answer = core.scscf.rpc("ulscscf.showimpu", impu)
    return (answer.get("result") or {}).get("contacts") or {}


def final_status(core) -> str:
    """The last final answer the sipp UE got to its REGISTER."""
    finals = [
        m.start_line
        for m in parse_trace(trace(core.folder, "ims_register.xml"))
        if m.direction == "received"
        and m.start_line.startswith("SIP/2.0")
        and not m.start_line.startswith(("SIP/2.0 1", "SIP/2.0 401"))
    ]
    return finals[-1] if finals else ""


def active_devices(identity) -> set[str]:
    return set(
        Registration.objects.active()
        .filter(identity=identity, state=Registration.State.ACTIVE)
        .values_list("instance_id", flat=True)
    )


def test_an_onboarded_employee_registers_two_ues_through_the_ims_core(
    core, enterprise, admin, admin_client, settings
):
    steps = Steps()
    give_numbers(enterprise, TN, TN)
    line = inventory.sim_line_create(
        actor=Actor.system(), enterprise=enterprise, imsi=IMSI, iccid=iccid_for(1)
    )
    # The operator provisions the SIM's keys and EPC subscriber before the line is used.
    t = time.monotonic()
    core.hss.provision_line(line.imsi, ki=LAB_KI)
    t = steps.done("operator provisions the line in PyHSS", t)

    identity = services.employee_onboard(
        actor=Actor(user=admin),
        enterprise=enterprise,
        email="rob@swift.example",
        full_name="Rob Smith",
        services=[Service.VOICE],
        imsi=line.imsi,
    )
    identity = Identity.objects.get(pk=identity.pk)
    assert identity.sync.state == IdentitySync.State.SYNCED
    held = core.hss.call("GET", f"/ims_subscriber/ims_subscriber_msisdn/{TN.removeprefix('+')}")
    assert (held["imsi"], held["ifc_path"]) == (IMSI, IFC_PATH)
    t = steps.done("onboarded and pushed to PyHSS", t)

    impi = identity.impi
    assert impi == f"{IMSI}@{IMS_DOMAIN}"
    run = register_sipp(core, impi=impi, password=LAB_KI, instance=PHONE)
    assert run.returncode == 0, (
        run.stdout + run.stderr + trace(core.folder, "ims_register.xml") + core.scscf_log()[-3000:]
    )
    t = steps.done("sipp UE registered through the S-CSCF (MAR, SAR)", t)
    wait_for(lambda: active_devices(identity) == {f"urn:uuid:{PHONE}"}, timeout=10)
    t = steps.done("the portal shows the phone", t)
    # The S-CSCF's AoR is the identity's TN IMPU; the UE's own REGISTER rode along the
    # third-party REGISTER (IncludeRegisterRequest), so the portal knows its user agent.
    phone = Registration.objects.get(identity=identity, instance_id=f"urn:uuid:{PHONE}")
    assert f"sip:{TN}@{IMS_DOMAIN}" in phone.impus
    assert phone.user_agent == "Lab UE/1.0 (Android 14)"
    # PyHSS recorded the S-CSCF that serves the subscriber (its SAR).
    held = core.hss.call("GET", f"/ims_subscriber/ims_subscriber_msisdn/{TN.removeprefix('+')}")
    assert held["scscf"] == f"sip:{core.scscf_address}"

    with running_baresip(
        core.folder / "tablet",
        aor=f"sip:{TN}@{core.domain}",
        registrar=core.scscf_address,
        instance=TABLET,
        auth_user=impi,
        auth_pass=LAB_KI,
    ):
        t = steps.done("baresip UE registered through the S-CSCF", t)
        both = {f"urn:uuid:{PHONE}", f"urn:uuid:{TABLET}"}
        wait_for(lambda: active_devices(identity) == both, timeout=10)
        steps.done("the portal shows both", t)
        tablet = Registration.objects.get(identity=identity, instance_id=f"urn:uuid:{TABLET}")
        assert tablet.user_agent.startswith("baresip")
        print(f"AoRs the portal holds: {sorted(set(phone.impus) | set(tablet.impus))}")
        impu = f"sip:{TN}@{IMS_DOMAIN}"
        assert len(scscf_contacts(core, impu)) == 2
        dashboard = reverse("telephony:devices")
        assert "(…a002)" in admin_client.get(dashboard).content.decode()

        # Suspension: the HSS row goes, the S-CSCF drops both UEs, the portal ends them.
        t = time.monotonic()
        services.identity_suspend(actor=Actor(user=admin), identity=identity)
        wait_for(lambda: not scscf_contacts(core, impu), timeout=10)
        assert not active_devices(identity)
        assert "(…a002)" not in admin_client.get(dashboard).content.decode()
        t = steps.done("suspended: both UEs gone from the S-CSCF and the portal", t)
        assert "Processing RTR" not in core.scscf_log()  # PyHSS's RTR never arrived

    # The next REGISTER is refused as forbidden, not as a server error (the scenario
    # waits for a 200 that never comes: a short timeout).
    run = register_sipp(core, impi=impi, password=LAB_KI, instance=PHONE, timeout=2)
    assert run.returncode != 0
    assert final_status(core).startswith("SIP/2.0 403"), trace(core.folder, "ims_register.xml")
    t = steps.done("REGISTER of the suspended identity refused with 403", t)

    services.identity_resume(actor=Actor(user=admin), identity=identity)
    assert Identity.objects.get(pk=identity.pk).sync.state == IdentitySync.State.SYNCED
    # Resumed: two softphones register again, and the portal's notice reaches both as a
    # SIP MESSAGE through the edge (straight to each contact: the lab has no P-CSCF).
    settings.NETWORK_NOTIFY_BACKEND = "sip"
    portal = settings.SIP_NOTICE_FROM
    t = time.monotonic()
    softphone = {"aor": f"sip:{TN}@{core.domain}", "registrar": core.scscf_address}
    with (
        running_baresip(core.folder / "laptop", instance=LAPTOP, auth_user=impi,
                        auth_pass=LAB_KI, **softphone) as laptop,
        running_baresip(core.folder / "desk", instance=DESK, auth_user=impi,
                        auth_pass=LAB_KI, **softphone) as desk,
    ):  # fmt: skip
        t = steps.done("resumed: two softphones registered (200)", t)
        wait_for(
            # The UE there already hears of the new one, the new one of the other: each
            # baresip shows it its user.
            lambda: (
                (portal, "Your Linux PC (…a004) is now also signed in.") in laptop.messages_shown()
                and (portal, "You are also signed in on: Linux PC (…a003).")
                in desk.messages_shown()
            ),
            timeout=15,
        )
        assert active_devices(identity) == {f"urn:uuid:{LAPTOP}", f"urn:uuid:{DESK}"}
        t = steps.done("both got the portal's notice as a SIP MESSAGE", t)
        assert len(scscf_contacts(core, impu)) == 2

        services.employee_offboard(actor=Actor(user=admin), user=identity.owner)
        wait_for(lambda: not scscf_contacts(core, impu), timeout=10)
    msisdn = TN.removeprefix("+")
    assert msisdn not in core.hss.ims_subscribers()
    assert not [r for r in core.hss.rows("ims_subscriber") if r["imsi"] == IMSI]
    assert not core.hss.enabled(IMSI)  # the operator's line stays, disabled
    assert not active_devices(identity)
    steps.done("offboarded: nothing of Rob left in PyHSS or the S-CSCF", t)
    print(f"total: {time.monotonic() - steps.started:.1f} s")


def rob_with_a_sipp_phone(core, enterprise, admin):
    """Rob Smith onboarded with a lab SIM, his sipp phone registered at the lab S-CSCF:
    his identity, his SIP IMPU and the phone's port."""
    give_numbers(enterprise, TN, TN)
    rob = onboard_with_line(
        core, enterprise, admin, email="rob@swift.example", full_name="Rob Smith", tn=TN,
        imsi=IMSI,
    )  # fmt: skip
    port = free_port(socket.SOCK_DGRAM)
    run = register_sipp(core, impi=rob.impi, password=LAB_KI, instance=PHONE, port=port)
    assert run.returncode == 0, run.stdout + trace(core.folder, "ims_register.xml")
    return rob, f"sip:{TN}@{IMS_DOMAIN}", port


def test_a_device_signed_out_on_my_devices_is_told_and_dropped_and_the_other_stays(
    core, enterprise, admin, client, mailoutbox, settings
):
    """Rob's two softphones (baresip) are registered at the lab S-CSCF; Rob signs the
    tablet out on *My devices*. The tablet's baresip prints the portal's notice, sent
    through the edge as a SIP MESSAGE before the S-CSCF drops its binding (the de-REGISTER
    the S-CSCF sends itself on the portal's command); the phone hears nothing of it and
    stays registered; the page lists the phone as registered and the tablet as signed out,
    with the notice its client answered."""
    settings.NETWORK_NOTIFY_BACKEND = "sip"
    portal = settings.SIP_NOTICE_FROM
    give_numbers(enterprise, TN, TN)
    rob = onboard_with_line(
        core, enterprise, admin, email="rob@swift.example", full_name="Rob Smith", tn=TN,
        imsi=IMSI,
    )  # fmt: skip
    impu = f"sip:{TN}@{IMS_DOMAIN}"
    softphone = {"aor": impu, "registrar": core.scscf_address, "auth_user": rob.impi,
                 "auth_pass": LAB_KI}  # fmt: skip
    with running_baresip(core.folder / "phone", instance=PHONE, **softphone) as phone_ua:
        with running_baresip(core.folder / "tablet", instance=TABLET, **softphone) as tablet_ua:
            wait_for(lambda: active_devices(rob) == {f"urn:uuid:{PHONE}", f"urn:uuid:{TABLET}"},
                     timeout=10)  # fmt: skip
            assert len(scscf_contacts(core, impu)) == 2
            # The phone shows the portal's MESSAGEs: it heard of the tablet.
            heard = (portal, "Your Linux PC (…a002) is now also signed in.")
            wait_for(lambda: heard in phone_ua.messages_shown(), timeout=10)
            phone, tablet = (
                Registration.objects.get(identity=rob, instance_id=f"urn:uuid:{device}")
                for device in (PHONE, TABLET)
            )

            # Rob took up his invitation and signs in.
            secret = re.search(r"/invitation/#(\S+)", mailoutbox[-1].body)
            assert secret, mailoutbox[-1].body
            invitation_accept(raw_secret=secret.group(1), password="correct horse battery staple")
            sign_in_verified(client, rob.owner)
            t = time.monotonic()
            page = client.post(
                reverse("telephony:device_sign_out", args=[tablet.pk]), follow=True
            ).content.decode()
            assert f"Sign-out of {tablet.label} requested." in page
            told = (portal, "You signed this device out in the portal.")
            wait_for(lambda: told in tablet_ua.messages_shown(), timeout=10)
            print(f"sign-out on My devices to the tablet's client showing it: "
                  f"{(time.monotonic() - t) * 1000:.0f} ms")  # fmt: skip
            wait_for(lambda: set(scscf_contacts(core, impu)) == {phone.contact_uri}, timeout=10)
            print(f"sign-out on My devices to the S-CSCF holding the phone only: "
                  f"{(time.monotonic() - t) * 1000:.0f} ms")  # fmt: skip
            assert f"sign-out of {tablet.contact_uri} for {impu}" in core.scscf_log()
            assert phone_ua.messages_shown() == [heard]
            tablet.refresh_from_db()
            assert (tablet.state, tablet.end_reason, tablet.sign_out_error) == (
                Registration.State.ENDED, "signed_out", "",
            )  # fmt: skip
            # The client answered the notice before the S-CSCF was asked to drop it.
            notice = NetworkNotice.objects.get(registration=tablet, kind=SIGN_OUT_NOTICE)
            assert (notice.state, notice.delivery_code) == (NetworkNotice.State.SENT, 200)
            assert notice.answered_at <= tablet.sign_out_sent_at
            assert active_devices(rob) == {f"urn:uuid:{PHONE}"}
            page = client.get(reverse("telephony:my_devices")).content.decode()
            # Each device's heading: its name and its state.
            shown = dict(
                re.findall(r'<h2>([^<]*\(…a00[12]\)) <span class="badge[^"]*">([^<]*)<', page)
            )
            assert shown == {phone.label: "registered", tablet.label: "signed out"}
            assert "Delivered to the phone (200 OK)" in page
        # The tablet's own de-REGISTER as baresip stops names a contact the S-CSCF no
        # longer holds: answered (route[UNKNOWN_CONTACTS]), and the phone stays registered.
        assert list(scscf_contacts(core, impu)) == [phone.contact_uri]


def test_a_sipp_ue_de_registers_at_the_lab_scscf(core, enterprise, admin):
    """A UE's de-REGISTER (expires 0) of its own contact gets 200 and the S-CSCF and the
    portal drop it. One that names a contact the S-CSCF does not hold (sent from another
    port) gets 200 too and changes nothing: Kamailio 5.6.3's registrar would answer it 500
    and leave the IMPU locked, so that the next request went unanswered."""
    rob, impu, port = rob_with_a_sipp_phone(core, enterprise, admin)
    phone = {"impi": rob.impi, "password": LAB_KI, "instance": PHONE}
    wait_for(lambda: active_devices(rob) == {f"urn:uuid:{PHONE}"}, timeout=10)

    stray = free_port(socket.SOCK_DGRAM)
    run = register_sipp(core, **phone, expires=0, port=stray, timeout=10)
    assert run.returncode == 0, run.stdout + trace(core.folder, "ims_register.xml")
    assert final_status(core).startswith("SIP/2.0 200"), trace(core.folder, "ims_register.xml")
    assert "not a contact of it" in core.scscf_log()
    assert list(scscf_contacts(core, impu)) == [f"sip:{TN}@127.0.0.1:{port}"]
    assert active_devices(rob) == {f"urn:uuid:{PHONE}"}

    run = register_sipp(core, **phone, expires=0, port=port, timeout=10)
    assert run.returncode == 0, run.stdout + trace(core.folder, "ims_register.xml")
    assert final_status(core).startswith("SIP/2.0 200"), trace(core.folder, "ims_register.xml")
    # The last contact of the IMPU: marked deleted at once, gone at usrloc's next timer run.
    wait_for(lambda: not scscf_contacts(core, impu), timeout=10)
    wait_for(lambda: not active_devices(rob), timeout=10)


CALLEE_TN = "+4930555001"
CALLEE_IMSI = "001010000000002"
CALLER_PHONE = "6c3b07f8-4a7e-4b2c-9d4e-00000000b001"
CALLEE_PHONE = "6c3b07f8-4a7e-4b2c-9d4e-00000000b002"


def onboard_with_line(core, enterprise, admin, *, email: str, full_name: str, tn: str, imsi: str):
    """A joiner with a lab SIM line whose keys the operator provisioned in PyHSS: synced."""
    line = inventory.sim_line_create(
        actor=Actor.system(), enterprise=enterprise, imsi=imsi, iccid=iccid_for(int(imsi[-4:]))
    )
    core.hss.provision_line(line.imsi, ki=LAB_KI)
    identity = services.employee_onboard(
        actor=Actor(user=admin), enterprise=enterprise, email=email, full_name=full_name,
        services=[Service.VOICE], tn=tn, imsi=line.imsi,
    )  # fmt: skip
    identity = Identity.objects.get(pk=identity.pk)
    assert identity.sync.state == IdentitySync.State.SYNCED
    return identity


@contextlib.contextmanager
def rob_and_chen(core, enterprise, admin, *, answer: bool = True):
    """Rob Smith and Chen Wei onboarded, each with a softphone registered at the lab
    S-CSCF: (Rob's, Chen's); Chen's answers calls by itself unless ``answer`` is false."""
    steps = Steps()
    give_numbers(enterprise, TN, CALLEE_TN)
    rob = onboard_with_line(
        core, enterprise, admin, email="rob@swift.example", full_name="Rob Smith", tn=TN,
        imsi=IMSI,
    )  # fmt: skip
    chen = onboard_with_line(
        core, enterprise, admin, email="chen@swift.example", full_name="Chen Wei",
        tn=CALLEE_TN, imsi=CALLEE_IMSI,
    )  # fmt: skip
    t = steps.done("two employees onboarded and pushed to PyHSS", steps.started)
    with (
        running_baresip(core.folder / "rob", aor=f"sip:{TN}@{core.domain}",
                        registrar=core.scscf_address, instance=CALLER_PHONE,
                        auth_user=rob.impi, auth_pass=LAB_KI) as caller,
        running_baresip(core.folder / "chen", aor=f"sip:{CALLEE_TN}@{core.domain}",
                        registrar=core.scscf_address, instance=CALLEE_PHONE,
                        auth_user=chen.impi, auth_pass=LAB_KI, answer=answer) as callee,
    ):  # fmt: skip
        steps.done("both softphones registered", t)
        yield caller, callee


def passports(invite) -> dict[str, dict]:
    """The claims of each PASSporT in the INVITE's Identity headers, by its ``ppt``."""
    found = {}
    for name, value in invite.headers:
        if name.lower() == "identity":
            token = value.split(";")[0]
            found[jwt.get_unverified_header(token).get("ppt", "")] = jwt.decode(
                token, options={"verify_signature": False}
            )
    return found


def vias(message) -> list[str]:
    return [value for name, value in message.headers if name.lower() == "via"]


def test_a_lab_call_is_signed_originating_and_verified_terminating_by_the_portal_edge(
    core, enterprise, admin
):
    """Rob Smith calls Chen Wei, both registered at the lab S-CSCF: the iFC sends the
    INVITE to the portal's SIP edge for the originating session case (the STI-AS signs
    it), then for the terminating one (the STI-VS verifies it), then on to Chen's
    softphone, which answers. The INVITE Chen gets carries our Identity headers and the
    verified business name with verstat on the asserted identity."""
    credentials.lab_pki_create(actor=Actor.system(), operator_name="iCA", spc="1234")
    CallerName.objects.create(enterprise=enterprise, name="Swift Delivery", vetting="vetted")
    with rob_and_chen(core, enterprise, admin) as (caller, callee):
        # The delegate certificate covers the blocks the enterprise has by now.
        credentials.delegate_certificate_issue(actor=Actor.system(), enterprise=enterprise)
        t = time.monotonic()
        caller.command("dial", f"sip:{CALLEE_TN}@{core.domain}")
        wait_for(lambda: callee.received("INVITE"), timeout=10, interval=0.01)
        print(f"dial to the INVITE at Chen's softphone (signed, then verified): "
              f"{(time.monotonic() - t) * 1000:.0f} ms")  # fmt: skip
        wait_for(lambda: "Call established" in caller.output(), timeout=10)
        print(f"dial to established: {(time.monotonic() - t) * 1000:.0f} ms")
        invite = callee.received("INVITE")[0]
        print("The INVITE at the callee:\n" + "\n".join(f"{n}: {v}" for n, v in invite.headers))
        # It passed the portal's edge twice: as the originating AS, then as the terminating.
        edge_vias = [via for via in vias(invite) if core.edge.address in via]
        assert len(edge_vias) == 2, vias(invite)
        # Our Identity headers: SHAKEN with full attestation for Rob's number, and RCD.
        signed = passports(invite)
        assert set(signed) == {"shaken", "rcd"}, signed
        assert signed["shaken"]["attest"] == "A"
        assert signed["shaken"]["orig"] == {"tn": TN.removeprefix("+")}
        assert signed["shaken"]["dest"] == {"tn": [CALLEE_TN.removeprefix("+")]}
        # The terminating side verified them: verstat, and the vetted business name.
        assert invite.header("P-Asserted-Identity") == (
            f'"Swift Delivery" <sip:{TN}@{core.domain};verstat=TN-Validation-Passed>'
        )
        # The ISC's own headers stay in the core.
        assert not invite.header("P-Served-User")
        assert not invite.header("Route")
        # The dialog's requests pass the S-CSCF (it recorded the route), the edge not.
        caller.command("hangup")
        wait_for(lambda: callee.received("BYE"), timeout=10)
        assert vias(callee.received("BYE")[0])[0].startswith(f"SIP/2.0/UDP {core.scscf_address}")


def test_a_call_goes_on_without_the_portal_edge_when_it_is_down(core, enterprise, admin):
    """The iFC's default handling: an AS that does not answer is passed over, both for
    the originating and the terminating session case, and the call still connects."""
    with rob_and_chen(core, enterprise, admin) as (caller, callee):
        stop(core.running_edge.process)
        t = time.monotonic()
        caller.command("dial", f"sip:{CALLEE_TN}@{core.domain}")
        wait_for(lambda: "Call established" in caller.output(), timeout=15)
        print(f"dial to established without the edge: {(time.monotonic() - t) * 1000:.0f} ms")
        invite = callee.received("INVITE")[0]
        assert not [via for via in vias(invite) if core.edge.address in via]
        assert invite.header("P-Asserted-Identity") == f"<sip:{TN}@{core.domain}>"
        assert not invite.header("P-Served-User")
        assert not invite.header("Route")


def test_a_caller_who_hangs_up_while_it_rings_cancels_the_call_at_the_callee(
    core, enterprise, admin
):
    """CANCEL follows the INVITE hop by hop: S-CSCF, edge, S-CSCF (its own hand-over),
    edge, S-CSCF, callee."""
    with rob_and_chen(core, enterprise, admin, answer=False) as (caller, callee):
        caller.command("dial", f"sip:{CALLEE_TN}@{core.domain}")
        wait_for(lambda: callee.received("INVITE"), timeout=10)
        caller.command("hangup")
        wait_for(lambda: callee.received("CANCEL"), timeout=10)
        assert "Call established" not in caller.output()


def test_a_call_from_a_softphone_that_is_not_registered_as_the_caller_is_refused(
    core, enterprise, admin
):
    """The lab asserts the caller's identity as a P-CSCF would: an INVITE as Rob (From and
    P-Asserted-Identity) from where Rob has no registered contact is refused."""
    with rob_and_chen(core, enterprise, admin) as (_, callee):
        folder = core.folder / "impostor"
        folder.mkdir()
        run = run_scenario(
            "lab_invite.xml", core.scscf_address, folder,
            keys={"caller": TN, "callee": CALLEE_TN, "domain": core.domain}, timeout=5,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr + trace(folder, "lab_invite.xml")
        assert "SIP/2.0 403 Forbidden - Not Your Identity" in trace(folder, "lab_invite.xml")
        assert not callee.received("INVITE")
