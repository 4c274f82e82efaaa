"""The portal against the real PyHSS 2.0 (started once for the session, see
``pyhss_peer.py``): changes made through the portal's services, pushed by the sync
engine and the PyHSS backend, each test ending with PyHSS holding exactly the desired
state, read from PyHSS's own database."""

from __future__ import annotations

import pytest
import requests

from accounts.audit import Actor
from accounts.tests.factories import UserFactory
from portal.testing import CeleryWorker, wait_for
from telephony.identities import services, sync
from telephony.identities.hss.pyhss import PyHss
from telephony.models import Identity, IdentitySync, SimLine
from telephony.tests.factories import give_line, give_numbers, make_identity

from .pyhss_peer import PROVISIONING_KEY, running_pyhss
from .pyhss_server import FakePyHss

pytestmark = [pytest.mark.peer, pytest.mark.django_db]

SYSTEM = Actor.system()


@pytest.fixture(scope="session")
def real_pyhss(tmp_path_factory):
    with running_pyhss(tmp_path_factory.mktemp("peer")) as peer:
        yield peer


@pytest.fixture
def pyhss(real_pyhss, settings):
    """The real PyHSS with no IMS subscriber and every operator line enabled; the
    portal's PyHSS backend pointed at it."""
    settings.HSS_BACKEND = "pyhss"
    settings.HSS_PYHSS_URL = real_pyhss.url
    settings.HSS_PYHSS_PROVISIONING_KEY = PROVISIONING_KEY
    settings.HSS_TIMEOUT_SECONDS = 10
    if not real_pyhss.processes.get("api") or real_pyhss.processes["api"].poll() is not None:
        real_pyhss.start_api()  # a test that stopped it failed before starting it again
    real_pyhss.clear_ims()
    real_pyhss.execute("UPDATE subscriber SET enabled = 1, serving_mme = NULL")
    return real_pyhss


@pytest.fixture
def lines(pyhss, enterprise):
    """Four SIM lines in the enterprise's pool, each provisioned by the operator."""
    give_numbers(enterprise)
    found = []
    held = {row["imsi"] for row in pyhss.rows("subscriber")}
    for n in range(1, 5):
        line = give_line(enterprise, n)
        if line.imsi not in held:
            pyhss.provision_line(line.imsi)
        found.append(line.imsi)
    return found


def push_all() -> list[str]:
    """Run every pending push (the tasks' work, without a broker); the outcomes."""
    pending = IdentitySync.objects.exclude(state=IdentitySync.State.FAILED).order_by("pk")
    return [
        sync.push_identity(row.pk, attempt=row.attempts).outcome
        for row in pending
        if row.is_pending
    ]


def held(pyhss) -> dict:
    """What PyHSS holds for the IMS: MSISDN → (IMSI, msisdn_list, iFC, Sh template)."""
    return {
        msisdn: (row["imsi"], row["msisdn_list"], row["ifc_path"], row["sh_template_path"])
        for msisdn, row in pyhss.ims_subscribers().items()
    }


def line_of(identity: Identity) -> SimLine:
    assert identity.line is not None, "these identities are made with a SIM line"
    return identity.line


def row_for(identity: Identity, *shared: str, imsi: str = "") -> tuple:
    own = identity.tn.removeprefix("+")
    listed = ",".join([own, *sorted(s.removeprefix("+") for s in shared)])
    return (imsi or line_of(identity).imsi, listed, "default_ifc.xml", "default_sh_user_data.xml")


def registered(pyhss, identity: Identity) -> None:
    """Record an S-CSCF serving the row and an MME serving the line, as PyHSS does on a
    Cx SAR and an S6a ULR. PyHSS's deregistration clears both: the proof it ran."""
    pyhss.execute(
        "UPDATE ims_subscriber SET scscf = 'sip:scscf.ims.example:6060', "
        "scscf_realm = 'ims.example', scscf_peer = 'scscf.ims.example' WHERE msisdn = ?",
        identity.tn.removeprefix("+"),
    )
    pyhss.execute(
        "UPDATE subscriber SET serving_mme = 'mme01.epc.example', serving_mme_realm = "
        "'epc.example', serving_mme_peer = 'mme01.epc.example' WHERE imsi = ?",
        line_of(identity).imsi,
    )


def serving_scscf(pyhss, msisdn: str):
    return pyhss.ims_subscribers()[msisdn.removeprefix("+")]["scscf"]


