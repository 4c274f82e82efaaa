"""The SIP edge with real peers on loopback: Kamailio as the edge, a Kamailio registrar
playing the S-CSCF, sipp as UEs and as a scripted S-CSCF; the portal is a live server
on the test database. What a UE's registration at the S-CSCF becomes in the portal,
and what the edge refuses."""

import pytest

from accounts.audit import Actor
from accounts.services import network_client_create
from portal.testing import require_program, wait_for
from telephony.models import Registration
from telephony.tests.factories import give_numbers, make_identity
from telephony.tests.sipedge_peer import messages, sipp, start_lab

pytestmark = [pytest.mark.peer, pytest.mark.django_db(transaction=True)]

TN = "+4930555000"


@pytest.fixture
def lab(live_server, enterprise, tmp_path, settings):
    require_program("kamailio")
    require_program("sipp")
    _, token = network_client_create(actor=Actor.system(), name="SIP edge", enterprises=[enterprise])
    lab = start_lab(
        tmp_path, portal_url=live_server.url, token=token, domain=enterprise.sip_domain, settings=settings
    )
    yield lab
    lab.stop()


@pytest.fixture
def rob(employee, enterprise):
    give_numbers(enterprise, TN, TN)
    return make_identity(employee)


def register(lab, *devices, expires=600):
    """UEs register at the S-CSCF: one (number, instance UUID) per device."""
    users = lab.folder / "ues.csv"
    rows = [f"{tn};{lab.domain};{instance};{expires}" for tn, instance in devices]
    users.write_text("SEQUENTIAL\n" + "\n".join(rows) + "\n")
    run = sipp("ue_register.xml", lab.registrar_address, lab.folder, calls=len(devices), inf=users)
    assert run.returncode == 0, run.stdout + run.stderr + messages(lab.folder, "ue_register.xml")


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
    run = sipp("untrusted_register.xml", lab.edge_address, lab.folder, local_ip="127.0.0.2")
    assert run.returncode == 0, messages(lab.folder, "untrusted_register.xml")
    assert "not a trusted S-CSCF: refused" in lab.edge.log()


def test_a_notify_for_no_subscription_gets_481(lab):
    run = sipp("stray_notify.xml", lab.edge_address, lab.folder)
    assert run.returncode == 0, messages(lab.folder, "stray_notify.xml")


def test_options_is_answered_and_other_methods_are_not_served(lab):
    run = sipp("options.xml", lab.edge_address, lab.folder)
    assert run.returncode == 0, messages(lab.folder, "options.xml")
    assert "Allow: REGISTER, NOTIFY, OPTIONS" in messages(lab.folder, "options.xml")
