"""HSS pushes to the real PyHSS 2.0: identities per second that the portal pushes
(Celery workers on the sync queue, the PyHSS backend) against a direct PyHSS client
making the same calls at the same concurrency (goal: at least 80 % of it), for changes
committed together (an import's chunk, a bulk action) and one change at a time. PyHSS runs
from ``../shared/peers/pyhss-2.0.0`` on loopback, as the peer tests run it; its
operator data (an EPC subscriber per line) is made over its REST API first. The round
trips are counted in PyHSS's own access log."""

from __future__ import annotations

import re
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from .common import Context, own_employee, own_enterprise
from .deploy import ROOT
from .report import Report

IDENTITIES = {"full": 1000, "small": 200}
GOAL_SHARE = 0.8
ENTERPRISE = "bench-pyhss"
FIRST_TN = 4940777000000
REQUEST_LINE = re.compile(rb'"(GET|PUT|PATCH|DELETE) /')


def _lines(count: int) -> list[str]:
    return [f"00101{n:010d}" for n in range(1, count + 1)]


def _identities(count: int) -> list[int]:
    """The bench enterprise's identities, one per line (made once, kept for later runs)."""
    from accounts.audit import Actor
    from telephony.identities import services
    from telephony.inventory import services as inventory
    from telephony.models import Identity
    from telephony.tests.factories import iccid_for

    system = Actor.system()
    enterprise = own_enterprise(
        slug=ENTERPRISE,
        name="Bench PyHSS",
        sip_domain="pyhss.bench.example",
        first_tn=FIRST_TN,
        quota=count,
    )
    have = Identity.objects.filter(enterprise=enterprise).live().count()
    for n in range(have + 1, count + 1):
        imsi = _lines(count)[n - 1]
        inventory.sim_line_create(
            actor=system, enterprise=enterprise, imsi=imsi, iccid=iccid_for(700_000 + n)
        )
        owner = own_employee(enterprise, f"pyhss-{n}@pyhss.bench.example")
        services.identity_create(actor=system, owner=owner, services=["voice"], imsi=imsi)
    return list(
        Identity.objects.filter(enterprise=enterprise)
        .live()
        .order_by("line__imsi")
        .values_list("pk", flat=True)[:count]
    )


def _pending_again(ids: list[int]) -> None:
    """Every identity has a change, made now, that PyHSS has never seen (a fresh PyHSS)."""
    from django.db.models import F
    from django.utils import timezone

    from telephony.models import IdentitySync

    IdentitySync.objects.filter(pk__in=ids).update(
        desired_version=F("desired_version") + 1,
        state=IdentitySync.State.PENDING,
        requested_at=timezone.now(),
        attempts=0,
        claimed_until=None,
        next_attempt_at=None,
        pushed_msisdn="",
        pushed_imsi="",
    )


def _requests_seen(peer) -> int:
    return len(REQUEST_LINE.findall((peer.root / "api.out").read_bytes()))


def _direct(peer, jobs: list[tuple[str, str, int]], concurrency: int) -> float:
    """What a push of a new identity needs, straight from a client: read the line,
    create the row. Seconds for all."""
    local = threading.local()

    def push(job):
        msisdn, imsi, n = job
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.headers["Provisioning-Key"] = peer.session.headers["Provisioning-Key"]
        line = session.get(f"{peer.url}/subscriber/imsi/{imsi}", timeout=30)
        assert line.status_code == 200 and line.json()["imsi"] == imsi
        created = session.put(
            f"{peer.url}/ims_subscriber/",
            params={"operation_id": f"direct-{n}"},
            json={
                "msisdn": msisdn,
                "msisdn_list": msisdn,
                "imsi": imsi,
                "ifc_path": "default_ifc.xml",
                "sh_template_path": "default_sh_user_data.xml",
            },
            timeout=30,
        )
        assert created.status_code == 200, created.text

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(push, jobs))
    return time.monotonic() - started