def serving_mme(pyhss, imsi: str):
    (row,) = [r for r in pyhss.rows("subscriber") if r["imsi"] == imsi]
    return row["serving_mme"]


def test_create_change_and_share_reach_pyhss_exactly(pyhss, lines, employee, enterprise):
    colleague = UserFactory(enterprise=enterprise)
    own = make_identity(employee, imsi=lines[0])
    theirs = make_identity(colleague, imsi=lines[1])
    assert push_all() == ["synced", "synced"]
    assert held(pyhss) == {
        own.tn[1:]: row_for(own),
        theirs.tn[1:]: row_for(theirs),
    }

    services.grant_create(actor=Actor(user=colleague), identity=theirs, grantee=employee)
    services.identity_update(actor=SYSTEM, identity=own, display_name="Robert")
    assert push_all() == ["synced"]

    assert held(pyhss) == {
        own.tn[1:]: row_for(own, theirs.tn),
        theirs.tn[1:]: row_for(theirs),
    }
    assert pyhss.enabled(lines[0]) and pyhss.enabled(lines[1])


def test_suspension_deregisters_and_leaves_pyhss_nothing_to_answer_until_resumed(
    pyhss, lines, employee
):
    identity = make_identity(employee, imsi=lines[0])
    push_all()
    registered(pyhss, identity)

    services.identity_suspend(actor=SYSTEM, identity=identity)
    assert push_all() == ["synced"]

    # No row: PyHSS refuses the SAR of an IMS registration; the line cannot attach.
    assert held(pyhss) == {}
    assert not pyhss.enabled(lines[0])
    assert serving_mme(pyhss, lines[0]) is None  # deregistered before the row went
    services.identity_resume(actor=SYSTEM, identity=identity)
    assert push_all() == ["synced"], IdentitySync.objects.get(pk=identity.pk).last_error
    assert held(pyhss) == {identity.tn[1:]: row_for(identity)}
    assert pyhss.enabled(lines[0])


# PyHSS's Cx answers to an S-CSCF's SAR: success, and what it answers for a user it
# does not know (an Experimental-Result; Kamailio's S-CSCF turns it into a 500).
DIAMETER_SUCCESS, PYHSS_UNKNOWN_USER = 2001, 5005


def test_pyhss_refuses_the_ims_registration_of_a_suspended_identity(pyhss, lines, employee):
    identity = make_identity(employee, imsi=lines[0])
    push_all()
    assert pyhss.server_assignment(lines[0]) == DIAMETER_SUCCESS
    # Why the row goes: PyHSS's Cx answers never look at the line's `enabled`.
    pyhss.execute("UPDATE subscriber SET enabled = 0 WHERE imsi = ?", lines[0])
    assert pyhss.server_assignment(lines[0]) == DIAMETER_SUCCESS

    services.identity_suspend(actor=SYSTEM, identity=identity)
    push_all()
    assert pyhss.server_assignment(lines[0]) == PYHSS_UNKNOWN_USER

    services.identity_resume(actor=SYSTEM, identity=identity)
    push_all()
    assert pyhss.server_assignment(lines[0]) == DIAMETER_SUCCESS


def test_relocation_keeping_the_line_moves_the_row_and_deregisters_on_it(pyhss, lines, employee):
    identity = make_identity(employee, imsi=lines[0])
    push_all()
    registered(pyhss, identity)
    old_tn = identity.tn

    identity = services.identity_relocate(actor=SYSTEM, identity=identity, tn="+4930123450")
    assert push_all() == ["synced"]

    assert held(pyhss) == {"4930123450": row_for(identity)}
    # PyHSS deregistered the IMSI through its one row: the S-CSCF it recorded is gone.
    assert serving_scscf(pyhss, identity.tn) is None
    assert identity.tn != old_tn
    assert pyhss.enabled(lines[0])


def test_relocation_with_a_new_line_deregisters_the_old_one_and_stops_it(pyhss, lines, employee):
    identity = make_identity(employee, imsi=lines[0])
    push_all()
    registered(pyhss, identity)

    identity = services.identity_relocate(
        actor=SYSTEM, identity=identity, tn="+4930123451", imsi=lines[1]
    )
    assert push_all() == ["synced"]

    assert held(pyhss) == {"4930123451": row_for(identity, imsi=lines[1])}
    assert serving_scscf(pyhss, identity.tn) is None  # deregistered before the move
    assert serving_mme(pyhss, lines[0]) is None
    assert not pyhss.enabled(lines[0])
    assert pyhss.enabled(lines[1])


