"""Onboarding: an admin imports 10,000 employees from CSV through the product's import
(upload and preview in the web process, the run on the bulk queue's worker) and every
identity is pushed to the builtin HSS set to 20 ms per call. Measured: the preview, the
import, and the time until every identity is synced, against the floor that the HSS
latency alone sets: rows × 20 ms ÷ the processes of the worker that ran the pushes.

The file is what an HR system exports: email, full name, services, a caller name for
some, a SIM line's IMSI for some (the others are soft clients), an alias for a few, and
no numbers: each row takes the enterprise's next free number, as onboarding does. The
admin asks for invitations, as the form does by default, so the notify worker emails
10,000 invitations meanwhile. The enterprise (``bench-onboarding``) is made afresh
each run."""

from __future__ import annotations

import csv
import io
import random
import re
import shutil
import time
from typing import TYPE_CHECKING

import requests
from django.utils import timezone

from .common import PROXY_HEADERS, Context, session_cookie
from .report import Report

if TYPE_CHECKING:  # the models load once the bench has set Django up
    from accounts.models import User

SLUG = "bench-onboarding"
LATENCY_MS = 20
GOAL_SHARE = 0.8
FIRST_BLOCK = 4989300000000
IMSI_BASE = "262019"


def prepare(rows: int) -> tuple[User, str]:
    """A fresh enterprise with room for ``rows`` identities, its admin, and the CSV."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from accounts import services as account_services
    from accounts.audit import Actor
    from accounts.models import Role, Service, User
    from bench.management.commands.bench_data import FIRST_NAMES, LAST_NAMES, delete_bench_data
    from telephony.inventory import services as inventory
    from telephony.inventory.numbers import with_luhn_digit
    from telephony.models import SimLine

    delete_bench_data(SLUG, clients=False)
    actor = Actor.system()
    enterprise = account_services.enterprise_create(
        actor=actor,
        name="Bench Onboarding",
        slug=SLUG,
        sip_domain=f"{SLUG}.example",
        identity_quota=rows + 100,
        allowed_services=[s.value for s in Service],
        max_ues_per_user=5,
    )
    inventory.number_block_create(
        actor=actor,
        enterprise=enterprise,
        first_number=f"+{FIRST_BLOCK}",
        last_number=f"+{FIRST_BLOCK + rows + 199}",
        note="Munich campus",
    )
    lines = int(rows * 0.4)
    SimLine.objects.bulk_create(
        (
            SimLine(
                enterprise=enterprise,
                imsi=f"{IMSI_BASE}{i:09d}",
                iccid=with_luhn_digit(f"8949019{i:011d}"),
            )
            for i in range(lines)
        ),
        batch_size=2000,
    )
    admin = User.objects.create_user(
        f"admin@{SLUG}.example",
        None,
        full_name="Olivia Onboard",
        enterprise=enterprise,
        role=Role.ADMIN,
        status=User.Status.ACTIVE,
    )
    TOTPDevice.objects.create(user=admin, name="Authenticator app", confirmed=True)

    rng = random.Random(11)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["email", "full_name", "role", "services", "display_name", "imsi", "alias"])
    for i in range(rows):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        services = ";".join(["voice", *rng.sample(["video", "messaging"], rng.randrange(3))])
        writer.writerow(
            [
                f"{first}.{last}.{i}@{SLUG}.example".lower(),
                f"{first} {last}",
                "employee",
                services,
                f"{first} {last[0]}." if rng.random() < 0.3 else "",
                f"{IMSI_BASE}{i:09d}" if i < lines else "",
                f"{first}.{last}.{i}".lower() if rng.random() < 0.1 else "",
            ]
        )
    return admin, out.getvalue()


def _form(session: requests.Session, url: str, cookie: str) -> tuple[str, str]:
    """The CSRF cookie and form token of a page (the secure cookie is handed on by hand:
    the loopback is plain HTTP behind the simulated TLS proxy)."""
    page = session.get(url, headers={"Cookie": f"sessionid={cookie}", **PROXY_HEADERS})
    page.raise_for_status()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    if token is None:
        raise RuntimeError(f"{url} answered a page without a form token")
    return page.cookies.get("csrftoken") or "", token.group(1)


def run(ctx: Context) -> Report:
    from telephony.models import IdentitySync, ImportJob

    rows = ctx.scale.import_rows
    report = Report(
        "Onboarding",
        scale=ctx.scale.name,
        settings={
            "rows": f"{rows:,}",
            "HSS_BUILTIN_LATENCY_MS": LATENCY_MS,
            "Celery worker processes": f"sync {ctx.sync_concurrency}, bulk "
            f"{ctx.bulk_concurrency}, notify 1",
            "gunicorn sync workers": ctx.web_workers,
            "invitations": "sent (the form's default)",
        },
    )
    admin, csv_text = prepare(rows)
    shutil.rmtree(ctx.var_dir / "mail", ignore_errors=True)
    cookie = session_cookie(admin.email)
    with ctx.deployment(
        "onboarding", extra_env={"HSS_BUILTIN_LATENCY_MS": str(LATENCY_MS)}
    ) as deployment:
        http = requests.Session()
        base = deployment.base_url
        origin = {"Origin": f"https://127.0.0.1:{deployment.port}", **PROXY_HEADERS}
        csrf, token = _form(http, f"{base}/import/", cookie)
        cookies = f"sessionid={cookie}; csrftoken={csrf}"
        started = time.monotonic()
        upload = http.post(
            f"{base}/import/",
            headers={"Cookie": cookies, **origin},
            data={"csrfmiddlewaretoken": token, "send_invitations": "on"},
            files={"file": ("employees.csv", csv_text.encode(), "text/csv")},
            allow_redirects=False,
            timeout=300,
        )
        preview_seconds = time.monotonic() - started
        if upload.status_code != 302:
            raise RuntimeError(f"the upload answered {upload.status_code}: {upload.text[:2000]}")
        job = ImportJob.objects.get(enterprise__slug=SLUG)
        if job.problems:
            raise RuntimeError(f"the preview found problems: {job.problems[:5]}")
        started_at = timezone.now()
        started = time.monotonic()
        start = http.post(
            f"{base}/import/{job.pk}/start/",
            headers={"Cookie": cookies, **origin},
            data={"csrfmiddlewaretoken": token},
            allow_redirects=False,
            timeout=60,
        )
        if start.status_code != 302:
            raise RuntimeError(f"starting the import answered {start.status_code}")
        imported_at = synced_at = None
        deadline = started + max(900, rows * LATENCY_MS / 1000 * 3)
        synced = 0
        while time.monotonic() < deadline:
            job.refresh_from_db(fields=["state", "next_row", "created_count", "failed_count"])
            if imported_at is None and job.state in (ImportJob.State.DONE, ImportJob.State.FAILED):
                imported_at = time.monotonic()
            synced = IdentitySync.objects.filter(
                enterprise=job.enterprise, state=IdentitySync.State.SYNCED
            ).count()
            if synced >= rows and synced_at is None:
                synced_at = time.monotonic()
            # The job is read before the count, so its end may show a round after the last push.
            if synced_at is not None and imported_at is not None:
                break
            time.sleep(0.25)
        report.memory = deployment.memory.mb()
        invitations_sent = _emails(ctx)
        # Push tasks, of one identity or a batch (an import's chunk queues batches).
        single, batches = (
            deployment.tasks_run(f"telephony.tasks.{name}")
            for name in ("sync_identity", "sync_identities")
        )
        pushes = {role: single[role] + batches[role] for role in single}
    if synced_at is None or imported_at is None:
        raise RuntimeError(f"only {synced} of {rows} identities synced in time (job {job.state})")
    # The floor: the HSS latency alone, spread over the processes of the worker that
    # pushed the import's identities (the bulk queue's, since pushes of an import go
    # there; one of its processes runs the import itself).
    pusher = max(pushes, key=lambda role: pushes[role])
    concurrency = {
        "celery-sync": ctx.sync_concurrency,
        "celery-bulk": ctx.bulk_concurrency,
        "celery-notify": 1,
    }[pusher]
    floor = rows * LATENCY_MS / 1000 / concurrency
    import_seconds = imported_at - started
    all_synced = synced_at - started
    share = floor / all_synced
    report.note(
        "push tasks run by: "
        + ", ".join(f"{role.removeprefix('celery-')} worker {n:,}" for role, n in pushes.items())
        + f"; the floor divides by that worker's {concurrency} processes"
    )
    report.table(
        "Times (seconds from pressing Start, except the preview)",
        ["upload and preview", "import done", "all synced", "floor", "rows/s", "of the floor"],
        [
            [
                f"{preview_seconds:.1f}",
                f"{import_seconds:.1f}",
                f"{all_synced:.1f}",
                f"{floor:.1f}",
                f"{rows / all_synced:.0f}",
                f"{share:.0%}",
            ]
        ],
    )
    from telephony.models import SyncAttempt

    attempts = SyncAttempt.objects.filter(
        enterprise=job.enterprise, created_at__gte=started_at
    ).count()
    report.table(
        "Checks",
        ["rows imported", "rows failed", "identities synced", "push attempts", "invitation emails"],
        [[job.created_count, job.failed_count, synced, attempts, invitations_sent]],
    )
    report.goal(
        f"≥ {GOAL_SHARE:.0%} of the floor's throughput",
        share >= GOAL_SHARE,
        f"{share:.0%}: all synced in {all_synced:.1f} s, floor {floor:.1f} s",
    )
    bulk = report.memory.get("celery-bulk worker (pool)", 0)
    sync = report.memory.get("celery-sync worker (pool)", 0)
    web = report.memory.get("web worker", 0)
    report.goal(
        "Celery worker peak RSS ≤ 300 MB",
        max(bulk, sync) <= 300,
        f"bulk {bulk:.0f} MB, sync {sync:.0f} MB",
    )
    report.goal(
        "web worker peak RSS ≤ 250 MB (the upload and preview)", web <= 250, f"{web:.0f} MB"
    )
    return report


# Django's file backend ends each message with this line; a file holds one session's.
MESSAGE_END = b"\n" + b"-" * 79 + b"\n"


def _emails(ctx: Context) -> int:
    mail = ctx.var_dir / "mail"
    return (
        sum(path.read_bytes().count(MESSAGE_END) for path in mail.iterdir()) if mail.exists() else 0
    )
