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
from telephony.tests.sip_peers import new_edge, run_scenario, running_registrar, trace

pytestmark = [pytest.mark.peer, pytest.mark.django_db(transaction=True)]

TN = "+4930555000"


class Lab:
    """The edge, the registrar that plays its S-CSCF, and a folder for their traces."""

    def __init__(self, folder, edge, running_edge, registrar, domain):
        self.folder, self.edge, self.running_edge = folder, edge, running_edge
        self.registrar, self.domain = registrar, domain

    @property
    def registrar_address(self) -> str:
        return f"127.0.0.1:{self.registrar.sip_port}"

    def edge_log(self) -> str:
        return self.running_edge.output()


@pytest.fixture
def lab(live_server, enterprise, tmp_path):
    require_program("kamailio")
    _, token = network_client_create(
        actor=Actor.system(), name="SIP edge", enterprises=[enterprise]
    )
    edge = new_edge(tmp_path / "edge", portal_url=live_server.url, token=token)
    as_uri = f"sip:portal-as@{edge.address}"
    with (
        running_registrar(
            tmp_path / "registrar", domain=enterprise.sip_domain, as_uri=as_uri
        ) as registrar,
        edge.running() as running_edge,
    ):
        yield Lab(tmp_path, edge, running_edge, registrar, enterprise.sip_domain)


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


def test_options_is_answered_and_other_methods_are_not_served(lab):
    run = run_scenario("options.xml", lab.edge.address, lab.folder)
    assert run.returncode == 0, trace(lab.folder, "options.xml")
    assert "Allow: REGISTER, NOTIFY, OPTIONS" in trace(lab.folder, "options.xml")