def test_remove_and_offboard_leave_pyhss_no_row_and_the_lines_stopped(
    pyhss, lines, employee, enterprise
):
    leaver = UserFactory(enterprise=enterprise)
    kept = make_identity(employee, imsi=lines[0])
    removed = make_identity(employee, imsi=lines[1])
    first = make_identity(leaver, imsi=lines[2])
    second = make_identity(leaver, imsi=lines[3])
    push_all()
    for identity in (kept, removed, first, second):
        registered(pyhss, identity)

    services.identity_remove(actor=SYSTEM, identity=removed)
    services.employee_offboard(actor=SYSTEM, user=leaver)
    assert push_all() == ["synced", "synced", "synced"]

    assert held(pyhss) == {kept.tn[1:]: row_for(kept)}
    assert [pyhss.enabled(imsi) for imsi in lines] == [True, False, False, False]
    # Deregistered before their rows went: PyHSS cleared the serving MME of each.
    assert [serving_mme(pyhss, imsi) is None for imsi in lines] == [False, True, True, True]
    assert {first.pk, second.pk} <= set(
        Identity.objects.filter(status=Identity.Status.REMOVED).values_list("pk", flat=True)
    )


def test_drift_in_every_written_field_is_found_and_repaired(pyhss, lines, employee, enterprise):
    colleague = UserFactory(enterprise=enterprise)
    own = make_identity(employee, imsi=lines[0])
    theirs = make_identity(colleague, imsi=lines[1])
    suspended = make_identity(colleague, imsi=lines[2])
    services.grant_create(actor=Actor(user=colleague), identity=theirs, grantee=employee)
    services.identity_suspend(actor=SYSTEM, identity=suspended)
    push_all()
    push_all()
    desired = held(pyhss)
    drift = {
        "msisdn_list": "4930999999",
        "imsi": lines[3],
        "ifc_path": "other_ifc.xml",
        "sh_template_path": "other_sh.xml",
    }
    for column, value in drift.items():
        pyhss.execute(
            f"UPDATE ims_subscriber SET {column} = ? WHERE msisdn = ?",  # noqa: S608
            value,
            own.tn[1:],
        )
    pyhss.execute("UPDATE subscriber SET enabled = 0 WHERE imsi = ?", lines[1])
    pyhss.execute("UPDATE subscriber SET enabled = 1 WHERE imsi = ?", lines[2])

    report = sync.reconcile()

    assert report.drifted == 3
    found = IdentitySync.objects.get(pk=own.pk).drift
    assert set(found) == {"imsi", "shared", "ifc_path", "sh_template_path"}
    assert IdentitySync.objects.get(pk=theirs.pk).drift == {"enabled": [True, False]}
    assert IdentitySync.objects.get(pk=suspended.pk).drift == {"enabled": [False, True]}
    assert push_all() == ["synced", "synced", "synced"]
    assert held(pyhss) == desired
    assert [pyhss.enabled(imsi) for imsi in lines[:3]] == [True, True, False]
    assert sync.reconcile().drifted == 0


def test_drift_in_the_msisdn_is_repaired_and_the_row_left_on_another_number_removed(
    pyhss, lines, employee
):
    identity = make_identity(employee, imsi=lines[0])
    push_all()
    desired = held(pyhss)
    pyhss.execute(
        "UPDATE ims_subscriber SET msisdn = '4930123488' WHERE msisdn = ?", identity.tn[1:]
    )

    report = sync.reconcile()

    assert (report.drifted, report.orphans_removed) == (1, 1)
    assert push_all() == ["synced"]
    assert held(pyhss) == desired


def test_a_changed_ifc_path_setting_reaches_existing_rows(pyhss, lines, employee, settings):
    identity = make_identity(employee, imsi=lines[0])
    push_all()
    (pyhss.root / "portal_ifc.xml").write_text((pyhss.root / "default_ifc.xml").read_text())
    settings.HSS_PYHSS_IFC_PATH = "portal_ifc.xml"

    assert sync.reconcile().drifted == 1
    push_all()

    assert pyhss.ims_subscribers()[identity.tn[1:]]["ifc_path"] == "portal_ifc.xml"


def test_orphans_on_our_numbers_are_removed_and_others_left(pyhss, lines, employee):
    identity = make_identity(employee, imsi=lines[0])
    push_all()
    pyhss.call("PUT", "/ims_subscriber/", {"msisdn": "4930123477", "imsi": lines[1]})
    pyhss.call("PUT", "/ims_subscriber/", {"msisdn": "4989000001", "imsi": lines[2]})

    assert sync.reconcile().orphans_removed == 1

    assert set(held(pyhss)) == {identity.tn[1:], "4989000001"}  # not our number: not ours


