"""Reads for telephony pages and the API; each starts from the tenant and loads what a
page shows in a fixed number of queries."""

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db.models import (
    Count,
    Exists,
    F,
    Func,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Window,
)
from django.db.models.functions import Coalesce, RowNumber, TruncDate
from django.utils import timezone

from accounts.models import Enterprise, User
from telephony.callauth.stir.passport import VERSTAT_PASSED

from .inventory.numbers import country_name
from .inventory.services import free_numbers
from .models import (
    CallRecord,
    Grant,
    Identity,
    IdentitySync,
    NetworkNotice,
    NumberBlock,
    OffboardingReceipt,
    Registration,
    RegistrationEvent,
    SimLine,
    SyncAttempt,
    TelephoneNumber,
)
from .models.identities import GrantQuerySet

SYNC_FILTERS = {
    "pending": Q(sync__state=IdentitySync.State.PENDING),
    "synced": Q(sync__state=IdentitySync.State.SYNCED),
    "failed": Q(sync__state=IdentitySync.State.FAILED),
    "drift": Q(sync__state=IdentitySync.State.DRIFT),
}


def identities(
    enterprise: Enterprise,
    # "" for live ones (active and suspended), "all", or one status
    *,
    q: str = "",
    status: str = "",
    sync: str = "",
    owner: User | None = None,
) -> QuerySet[Identity]:
    found = Identity.objects.for_enterprise(enterprise).select_related(
        "owner", "number", "line", "sync", "enterprise"
    )
    if q:
        found = found.filter(
            Q(number__e164__icontains=q.replace(" ", ""))
            | Q(former_tn__icontains=q.replace(" ", ""))
            | Q(display_name__icontains=q)
            | Q(owner__full_name__icontains=q)
            | Q(owner__email__icontains=q)
            | Q(alias__icontains=q)
        )
    if status == "all":
        pass
    elif status:
        found = found.filter(status=status)
    else:
        found = found.live()
    if sync in SYNC_FILTERS:
        found = found.filter(SYNC_FILTERS[sync])
    if owner is not None:
        found = found.filter(owner=owner)
    return found.order_by("owner__full_name", "number__e164", "pk")


def live_identities_prefetch() -> "Prefetch[str, QuerySet[Identity], str]":
    return Prefetch(
        "identities",
        queryset=Identity.objects.live().select_related("number", "sync").order_by("number__e164"),
        to_attr="live_identities",
    )


def employees(
    enterprise: Enterprise,
    *,
    q: str = "",
    status: str = "",
    role: str = "",
    sync: str = "",
    identity: str = "",
) -> QuerySet[User]:
    """The enterprise's people with their live identities (two queries per page); the
    offboarded only when ``status`` asks for them (``offboarded`` or ``any``)."""
    people: QuerySet[User] = User.objects.for_enterprise(enterprise)
    if q:
        people = people.filter(
            Q(full_name__icontains=q)
            | Q(email__icontains=q)
            | Q(identities__number__e164__icontains=q.replace(" ", ""))
        ).distinct()
    if not status:
        people = people.exclude(status=User.Status.OFFBOARDED)
    elif status != "any":
        people = people.filter(status=status)
    if role:
        people = people.filter(role=role)
    live = Identity.objects.live().filter(owner=OuterRef("pk"))
    if sync in SYNC_FILTERS:
        people = people.filter(Exists(live.filter(SYNC_FILTERS[sync])))
    if identity == "none":
        people = people.filter(~Exists(live))
    elif identity == "some":
        people = people.filter(Exists(live))
    return people.prefetch_related(live_identities_prefetch()).order_by("full_name", "email")


def sync_counts(enterprise: Enterprise) -> dict[str, int]:
    """Live identities by sync state, plus the total, in one query."""
    return (
        Identity.objects.for_enterprise(enterprise)
        .live()
        .aggregate(
            total=Count("pk"),
            **{
                state: Count("pk", filter=Q(sync__state=state))
                for state in IdentitySync.State.values
            },
        )
    )


def sync_history(identity: Identity) -> QuerySet[SyncAttempt]:
    return SyncAttempt.objects.filter(identity=identity).order_by("-created_at", "-id")


