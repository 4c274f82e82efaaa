"""The registration records and their history: the rows one change touches, loaded and
locked together and written back in bulk (only what changed), a repeat folded into the
last event, and the ends that come from the portal rather than a report (expiry, the
HSS dropping the identity, a confirmed sign-out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Field
from django.utils import timezone

from telephony.models import (
    Identity,
    Registration,
    RegistrationEvent,
)

Kind = RegistrationEvent.Kind
State = Registration.State
# A UE that drops and is back within this long is flapping, not a new registration.
FLAP_WINDOW = timedelta(minutes=2)


@dataclass
class Batch:
    """The rows one report touches, loaded and locked together, written back in bulk."""

    now: datetime
    registrations: dict[tuple[int, str], Registration]
    new: list[Registration] = field(default_factory=list)
    changed: set[int] = field(default_factory=set)
    events: list[tuple[Registration, str, str]] = field(default_factory=list)
    new_devices: list[Registration] = field(default_factory=list)
    # The registrations of each identity, so that a report of many identities finds
    # an identity's devices without passing everyone's.
    by_identity: dict[int, list[Registration]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_identity = {}
        for reg in self.registrations.values():
            self.by_identity.setdefault(reg.identity_id, []).append(reg)

    def add(self, reg: Registration) -> None:
        """A registration made by this change."""
        self.registrations[(reg.identity_id, reg.device_key)] = reg
        self.by_identity.setdefault(reg.identity_id, []).append(reg)
        self.new.append(reg)

    def record(self, reg: Registration, kind: str, detail: str = "") -> None:
        self.events.append((reg, kind, detail))

    def touch(self, reg: Registration) -> None:
        if reg.pk:
            self.changed.add(reg.pk)


# The history event an end is recorded as (by the end reason's value); others: deregistered.
KIND_OF_END: dict[str, RegistrationEvent.Kind] = {
    Registration.EndReason.EXPIRED: Kind.EXPIRED,
    Registration.EndReason.SIGNED_OUT: Kind.SIGNED_OUT,
    Registration.EndReason.REPLACED: Kind.SIGNED_OUT,
    Registration.EndReason.NOT_REPORTED: Kind.ENDED,
}


def end(batch: Batch, reg: Registration, reason: str, detail: str = "") -> None:
    reg.state = State.ENDED
    reg.ended_at = batch.now
    reg.end_reason = reason
    kind = KIND_OF_END.get(reason, Kind.DEREGISTERED)
    batch.record(reg, kind, detail or Registration.EndReason(reason).label)
    batch.touch(reg)


def write(batch: Batch) -> None:
    """Write the batch: new registrations, changed ones, and their history — folding
    a repeat into the registration's last event instead of adding a row."""
    Registration.objects.bulk_create(batch.new)
    remember(batch.new, REGISTRATION_FIELDS)
    new_events: list[RegistrationEvent] = []
    # Events to write back, by identity (a model instance equals any other without a
    # primary key, and comparing many is slow).
    folded: dict[int, RegistrationEvent] = {}
    dropped: list[int] = []  # events folded into the flapping record before them
    for reg, kind, detail in batch.events:
        last = reg.last_event
        if last is not None and last.kind == kind and kind != Kind.REGISTERED:
            last.count += 1
            last.last_at = batch.now
            folded[id(last)] = last
            continue
        if (
            kind == Kind.FLAPPING
            and last is not None
            and last.kind in (Kind.EXPIRED, Kind.DEREGISTERED, Kind.ENDED)
        ):
            reg.last_event = _fold_flap(reg, last, batch.now, folded, dropped)
            continue
        event = RegistrationEvent(
            enterprise_id=reg.enterprise_id,
            registration=reg,
            kind=kind,
            detail=detail[:255],
            first_at=batch.now,
            last_at=batch.now,
        )
        new_events.append(event)
        reg.last_event = event
    RegistrationEvent.objects.bulk_create(new_events)
    write_changes(RegistrationEvent, list(folded.values()), EVENT_FIELDS)
    RegistrationEvent.objects.filter(pk__in=dropped).delete()
    new = {id(r) for r in batch.new}
    touched = [r for r in batch.registrations.values() if r.pk in batch.changed or id(r) in new]
    for reg in touched:
        reg.last_event_id = reg.last_event.pk if reg.last_event else None
    write_changes(Registration, touched, REGISTRATION_FIELDS)


