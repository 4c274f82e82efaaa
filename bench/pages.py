"""Pages: the big enterprise's dashboard (home), employee list, device list and audit
list, served by gunicorn and driven by wrk on loopback with a signed-in, 2FA-verified
admin session, at 1 and 16 concurrent clients, against a trivial view of the same
deployment (/healthz). Also the SQL queries each page makes, for the big enterprise and
for the small one: the count must not grow with the data."""

from __future__ import annotations

import requests
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from .common import PROXY_HEADERS, Context, session_cookie, session_headers
from .load import wrk
from .report import Report

PAGES = [
    ("dashboard (home)", "/", "Recent changes"),
    ("employee list", "/employees/", "Page 1 of"),
    ("device list", "/devices/", "Page 1 of"),
    ("audit list", "/audit/", "Page 1 of"),
]
BASELINE = ("trivial view", "/healthz", "ok")
CONCURRENCY = (1, 16)
GOAL_P95_MS = 150.0


def query_count(path: str, cookie: str, *, kept: bool = False) -> int:
    """The SQL queries one request for ``path`` makes (run in this process, against the
    same database and code as the deployment): rendering the page, or with ``kept`` served
    from its kept fragment (kernel/fragments.py)."""
    client = Client()
    client.cookies["sessionid"] = cookie
    with override_settings(PAGE_FRAGMENT_SECONDS=10 if kept else 0):
        client.get(path, headers=PROXY_HEADERS)  # warm: the first request fills caches
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path, headers=PROXY_HEADERS)
    if response.status_code != 200:
        raise RuntimeError(f"{path} answered {response.status_code} in process")
    return len(captured.captured_queries)


def run(ctx: Context) -> Report:
    report = Report(
        "Pages",
        scale=ctx.scale.name,
        settings={
            "gunicorn sync workers": ctx.web_workers,
            "wrk": f"{ctx.scale.seconds} s per run after a 2 s warm-up, loopback",
            "data": f"{ctx.scale.employees:,} employees, {ctx.scale.ues:,} active UEs, "
            f"{ctx.scale.calls:,} call records",
        },
    )
    big = session_cookie(ctx.data["admin_emails"]["bench-big"])
    small = session_cookie(ctx.data["admin_emails"]["bench-small"])

    rows, fixed = [], True
    for name, path, _ in PAGES:
        big_count, small_count = query_count(path, big), query_count(path, small)
        grows = big_count > small_count
        fixed = fixed and not grows
        kept = query_count(path, big, kept=True)
        rows.append([name, path, small_count, big_count, "GROWS" if grows else "fixed", kept])
    report.table(
        "SQL queries per page (small enterprise vs big enterprise; rendered, and kept)",
        ["page", "path", "small", "big", "with data", "kept"],
        rows,
    )
    if not fixed:
        report.note("ASSERTION FAILED: a page's query count grows with the data.")

    headers = session_headers(big)
    with ctx.deployment("pages") as deployment:
        for name, path, marker in [BASELINE, *PAGES]:
            answer = requests.get(
                deployment.base_url + path, headers=headers, allow_redirects=False, timeout=30
            )
            if answer.status_code != 200 or marker not in answer.text:
                raise RuntimeError(f"{name} {path}: {answer.status_code}, not the page expected")
        rows = []
        results = {}
        for connections in CONCURRENCY:
            for name, path, _ in [BASELINE, *PAGES]:
                url = deployment.base_url + path
                wrk(url, connections=connections, seconds=2, var_dir=ctx.var_dir, headers=headers)
                result = wrk(
                    url,
                    connections=connections,
                    seconds=ctx.scale.seconds,
                    var_dir=ctx.var_dir,
                    headers=headers,
                )
                results[(path, connections)] = result
                base = results[(BASELINE[1], connections)]
                rows.append(
                    [
                        name,
                        connections,
                        f"{result.p50_ms:.1f}",
                        f"{result.p95_ms:.1f}",
                        f"{result.p99_ms:.1f}",
                        f"{result.rps:.1f}",
                        f"{result.rps / base.rps:.2f}" if path != BASELINE[1] else "1",
                        result.bad + result.errors,
                    ]
                )
        report.memory = deployment.memory.mb()
    report.table(
        "Latency (ms) and throughput per page",
        ["page", "clients", "p50", "p95", "p99", "req/s", "req/s vs trivial", "errors"],
        rows,
    )
    for name, path, _ in PAGES:
        for connections in CONCURRENCY:
            result = results[(path, connections)]
            report.goal(
                f"{name} p95 ≤ {GOAL_P95_MS:.0f} ms at {connections} client"
                + ("s" if connections > 1 else ""),
                result.requests > 0
                and result.p95_ms <= GOAL_P95_MS
                and not (result.bad or result.errors),
                f"p95 {result.p95_ms:.1f} ms",
            )
    report.goal("query count per page does not grow with the data", fixed, "see the table")
    web = report.memory.get("web worker", 0)
    report.goal("web worker peak RSS ≤ 250 MB", web <= 250, f"{web:.0f} MB")
    return report