def number_blocks(enterprise: Enterprise) -> QuerySet[NumberBlock]:
    now = timezone.now()
    return NumberBlock.objects.for_enterprise(enterprise).annotate(
        assigned=Count("numbers", filter=Q(numbers__status=TelephoneNumber.Status.ASSIGNED)),
        quarantined=Count(
            "numbers",
            filter=Q(
                numbers__status=TelephoneNumber.Status.QUARANTINED,
                numbers__quarantined_until__gt=now,
            ),
        ),
        free=Count(
            "numbers",
            filter=Q(numbers__status=TelephoneNumber.Status.FREE)
            | Q(
                numbers__status=TelephoneNumber.Status.QUARANTINED,
                numbers__quarantined_until__lte=now,
            ),
        ),
        total=Count("numbers"),
    )


def sim_lines(enterprise: Enterprise, *, q: str = "", free: str = "") -> QuerySet[SimLine]:
    lines = SimLine.objects.for_enterprise(enterprise).select_related(
        "identity__owner", "identity__number"
    )
    if q:
        lines = lines.filter(Q(imsi__icontains=q) | Q(iccid__icontains=q))
    if free == "yes":
        lines = lines.filter(identity__isnull=True)
    elif free == "no":
        lines = lines.filter(identity__isnull=False)
    return lines.order_by("imsi")


# Free numbers and lines a number or SIM line field offers as one types: the first
# free numbers of each block, so that every block shows.
OFFERED = 50
OFFERED_PER_BLOCK = 10


def free_number_choices(enterprise: Enterprise) -> list[tuple[str, str]]:
    """The enterprise's next free numbers of each block, in the order they are given
    out (oldest block first, lowest number first), labelled with block and country."""
    free = (
        free_numbers(enterprise, timezone.now(), lock=False)
        .annotate(place=Window(RowNumber(), partition_by=F("block_id"), order_by="e164"))
        .filter(place__lte=OFFERED_PER_BLOCK)
        .select_related("block")[:OFFERED]
    )
    return [
        (
            n.e164,
            f"{'next free · ' if i == 0 else ''}{country_name(n.block.country)}, block {n.block}",
        )
        for i, n in enumerate(free)
    ]


def free_line_choices(enterprise: Enterprise) -> list[tuple[str, str]]:
    """The enterprise's SIM lines that no identity uses, labelled with their ICCID."""
    free = sim_lines(enterprise, free="yes").values_list("imsi", "iccid")[:OFFERED]
    return [(imsi, f"ICCID {iccid}") for imsi, iccid in free]


def block_countries(enterprise: Enterprise) -> list[str]:
    return list(
        NumberBlock.objects.for_enterprise(enterprise)
        .order_by("country")
        .values_list("country", flat=True)
        .distinct()
    )


def grants(enterprise: Enterprise | None, *, active: str = "yes") -> GrantQuerySet:
    found = Grant.objects.for_enterprise(enterprise).select_related(
        "identity__number", "identity__owner", "grantee", "created_by"
    )
    if active == "yes":
        found = found.active()
    elif active == "no":
        found = found.filter(Q(revoked_at__isnull=False) | Q(valid_until__lte=timezone.now()))
    return found.order_by("-created_at")


def grants_given(user: User) -> GrantQuerySet:
    return grants(user.enterprise, active="all").filter(identity__owner=user)


def grants_received(user: User) -> GrantQuerySet:
    return grants(user.enterprise, active="all").filter(grantee=user)


def active_people(enterprise: Enterprise | None) -> QuerySet[User]:
    """Whom an identity can be shared with: the enterprise's active people, by name."""
    found: QuerySet[User] = User.objects.for_enterprise(enterprise).active()
    return found.order_by("full_name", "email")


def colleagues(user: User) -> QuerySet[User]:
    """Whom an employee may share an identity with: active people of the enterprise."""
    return active_people(user.enterprise).exclude(pk=user.pk)


def shareable_identities(enterprise: Enterprise) -> QuerySet[Identity]:
    """The active identities that can be shared, by owner: an admin's to share on their
    owners' behalf; an employee shares their own among them."""
    found = Identity.objects.for_enterprise(enterprise).filter(status=Identity.Status.ACTIVE)
    return found.select_related("number", "owner").order_by("owner__full_name", "number__e164")


def receipts(enterprise: Enterprise) -> QuerySet[OffboardingReceipt]:
    return OffboardingReceipt.objects.for_enterprise(enterprise).select_related("user")


def receipt_syncs(receipts: Iterable[OffboardingReceipt]) -> dict[int, IdentitySync]:
    """The sync rows the receipts' network steps point at, in one query."""
    ids = [s["identity_id"] for r in receipts for s in r.steps if s.get("identity_id")]
    return {s.pk: s for s in IdentitySync.objects.filter(pk__in=ids)}