def run(ctx: Context) -> Report:
    from telephony.models import Identity, IdentitySync
    from telephony.tests.pyhss_peer import PROVISIONING_KEY, running_pyhss

    if not (ROOT.parent / "shared" / "peers" / "pyhss-2.0.0").is_dir():
        raise RuntimeError("PyHSS 2.0 is not in ../shared/peers: this benchmark needs it")
    if not (ROOT / "var" / "peers" / "pyhss-venv" / ".installed").exists():
        raise RuntimeError("PyHSS's own environment is missing: run `make peers`")
    count = IDENTITIES[ctx.scale.name]
    concurrency = ctx.sync_concurrency
    report = Report(
        "HSS pushes to PyHSS",
        scale=ctx.scale.name,
        settings={
            "identities": count,
            "concurrency (sync worker processes = client threads)": concurrency,
            "PyHSS": "2.0.0, its REST API (Flask development server) on SQLite",
        },
    )
    ids = _identities(count)
    identities = Identity.objects.filter(pk__in=ids).select_related("number", "line")
    # Every bench identity has a SIM line of its own (``_identities``).
    jobs = [(i.tn.removeprefix("+"), i.line.imsi, i.pk) for i in identities if i.line]
    assert len(jobs) == count, "a bench identity has no SIM line"
    with tempfile.TemporaryDirectory() as tmp, running_pyhss(Path(tmp)) as peer:
        for imsi in _lines(count):
            peer.provision_line(imsi)

        before = _requests_seen(peer)
        direct_seconds = _direct(peer, jobs, concurrency)
        direct_calls = _requests_seen(peer) - before
        assert len(peer.ims_subscribers()) == count
        direct_rate = count / direct_seconds
        rates: dict[str, float] = {}
        exact: dict[str, int] = {}
        extra_env = {
            "HSS_BACKEND": "pyhss",
            "HSS_PYHSS_URL": peer.url,
            "HSS_PYHSS_PROVISIONING_KEY": PROVISIONING_KEY,
            "HSS_PYHSS_ALLOW_PLAIN_HTTP": "true",
        }
        rows = [["direct", count, f"{direct_seconds:.1f}", f"{direct_rate:.1f}",
                 f"{direct_calls / count:.2f}"]]  # fmt: skip
        with ctx.deployment("pyhss", extra_env=extra_env) as deployment:
            for label, queue_changes in PORTAL_RUNS.items():
                peer.clear_ims()
                _pending_again(ids)
                before = _requests_seen(peer)
                started = time.monotonic()
                queue_changes(ids)
                synced = IdentitySync.objects.filter(pk__in=ids, state=IdentitySync.State.SYNCED)
                deadline = started + 600
                while synced.count() < count and time.monotonic() < deadline:
                    time.sleep(0.05)
                seconds = time.monotonic() - started
                done, calls = synced.count(), _requests_seen(peer) - before
                rates[label] = done / seconds
                rows.append([label, done, f"{seconds:.1f}", f"{rates[label]:.1f}",
                             f"{calls / max(done, 1):.2f}"])  # fmt: skip
                held = peer.ims_subscribers()
                exact[label] = sum(
                    1 for msisdn, imsi, _ in jobs if (held.get(msisdn) or {}).get("imsi") == imsi
                )
            report.memory = deployment.memory.mb()
    report.table(
        "Identities pushed (new rows)",
        ["client", "identities", "seconds", "identities/s", "PyHSS requests per identity"],
        rows,
    )
    for label, rate in rates.items():
        share = rate / direct_rate
        report.goal(
            f"{label}: pushes ≥ {GOAL_SHARE:.0%} of a direct client's rate",
            share >= GOAL_SHARE,
            f"{share:.0%} ({rate:.1f}/s of {direct_rate:.1f}/s)",
        )
        report.note(
            f"{label}: PyHSS holds exactly the pushed row for {exact[label]} of {count} identities."
        )
    return report


def _changed_together(ids: list[int]) -> None:
    """As an import commits its rows: a chunk's changes queued together on commit."""
    from telephony.bulk.services import CHUNK_SIZE
    from telephony.identities import sync

    for start in range(0, len(ids), CHUNK_SIZE):
        sync.queue_pushes(ids[start : start + CHUNK_SIZE])


def _changed_one_by_one(ids: list[int]) -> None:
    """As single edits are: one change, one push."""
    from telephony.identities import sync

    for pk in ids:
        sync.queue_push(pk)


PORTAL_RUNS = {
    "portal, changes committed together": _changed_together,
    "portal, one change at a time": _changed_one_by_one,
}