def _fold_flap(
    reg: Registration,
    drop: RegistrationEvent,
    now: datetime,
    folded: dict[int, RegistrationEvent],
    dropped: list[int],
) -> RegistrationEvent:
    """A UE back within the flap window: its drop and return join the flapping record
    just before it, or become one. Returns the registration's last event."""
    before = (
        RegistrationEvent.objects.filter(registration_id=reg.pk)
        .exclude(pk=drop.pk)
        .order_by("-last_at", "-id")
        .first()
    )
    if (
        before is not None
        and before.kind == Kind.FLAPPING
        and now - before.last_at <= FLAP_WINDOW * 2
    ):
        before.count += 1
        before.last_at = now
        folded[id(before)] = before
        dropped.append(drop.pk)
        return before
    drop.kind = Kind.FLAPPING
    drop.detail = "dropped and came back"
    drop.last_at = now
    folded[id(drop)] = drop
    return drop


REGISTRATION_FIELDS = [
    "device_key",
    "impus",
    "instance_id",
    "contact_uri",
    "pub_gruu",
    "display_name",
    "user_agent",
    "access_network",
    "ip",
    "callid",
    "cseq",
    "q",
    "label",
    "state",
    "first_registered_at",
    "last_refreshed_at",
    "expires_at",
    "ended_at",
    "end_reason",
    "sign_out_requested_at",
    "sign_out_sent_at",
    "sign_out_error",
    "last_event",
]


EVENT_FIELDS = ["kind", "count", "last_at", "detail"]


def _attnames(objects: list, fields: list[str]) -> list[tuple[str, str]]:
    """(name, attribute) of each field: a foreign key's value is held as ``<name>_id``."""
    meta = objects[0]._meta
    return [(name, meta.get_field(name).attname) for name in fields]


def remember(objects, fields: list[str]) -> None:
    """Note what each object holds in the database now, so that writing it back sends
    only what changed."""
    objects = list(objects)
    if not objects:
        return
    names = _attnames(objects, fields)
    for obj in objects:
        obj._stored = {name: getattr(obj, attname) for name, attname in names}


def write_changes(model, objects, fields: list[str]) -> None:
    """Write back what changed on ``objects`` since ``remember`` (every field of an
    object read without it), in one UPDATE however many there are."""
    if not objects:
        return
    changed = []
    for name, attname in _attnames(objects, fields):
        for obj in objects:
            stored = getattr(obj, "_stored", None)
            if stored is None or stored.get(name, _UNSET) != getattr(obj, attname):
                changed.append(name)
                break
    if changed:
        _update(model, objects, changed)
    remember(objects, fields)


def _update(model, objects, names: list[str]) -> None:
    """``UPDATE``: a value the objects share is set as it is, the others per row from a
    ``VALUES`` list joined on the primary key.

    Written out rather than built by the ORM: Django's bulk_update (and the CASE it
    builds, one condition and value per object and field, each compiled as an
    expression) took most of a report's time, and grew with the reports applied
    together."""
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    pk = model._meta.pk
    # PostgreSQL types the values of a VALUES list by themselves: each needs a cast.
    cast = connection.vendor == "postgresql"

    def placeholder(field) -> str:
        return f"%s::{field.db_type(connection)}" if cast else "%s"

    assignments: list[str] = []
    shared_params: list = []
    varying: list[tuple[Field, list]] = []  # the fields set per row, and their values
    for name in names:
        field = model._meta.get_field(name)
        values = [
            field.get_db_prep_save(getattr(obj, field.attname), connection) for obj in objects
        ]
        if all(value == values[0] for value in values[1:]):
            assignments.append(f"{quote(field.column)} = {placeholder(field)}")
            shared_params.append(values[0])
        else:
            # The rows' values are VALUES' columns column2, column3, … (column1: the key).
            assignments.append(f"{quote(field.column)} = v.column{len(varying) + 2}")
            varying.append((field, values))
    params = list(shared_params)
    if varying:
        row = f"({', '.join(placeholder(f) for f in [pk] + [f for f, _ in varying])})"
        rows = []
        for number, obj in enumerate(objects):
            rows.append(row)
            params += [obj.pk, *(values[number] for _, values in varying)]
        sql = (
            f"UPDATE {table} SET {', '.join(assignments)} FROM (VALUES {', '.join(rows)}) AS v "  # noqa: S608 - names from the model; the values are parameters
            f"WHERE {table}.{quote(pk.column)} = v.column1"
        )
    else:
        keys = ", ".join([placeholder(pk)] * len(objects))
        sql = f"UPDATE {table} SET {', '.join(assignments)} WHERE {quote(pk.column)} IN ({keys})"  # noqa: S608 - names from the model; the values are parameters
        params += [obj.pk for obj in objects]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


