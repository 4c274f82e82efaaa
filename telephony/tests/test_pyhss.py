"""The PyHSS backend against a fake PyHSS 2.0 REST server on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import requests

from telephony.identities.hss import (
    Change,
    HssPermanentError,
    HssTransientError,
    SharedAccess,
    Subscription,
)
from telephony.identities.hss import pyhss as pyhss_module
from telephony.identities.hss.pyhss import PyHss, PyHssSubscription

from .factories import tls_server_certificate
from .pyhss_server import FakePyHss

MSISDN = "+4915550001"
IMSI = "001010000000001"
KEY = "s3cret-provisioning-key"
RUNTIME_PREFIXES = ("scscf", "pcscf")


def subscription(msisdn: str = MSISDN, imsi: str = IMSI, **changes) -> Subscription:
    """The desired state the sync engine builds for an identity with a SIM line."""
    fields = {
        "msisdn": msisdn,
        "imsi": imsi,
        "impi": f"{imsi}@ims.mnc001.mcc001.3gppnetwork.org" if imsi else "",
        "impus": (f"tel:{msisdn}", f"sip:{msisdn}@swift.example;user=phone"),
        "services": ("mmtel-voice",),
        "display_name": "Rob Smith",
    }
    return Subscription(**(fields | changes))


@pytest.fixture
def pyhss(settings) -> Iterator[FakePyHss]:
    with FakePyHss() as server:
        settings.HSS_PYHSS_URL = server.url
        settings.HSS_PYHSS_PROVISIONING_KEY = ""
        settings.HSS_TIMEOUT_SECONDS = 2
        yield server


@pytest.fixture
def locked_pyhss(settings) -> Iterator[FakePyHss]:
    """A PyHSS whose provisioning is locked with ``KEY``; the portal holds the key."""
    with FakePyHss(provisioning_key=KEY) as server:
        settings.HSS_PYHSS_URL = server.url
        settings.HSS_PYHSS_PROVISIONING_KEY = KEY
        settings.HSS_TIMEOUT_SECONDS = 2
        yield server


@pytest.fixture
def hss(pyhss) -> PyHss:
    return PyHss()


# --- upsert ----------------------------------------------------------------------------


def test_first_push_creates_the_next_patches_the_same_row_only_when_it_differs(
    pyhss, hss, settings
):
    pyhss.add_subscriber(IMSI)
    pushed = {"pushed_msisdn": MSISDN, "pushed_imsi": IMSI}
    shared = (SharedAccess("+4915550002", True, True),)

    hss.apply(Change(subscription()), operation_id="portal-1-1")
    hss.apply(Change(subscription(display_name="Robert"), **pushed), operation_id="portal-1-2")
    hss.apply(Change(subscription(shared=shared), **pushed), operation_id="portal-1-3")

    # The display name is nothing PyHSS holds: that push writes nothing.
    assert [(r.method, r.path, r.query["operation_id"]) for r in pyhss.writes()] == [
        ("PUT", "/ims_subscriber/", "portal-1-1"),
        ("PATCH", "/ims_subscriber/1", "portal-1-3"),
    ]
    assert len(pyhss.ims_subscribers.rows) == 1
    row = pyhss.ims_subscriber("4915550001")
    assert row["imsi"] == IMSI
    assert row["msisdn_list"] == "4915550001,4915550002"
    assert row["ifc_path"] == settings.HSS_PYHSS_IFC_PATH
    assert row["sh_template_path"] == settings.HSS_PYHSS_SH_TEMPLATE_PATH


def test_requests_name_their_target_in_origin_form_below_the_urls_own_path(pyhss, settings):
    # The absolute form ("PUT http://host/…") is for proxies (RFC 9112 §3.2.1); PyHSS's
    # server takes it, a reverse proxy in front of PyHSS may not.
    pyhss.add_subscriber(IMSI)
    PyHss().upsert(subscription(), operation_id="op")
    settings.HSS_PYHSS_URL = f"{pyhss.url}/hss/"
    with pytest.raises(HssPermanentError, match="HTTP 404"):  # the fake serves no /hss/
        PyHss().get(MSISDN)

    assert [(r.method, r.target) for r in pyhss.requests] == [
        ("GET", f"/subscriber/imsi/{IMSI}"),
        ("PUT", "/ims_subscriber/?operation_id=op"),
        ("GET", "/hss/ims_subscriber/ims_subscriber_msisdn/4915550001"),
    ]


def test_msisdns_travel_without_plus(pyhss, hss):
    # PyHSS strips "+" on writes but not on lookups, so a "+" would hide the row.
    pyhss.add_subscriber(IMSI)
    shared = (SharedAccess("+4915550002", True, True),)

    hss.upsert(subscription(shared=shared), operation_id="op")
    hss.upsert(subscription(shared=shared), operation_id="op")

    paths = {r.path for r in pyhss.requests}
    assert "/ims_subscriber/ims_subscriber_msisdn/4915550001" in paths
    for request in pyhss.requests:
        assert "+" not in request.path
        if isinstance(request.body, dict):
            assert "+" not in request.body.get("msisdn", "")
            assert "+" not in request.body.get("msisdn_list", "")


def test_operation_id_reaches_pyhss_on_every_write(pyhss, hss):
    pyhss.add_subscriber(IMSI)

    hss.upsert(subscription(), operation_id="portal-7-3")
    hss.apply(Change(subscription(enabled=False), MSISDN, IMSI), operation_id="portal-7-4")

    writes = pyhss.writes()
    assert [(r.method, r.query.get("operation_id")) for r in writes] == [
        ("PUT", "portal-7-3"),  # ims_subscriber
        ("DELETE", "portal-7-4"),  # ims_subscriber: suspended
        ("PATCH", "portal-7-4"),  # subscriber enabled=false
    ]
    assert pyhss.operation_ids == ["portal-7-3", "portal-7-4", "portal-7-4"]


def test_shared_msisdns_land_in_msisdn_list_after_the_own_one(pyhss, hss):
    pyhss.add_subscriber(IMSI)
    shared = (
        SharedAccess("+4915550009", make_calls=False, receive_calls=True),
        SharedAccess("+4915550002", make_calls=True, receive_calls=True),
    )

    hss.upsert(subscription(shared=shared), operation_id="op")

    assert pyhss.ims_subscriber("4915550001")["msisdn_list"] == "4915550001,4915550002,4915550009"
    assert hss.get(MSISDN).shared == (
        SharedAccess("+4915550002", True, True),
        SharedAccess("+4915550009", True, True),
    )


def test_alias_impu_is_refused_not_dropped(pyhss, hss):
    pyhss.add_subscriber(IMSI)
    with_alias = subscription(
        impus=(f"tel:{MSISDN}", f"sip:{MSISDN}@swift.example;user=phone", "sip:rob@swift.example")
    )

    with pytest.raises(
        HssPermanentError, match=r"cannot hold alias IMPUs \(sip:rob@swift.example\)"
    ):
        hss.upsert(with_alias, operation_id="op")
    assert pyhss.requests == []


def test_identity_without_sim_line_is_refused(pyhss, hss):
    with pytest.raises(HssPermanentError, match="derives the IMPI from the IMSI"):
        hss.upsert(subscription(imsi=""), operation_id="op")
    assert pyhss.requests == []


def test_imsi_the_operator_has_not_provisioned_is_refused_before_any_write(pyhss, hss):
    with pytest.raises(HssPermanentError, match=f"has not provisioned IMSI {IMSI}"):
        hss.upsert(subscription(), operation_id="op")
    assert pyhss.writes() == []
    assert pyhss.requests[-1].status == 200  # PyHSS answers `null` for an unknown IMSI


def test_enabled_is_toggled_on_the_epc_subscriber_only_when_it_differs(pyhss, hss):
    epc = pyhss.add_subscriber(IMSI, enabled=True)
    line = f"/subscriber/{epc['subscriber_id']}"

    hss.upsert(subscription(enabled=False), operation_id="suspend")
    assert pyhss.subscriber(IMSI)["enabled"] is False
    hss.upsert(subscription(enabled=False), operation_id="again")
    hss.upsert(subscription(enabled=True), operation_id="resume")

    assert pyhss.subscriber(IMSI)["enabled"] is True
    patches = [(r.body, r.query["operation_id"]) for r in pyhss.writes() if r.path == line]
    assert patches == [({"enabled": False}, "suspend"), ({"enabled": True}, "resume")]


def test_suspension_deregisters_then_deletes_the_row_and_resume_writes_it_again(pyhss, hss):
    # PyHSS answers Cx for any identity with a row, whatever `enabled` says.
    pyhss.add_subscriber(IMSI)
    hss.upsert(subscription(), operation_id="create")

    hss.apply(Change(subscription(enabled=False), MSISDN, IMSI), operation_id="suspend")

    assert pyhss.deregistered == [IMSI]
    assert pyhss.ims_subscriber("4915550001") is None
    order = [
        (r.method, r.path.split("/")[1])
        for r in pyhss.requests
        if r.query.get("operation_id") == "suspend" or r.path.startswith("/oam")
    ]
    assert order == [("GET", "oam"), ("DELETE", "ims_subscriber"), ("PATCH", "subscriber")]
    hss.apply(Change(subscription(), MSISDN, IMSI), operation_id="resume")
    assert pyhss.ims_subscriber("4915550001")["imsi"] == IMSI
    assert pyhss.subscriber(IMSI)["enabled"] is True


@pytest.mark.parametrize("new_imsi", [IMSI, "001010000000002"], ids=["same line", "new line"])
def test_relocation_moves_the_row_and_deregisters_while_one_row_names_the_imsi(
    pyhss, hss, new_imsi
):
    pyhss.add_subscriber(IMSI)
    pyhss.add_subscriber("001010000000002")
    hss.upsert(subscription(), operation_id="create")
    new = subscription(msisdn="+4915550009", imsi=new_imsi)
    released = IMSI if new_imsi != IMSI else ""

    hss.apply(Change(new, MSISDN, IMSI, MSISDN, released), operation_id="relocate")

    (row,) = pyhss.ims_subscribers.rows.values()  # one row, the old one, renamed
    assert (row["ims_subscriber_id"], row["msisdn"], row["imsi"]) == (1, "4915550009", new_imsi)
    assert pyhss.deregistered == [IMSI]  # the old SIM's (or the same SIM's) UEs
    assert pyhss.subscriber(IMSI)["enabled"] is (new_imsi == IMSI)


def test_a_relocation_retried_after_the_move_still_deregisters(pyhss, hss):
    pyhss.add_subscriber(IMSI)
    hss.upsert(subscription(), operation_id="create")
    relocation = Change(subscription(msisdn="+4915550009"), MSISDN, IMSI, MSISDN)
    pyhss.inject(503, {"Result": "busy"}, path=f"/oam/deregister/{IMSI}")

    with pytest.raises(HssTransientError):
        hss.apply(relocation, operation_id="relocate")
    assert pyhss.ims_subscriber("4915550009") is not None  # moved, not yet deregistered
    hss.apply(relocation, operation_id="relocate")

    assert pyhss.deregistered == [IMSI]
    assert list(pyhss.ims_subscribers.rows) == [1]


def test_deregistration_that_pyhss_cannot_do_is_never_taken_for_done(pyhss, hss):
    # Two rows name the IMSI (one the portal did not write): PyHSS answers `null`.
    pyhss.add_subscriber(IMSI)
    hss.upsert(subscription(), operation_id="create")
    pyhss.add_ims_subscriber("4915550077", imsi=IMSI)

    with pytest.raises(HssPermanentError, match="several ims_subscriber rows name it"):
        hss.apply(Change(None, MSISDN, IMSI, MSISDN, IMSI), operation_id="remove")
    assert pyhss.ims_subscriber("4915550001") is not None  # not deleted undetected


def test_concurrent_create_is_settled_by_lookup_and_patch(pyhss, hss):
    pyhss.add_subscriber(IMSI)
    pyhss.race_next_create()

    hss.upsert(subscription(shared=(SharedAccess("+4915550002", True, True),)), operation_id="op")

    assert [(r.method, r.path, r.status) for r in pyhss.writes()] == [
        ("PUT", "/ims_subscriber/", 400),
        ("PATCH", "/ims_subscriber/1", 200),
    ]
    assert len(pyhss.ims_subscribers.rows) == 1
    assert pyhss.ims_subscriber("4915550001")["msisdn_list"] == "4915550001,4915550002"


def test_runtime_fields_are_never_written(pyhss, hss):
    # A registered subscriber: PyHSS holds its serving S-CSCF and P-CSCF.
    pyhss.add_subscriber(IMSI)
    pyhss.add_ims_subscriber(
        "4915550001", imsi=IMSI, scscf="sip:scscf.ims.example:6060", pcscf="sip:pcscf.ims.example"
    )

    hss.upsert(subscription(), operation_id="op")
    assert pyhss.ims_subscriber("4915550001")["scscf"] == "sip:scscf.ims.example:6060"
    hss.remove(MSISDN, operation_id="op")
    hss.release_line(IMSI, operation_id="op")
    hss.upsert(subscription(), operation_id="op")

    bodies = [r.body for r in pyhss.writes() if isinstance(r.body, dict)]
    assert bodies, "the scenario must write something"
    assert not [k for body in bodies for k in body if k.startswith(RUNTIME_PREFIXES)]
    first_patch = next(r for r in pyhss.writes() if r.method == "PATCH")
    assert set(first_patch.body) == {
        "msisdn",
        "msisdn_list",
        "imsi",
        "ifc_path",
        "sh_template_path",
    }


# --- Provisioning-Key -------------------------------------------------------------------


def test_locked_provisioning_accepts_the_key(locked_pyhss):
    locked_pyhss.add_subscriber(IMSI)

    PyHss().upsert(subscription(enabled=False), operation_id="op")

    assert locked_pyhss.subscriber(IMSI)["enabled"] is False
    assert {r.headers.get("provisioning-key") for r in locked_pyhss.writes()} == {KEY}


@pytest.mark.parametrize("portal_key", ["wrong-key-a1b2c3", ""])
def test_refused_provisioning_key_is_permanent_and_never_echoed(locked_pyhss, settings, portal_key):
    locked_pyhss.add_subscriber(IMSI)
    settings.HSS_PYHSS_PROVISIONING_KEY = portal_key

    with pytest.raises(HssPermanentError, match="Provisioning-Key refused") as refused:
        PyHss().upsert(subscription(), operation_id="op")

    assert locked_pyhss.writes()[0].status == 401
    assert KEY not in str(refused.value)
    if portal_key:
        assert portal_key not in str(refused.value)


def test_unusable_provisioning_key_does_not_leak_into_the_error(pyhss, settings):
    # requests quotes a header value with a line break in its exception.
    settings.HSS_PYHSS_PROVISIONING_KEY = "leaky\nkey"

    with pytest.raises(HssPermanentError) as refused:
        PyHss().get(MSISDN)

    assert "leaky" not in str(refused.value)


# --- remove, get, list_all, deregister ---------------------------------------------------


def test_remove_deletes_the_ims_subscriber_and_leaves_the_line_alone(pyhss, hss):
    pyhss.add_subscriber(IMSI)
    hss.upsert(subscription(), operation_id="op")

    hss.remove(MSISDN, operation_id="leaver")

    assert pyhss.ims_subscriber("4915550001") is None
    assert pyhss.subscriber(IMSI)["enabled"] is True  # a relocation may keep the line
    assert hss.get(MSISDN) is None


def test_releasing_a_line_disables_its_subscriber_but_keeps_the_row(pyhss, hss):
    pyhss.add_subscriber(IMSI)
    hss.upsert(subscription(), operation_id="op")

    hss.release_line(IMSI, operation_id="leaver")

    assert pyhss.subscriber(IMSI)["enabled"] is False  # disabled, still the operator's row
    hss.release_line("262019999999999", operation_id="leaver")  # unknown line: nothing to do


def test_removing_a_missing_subscription_is_fine(pyhss, hss):
    hss.remove(MSISDN, operation_id="op")

    assert pyhss.writes() == []
    assert [r.status for r in pyhss.requests] == [400]  # the lookup: `null`


def test_get_of_a_missing_msisdn_is_none(pyhss, hss):
    assert hss.get(MSISDN) is None
    assert pyhss.requests[-1].status == 400


def test_get_reads_back_what_upsert_wrote(pyhss, hss, settings):
    pyhss.add_subscriber(IMSI, enabled=False)
    hss.upsert(subscription(), operation_id="op")

    assert hss.get(MSISDN) == PyHssSubscription(
        msisdn=MSISDN,
        impi="",
        imsi=IMSI,
        enabled=True,
        ifc_path=settings.HSS_PYHSS_IFC_PATH,
        sh_template_path=settings.HSS_PYHSS_SH_TEMPLATE_PATH,
    )


def test_list_all_reads_every_page_and_joins_enabled_by_imsi(pyhss):
    for n in range(5):
        imsi = f"00101000000001{n}"
        pyhss.add_subscriber(imsi, enabled=n % 2 == 0)
        pyhss.add_ims_subscriber(f"491555010{n}", imsi=imsi, msisdn_list=f"491555010{n}")
    pyhss.add_subscriber("001010000000099")  # a line no identity uses yet

    found = list(PyHss(page_size=2).list_all())

    assert [(s.msisdn, s.imsi, s.enabled) for s in found] == [
        (f"+491555010{n}", f"00101000000001{n}", n % 2 == 0) for n in range(5)
    ]
    # Six lines fill three pages exactly, so only an empty fourth page ends the list.
    pages = [(r.path, r.query["page"]) for r in pyhss.requests]
    assert pages == [
        *[("/subscriber/list", str(p)) for p in range(4)],
        *[("/ims_subscriber/list", str(p)) for p in range(3)],
    ]


def test_deregister_asks_pyhss_to_deregister_the_imsi(pyhss, hss):
    pyhss.add_subscriber(IMSI)
    hss.upsert(subscription(), operation_id="op")

    hss.deregister(MSISDN, imsi=IMSI)
    # No per-contact deregistration in PyHSS: one contact means all of the IMSI's UEs.
    hss.deregister(MSISDN, contact="sip:rob@10.0.0.7:5060")

    assert pyhss.deregistered == [IMSI, IMSI]
    assert pyhss.requests[-1].path == f"/oam/deregister/{IMSI}"


def test_deregister_of_a_subscriber_pyhss_does_not_hold_is_fine(pyhss, hss):
    hss.deregister(MSISDN, imsi=IMSI)

    # No row: PyHSS could not deregister, and refuses the registrations anyway.
    assert [r.path for r in pyhss.requests] == ["/ims_subscriber/ims_subscriber_msisdn/4915550001"]
    assert pyhss.deregistered == []


# --- What reconcile compares -------------------------------------------------------------


def test_differences_ignore_what_pyhss_does_not_hold(pyhss, hss, settings):
    settings_ifc = settings.HSS_PYHSS_IFC_PATH
    pyhss.add_subscriber(IMSI)
    desired = subscription(
        shared=(SharedAccess("+4915550002", make_calls=False, receive_calls=True),)
    )
    hss.upsert(desired, operation_id="op")
    actual = hss.get(MSISDN)

    # Rights, IMPI, IMPUs, services and display name are not held: no drift.
    assert hss.differences(desired, actual) == {}
    assert hss.differences(subscription(shared=()), actual) == {"shared": [[], ["+4915550002"]]}
    # Suspended: no row at all, and a disabled line.
    assert hss.differences(subscription(enabled=False), actual) == {
        "subscription": ["absent while suspended", "present"],
        "enabled": [False, True],
    }
    assert hss.differences(subscription(enabled=False), None) == {"enabled": [False, True]}
    settings.HSS_PYHSS_IFC_PATH = "new_ifc.xml"
    assert PyHss().differences(desired, actual) == {"ifc_path": ["new_ifc.xml", settings_ifc]}


# --- Faults --------------------------------------------------------------------------------


def test_unknown_field_answer_is_permanent(pyhss, hss):
    pyhss.add_subscriber(IMSI)
    pyhss.inject(
        500,
        {
            "result": "Failed",
            "reason": "An internal server error occurred: 'foo' is an invalid keyword argument for IMS_SUBSCRIBER",
        },
        method="PUT",
    )

    with pytest.raises(HssPermanentError, match="'foo' is an invalid keyword argument"):
        hss.upsert(subscription(), operation_id="op")


@pytest.mark.parametrize("status", [503, 429, 500])
def test_overload_and_server_errors_are_transient(pyhss, hss, status):
    pyhss.inject(status, {"result": "Failed", "reason": "database is locked"})

    with pytest.raises(HssTransientError, match=f"HTTP {status}: database is locked"):
        hss.get(MSISDN)


def test_closed_port_is_transient(settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.HSS_PYHSS_URL = f"http://127.0.0.1:{port}"

    with pytest.raises(HssTransientError, match="unreachable"):
        PyHss().get(MSISDN)


@pytest.fixture
def https_pyhss(settings, tmp_path) -> Iterator[tuple[FakePyHss, str]]:
    """PyHSS over HTTPS, as in production, with a certificate from a CA of the test's own
    (its file returned with the server: trusting it is up to the test)."""
    web_ca, tls = tls_server_certificate(tmp_path, "localhost")
    with FakePyHss(tls=tls) as server:
        settings.HSS_PYHSS_URL = server.url
        settings.HSS_PYHSS_PROVISIONING_KEY = KEY
        settings.HSS_TIMEOUT_SECONDS = 2
        yield server, web_ca


def test_pushes_go_over_https_to_a_pyhss_with_a_certificate_the_host_trusts(
    https_pyhss, monkeypatch
):
    server, web_ca = https_pyhss
    monkeypatch.setenv("SSL_CERT_FILE", web_ca)  # as an operator adds its own CA
    server.add_subscriber(IMSI)

    PyHss().upsert(subscription(), operation_id="op")

    assert server.ims_subscriber("4915550001")["imsi"] == IMSI
    assert server.url.startswith("https://")


def test_a_pyhss_certificate_the_host_does_not_trust_is_refused_before_any_write(
    https_pyhss, caplog
):
    """Not trusted is not a refusal by PyHSS: a CA added or a certificate renewed heals it,
    so it is tried again; the key never left the portal."""
    server, _ = https_pyhss
    server.add_subscriber(IMSI)

    with pytest.raises(HssTransientError, match=r"unreachable.*certificate verify failed"):
        PyHss().upsert(subscription(), operation_id="op")

    assert server.requests == []
    assert KEY not in caplog.text


def test_a_redirect_is_not_followed_and_the_key_goes_nowhere_else(locked_pyhss):
    with FakePyHss() as elsewhere:
        locked_pyhss.inject(307, None, location=f"{elsewhere.url}/ims_subscriber/")

        with pytest.raises(HssPermanentError, match="HTTP 307, which the portal does not follow"):
            PyHss().get(MSISDN)

        assert elsewhere.requests == []


def test_slow_answer_is_transient(pyhss, settings):
    settings.HSS_TIMEOUT_SECONDS = 0.1
    pyhss.inject(200, None, delay=0.3)

    with pytest.raises(HssTransientError, match="did not answer"):
        PyHss().get(MSISDN)


def test_other_client_errors_are_permanent_with_pyhss_reason(pyhss, hss):
    pyhss.inject(404, {"Result": "Not Found"})

    with pytest.raises(HssPermanentError, match=r"HTTP 404\).*Not Found"):
        hss.get(MSISDN)


def test_answer_that_is_not_json_is_a_clean_error(pyhss, hss):
    pyhss.inject(200, b"<html>captive portal</html>")

    with pytest.raises(HssPermanentError, match="not JSON"):
        hss.get(MSISDN)


def test_oversized_answer_is_a_clean_error(pyhss, hss, monkeypatch):
    monkeypatch.setattr(pyhss_module, "MAX_ANSWER_BYTES", 1000)
    pyhss.inject(200, [{"msisdn": "4915550001", "padding": "x" * 2000}])

    with pytest.raises(HssPermanentError, match="oversized"):
        list(hss.list_all())


# --- The fake answers like PyHSS ------------------------------------------------------------


def test_fake_pyhss_reproduces_pyhss_answers(pyhss):
    """The quirks the backend relies on, asked of the fake directly."""
    url = pyhss.url
    created = requests.put(
        f"{url}/ims_subscriber/", json={"msisdn": "+4915550001", "imsi": IMSI}, timeout=2
    )
    assert (created.status_code, created.json()["msisdn"]) == (200, "4915550001")

    duplicate = requests.put(f"{url}/ims_subscriber/", json={"msisdn": "4915550001"}, timeout=2)
    assert duplicate.status_code == 400
    assert duplicate.json() == {
        "result": "Failed",
        "reason": "A database integrity error occurred: (sqlite3.IntegrityError) UNIQUE constraint failed: ims_subscriber.msisdn",
    }
    unknown = requests.put(f"{url}/ims_subscriber/", json={"msisdn": "1", "foo": 1}, timeout=2)
    assert (unknown.status_code, unknown.json()["reason"]) == (
        500,
        "An internal server error occurred: 'foo' is an invalid keyword argument for IMS_SUBSCRIBER",
    )
    ignored = requests.patch(f"{url}/ims_subscriber/1", json={"foo": 1}, timeout=2)
    assert (ignored.status_code, ignored.json()["msisdn"]) == (200, "4915550001")

    plus_lookup = requests.get(f"{url}/ims_subscriber/ims_subscriber_msisdn/+4915550001", timeout=2)
    assert (plus_lookup.status_code, plus_lookup.json()) == (400, None)
    missing_by_id = requests.get(f"{url}/ims_subscriber/99", timeout=2)
    assert (missing_by_id.status_code, missing_by_id.json()) == (200, None)
    deleted = requests.delete(f"{url}/ims_subscriber/1", timeout=2)
    assert (deleted.status_code, deleted.json()) == (200, {"Result": "OK"})
    beyond = requests.get(f"{url}/ims_subscriber/list?page=5&page_size=2", timeout=2)
    assert (beyond.status_code, beyond.json()) == (200, [])
    missing_line = requests.get(f"{url}/subscriber/imsi/{IMSI}", timeout=2)
    assert (missing_line.status_code, missing_line.json()) == (200, None)
    nowhere = requests.get(f"{url}/nowhere", timeout=2)
    assert (nowhere.status_code, nowhere.json()) == (404, {"Result": "Not Found"})


def test_fake_pyhss_spends_a_bounded_request_budget(settings):
    with FakePyHss(max_requests=2) as server:
        settings.HSS_PYHSS_URL = server.url
        hss = PyHss()
        hss.get(MSISDN)
        hss.get(MSISDN)
        with pytest.raises(HssTransientError, match="request budget 2 spent"):
            hss.get(MSISDN)


# --- What PyHSS 2.0 answers when its own database fails (as the real one does) ---------

LOCKED = "A database operational error occurred: (sqlite3.OperationalError) database is locked"


@pytest.mark.parametrize(
    "body",
    [
        {"result": "Failed", "reason": LOCKED},
        [{"result": "Failed", "reason": LOCKED}, 400],  # the IMS lookups wrap it
        # Raised outside its handler's wrapping: labelled an integrity error.
        {"result": "Failed", "reason": "A database integrity error occurred: "
         "(sqlite3.OperationalError) database is locked"},
        {"result": "Failed", "reason": "A database operational error occurred: "
         "(psycopg2.OperationalError) server closed the connection unexpectedly"},
    ],
)  # fmt: skip
def test_a_failure_of_pyhss_database_is_transient(pyhss, hss, body):
    pyhss.inject(400, body)

    with pytest.raises(HssTransientError, match="PyHSS's database failed"):
        hss.get(MSISDN)


def test_an_integrity_error_is_permanent(pyhss, hss):
    pyhss.add_subscriber(IMSI)
    pyhss.inject(400, {"result": "Failed", "reason": "A database integrity error occurred: "
                       "(sqlite3.IntegrityError) NOT NULL constraint failed"}, method="PUT")  # fmt: skip

    with pytest.raises(HssPermanentError, match="NOT NULL constraint failed"):
        hss.upsert(subscription(), operation_id="op")


def test_key_check_writes_nothing_and_names_a_refused_key(locked_pyhss, settings):
    assert PyHss().check() == ""
    settings.HSS_PYHSS_PROVISIONING_KEY = "wrong"

    assert "PyHSS key refused" in PyHss().check()
    assert locked_pyhss.ims_subscribers.rows == {}


@pytest.mark.django_db
def test_readyz_and_the_worker_say_pyhss_refuses_the_key(locked_pyhss, settings, client, caplog):
    from portal.celery import check_hss

    settings.HSS_BACKEND = "pyhss"
    settings.HSS_PYHSS_PROVISIONING_KEY = "wrong"

    assert "PyHSS key refused" in check_hss()
    assert "HSS check failed: PyHSS key refused" in caplog.text
    hss = client.get("/readyz").json()["checks"]["hss"]
    assert hss.pop("checked_at")
    assert hss == {
        "ok": False,
        "backend": "pyhss",
        "error": "PyHSS key refused (HTTP 401): check HSS_PYHSS_PROVISIONING_KEY.",
    }
    settings.HSS_PYHSS_PROVISIONING_KEY = KEY
    assert check_hss() == ""
    assert client.get("/readyz").json()["checks"]["hss"]["ok"] is True


@pytest.mark.django_db
def test_key_check_tells_readyz_no_address(settings, client, caplog):
    from portal.celery import check_hss

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        settings.HSS_PYHSS_URL = f"http://127.0.0.1:{probe.getsockname()[1]}"
    settings.HSS_BACKEND = "pyhss"

    check_hss()
    hss = client.get("/readyz").json()["checks"]["hss"]

    assert hss["error"] == "PyHSS not reachable: the key is not checked yet."
    assert settings.HSS_PYHSS_URL in caplog.text  # the details are in the log only


def test_a_row_the_unordered_listing_missed_is_looked_up_before_it_is_drift(
    pyhss, settings, employee, enterprise
):
    from telephony.identities import sync
    from telephony.models import IdentitySync

    from .factories import give_line, give_numbers, make_identity

    settings.HSS_BACKEND = "pyhss"
    give_numbers(enterprise)
    line = give_line(enterprise)
    pyhss.add_subscriber(line.imsi)
    identity = make_identity(employee, imsi=line.imsi)
    assert sync.push_identity(identity.pk).outcome == "synced"
    # PyHSS pages without ORDER BY: a row can slip between two pages.
    pyhss.inject(200, [], method="GET", path="/ims_subscriber/list")

    assert sync.reconcile().drifted == 0

    assert IdentitySync.objects.get(pk=identity.pk).state == IdentitySync.State.SYNCED
    assert "/ims_subscriber/ims_subscriber_msisdn/4930123400" in [r.path for r in pyhss.requests]


def test_a_push_makes_two_pyhss_requests_and_few_sql_statements(
    pyhss, settings, employee, enterprise, django_assert_max_num_queries
):
    """What a push costs besides PyHSS is the sync engine's own database work: the claim,
    the identity with its number, line and enterprise, its owner's grants, and the
    record (the identity's key lock, the sync row and the history row in one
    statement); the other two are the savepoint around the record, a transaction of its
    own outside tests."""
    from django.db import connection

    from telephony.identities import sync
    from telephony.models import IdentitySync, SyncAttempt

    from .factories import give_line, give_numbers, make_identity

    settings.HSS_BACKEND = "pyhss"
    give_numbers(enterprise)
    line = give_line(enterprise)
    pyhss.add_subscriber(line.imsi)
    identity = make_identity(employee, imsi=line.imsi)
    before = len(pyhss.requests)

    # Elsewhere than on PostgreSQL the history row is a statement of its own.
    with django_assert_max_num_queries(6 if connection.vendor == "postgresql" else 7):
        assert sync.push_identity(identity.pk).outcome == "synced"

    assert len(pyhss.requests) - before == 2  # read the line, create the row
    row = IdentitySync.objects.get(pk=identity.pk)
    assert (row.state, row.synced_version, row.claimed_until) == ("synced", 1, None)
    assert (row.pushed_msisdn, row.pushed_imsi) == (identity.tn, line.imsi)
    assert SyncAttempt.objects.filter(identity=identity, outcome="synced").count() == 1
    if connection.vendor == "postgresql":
        # The bookkeeping did not wait for the disk (a local setting: in a worker it ends
        # with the push's own transactions; here it lasts until the test's ends).
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone() == ("off",)