def receipt_steps(
    receipt: OffboardingReceipt, syncs: dict[int, IdentitySync] | None = None
) -> list[dict[str, Any]]:
    """The receipt's steps with the HSS steps' outcome read from their sync state now."""
    if syncs is None:
        syncs = receipt_syncs([receipt])
    steps = []
    for step in receipt.steps:
        step = dict(step)
        sync = syncs.get(step["identity_id"]) if step.get("identity_id") else None
        if sync is not None:
            if sync.state == IdentitySync.State.SYNCED:
                step["outcome"] = "done"
                step["at"] = sync.synced_at
            elif sync.state == IdentitySync.State.FAILED:
                step["outcome"] = "failed"
                step["detail"] = sync.last_error
            else:
                step["outcome"] = "in progress"
                step["detail"] = sync.last_error
        steps.append(step)
    return steps


# --- Devices ----------------------------------------------------------------------------


def active_registrations_prefetch(
    now: datetime | None = None,
) -> "Prefetch[str, QuerySet[Registration], str]":
    return Prefetch(
        "registrations",
        queryset=Registration.objects.active(now)
        .select_related("identity__number")
        # What the device list shows of each (no impus and settings to decode).
        .only("user_id", "label", "state", "identity__number__e164")
        .order_by("first_registered_at"),
        to_attr="active_registrations",
    )


DEVICE_FILTERS = {
    "many": Q(active_devices__gt=1),
    "some": Q(active_devices__gte=1),
    "none": Q(active_devices=0),
}


def device_dashboard(enterprise: Enterprise, *, q: str = "", devices: str = "") -> QuerySet[User]:
    """Every current employee with their active UEs (count, devices, last seen) and their
    identities' sync state: a fixed handful of queries per page.

    Each figure is a correlated subquery rather than an aggregate over a join: an
    aggregate makes the query GROUP BY every other column, call status included, so the
    database would work out every figure for every employee (seconds for 10,000) just to
    show 25. As subqueries, only the device count is needed for all (it orders the
    list); the others are computed for the rows of the page alone."""
    now = timezone.now()
    active = Registration.objects.filter(
        user=OuterRef("pk"),
        state__in=[Registration.State.ACTIVE, Registration.State.SIGN_OUT_REQUESTED],
        expires_at__gt=now,
    )
    people = (
        User.objects.for_enterprise(enterprise)
        .exclude(status=User.Status.OFFBOARDED)
        .annotate(
            active_devices=Subquery(
                active.order_by()
                .annotate(n=Func("device_key", template="COUNT(DISTINCT %(expressions)s)"))
                .values("n"),
                output_field=IntegerField(),
            ),
            last_seen=Subquery(
                Registration.objects.filter(user=OuterRef("pk"))
                .order_by("-last_refreshed_at")
                .values("last_refreshed_at")[:1]
            ),
        )
        # Ordered here, where the stubs' plugin still knows the annotation.
        .order_by("-active_devices", "full_name")
    )
    if q:
        people = people.filter(
            Q(full_name__icontains=q)
            | Q(email__icontains=q)
            | Q(
                pk__in=Identity.objects.filter(number__e164__icontains=q.replace(" ", "")).values(
                    "owner_id"
                )
            )
        )
    if devices in DEVICE_FILTERS:
        people = people.filter(DEVICE_FILTERS[devices])
    people = with_call_status(people, now - timedelta(hours=24))
    return people.prefetch_related(active_registrations_prefetch(now), live_identities_prefetch())


# How many of a device's latest notices its pages show.
NOTICES_SHOWN = 3


def registrations_of(user: User) -> QuerySet[Registration]:
    """A person's devices: registered ones first, then the last ended ones; each with its
    latest notices (``recent_notices``) and what became of them."""
    return (
        Registration.objects.filter(user=user)
        .select_related("identity__number", "identity__enterprise", "last_event")
        .prefetch_related(
            Prefetch(
                "notices",
                NetworkNotice.objects.order_by("-created_at", "-id")[:NOTICES_SHOWN],
                to_attr="recent_notices",
            )
        )
        # NULLs sort last in PostgreSQL unless told: the registered ones come first.
        .order_by(F("ended_at").desc(nulls_first=True), "-last_refreshed_at")
    )


def registrations(
    enterprise: Enterprise, *, active: str = "yes", user: User | None = None, q: str = ""
) -> QuerySet[Registration]:
    found = Registration.objects.for_enterprise(enterprise).select_related(
        "identity__number", "user", "last_event"
    )
    if active == "yes":
        found = found.active()
    elif active == "no":
        found = found.exclude(pk__in=Registration.objects.active().values("pk"))
    if user is not None:
        found = found.filter(user=user)
    if q:
        found = found.filter(
            Q(label__icontains=q) | Q(user__full_name__icontains=q) | Q(contact_uri__icontains=q)
        )
    return found.order_by("-last_refreshed_at", "pk")


