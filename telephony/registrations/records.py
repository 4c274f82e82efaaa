"""The registration records and their history: the rows one change touches, loaded and
locked together and written back in bulk (only what changed), a repeat folded into the
last event, and the ends that come from the portal rather than a report (expiry, the
HSS dropping the identity, a confirmed sign-out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Case, Value, When
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
    folded: list[RegistrationEvent] = []
    dropped: list[int] = []  # events folded into the flapping record before them
    for reg, kind, detail in batch.events:
        last = reg.last_event
        if last is not None and last.kind == kind and kind != Kind.REGISTERED:
            last.count += 1
            last.last_at = batch.now
            if last not in folded:
                folded.append(last)
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
    write_changes(RegistrationEvent, folded, EVENT_FIELDS)
    RegistrationEvent.objects.filter(pk__in=dropped).delete()
    touched = [r for r in batch.registrations.values() if r.pk in batch.changed or r in batch.new]
    for reg in touched:
        reg.last_event_id = reg.last_event.pk if reg.last_event else None
    write_changes(Registration, touched, REGISTRATION_FIELDS)


def _fold_flap(
    reg: Registration,
    drop: RegistrationEvent,
    now: datetime,
    folded: list[RegistrationEvent],
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
        folded.append(before)
        dropped.append(drop.pk)
        return before
    drop.kind = Kind.FLAPPING
    drop.detail = "dropped and came back"
    drop.last_at = now
    if drop not in folded:
        folded.append(drop)
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


def _field_value(obj, name: str):
    return getattr(obj, obj._meta.get_field(name).attname)


def remember(objects, fields: list[str]) -> None:
    """Note what each object holds in the database now, so that writing it back sends
    only what changed."""
    for obj in objects:
        obj._stored = {name: _field_value(obj, name) for name in fields}


def write_changes(model, objects, fields: list[str]) -> None:
    """Write back what changed on ``objects`` since ``remember`` (every field of an
    object read without it), in one UPDATE however many there are: a value the objects
    share is set as it is, others per row (CASE).

    Django's bulk_update would build a CASE of every object for every field: for a
    registration's 23 fields that was most of the time a report took, though a refresh
    changes two or three of them."""
    if not objects:
        return
    changed = []
    for name in fields:
        for obj in objects:
            stored = getattr(obj, "_stored", None)
            if stored is None or stored.get(name, _UNSET) != _field_value(obj, name):
                changed.append(name)
                break
    if changed:
        assignments: dict[str, Value | Case] = {}
        for name in changed:
            field = model._meta.get_field(name)
            values = [_field_value(obj, name) for obj in objects]
            if all(value == values[0] for value in values[1:]):
                assignments[field.attname] = Value(values[0], output_field=field)
            else:
                assignments[field.attname] = Case(
                    *(
                        When(pk=obj.pk, then=Value(value, output_field=field))
                        for obj, value in zip(objects, values, strict=True)
                    ),
                    output_field=field,
                )
        model.objects.filter(pk__in=[obj.pk for obj in objects]).update(**assignments)
    remember(objects, fields)


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