def test_an_orphan_naming_a_live_identitys_line_is_removed_and_its_suspension_lands(
    pyhss, lines, employee
):
    identity = make_identity(employee, imsi=lines[0])
    push_all()
    registered(pyhss, identity)
    # An orphan naming the identity's IMSI: PyHSS cannot deregister through two rows,
    # and the identity's UEs are not the orphan's to deregister anyway.
    pyhss.call("PUT", "/ims_subscriber/", {"msisdn": "4930123477", "imsi": lines[0]})
    pyhss.call("PUT", "/ims_subscriber/", {"msisdn": "4930123478", "imsi": lines[1]})

    assert sync.reconcile().orphans_removed == 2

    assert held(pyhss) == {identity.tn[1:]: row_for(identity)}
    assert serving_scscf(pyhss, identity.tn) is not None  # still registered
    assert serving_mme(pyhss, lines[0]) is not None
    services.identity_suspend(actor=SYSTEM, identity=identity)
    assert push_all() == ["synced"], IdentitySync.objects.get(pk=identity.pk).last_error
    assert held(pyhss) == {}
    assert not pyhss.enabled(lines[0])
    assert serving_mme(pyhss, lines[0]) is None  # the suspension deregistered it


def test_pyhss_stopped_mid_run_retries_and_ends_in_step(pyhss, lines, employee):
    identity = make_identity(employee, imsi=lines[0])
    push_all()
    pyhss.stop_api()
    try:
        services.identity_suspend(actor=SYSTEM, identity=identity)
        assert push_all() == ["retry"]
        assert "unreachable" in IdentitySync.objects.get(pk=identity.pk).last_error
    finally:
        pyhss.start_api()
    IdentitySync.objects.filter(pk=identity.pk).update(next_attempt_at=None)

    assert push_all() == ["synced"]
    assert held(pyhss) == {}
    assert not pyhss.enabled(lines[0])


def test_pyhss_database_locked_mid_run_is_retried_not_failed(pyhss, lines, employee):
    identity = make_identity(employee, imsi=lines[0])
    push_all()
    registered(pyhss, identity)

    with pyhss.database_locked():
        services.identity_suspend(actor=SYSTEM, identity=identity)
        assert push_all() == ["retry"]
    row = IdentitySync.objects.get(pk=identity.pk)
    assert row.state == IdentitySync.State.PENDING
    assert "database is locked" in row.last_error

    assert push_all() == ["synced"]
    assert held(pyhss) == {}
    assert not pyhss.enabled(lines[0])
    assert serving_mme(pyhss, lines[0]) is None


def test_the_kill_switch_during_a_locked_database_lands_once_it_is_free(
    pyhss, lines, employee, enterprise
):
    leaver = UserFactory(enterprise=enterprise)
    identity = make_identity(leaver, imsi=lines[0])
    push_all()
    registered(pyhss, identity)

    with pyhss.database_locked():
        services.employee_offboard(actor=SYSTEM, user=leaver)
        assert push_all() == ["retry"]  # not failed: nobody has to press Retry

    assert push_all() == ["synced"]
    assert held(pyhss) == {}
    assert not pyhss.enabled(lines[0])
    assert serving_mme(pyhss, lines[0]) is None


def test_key_check_against_pyhss_writes_nothing(pyhss, settings):
    assert PyHss().check() == ""
    settings.HSS_PYHSS_PROVISIONING_KEY = "not-the-key"
    assert "PyHSS key refused" in PyHss().check()
    settings.HSS_PYHSS_PROVISIONING_KEY = ""
    assert "PyHSS key refused" in PyHss().check()
    assert held(pyhss) == {}


def test_round_trips_per_push(pyhss, lines, employee, monkeypatch):
    """The fewest calls PyHSS's API allows: a create needs the line (is it
    provisioned, is it enabled) and the row; an unchanged push writes nothing."""
    backend = PyHss()
    monkeypatch.setattr("telephony.identities.sync.hss_backend", lambda: backend)
    identity = make_identity(employee, imsi=lines[0])
    push_all()
    assert backend.calls == 2  # GET the line, PUT the row
    backend.calls = 0

    services.identity_update(actor=SYSTEM, identity=identity, display_name="Robert")
    push_all()
    assert backend.calls == 2  # GET the line, GET the row: nothing PyHSS holds changed
    backend.calls = 0

    services.identity_suspend(actor=SYSTEM, identity=identity)
    push_all()
    assert backend.calls == 5  # GET the row, deregister, DELETE it, GET and PATCH the line