def registration_history(registration: Registration) -> QuerySet[RegistrationEvent]:
    return registration.events.order_by("-last_at", "-id")[:20]


# --- Call authentication ------------------------------------------------------------------


def _subquery_count(records: QuerySet[CallRecord], field: str = "pk") -> Coalesce:
    return Coalesce(
        Subquery(
            records.values("identity__owner").annotate(n=Count(field)).values("n")[:1],
            output_field=IntegerField(),
        ),
        0,
    )


def with_call_status(people: QuerySet[User], since: datetime) -> QuerySet[User]:
    """Per person: the last outgoing attestation, outgoing calls and A-attested ones since
    ``since``, and failed verifications of calls to them since then (subqueries, so the
    query count stays fixed)."""
    mine = CallRecord.objects.filter(identity__owner=OuterRef("pk"))
    outgoing = mine.filter(direction=CallRecord.Direction.OUTGOING)
    recent_out = outgoing.filter(created_at__gte=since)
    failed_in = mine.filter(direction=CallRecord.Direction.INCOMING, created_at__gte=since).exclude(
        verstat=VERSTAT_PASSED
    )
    return people.annotate(
        last_attestation=Subquery(outgoing.order_by("-created_at").values("attestation")[:1]),
        calls_out=_subquery_count(recent_out),
        calls_a=_subquery_count(recent_out.filter(attestation="A")),
        failed_verifications=_subquery_count(failed_in),
    )


def call_summary(enterprise: Enterprise, since: datetime) -> dict[str, Any]:
    """Outgoing calls by attestation and failed verifications since ``since``, one query."""
    records = CallRecord.objects.for_enterprise(enterprise).filter(created_at__gte=since)
    outgoing = Q(direction=CallRecord.Direction.OUTGOING)
    summary = records.aggregate(
        signed=Count("pk", filter=outgoing),
        a=Count("pk", filter=outgoing & Q(attestation="A")),
        b=Count("pk", filter=outgoing & Q(attestation="B")),
        c=Count("pk", filter=outgoing & Q(attestation="C")),
        verified=Count("pk", filter=Q(direction=CallRecord.Direction.INCOMING)),
        failed=Count(
            "pk", filter=Q(direction=CallRecord.Direction.INCOMING) & ~Q(verstat=VERSTAT_PASSED)
        ),
    )
    summary["a_share"] = (
        round(100 * summary["a"] / summary["signed"]) if summary["signed"] else None
    )
    return summary


def attestation_series(enterprise: Enterprise, days: int = 14) -> list[dict[str, Any]]:
    """Outgoing calls per day and attestation level for the last ``days`` days."""
    start = (timezone.now() - timedelta(days=days - 1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    rows = (
        CallRecord.objects.for_enterprise(enterprise)
        .filter(direction=CallRecord.Direction.OUTGOING, created_at__gte=start)
        .annotate(day=TruncDate("created_at"))
        .values("day", "attestation")
        .annotate(n=Count("pk"))
    )
    counts = {(r["day"], r["attestation"]): r["n"] for r in rows}
    series = []
    for offset in range(days):
        day = (start + timedelta(days=offset)).date()
        point = {"day": day, **{level: counts.get((day, level), 0) for level in ("A", "B", "C")}}
        point["total"] = point["A"] + point["B"] + point["C"]
        series.append(point)
    return series


def call_records(
    enterprise: Enterprise, *, direction: str = "", identity: Identity | None = None
) -> QuerySet[CallRecord]:
    found = CallRecord.objects.for_enterprise(enterprise).select_related(
        "identity__number", "identity__owner"
    )
    if direction:
        found = found.filter(direction=direction)
    if identity is not None:
        found = found.filter(identity=identity)
    return found.order_by("-created_at", "-id")


def usable_impus(user: User) -> list[str]:
    """The IMPUs the user may use: their own live identities' and those shared with them."""
    impus: list[str] = []
    for identity in (
        Identity.objects.live().filter(owner=user).select_related("number", "line", "enterprise")
    ):
        if identity.status == Identity.Status.ACTIVE:
            impus += identity.impus
    for grant in (
        Grant.objects.active()
        .filter(grantee=user, identity__status=Identity.Status.ACTIVE)
        .select_related("identity__number", "identity__enterprise", "identity__line")
    ):
        impus += grant.identity.impus
    return list(dict.fromkeys(impus))