_UNSET = object()


def add_event(reg: Registration, kind: str, detail: str = "") -> None:
    event = RegistrationEvent.objects.create(
        enterprise_id=reg.enterprise_id, registration=reg, kind=kind, detail=detail[:255]
    )
    Registration.objects.filter(pk=reg.pk).update(last_event=event)
    reg.last_event = event


def end_now(reg: Registration, reason: str) -> None:
    batch = Batch(now=timezone.now(), registrations={})
    reg.impus = []
    end(batch, reg, reason)
    write_one(batch, reg)


def write_one(batch: Batch, reg: Registration) -> None:
    batch.changed.add(reg.pk)
    batch.registrations[(reg.identity_id, reg.device_key)] = reg
    write(batch)


def end_registrations_of(identity: Identity, reason: str) -> int:
    """The HSS no longer holds the identity: none of its UEs can be registered."""
    now = timezone.now()
    regs = list(
        Registration.objects.select_for_update(of=("self",))
        .select_related("last_event")
        .filter(identity=identity)
        .exclude(state=State.ENDED)
    )
    batch = Batch(now=now, registrations={(r.identity_id, r.device_key): r for r in regs})
    for reg in regs:
        reg.impus = []
        end(batch, reg, reason)
    write(batch)
    return len(regs)


# --- Expiry -----------------------------------------------------------------------------


def end_aor(identity: Identity, aor: str) -> int:
    """The network de-registered ``aor`` (a third-party REGISTER of expiry 0): the
    devices bound to it lose it, and those left with no IMPU end, as de-registered (or
    signed out, where that was asked). How many ended."""
    now = timezone.now()
    regs = [
        reg
        for reg in Registration.objects.select_for_update(of=("self",))
        .select_related("last_event")
        .filter(identity=identity)
        .exclude(state=State.ENDED)
        if aor in reg.impus  # (SQLite has no JSON containment)
    ]
    batch = Batch(now=now, registrations={(r.identity_id, r.device_key): r for r in regs})
    ended = 0
    for reg in regs:
        reg.impus = [impu for impu in reg.impus if impu != aor]
        batch.touch(reg)
        if not reg.impus:
            signed_out = reg.state == State.SIGN_OUT_REQUESTED
            end(
                batch,
                reg,
                Registration.EndReason.SIGNED_OUT
                if signed_out
                else Registration.EndReason.DEREGISTERED,
            )
            ended += 1
    write(batch)
    return ended


def expire_registrations(limit: int = 5000) -> int:
    """Record the end of registrations whose expiry passed without an event. Periodic;
    pages already treat them as gone by time."""
    now = timezone.now()
    with transaction.atomic():
        regs = list(
            Registration.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("last_event")
            .exclude(state=State.ENDED)
            .filter(expires_at__lte=now)[:limit]
        )
        batch = Batch(now=now, registrations={(r.identity_id, r.device_key): r for r in regs})
        for reg in regs:
            reg.impus = []
            end(batch, reg, Registration.EndReason.EXPIRED)
        write(batch)
    return len(regs)


# --- Per-device settings ------------------------------------------------------------------
