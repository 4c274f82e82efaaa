"""Call signing and verification: requests/s and latency of the STI-AS
(/network/v1/stir/signing) and STI-VS (/network/v1/stir/verification) against the
network API's trivial endpoint (/network/v1/ping: the credential checked, DRF, JSON) in
the same deployment, at 1 and 16 concurrent clients; the SQL queries a warm signing and
verification make; the lag from a call to its record (the record stream's writer runs
on the deployment's Celery worker, sent every second as beat sends it); and in-process
ES256 PASSporT signs and verifications per second against ``openssl speed ecdsap256`` on
the same machine (one core each)."""

from __future__ import annotations

import functools
import json
import re
import statistics
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager

from .common import PROXY_HEADERS, Context
from .load import paced, percentile, wrk
from .report import Report

CONCURRENCY = (1, 16)
GOAL_SHARE = 0.8
GOAL_P99_MS = 10.0  # at 16 clients
# Requests/s offered open loop, as calls reach an SBC (load.paced), for 10 s each.
OFFERED_RATE = 500
DESTINATIONS = ["14155551234", "442071830000", "33145678900", "4940123499"]


def numbers(count: int) -> list[str]:
    """E.164 numbers of active, synced identities of the big enterprise (attested A)."""
    from telephony.models import Identity, IdentitySync

    return list(
        Identity.objects.filter(
            enterprise__slug="bench-big",
            status=Identity.Status.ACTIVE,
            sync__state=IdentitySync.State.SYNCED,
        )
        .order_by("pk")
        .values_list("number__e164", flat=True)[:count]
    )


def signing_bodies(tns: list[str]) -> list[str]:
    now = int(time.time())
    return [
        json.dumps(
            {
                "signingRequest": {
                    "orig": {"tn": tn.lstrip("+")},
                    "dest": {"tn": [DESTINATIONS[i % len(DESTINATIONS)]]},
                    "iat": now,
                    "origid": f"00000000-0000-4000-8000-{i:012d}",
                }
            }
        )
        for i, tn in enumerate(tns)
    ]


def verification_bodies(tns: list[str]) -> list[str]:
    """Identity headers signed now (a verification must come within 60 s of iat)."""
    from accounts.models import NetworkClient
    from telephony.callauth import signing

    client = NetworkClient.objects.get(name="Bench S-CSCF")
    bodies = []
    for i, tn in enumerate(tns):
        dest = DESTINATIONS[i % len(DESTINATIONS)]
        signed = signing.sign_call(client=client, orig_tn=tn, dest_tns=[dest], iat=int(time.time()))
        bodies.append(
            json.dumps(
                {
                    "verificationRequest": {
                        "from": {"tn": tn.lstrip("+")},
                        "to": {"tn": [dest]},
                        "identity": ",".join(signed.identities),
                    }
                }
            )
        )
    return bodies


def queries_per_call(tns: list[str], token: str) -> dict[str, int]:
    """SQL queries of a signing and a verification request on the hot path (after a
    warm-up request of each), credential check included: in this process, with the
    deployment's settings."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(
        headers={"Authorization": f"Bearer {token}", **PROXY_HEADERS},
    )
    counts = {}
    for attempt in ("warm-up", "measured"):
        with CaptureQueriesContext(connection) as signed_queries:
            signed = client.post(
                "/network/v1/stir/signing",
                signing_bodies(tns[:1])[0],
                content_type="application/json",
            )
        identities = signed.json()["signingResponse"].get("identities") or [
            signed.json()["signingResponse"]["identity"]
        ]
        body = {
            "verificationRequest": {
                "from": {"tn": tns[0].lstrip("+")},
                "to": {"tn": [DESTINATIONS[0]]},
                "identity": ",".join(identities),
            }
        }
        with CaptureQueriesContext(connection) as verified_queries:
            verified = client.post(
                "/network/v1/stir/verification", json.dumps(body), content_type="application/json"
            )
        if signed.status_code != 200 or verified.status_code != 200:
            raise RuntimeError(f"in-process calls failed: {signed.content!r} {verified.content!r}")
        if attempt == "measured":
            counts = {"signing": len(signed_queries), "verification": len(verified_queries)}
    return counts


@contextmanager
def record_writer():
    """What beat does in production: the record stream's writer task, every second, on
    the deployment's worker for the celery queue."""
    from telephony.tasks import store_call_records

    stop = threading.Event()

    def beat():
        while not stop.is_set():
            store_call_records.delay()
            stop.wait(1.0)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def record_lag(url: str, headers: dict[str, str], tns: list[str], samples: int = 20) -> list[float]:
    """Seconds from a signing's answer until its record is in the table, one call at a
    time with the writer at its pace."""
    import requests

    from telephony.models import CallRecord

    lags = []
    for i in range(samples):
        request_id = f"lag-{uuid.uuid4()}"
        requests.post(
            url,
            headers={**headers, "X-RequestID": request_id},
            data=signing_bodies([tns[i % len(tns)]])[0],
            timeout=30,
        ).raise_for_status()
        answered = time.monotonic()
        while not CallRecord.objects.filter(request_id=request_id).exists():
            if time.monotonic() - answered > 30:
                raise RuntimeError("a call's record did not appear within 30 s")
            time.sleep(0.01)
        lags.append(time.monotonic() - answered)
    return lags


