"""Registration storm: the S-CSCF reports every UE of the big enterprise again, as after
a core restart: RFC 3680 reginfo documents (one per identity, ``full`` state, every AoR
of its implicit registration set with every device), POSTed to /network/v1/reginfo with
the network client's credential and ``Prefer: respond-async`` by 32 concurrent clients,
until the contact events sent reach the target (100,000 at full scale). Along the way one
identity in ten gets a new device (the "already logged on" notice and its emails follow)
and, in the second round, one in twenty drops one (a full document that no longer lists
it ends it). The deployment's ``sync`` worker applies the documents in batches.

Measured: contact events accepted per second (in documents answered 202), contacts
applied per second from the first document sent to the last one applied (as the outcomes
report them), documents per second, accept latency, and nothing lost: every answer, every
outcome, the applied count against what the documents must apply, and each identity's
active devices at the end against what was sent."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import defaultdict

from django.utils import timezone

from .common import PROXY_HEADERS, Context
from .load import percentile, post_all
from .report import Report

CLIENTS = 32
GOAL_APPLIED_PER_SECOND = 2000
GOAL_ACCEPT_P99_MS = 200
# How long the worker may take to apply what is left once the last document is answered.
DRAIN_SECONDS = 600
NEW_DEVICE_SHARE = 0.10
DROP_SHARE = 0.05


def _contact(index: int, device: dict, event: str):
    from telephony.registrations.reginfo import ContactInfo

    return ContactInfo(
        element_id=f"c{index}",
        uri=device["contact"],
        state="active",
        event=event,
        expires=3600,
        duration_registered=None,
        retry_after=None,
        callid=device["callid"],
        cseq=device["cseq"],
        q="",
        display_name="",
        instance=device["instance"],
        params=(),
        pub_gruu=device["pub_gruu"],
        temp_gruu="",
        user_agent=device["user_agent"],
        access_network="",
        source_ip="",
    )


def plan(target_events: int, run_id: str, rng: random.Random):
    """The documents to send, in order, and what the portal must hold at the end.

    Returns (documents as bytes, contact events per document, expected applied
    contacts, {identity id: device keys active at the end}, the index of the document
    each must wait for: its identity's one before, or None)."""
    from accounts.models import User
    from telephony.models import Identity, Registration
    from telephony.registrations.reginfo import ReginfoDocument, RegistrationInfo
    from telephony.tests.reginfo_xml import render_reginfo_xml

    identities = {
        i.pk: i
        for i in Identity.objects.filter(
            enterprise__slug="bench-big",
            status=Identity.Status.ACTIVE,
            owner__status=User.Status.ACTIVE,
        ).select_related("number", "enterprise")
    }
    devices: dict[int, list[dict]] = defaultdict(list)
    for reg in Registration.objects.active().filter(identity_id__in=identities).order_by("pk"):
        devices[reg.identity_id].append(
            {
                "key": reg.device_key,
                "instance": reg.instance_id,
                "contact": reg.contact_uri,
                "callid": reg.callid,
                "cseq": reg.cseq or 1,
                "pub_gruu": reg.pub_gruu,
                "user_agent": reg.user_agent,
            }
        )
    order = [pk for pk in identities if devices[pk]]
    version_base = int(time.time())
    docs: list[bytes] = []
    events_per_doc: list[int] = []
    after: list[int | None] = []
    last_doc: dict[int, int] = {}
    expected_applied, sent = 0, 0
    touched: set[int] = set()
    round_ = 0
    while sent < target_events:
        round_ += 1
        rng.shuffle(order)
        for pk in order:
            if sent >= target_events:
                break
            identity, listed = identities[pk], list(devices[pk])
            impus = identity.impus
            dropped = []
            if round_ == 1 and len(listed) < 4 and rng.random() < NEW_DEVICE_SHARE:
                instance = f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
                listed.append(
                    {
                        "key": f"instance:{instance}",
                        "instance": instance,
                        "contact": f"sip:{run_id}-{pk}@203.0.113.{pk % 250 + 1}:5061;transport=tls",
                        "callid": f"{run_id}-{pk}@203.0.113.9",
                        "cseq": 1,
                        "pub_gruu": "",
                        "user_agent": "Portal Softphone/2.1 (Windows 11)",
                        "new": True,
                    }
                )
            elif round_ > 1 and len(listed) > 1 and rng.random() < DROP_SHARE:
                dropped = [listed.pop(rng.randrange(len(listed)))]
            registrations = tuple(
                RegistrationInfo(
                    element_id=f"r{n}",
                    aor=aor,
                    state="active",
                    contacts=tuple(
                        _contact(c, d, "registered" if d.get("new") else "refreshed")
                        for c, d in enumerate(listed)
                    ),
                )
                for n, aor in enumerate(impus)
            )
            document = ReginfoDocument(
                version=version_base + round_, state="full", registrations=registrations
            )
            after.append(last_doc.get(pk))
            last_doc[pk] = len(docs)
            docs.append(render_reginfo_xml(document))
            events = len(impus) * len(listed)
            events_per_doc.append(events)
            sent += events
            # Each listed contact applies once per AoR; each dropped one ends once per AoR.
            expected_applied += events + len(impus) * len(dropped)
            for d in listed:
                d.pop("new", None)
            devices[pk] = listed
            touched.add(pk)
    final = {pk: {d["key"] for d in devices[pk]} for pk in touched}
    return docs, events_per_doc, expected_applied, final, after


def run(ctx: Context) -> Report:
    from django.db.models import Count, Max

    from telephony.models import Registration, RegistrationReport

    target = ctx.scale.storm_events
    report = Report(
        "Registration storm",
        scale=ctx.scale.name,
        settings={
            "gunicorn sync workers": ctx.web_workers,
            "clients": CLIENTS,
            "contact events": f"{target:,}",
            "documents": "one per identity, full state, every AoR of its implicit "
            "registration set with every device",
        },
    )
    rng = random.Random(7)
    run_id = uuid.uuid4().hex[:8]
    docs, events, expected_applied, final, after = plan(target, run_id, rng)
    headers = {
        "Authorization": f"Bearer {ctx.network_token}",
        "Content-Type": "application/reginfo+xml",
        "Prefer": "respond-async",
        **PROXY_HEADERS,
    }
    with ctx.deployment("storm") as deployment:
        started_at = timezone.now()
        result = post_all(
            deployment.base_url,
            "/network/v1/reginfo",
            docs,
            clients=CLIENTS,
            headers=headers,
            after=after,
        )
        ok = [(i, a) for i, a in enumerate(result.answers) if a.status == 202]
        kept = [json.loads(answer.body)["report"] for _, answer in ok]
        waiting = _drain(kept)
        report.memory = deployment.memory.mb()
    failed = [a for a in result.answers if a.status != 202]
    accepted_events = sum(events[i] for i, _ in ok)
    outcomes = RegistrationReport.objects.filter(pk__in=kept)
    applied_outcomes = outcomes.filter(state=RegistrationReport.State.APPLIED)
    applied = sum(o["applied"] for o in applied_outcomes.values_list("outcome", flat=True) if o)
    refused = outcomes.filter(state=RegistrationReport.State.REFUSED).count()
    last_applied = outcomes.aggregate(last=Max("applied_at"))["last"] or timezone.now()
    latencies = [a.seconds * 1000 for a in result.answers]
    # The end state: each identity's active devices, refreshed during the storm.
    held: dict[int, set[str]] = defaultdict(set)
    stale = 0
    for reg in Registration.objects.active().filter(identity_id__in=final):
        held[reg.identity_id].add(reg.device_key)
        if reg.last_refreshed_at < started_at:
            stale += 1
    mismatched = sum(1 for pk, keys in final.items() if held.get(pk, set()) != keys)
    expected_active = sum(len(keys) for keys in final.values())
    active = sum(len(keys) for keys in held.values())
    new_devices = Registration.objects.filter(
        identity_id__in=final, first_registered_at__gte=started_at
    ).aggregate(n=Count("pk"))["n"]
    # Applied: from the first document sent to the last one applied.
    seconds = max((last_applied - started_at).total_seconds(), result.seconds)
    report.table(
        "Throughput and latency",
        [
            *("documents", "contact events sent", "accepted/s", "applied/s", "documents/s"),
            *("accept p50 ms", "accept p95 ms", "accept p99 ms", "non-202", "client errors"),
        ],
        [
            [
                f"{len(docs):,}",
                f"{sum(events):,}",
                f"{accepted_events / result.seconds:,.0f}",
                f"{applied / seconds:,.0f}",
                f"{len(result.answers) / seconds:,.1f}",
                f"{percentile(latencies, 50):.0f}",
                f"{percentile(latencies, 95):.0f}",
                f"{percentile(latencies, 99):.0f}",
                len(failed),
                len(result.errors),
            ]
        ],
    )
    report.table(
        "Nothing lost",
        ["check", "expected", "found"],
        [
            ["documents waiting when the storm ended", 0, waiting],
            ["documents refused", 0, refused],
            ["contacts applied (sum of the outcomes)", f"{expected_applied:,}", f"{applied:,}"],
            ["active registrations at the end", f"{expected_active:,}", f"{active:,}"],
            ["identities whose devices differ from the last document", 0, mismatched],
            ["active registrations not refreshed by the storm", 0, stale],
            ["new devices registered", "", f"{new_devices:,}"],
        ],
    )
    lost = (
        failed
        or waiting
        or refused
        or result.errors
        or applied != expected_applied
        or active != expected_active
        or mismatched
        or stale
    )
    report.goal("nothing lost", not lost, "every check above matches" if not lost else "see above")
    report.goal(
        f"≥ {GOAL_APPLIED_PER_SECOND:,} applied/s",
        applied / seconds >= GOAL_APPLIED_PER_SECOND,
        f"{applied / seconds:,.0f} applied/s over {seconds:.1f} s",
    )
    p99 = percentile(latencies, 99)
    report.goal(
        f"accept p99 ≤ {GOAL_ACCEPT_P99_MS} ms",
        p99 <= GOAL_ACCEPT_P99_MS,
        f"{p99:.0f} ms at {CLIENTS} clients",
    )
    web = report.memory.get("web worker", 0)
    report.goal("web worker peak RSS ≤ 250 MB", web <= 250, f"{web:.0f} MB")
    if failed:
        report.note(f"first refusal: {failed[0].status} {failed[0].body[:200]!r}")
    return report


def _drain(reports: list[int]) -> int:
    """Wait until the worker has applied every report kept; how many still wait."""
    from telephony.models import RegistrationReport

    waiting = RegistrationReport.objects.filter(
        pk__in=reports, state=RegistrationReport.State.PENDING
    )
    deadline = time.monotonic() + DRAIN_SECONDS
    while (left := waiting.count()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left
