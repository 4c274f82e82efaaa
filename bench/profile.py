"""Profile one of the benchmarked paths in this process with pyinstrument, against the
bench data (make it first with ``make bench``), with the deployment's settings:

    python -m bench.profile page /devices/         # a page, as the big enterprise's admin
    python -m bench.profile reginfo                # registration reports (the storm's)
    python -m bench.profile reginfo-async          # the same answered at once, then applied
    python -m bench.profile signing                # STI-AS
    python -m bench.profile verification           # STI-VS
    python -m bench.profile invite                 # an INVITE the SIP edge hands over, signed
    python -m bench.profile import 300             # a CSV import of 300 rows, in process

It prints wall and CPU time per request, the SQL queries per request, and the call
tree. For the running deployment itself, attach py-spy to a gunicorn or Celery worker
(``py-spy record -o profile.svg --pid <pid>``; the pids are the children of the
processes the benchmark starts)."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument(
        "what",
        choices=("page", "reginfo", "reginfo-async", "signing", "verification", "invite", "import"),
    )
    parser.add_argument("arg", nargs="?", default="", help="the page's path, or import rows")
    parser.add_argument("-n", type=int, default=100, help="requests to profile (default 100)")
    parser.add_argument("--var-dir", default="var/bench")
    args = parser.parse_args(argv)

    from .common import PROXY_HEADERS, SCALES, make_context

    var_dir = Path(args.var_dir).resolve()
    ctx = make_context(
        SCALES["small"], web_workers=1, sync_concurrency=1, bulk_concurrency=1, var_dir=var_dir
    )
    ctx.data = json.loads((var_dir / "bench-data.json").read_text())

    from celery import current_app
    from django.db import connection
    from django.test import Client
    from pyinstrument import Profiler

    # Tasks go to the broker as in production; the queues are emptied at the end.
    current_app.conf.task_always_eager = False
    client = Client()
    network = {"Authorization": f"Bearer {ctx.network_token}", **PROXY_HEADERS}

    if args.what == "import":
        return _profile_import(int(args.arg or 300))
    if args.what == "page":
        from .common import session_cookie

        client.cookies["sessionid"] = session_cookie(ctx.data["admin_emails"]["bench-big"])
        path = args.arg or "/"

        def request(i):
            return client.get(path, headers=PROXY_HEADERS)
    else:
        if args.what.startswith("reginfo"):
            from .storm import plan

            bodies, *_ = plan(args.n * 12, uuid.uuid4().hex[:8], random.Random(3))
            path, kind = "/network/v1/reginfo", "application/reginfo+xml"
            if args.what == "reginfo-async":
                network["Prefer"] = "respond-async"
        elif args.what == "invite":
            from telephony.tests.sip_messages import invite

            from . import stir

            bodies = [invite(caller=tn) for tn in stir.numbers(100)]
            path, kind = "/network/v1/sip/invite", "message/sip"
        else:
            from . import stir

            make = stir.signing_bodies if args.what == "signing" else stir.verification_bodies
            bodies = make(stir.numbers(100))
            path = f"/network/v1/stir/{args.what}"
            kind = "application/json"

        def request(i):
            return client.post(
                path, data=bodies[i % len(bodies)], content_type=kind, headers=network
            )

    answer = request(0)
    if answer.status_code not in (200, 202):
        print(f"{answer.status_code}: {answer.content[:500]!r}", file=sys.stderr)
        return 1
    # Each request starts by emptying the connection's query log (Django's
    # request_started), so the queries are collected as they run.
    queries: list[tuple[float, str]] = []

    def collect(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            queries.append((time.perf_counter() - started, sql))

    with connection.execute_wrapper(collect):
        request(1)
    # First without the profiler, whose sampling costs CPU of its own, then with it.
    n = args.n
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(2, n + 2):
        request(i)
    print(
        f"{args.what} {args.arg}: {(time.perf_counter() - started) / n * 1000:.1f} ms wall, "
        f"{(time.process_time() - cpu) / n * 1000:.1f} ms CPU per request, "
        f"{len(queries)} SQL queries"
    )
    for seconds, sql in queries:
        print(f"  {seconds * 1000:6.1f} ms  {sql[:110]}")
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for i in range(n + 2, 2 * n + 2):
        request(i)
    profiler.stop()
    print(profiler.output_text(unicode=True, color=False))
    if args.what == "reginfo-async":
        _apply_waiting(collect, queries)
    _empty_queues()
    return 0


def _apply_waiting(collect, queries: list) -> None:
    """What the worker spends on each report the requests above left waiting."""
    from django.db import connection

    from telephony.registrations import inbox

    queries.clear()
    applied = 0
    # Batch after batch, as the worker applies them, without its wake-up's lingering
    # (sleeps, not work) and without a profiler's sampling (CPU of its own).
    started, cpu = time.perf_counter(), time.process_time()
    with connection.execute_wrapper(collect):
        while taken := inbox.apply_batch():
            applied += taken
    print(
        f"worker: {applied} reports in batches of up to {inbox.BATCH}: "
        f"{(time.perf_counter() - started) / applied * 1000:.2f} ms wall, "
        f"{(time.process_time() - cpu) / applied * 1000:.2f} ms CPU, "
        f"{len(queries) / applied:.2f} SQL queries per report"
    )


def _profile_import(rows: int) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from pyinstrument import Profiler

    from accounts.audit import Actor
    from telephony.bulk import services as bulk

    from . import onboarding

    admin, csv_text = onboarding.prepare(rows)
    assert admin.enterprise is not None  # prepare makes the admin in its enterprise
    actor = Actor(user=admin)
    job = bulk.import_preview(
        actor=actor,
        enterprise=admin.enterprise,
        filename="employees.csv",
        csv_text=csv_text,
        send_invitations=True,
    )
    bulk.import_start(actor=actor, job=job)
    profiler = Profiler(interval=0.0005)
    started, cpu = time.perf_counter(), time.process_time()
    with CaptureQueriesContext(connection) as captured:
        profiler.start()
        bulk.run_import_job(job.pk)
        profiler.stop()
    print(
        f"import of {rows} rows: {(time.perf_counter() - started) / rows * 1000:.1f} ms wall, "
        f"{(time.process_time() - cpu) / rows * 1000:.1f} ms CPU, "
        f"{len(captured.captured_queries) / rows:.1f} SQL queries per row"
    )
    seconds: defaultdict[str, float] = defaultdict(float)
    counts: Counter[str] = Counter()
    for query in captured.captured_queries:
        seconds[query["sql"][:90]] += float(query["time"])
        counts[query["sql"][:90]] += 1
    for sql, total in sorted(seconds.items(), key=lambda item: item[1], reverse=True)[:15]:
        print(f"  {total:6.2f} s {counts[sql]:6d}×  {sql}")
    print(profiler.output_text(unicode=True, color=False))
    _empty_queues()
    return 0


def _empty_queues() -> None:
    """The bench's own Redis database: the tasks the profiled requests queued."""
    import os

    import redis

    redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).flushdb()


if __name__ == "__main__":
    sys.exit(main())
