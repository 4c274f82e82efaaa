""" "Is everything all right?": what in an enterprise needs an admin's attention now, most
urgent first, each with where to act. The admin home leads with it (a banner when any),
then the figures. A fixed number of queries, whatever the enterprise's size."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from accounts.models import Enterprise
from telephony import selectors as telephony_selectors
from telephony.models import IdentitySync, ImportJob, Registration, SimulatedHssOutage

from .models import HssCheck

# A change that waits longer than this for the HSS is no longer "on its way".
SYNC_WAIT_NOTICED_AFTER = timedelta(minutes=5)
# From this share of the contract's identities on, onboarding may soon be refused.
QUOTA_NEAR = 0.9
IMPORTS_SHOWN_FOR = timedelta(days=7)
# The share of calls attested A over 24 hours, against the last 7 days: a drop of this
# many points, over at least this many calls, is told.
ATTESTATION_DROP_POINTS = 10
ATTESTATION_MIN_CALLS = 20
WEEK_SHARE_CACHED_FOR = 300  # seconds


@dataclass(frozen=True)
class Attention:
    level: str  # "danger": something does not work; "warning": it will not soon
    text: str
    link: str
    action: str


def needs_attention(
    enterprise: Enterprise, sync_counts: dict[str, int], calls_today: dict[str, Any]
) -> list[Attention]:
    """``sync_counts`` and ``calls_today`` (24 hours) as the home reads them anyway."""
    now = timezone.now()
    identities = reverse("telephony:identities")
    found: list[Attention] = []

    problem = HssCheck.objects.filter(backend=settings.HSS_BACKEND).values_list(
        "problem", flat=True
    )
    if problem and problem[0]:
        found.append(
            Attention(
                "danger",
                f"The HSS refuses the portal's changes ({problem[0]}); they wait until the "
                "operator fixes it.",
                f"{identities}?sync=pending",
                "See the waiting changes",
            )
        )
    if (
        settings.HSS_BACKEND == "builtin"
        and SimulatedHssOutage.objects.filter(
            Q(until__isnull=True) | Q(until__gt=now), down=True
        ).exists()
    ):
        found.append(
            Attention(
                "warning",
                "The HSS is out of service; changes wait and go through when it is back.",
                f"{identities}?sync=pending",
                "See the waiting changes",
            )
        )
    if sync_counts.get(IdentitySync.State.FAILED):
        n = sync_counts[IdentitySync.State.FAILED]
        found.append(
            Attention(
                "danger",
                f"{n} identit{'y' if n == 1 else 'ies'} could not be synced with the HSS.",
                f"{identities}?sync=failed",
                "Look and retry",
            )
        )
    waiting = (
        IdentitySync.objects.filter(
            enterprise=enterprise,
            state=IdentitySync.State.PENDING,
            requested_at__lt=now - SYNC_WAIT_NOTICED_AFTER,
        )
        .values("pk")
        .count()
    )
    if waiting:
        minutes = int(SYNC_WAIT_NOTICED_AFTER.total_seconds() // 60)
        found.append(
            Attention(
                "warning",
                f"{waiting} change{' has' if waiting == 1 else 's have'} waited for the HSS for "
                f"more than {minutes} minutes.",
                f"{identities}?sync=pending",
                "See the waiting changes",
            )
        )
    found += _imports(enterprise, now)
    quota = enterprise.contract.identity_quota
    used = sync_counts.get("total", 0)
    if quota and used >= QUOTA_NEAR * quota:
        full = used >= quota
        found.append(
            Attention(
                "danger" if full else "warning",
                f"{used} of the contract's {quota} identities are in use"
                + ("; new ones are refused." if full else "; ask for more before it is full."),
                reverse("accounts:enterprise"),
                "See the contract",
            )
        )
    found += _attestation(enterprise, now, calls_today)
    return sorted(found, key=lambda item: item.level != "danger")


def _imports(enterprise: Enterprise, now) -> list[Attention]:
    jobs = ImportJob.objects.for_enterprise(enterprise).filter(
        Q(state=ImportJob.State.FAILED) | Q(state=ImportJob.State.DONE, failed_count__gt=0),
        created_at__gte=now - IMPORTS_SHOWN_FOR,
    )
    return [
        Attention(
            "warning",
            f"The import of {job.filename} stopped."
            if job.state == ImportJob.State.FAILED
            else f"The import of {job.filename} left {job.failed_count} row"
            f"{'' if job.failed_count == 1 else 's'} out.",
            reverse("telephony:import_job", args=[job.pk]),
            "See the import",
        )
        for job in jobs.order_by("-created_at")[:3]
    ]


def _attestation(enterprise: Enterprise, now, day: dict[str, Any]) -> list[Attention]:
    if day["signed"] < ATTESTATION_MIN_CALLS:
        return []
    # The week's share moves slowly and costs a scan of its records (about 100 ms at
    # 500,000 records a month): read at most every few minutes. The key names the
    # enterprise's creation too, so a reused id never reads another's figures.
    key = f"attention:week:{enterprise.pk}:{enterprise.created_at.timestamp()}"
    week = cache.get_or_set(
        key,
        lambda: telephony_selectors.call_summary(enterprise, now - timedelta(days=7)),
        WEEK_SHARE_CACHED_FOR,
    )
    if not week or week["a_share"] is None:
        return []
    if day["a_share"] > week["a_share"] - ATTESTATION_DROP_POINTS:
        return []
    return [
        Attention(
            "warning",
            f"{day['a_share']} % of calls went out fully verified (A) in the last 24 hours, "
            f"against {week['a_share']} % over the last 7 days.",
            reverse("telephony:calls"),
            "See why",
        )
    ]


def figures(enterprise: Enterprise) -> dict[str, Any]:
    """The home's figures beside the counts: devices online now, and the calls of the
    last 24 hours (``call_summary``)."""
    return {
        "devices_online": Registration.objects.for_enterprise(enterprise)
        .active()
        .aggregate(n=Count("pk"))["n"],
        "calls": telephony_selectors.call_summary(enterprise, timezone.now() - timedelta(days=1)),
    }