# --- The fake PyHSS of the quick tests answers as the real one ---------------------------


def conversation(url: str, key: str, imsi: str) -> list[tuple]:
    """The quirks the backend relies on, asked of a PyHSS; what it answered, without
    what differs by nature (row ids, timestamps, SQL text)."""
    keyed = requests.Session()
    keyed.headers["Provisioning-Key"] = key
    said = []

    def ask(method, path, body=None, *, session=keyed):
        answer = session.request(method, url + path, json=body, timeout=30)
        body = answer.json()
        said.append((method, path, answer.status_code, _shape(body)))
        return body

    ask("GET", "/ims_subscriber/ims_subscriber_msisdn/4915550001")
    ask("GET", "/subscriber/imsi/001019999999999")
    row = {"msisdn": "+4915550001", "msisdn_list": "+4915550001", "imsi": imsi}
    first = ask("PUT", "/ims_subscriber/", row)
    ask("PUT", "/ims_subscriber/", row)
    ask("PUT", "/ims_subscriber/", {"msisdn": "4915550002", "foo": 1})
    ask("PATCH", f"/ims_subscriber/{first['ims_subscriber_id']}", {"foo": 1})
    ask("GET", "/ims_subscriber/ims_subscriber_msisdn/+4915550001")
    ask("GET", f"/oam/deregister/{imsi}")
    second = ask("PUT", "/ims_subscriber/", {"msisdn": "4915550003", "imsi": imsi})
    ask("GET", f"/ims_subscriber/ims_subscriber_imsi/{imsi}")
    ask("GET", f"/oam/deregister/{imsi}")
    ask("DELETE", f"/ims_subscriber/{second['ims_subscriber_id']}")
    ask("DELETE", f"/ims_subscriber/{second['ims_subscriber_id']}")
    ask("GET", f"/ims_subscriber/{second['ims_subscriber_id']}")
    line = ask("GET", f"/subscriber/imsi/{imsi}")
    ask("PATCH", f"/subscriber/{line['subscriber_id']}", {"enabled": False})
    ask("PATCH", f"/subscriber/{line['subscriber_id']}", {"enabled": True})
    ask("PATCH", "/ims_subscriber/0", {}, session=requests.Session())
    ask("PATCH", "/ims_subscriber/0", {})
    ask("GET", "/nowhere", session=requests.Session())
    ask("GET", "/nowhere")
    ask("GET", "/ims_subscriber/list?page=99&page_size=2")
    return said


def _shape(body):
    """An answer with only what the backend reads."""
    if isinstance(body, list):
        return [_shape(item) for item in body]
    if not isinstance(body, dict):
        return body
    if "ims_subscriber" in body and "subscriber" in body:  # a deregistration
        return sorted(body)
    shaped = {}
    for name in ("msisdn", "msisdn_list", "imsi", "enabled", "Result", "result"):
        if name in body:
            shaped[name] = body[name]
    if "reason" in body:
        shaped["reason"] = body["reason"].split("\n")[0]
    return shaped


def test_the_fake_pyhss_answers_as_the_real_one(pyhss, lines):
    with FakePyHss(provisioning_key=PROVISIONING_KEY) as fake:
        fake.add_subscriber(lines[0])
        expected = conversation(fake.url, PROVISIONING_KEY, lines[0])

    assert conversation(pyhss.url, PROVISIONING_KEY, lines[0]) == expected


@pytest.mark.worker
def test_a_worker_says_at_start_that_pyhss_refuses_its_key(pyhss):
    worker = CeleryWorker(
        {
            "HSS_BACKEND": "pyhss",
            "HSS_PYHSS_URL": pyhss.url,
            "HSS_PYHSS_ALLOW_PLAIN_HTTP": "true",
            "HSS_PYHSS_PROVISIONING_KEY": "not-the-key",
        },
        queues=("celery",),
    ).start()
    try:
        said = wait_for(lambda: "HSS check failed" in "".join(worker.output) and worker.output)
    finally:
        worker.stop()

    assert "HSS check failed: PyHSS key refused (HTTP 401)" in "".join(said)
    assert "not-the-key" not in "".join(worker.output)