def drain_seconds(timeout: float = 120) -> float:
    """Seconds until the record stream is empty (the lag of the last call of a run)."""
    from telephony.callauth import records

    started = time.monotonic()
    while (records.backlog() or 0) > 0:
        if time.monotonic() - started > timeout:
            raise RuntimeError("the record stream did not drain")
        time.sleep(0.05)
    return time.monotonic() - started


def in_process(seconds: float) -> dict[str, float]:
    """ES256 SHAKEN PASSporTs signed and verified per second by the portal's own code."""
    from telephony.callauth.stir import certificates, passport

    key = certificates.generate_key()
    x5u = "https://certs.example/operator.pem"
    signed = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        token = passport.shaken_passport(
            orig_tn="4930120000000",
            dest_tns=["14155551234"],
            attest="A",
            origid="00000000-0000-4000-8000-000000000000",
            iat=int(time.time()),
            x5u=x5u,
            private_key=key,
        )
        signed += 1
    signs = signed / (time.perf_counter() - started)
    public = key.public_key()
    verified = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        assert passport.verify_signature(passport.decode(token), public)
        verified += 1
    return {"sign/s": signs, "verify/s": verified / (time.perf_counter() - started)}


def openssl_speed(seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["openssl", "speed", "-seconds", str(seconds), "ecdsap256"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # "256 bits ecdsa (nistp256)   0.0000s   0.0001s  40000.0  13000.0"
    match = re.search(r"256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", out)
    if not match:
        raise RuntimeError(f"cannot read openssl speed's output:\n{out}")
    return {"sign/s": float(match.group(1)), "verify/s": float(match.group(2))}


def run(ctx: Context) -> Report:
    report = Report(
        "Call signing and verification",
        scale=ctx.scale.name,
        settings={
            "gunicorn sync workers": ctx.web_workers,
            "wrk": f"{ctx.scale.seconds} s per run after a 2 s warm-up",
            "requests": "100 calling numbers in rotation, attested A with a business name "
            "(so each signing makes two PASSporTs and each verification checks two)",
        },
    )
    tns = numbers(100)
    auth = {"Authorization": f"Bearer {ctx.network_token}", **PROXY_HEADERS}
    post = {**auth, "Content-Type": "application/json"}
    rows, results, drains = [], {}, {}
    with ctx.deployment("stir") as deployment, record_writer():
        endpoints = [
            ("trivial DRF endpoint", "/network/v1/ping", "GET", auth, None),
            ("signing", "/network/v1/stir/signing", "POST", post, signing_bodies(tns)),
            ("verification", "/network/v1/stir/verification", "POST", post, None),
        ]
        for connections in CONCURRENCY:
            for name, path, method, headers, bodies in endpoints:
                if name == "verification":
                    bodies = verification_bodies(tns)  # fresh: iat must be recent
                    answer = _check(deployment.base_url + path, post, bodies[0])
                    if answer.get("verificationResponse", {}).get("verstat") != (
                        "TN-Validation-Passed"
                    ):
                        raise RuntimeError(f"verification did not pass: {answer}")
                measure = functools.partial(
                    wrk,
                    deployment.base_url + path,
                    connections=connections,
                    var_dir=ctx.var_dir,
                    method=method,
                    headers=headers,
                    bodies=bodies,
                )
                measure(seconds=2)  # the warm-up
                result = measure(seconds=ctx.scale.seconds)
                results[(name, connections)] = result
                if name != "trivial DRF endpoint":
                    drains[(name, connections)] = drain_seconds()
                base = results[("trivial DRF endpoint", connections)]
                rows.append(
                    [
                        name,
                        connections,
                        f"{result.rps:.1f}",
                        f"{result.rps / base.rps:.2f}",
                        f"{result.p50_ms:.1f}",
                        f"{result.p99_ms:.1f}",
                        result.bad + result.errors,
                    ]
                )
        offered = []
        for name, path, method, headers, bodies in endpoints:
            if name == "verification":
                bodies = verification_bodies(tns)
            paced_run = paced(
                deployment.base_url, path, method=method, headers=headers,
                bodies=[b.encode() for b in bodies or []], rate=OFFERED_RATE, seconds=10,
            )  # fmt: skip
            ms = [a.seconds * 1000 for a in paced_run.answers]
            refused = sum(1 for a in paced_run.answers if a.status != 200) + len(paced_run.errors)
            offered.append(
                [name, OFFERED_RATE, len(paced_run.answers), f"{percentile(ms, 50):.1f}",
                 f"{percentile(ms, 99):.1f}", f"{max(ms, default=0):.1f}", refused]
            )  # fmt: skip
        lags = record_lag(deployment.base_url + "/network/v1/stir/signing", post, tns)
        report.memory = deployment.memory.mb()
    queries = queries_per_call(tns, ctx.network_token)
    report.table(
        "Through gunicorn",
        ["endpoint", "clients", "req/s", "vs trivial", "p50 ms", "p99 ms", "errors"],
        rows,
    )
    report.table(
        "At an offered rate (open loop, 10 s; latency from each request's due time)",
        ["endpoint", "offered req/s", "answered", "p50 ms", "p99 ms", "max ms", "errors"],
        offered,
    )
    figures: list[list[object]] = [
        ["SQL queries per signing (warm)", queries["signing"]],
        ["SQL queries per verification (warm)", queries["verification"]],
        ["call to its record, one call at a time: median s", f"{statistics.median(lags):.2f}"],
        ["call to its record, one call at a time: max s", f"{max(lags):.2f}"],
    ]
    for (name, n), seconds in drains.items():
        figures.append(
            [f"records written after the {name} run at {n} clients ended: s", f"{seconds:.2f}"]
        )
    report.table("Off the request path", ["figure", "value"], figures)
    ours = in_process(3)
    reference = openssl_speed(3)
    report.table(
        "ES256 in process, one core",
        ["operation", "portal (passport.py)", "openssl speed ecdsap256", "share"],
        [
            [op, f"{ours[op]:,.0f}", f"{reference[op]:,.0f}", f"{ours[op] / reference[op]:.2f}"]
            for op in ("sign/s", "verify/s")
        ],
    )
    for name in ("signing", "verification"):
        for connections in CONCURRENCY:
            result = results[(name, connections)]
            base = results[("trivial DRF endpoint", connections)]
            share = result.rps / base.rps
            report.goal(
                f"{name} ≥ {GOAL_SHARE:.0%} of the trivial endpoint's req/s at {connections} "
                f"client{'s' if connections > 1 else ''}",
                share >= GOAL_SHARE and not (result.bad or result.errors),
                f"{share:.0%} ({result.rps:.0f} vs {base.rps:.0f} req/s)",
            )
        busy = results[(name, CONCURRENCY[-1])]
        report.goal(
            f"{name} p99 ≤ {GOAL_P99_MS:.0f} ms at {CONCURRENCY[-1]} clients",
            busy.p99_ms <= GOAL_P99_MS,
            f"{busy.p99_ms:.1f} ms",
        )
    report.goal(
        "no SQL query on the hot path of a signing",
        queries["signing"] == 0,
        f"{queries['signing']} queries",
    )
    return report


def _check(url: str, headers: dict[str, str], body: str) -> dict:
    import requests

    answer = requests.post(url, headers=headers, data=body, timeout=30)
    answer.raise_for_status()
    return answer.json()
