"""Active UEs: applying what the IMS core reports (RFC 3680 reginfo, or the same as
JSON) to per-device registration records, the "already logged on" notices, the
device limit, per-device settings, sign-out, and expiry.

A report is applied whole or not at all, in one transaction and a fixed number of
queries whatever its size: the AoRs are resolved to identities in one go, the
registrations of those identities are loaded and locked together, and the changes are
written back in bulk.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Value, When
from django.utils import timezone

from accounts import audit
from accounts import services as account_services
from accounts.audit import Actor
from accounts.models import NetworkClient, Role, ServiceContract, User
from kernel import enqueue
from kernel.errors import NotAllowed, RuleViolation
from telephony.identities.hss import HssPermanentError, HssTransientError
from telephony.identities.hss import backend as hss_backend
from telephony.identities.sync import request_sync
from telephony.models import (
    Identity,
    NetworkNotice,
    ReginfoVersion,
    Registration,
    RegistrationEvent,
)
from telephony.registrations.reginfo import ContactInfo, ReginfoDocument, RegistrationInfo

log = logging.getLogger(__name__)

Kind = RegistrationEvent.Kind
State = Registration.State
# A UE that drops and is back within this long is flapping, not a new registration.
FLAP_WINDOW = timedelta(minutes=2)
# An active contact without ``expires`` is assumed registered for this long; a longer
# expiry than a day is cut to a day (the network refreshes well before).
DEFAULT_EXPIRES = 3600
MAX_EXPIRES = 86_400
# RFC 3680 contact events that end a binding, and what the portal calls the end: each
# its own, since they ask different things of the device (register again now, later,
# or not at all).
ENDING_EVENTS = {
    "expired": Registration.EndReason.EXPIRED,
    "deactivated": Registration.EndReason.DEACTIVATED,
    "probation": Registration.EndReason.PROBATION,
    "unregistered": Registration.EndReason.DEREGISTERED,
    "rejected": Registration.EndReason.REJECTED,
}
# Ends that a contact event reported, with the REGISTER (Call-ID, CSeq) it ended.
EVENT_END_REASONS = frozenset(ENDING_EVENTS.values())
# A document seen again within this long is a replay (an HTTP retry of a NOTIFY whose
# answer was lost) and changes nothing, whatever its version. At most REPLAY_MEMORY
# documents are remembered per AoR.
REPLAY_WINDOW = timedelta(minutes=5)
REPLAY_MEMORY = 32
TEL_RE = re.compile(r"^tel:(\+\d{6,15})(?:;.*)?$", re.IGNORECASE)
SIP_RE = re.compile(r"^sips?:([^@;]+)@([^;:>]+)(?::\d+)?(?:;.*)?$", re.IGNORECASE)


@dataclass
class ApplyReport:
    """What a report changed, returned to the IMS core."""

    applied: int = 0  # contacts whose record changed or refreshed
    new_devices: int = 0
    ended: int = 0
    stale: list[str] = field(default_factory=list)  # AoRs skipped: an older version or a replay
    unknown_aors: list[str] = field(default_factory=list)
    # AoRs whose reports may have been lost (a version gap, or partial state only): the
    # S-CSCF or the SIP edge should re-subscribe to send their full state.
    full_state_needed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "applied": self.applied,
            "new_devices": self.new_devices,
            "ended": self.ended,
            "stale_aors": self.stale,
            "unknown_aors": self.unknown_aors,
            "full_state_needed_aors": self.full_state_needed,
        }


# --- Resolving AoRs ---------------------------------------------------------------------


def _aor_key(aor: str) -> tuple[str, str, str] | None:
    """("tn", e164, domain) or ("alias", user, domain) of an AoR; None if neither."""
    aor = aor.strip()
    match = TEL_RE.match(aor)
    if match:
        return ("tn", match.group(1), "")
    match = SIP_RE.match(aor)
    if not match:
        return None
    user, domain = match.group(1), match.group(2).lower()
    if re.fullmatch(r"\+\d{6,15}", user):
        return ("tn", user, domain)
    return ("alias", user.lower(), domain)


def resolve_aors(aors) -> dict[str, Identity]:
    """The live identity each AoR names, in two queries. An AoR is matched exactly: a
    SIP AoR must carry the identity's enterprise domain; nothing is guessed."""
    keys = {aor: _aor_key(aor) for aor in aors}
    tns = {k[1] for k in keys.values() if k and k[0] == "tn"}
    aliases = {k[1] for k in keys.values() if k and k[0] == "alias"}
    # Only what a report and a call decision read, unordered: every join and sort costs
    # planning time on each of the network's requests.
    live = Identity.objects.live().select_related("enterprise", "number", "owner").order_by()
    by_tn = {i.tn: i for i in live.filter(number__e164__in=tns)} if tns else {}
    by_alias = {}
    if aliases:
        for identity in live.filter(alias__in=aliases):
            by_alias[(identity.alias, identity.enterprise.sip_domain)] = identity
    resolved = {}
    for aor, key in keys.items():
        if key is None:
            continue
        kind, value, domain = key
        identity = by_tn.get(value) if kind == "tn" else by_alias.get((value, domain))
        if identity is not None and (not domain or domain == identity.enterprise.sip_domain):
            resolved[aor] = identity
    return resolved


# --- Device labels ----------------------------------------------------------------------

UA_KINDS = [
    (re.compile(r"android", re.I), "Android phone"),
    (re.compile(r"iphone|ios", re.I), "iPhone"),
    (re.compile(r"ipad", re.I), "iPad"),
    (re.compile(r"windows", re.I), "Windows PC"),
    (re.compile(r"mac ?os|macintosh", re.I), "Mac"),
    (re.compile(r"linux", re.I), "Linux PC"),
]


def device_label(*, user_agent: str, instance: str, contact_uri: str) -> str:
    """A name a person recognises, e.g. "Android phone (IMEI …1234)"."""
    kind = next((name for pattern, name in UA_KINDS if pattern.search(user_agent)), "")
    if not kind and user_agent:
        kind = re.split(r"[/\s]", user_agent.strip(), maxsplit=1)[0][:40]
    instance_lower = instance.lower()
    if instance_lower.startswith("urn:gsma:imei:"):
        digits = re.sub(r"\D", "", instance_lower.split(":", 3)[3])
        return f"{kind or 'Phone'} (IMEI …{digits[-4:]})"
    if instance_lower.startswith("urn:uuid:"):
        return f"{kind or 'Soft client'} (…{instance_lower[-4:]})"
    host = SIP_RE.match(contact_uri)
    where = host.group(2) if host else contact_uri[:40]
    return f"{kind or 'Device'} at {where}"


def device_key(contact: ContactInfo) -> str:
    return f"instance:{contact.instance}" if contact.instance else f"contact:{contact.uri}"


# --- Applying a report ------------------------------------------------------------------


@dataclass
class _Batch:
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


def apply_report(*, actor: Actor, client: NetworkClient, document: ReginfoDocument) -> ApplyReport:
    """Apply one report of the IMS core, whole or not at all.

    Refused whole (NotAllowed) if any AoR belongs to an enterprise this client
    does not serve. AoRs that name no identity are reported back, not guessed. Which
    registrations apply is decided per AoR by _fresh_registrations.
    """
    report = ApplyReport()
    now = timezone.now()
    with transaction.atomic():
        identities = resolve_aors({r.aor for r in document.registrations})
        report.unknown_aors = sorted({r.aor for r in document.registrations} - set(identities))
        foreign = {
            i.enterprise.name for i in identities.values() if not client.serves(i.enterprise)
        }
        if foreign:
            raise NotAllowed(
                f"This network client does not serve {', '.join(sorted(foreign))}: nothing applied."
            )
        fresh = _fresh_registrations(document, identities, report)
        batch = _load(identities.values(), now)
        for info in fresh:
            _apply_registration(batch, info, identities[info.aor], document.state, report)
        _write(batch, report)
        _after_new_devices(batch)
        _audit(actor, identities.values(), report)
    return report


def _fresh_registrations(document: ReginfoDocument, identities, report: ApplyReport):
    """The document's registrations for known AoRs that apply, recording where each AoR
    stands (its row locked, so concurrent reports for an AoR queue).

    RFC 3680 numbers the documents of one subscription; the portal sees the documents of
    every subscription for an AoR and cannot tell them apart. Kamailio's S-CSCF starts
    each subscription again at version 2 (an AS subscribes afresh for every REGISTER) and
    its presence_reginfo sends every document as ``full`` version 0. So, per AoR:

    - A document seen within REPLAY_WINDOW, seen again, is a replay: skipped.
    - A newer version applies. A ``partial`` one more than one version ahead means
      reports were lost: it applies (its contacts are the newest word on them) and the
      AoR needs full state until a ``full`` document comes.
    - A ``full`` document that is not newer is a new subscription's first report: the
      full state as it is now, so it applies and its version becomes the AoR's.
    - A ``partial`` document that is not newer is stale: skipped.
    - The first report for an AoR applies; if ``partial``, the AoR needs full state.
    """
    known = [r for r in document.registrations if r.aor in identities]
    aors = sorted({r.aor for r in known})
    locked = ReginfoVersion.objects.select_for_update()
    versions = {v.aor: v for v in locked.filter(aor__in=aors)}
    missing = [aor for aor in aors if aor not in versions]
    if missing:
        # An AoR's first reports queue here too (an HTTP retry racing its original): the
        # second insert waits for the first transaction and then finds its row.
        ReginfoVersion.objects.bulk_create(
            [ReginfoVersion(aor=aor, version=None) for aor in missing], ignore_conflicts=True
        )
        versions.update((v.aor, v) for v in locked.filter(aor__in=missing))
    _remember(versions.values(), VERSION_FIELDS)
    now = timezone.now()
    oldest = (now - REPLAY_WINDOW).timestamp()
    full = document.state == "full"
    fresh, needing = [], set()
    for info in known:
        digest = _digest(document, info)
        seen = versions[info.aor]
        if seen.version is None:  # the first report for the AoR
            seen.full_state_needed = not full
            seen.version = document.version
        else:
            seen.recent = [entry for entry in seen.recent if entry[1] >= oldest]
            replay = any(entry[0] == digest for entry in seen.recent)
            newer = document.version > seen.version
            if replay or not (newer or full):
                report.stale.append(info.aor)
                needing.add(seen)
                if not replay:
                    # Stale stays stale when it comes again, even after a new
                    # subscription has lowered the AoR's version.
                    seen.recent = [*seen.recent, [digest, now.timestamp()]][-REPLAY_MEMORY:]
                continue
            if full:
                seen.full_state_needed = False
            elif document.version > seen.version + 1:
                seen.full_state_needed = True
            seen.version = document.version
        seen.recent = [*seen.recent, [digest, now.timestamp()]][-REPLAY_MEMORY:]
        seen.updated_at = now
        needing.add(seen)
        fresh.append(info)
    _write_changes(ReginfoVersion, list(versions.values()), VERSION_FIELDS)
    report.stale = sorted(set(report.stale))
    report.full_state_needed = sorted(v.aor for v in needing if v.full_state_needed)
    return fresh


def _digest(document: ReginfoDocument, info: RegistrationInfo) -> str:
    """What one registration of a document says, as a short fingerprint: the same for a
    replay of the document, different for any other report."""
    text = repr((document.state, document.version, info))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


VERSION_FIELDS = ["version", "recent", "full_state_needed", "updated_at"]


def _load(identities, now) -> _Batch:
    rows = list(
        Registration.objects.select_for_update(of=("self",))
        .select_related("last_event")
        .filter(identity__in=[i.pk for i in identities])
    )
    _remember(rows, REGISTRATION_FIELDS)
    _remember([r.last_event for r in rows if r.last_event is not None], EVENT_FIELDS)
    return _Batch(now=now, registrations={(r.identity_id, r.device_key): r for r in rows})


def _apply_registration(batch: _Batch, info, identity: Identity, doc_state: str, report) -> None:
    matched = set()
    for contact in info.contacts:
        reg = _record_for(batch, identity, contact)
        if contact.state == "active":
            if reg is None or not _ended_after(reg, contact):
                reg = _bind(batch, identity, reg, info.aor, contact, report)
        elif reg is not None:
            reason = ENDING_EVENTS[contact.event]
            _unbind(batch, reg, info.aor, reason, report, _end_detail(reason, contact), contact)
        if reg is not None:
            matched.add(reg.device_key)
    if doc_state == "full" or info.state == "terminated":
        # Full state lists every contact of the AoR, and a terminated registration has
        # none left: the devices not listed are gone, for a reason nobody gave.
        for reg in _bound_to(batch, identity, info.aor):
            if reg.device_key not in matched:
                _unbind(batch, reg, info.aor, Registration.EndReason.NOT_REPORTED, report)


def _ended_after(reg: Registration, contact: ContactInfo) -> bool:
    """Whether a contact event ended ``reg`` after the REGISTER this active ``contact``
    reports (same Call-ID, no higher CSeq): an older report delivered late, say by
    another worker of the SIP edge, or a subscription's first NOTIFY overtaken by its
    second. Reviving the device would undo the end until the next report."""
    return (
        reg.state == State.ENDED
        and reg.end_reason in EVENT_END_REASONS
        and bool(contact.callid)
        and contact.callid == reg.callid
        and contact.cseq is not None
        and reg.cseq is not None
        and contact.cseq <= reg.cseq
    )


def _bound_to(batch: _Batch, identity: Identity, aor: str) -> list[Registration]:
    return [
        reg
        for (identity_id, _), reg in batch.registrations.items()
        if identity_id == identity.pk and reg.state != State.ENDED and aor in reg.impus
    ]


def _record_for(batch: _Batch, identity: Identity, contact: ContactInfo) -> Registration | None:
    """The record of the device behind ``contact``. A device is keyed on its
    ``+sip.instance``, else its contact URI; a contact that names the instance of a
    device first seen without one upgrades that record (the same device, now better
    known), and one without an instance finds the device bound with its URI (Kamailio's
    S-CSCF leaves ``+sip.instance`` off terminated contacts)."""
    key = device_key(contact)
    reg = batch.registrations.get((identity.pk, key))
    if reg is not None:
        return reg
    if contact.instance:
        reg = batch.registrations.pop((identity.pk, f"contact:{contact.uri}"), None)
        if reg is not None:
            reg.device_key = key
            batch.registrations[(identity.pk, key)] = reg
        return reg
    return next(
        (
            reg
            for (identity_id, _), reg in batch.registrations.items()
            if identity_id == identity.pk
            and reg.state != State.ENDED
            and reg.contact_uri == contact.uri
        ),
        None,
    )


def _bind(
    batch: _Batch, identity: Identity, reg, aor: str, contact: ContactInfo, report
) -> Registration:
    now = batch.now
    expires = min(contact.expires if contact.expires is not None else DEFAULT_EXPIRES, MAX_EXPIRES)
    if reg is None:
        reg = Registration(
            enterprise_id=identity.enterprise_id,
            identity=identity,
            user_id=identity.owner_id,
            device_key=device_key(contact),
            first_registered_at=now,
        )
        batch.registrations[(identity.pk, reg.device_key)] = reg
        batch.new.append(reg)
    # A record just made has no expiry yet; an ended or lapsed one starts over.
    was_ended = reg.state == State.ENDED or reg.expires_at is None or reg.expires_at <= now
    if was_ended:
        recent_end = (
            reg.pk is not None and reg.ended_at is not None and now - reg.ended_at <= FLAP_WINDOW
        )
        reg.state = State.ACTIVE
        reg.impus = []
        reg.ended_at = None
        reg.end_reason = ""
        reg.sign_out_requested_at = reg.sign_out_sent_at = None
        reg.sign_out_error = ""
        if recent_end:
            batch.record(reg, Kind.FLAPPING, "dropped and came back")
        else:
            reg.first_registered_at = now
            batch.record(reg, Kind.REGISTERED, aor)
            batch.new_devices.append(reg)
            report.new_devices += 1
    elif aor in reg.impus:
        batch.record(reg, Kind.REFRESHED)
    else:
        batch.record(reg, Kind.REGISTERED, aor)
    if aor not in reg.impus:
        reg.impus = [*reg.impus, aor]
    reg.instance_id = contact.instance or reg.instance_id
    reg.contact_uri = contact.uri
    reg.pub_gruu = contact.pub_gruu or reg.pub_gruu
    reg.display_name = contact.display_name or reg.display_name
    reg.user_agent = contact.user_agent or reg.user_agent
    reg.access_network = contact.access_network or reg.access_network
    reg.ip = contact.source_ip or reg.ip
    reg.callid = contact.callid or reg.callid
    reg.cseq = contact.cseq if contact.cseq is not None else reg.cseq
    reg.q = contact.q or reg.q
    reg.label = device_label(
        user_agent=reg.user_agent, instance=reg.instance_id, contact_uri=reg.contact_uri
    )
    reg.last_refreshed_at = now
    reg.expires_at = now + timedelta(seconds=expires)
    batch.touch(reg)
    report.applied += 1
    return reg


def _end_detail(reason: str, contact: ContactInfo) -> str:
    """The end as the history shows it; with RFC 3680's ``retry-after`` when the network
    said when the device may register again (``probation``)."""
    label = Registration.EndReason(reason).label
    if contact.retry_after is None:
        return label
    return f"{label}: may register again in {contact.retry_after} s"


def _unbind(
    batch: _Batch,
    reg: Registration,
    aor: str,
    reason: str,
    report,
    detail: str = "",
    contact: ContactInfo | None = None,
) -> None:
    if reg.state == State.ENDED or aor not in reg.impus:
        return
    reg.impus = [i for i in reg.impus if i != aor]
    if contact is not None:
        # The REGISTER the end belongs to, so that a late report of it cannot revive it.
        reg.callid = contact.callid or reg.callid
        reg.cseq = contact.cseq if contact.cseq is not None else reg.cseq
    report.applied += 1
    if not reg.impus:
        if reg.state == State.SIGN_OUT_REQUESTED:
            _end(batch, reg, Registration.EndReason.SIGNED_OUT)
        else:
            _end(batch, reg, reason, detail)
        report.ended += 1
    batch.touch(reg)


def _end(batch: _Batch, reg: Registration, reason: str, detail: str = "") -> None:
    reg.state = State.ENDED
    reg.ended_at = batch.now
    reg.end_reason = reason
    kind = {
        Registration.EndReason.EXPIRED: Kind.EXPIRED,
        Registration.EndReason.SIGNED_OUT: Kind.SIGNED_OUT,
        Registration.EndReason.REPLACED: Kind.SIGNED_OUT,
        Registration.EndReason.NOT_REPORTED: Kind.ENDED,
    }.get(reason, Kind.DEREGISTERED)
    batch.record(reg, kind, detail or Registration.EndReason(reason).label)
    batch.touch(reg)


def _write(batch: _Batch, report: ApplyReport) -> None:
    """Write the batch: new registrations, changed ones, and their history — folding
    a repeat into the registration's last event instead of adding a row."""
    Registration.objects.bulk_create(batch.new)
    _remember(batch.new, REGISTRATION_FIELDS)
    new_events, folded, dropped = [], [], []
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
    _write_changes(RegistrationEvent, folded, EVENT_FIELDS)
    RegistrationEvent.objects.filter(pk__in=dropped).delete()
    touched = [r for r in batch.registrations.values() if r.pk in batch.changed or r in batch.new]
    for reg in touched:
        reg.last_event_id = reg.last_event.pk if reg.last_event else None
    _write_changes(Registration, touched, REGISTRATION_FIELDS)


def _fold_flap(reg, drop, now, folded, dropped) -> RegistrationEvent:
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


def _remember(objects, fields: list[str]) -> None:
    """Note what each object holds in the database now, so that writing it back sends
    only what changed."""
    for obj in objects:
        obj._stored = {name: _field_value(obj, name) for name in fields}


def _write_changes(model, objects, fields: list[str]) -> None:
    """Write back what changed on ``objects`` since ``_remember`` (every field of an
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
        assignments = {}
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
    _remember(objects, fields)


_UNSET = object()


def _audit(actor: Actor, identities, report: ApplyReport) -> None:
    if not report.applied:
        return
    for enterprise_id in {i.enterprise_id for i in identities}:
        enterprise = next(i.enterprise for i in identities if i.enterprise_id == enterprise_id)
        audit.record(
            actor=actor,
            action="registration.reported",
            enterprise=enterprise,
            changes={
                "contacts": [None, report.applied],
                "new_devices": [None, report.new_devices],
                "ended": [None, report.ended],
            },
        )


# --- New devices: the notice and the device limit ------------------------------------------


def _after_new_devices(batch: _Batch) -> None:
    """For each new UE of a user who is active elsewhere: tell the user (portal and
    email) and both UEs' clients; over the contract's limit, apply its policy."""
    by_user = defaultdict(list)
    for reg in batch.new_devices:
        by_user[reg.user_id].append(reg)
    if not by_user:
        return
    active = defaultdict(list)
    for reg in (
        Registration.objects.active(batch.now)
        .filter(user_id__in=by_user)
        .select_related("identity__number")
    ):
        active[reg.user_id].append(reg)
    users = User.objects.select_related("enterprise__contract").in_bulk(list(by_user))
    for user_id, new_regs in by_user.items():
        user = users[user_id]
        for new in new_regs:
            others = [r for r in active[user_id] if r.device_key != new.device_key]
            if others:
                _notify_already_logged_on(user, new, others)
        _enforce_device_limit(user, active[user_id], batch.now)


def _notify_already_logged_on(user: User, new: Registration, others: list[Registration]) -> None:
    elsewhere = ", ".join(sorted({o.label for o in others}))
    account_services.notify(
        user=user,
        kind="already_logged_on",
        title=f"You signed in on {new.label} while logged on another device",
        body=f"Your account is also registered on: {elsewhere}. If this was not you, sign "
        "the device out on the My devices page and tell your administrator.",
        link="/my/devices/",
        email=True,
    )
    notices = [
        NetworkNotice(
            enterprise_id=new.enterprise_id,
            registration=new,
            kind="already_logged_on",
            message=_fit(f"You are also logged on at: {elsewhere}.", NOTICE_MESSAGE_MAX),
        )
    ] + [
        NetworkNotice(
            enterprise_id=other.enterprise_id,
            registration=other,
            kind="logged_on_elsewhere",
            message=f"{user.full_name} just logged on at {new.label}.",
        )
        for other in others
    ]
    NetworkNotice.objects.bulk_create(notices)
    for notice in notices:
        _queue_notice(notice.pk)


NOTICE_MESSAGE_MAX = NetworkNotice._meta.get_field("message").max_length


def _fit(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters: a person on many devices gets the list
    shortened, not a report refused for a notice too long for its column."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _enforce_device_limit(user: User, active: list[Registration], now) -> None:
    contract: ServiceContract = user.enterprise.contract
    devices = {}
    for reg in sorted(active, key=lambda r: r.first_registered_at):
        devices.setdefault(reg.device_key, []).append(reg)
    excess = len(devices) - contract.max_ues_per_user
    if excess <= 0:
        return
    policy = contract.ue_limit_policy
    signed_out = []
    if policy == ServiceContract.UeLimitPolicy.SIGN_OUT_OLDEST:
        for key in list(devices)[:excess]:
            for reg in devices[key]:
                _request_sign_out(Actor.system(), reg, reason="over the device limit")
            signed_out.append(devices[key][0].label)
    account_services.notify_admins(
        enterprise=user.enterprise,
        kind="device_limit",
        title=f"{user.full_name} is on {len(devices)} devices; the contract allows {contract.max_ues_per_user}",
        body=(
            f"Signed out the oldest: {', '.join(signed_out)}."
            if signed_out
            else "The contract's policy is to notify only."
        ),
        link=f"/devices/?q={user.email}",
    )


# --- Sign-out ---------------------------------------------------------------------------


def _request_sign_out(actor: Actor, reg: Registration, reason: str = "") -> None:
    reg.state = State.SIGN_OUT_REQUESTED
    reg.sign_out_requested_at = timezone.now()
    reg.sign_out_sent_at = None
    reg.sign_out_error = ""
    reg.save(update_fields=["state", "sign_out_requested_at", "sign_out_sent_at", "sign_out_error"])
    _event(reg, Kind.SIGN_OUT_REQUESTED, f"by {actor.label}" + (f": {reason}" if reason else ""))
    audit.record(
        actor=actor,
        action="registration.sign_out_requested",
        enterprise=reg.enterprise,
        target=reg,
        changes=audit.changed(state=(State.ACTIVE, State.SIGN_OUT_REQUESTED)),
    )
    transaction.on_commit(lambda: _queue_deregistration(reg.pk), robust=True)


def _event(reg: Registration, kind: str, detail: str = "") -> None:
    event = RegistrationEvent.objects.create(
        enterprise_id=reg.enterprise_id, registration=reg, kind=kind, detail=detail[:255]
    )
    Registration.objects.filter(pk=reg.pk).update(last_event=event)
    reg.last_event = event


# Who may sign out someone else's device: the enterprise's admins, and its helpdesk too,
# on purpose: signing out a lost or stolen phone is a classic helpdesk task, and it is the
# one change helpdesk makes besides resending invitations (README, Roles).
SIGN_OUT_OTHERS = (Role.ADMIN, Role.HELPDESK)


def _ensure_may_sign_out(actor: Actor, reg: Registration) -> None:
    actor.ensure_acts_for(reg.enterprise)
    user = actor.user
    if user is not None and user.pk != reg.user_id and user.role not in SIGN_OUT_OTHERS:
        raise NotAllowed("Employees sign out their own devices only.")


@transaction.atomic
def registration_sign_out(*, actor: Actor, registration: Registration) -> Registration:
    """Ask the network to deregister one UE; it shows "sign-out requested" until the
    network confirms."""
    reg = (
        Registration.objects.select_for_update()
        .select_related("enterprise")
        .get(pk=registration.pk)
    )
    _ensure_may_sign_out(actor, reg)
    if not reg.is_active or reg.state != State.ACTIVE:
        raise RuleViolation(
            f"{reg.label} is not registered now ({reg.get_state_display().lower()})."
        )
    _request_sign_out(actor, reg)
    return reg


@transaction.atomic
def registrations_sign_out_all(*, actor: Actor, user: User) -> int:
    """Sign out every active UE of a person."""
    actor.ensure_acts_for(user.enterprise)
    regs = list(
        Registration.objects.active()
        .filter(user=user, state=State.ACTIVE)
        .select_for_update(of=("self",))
        .select_related("enterprise")
    )
    for reg in regs:
        _ensure_may_sign_out(actor, reg)
        _request_sign_out(actor, reg)
    return len(regs)


def deregister(registration_id: int) -> str:
    """Send a requested sign-out to the network (what the task runs). Idempotent: sent
    once; transient faults raise HssTransientError for the task to retry."""
    reg = (
        Registration.objects.select_related("identity__number", "identity__line", "enterprise")
        .filter(pk=registration_id)
        .first()
    )
    if reg is None or reg.state != State.SIGN_OUT_REQUESTED or reg.sign_out_sent_at:
        return "skipped"
    identity = reg.identity
    hss = hss_backend()
    try:
        hss.deregister(
            identity.tn or identity.former_tn,
            imsi=identity.line.imsi if identity.line_id else "",
            contact=reg.contact_uri,
        )
    except HssPermanentError as exc:
        Registration.objects.filter(pk=reg.pk).update(sign_out_error=str(exc)[:500])
        return "failed"
    except HssTransientError as exc:
        Registration.objects.filter(pk=reg.pk).update(sign_out_error=f"retrying: {exc}"[:500])
        raise
    with transaction.atomic():
        reg = Registration.objects.select_for_update().get(pk=reg.pk)
        reg.sign_out_sent_at = timezone.now()
        reg.sign_out_error = ""
        reg.save(update_fields=["sign_out_sent_at", "sign_out_error"])
        if hss.confirms_deregistration:
            _end_now(reg, Registration.EndReason.SIGNED_OUT)
    return "sent"


def _end_now(reg: Registration, reason: str) -> None:
    batch = _Batch(now=timezone.now(), registrations={})
    reg.impus = []
    _end(batch, reg, reason)
    _write_one(batch, reg)


def _write_one(batch: _Batch, reg: Registration) -> None:
    batch.changed.add(reg.pk)
    batch.registrations[(reg.identity_id, reg.device_key)] = reg
    _write(batch, ApplyReport())


def end_registrations_of(identity: Identity, reason: str) -> int:
    """The HSS no longer holds the identity: none of its UEs can be registered."""
    now = timezone.now()
    regs = list(
        Registration.objects.select_for_update(of=("self",))
        .select_related("last_event")
        .filter(identity=identity)
        .exclude(state=State.ENDED)
    )
    batch = _Batch(now=now, registrations={(r.identity_id, r.device_key): r for r in regs})
    for reg in regs:
        reg.impus = []
        _end(batch, reg, reason)
    _write(batch, ApplyReport())
    return len(regs)


# --- Expiry -----------------------------------------------------------------------------


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
        batch = _Batch(now=now, registrations={(r.identity_id, r.device_key): r for r in regs})
        for reg in regs:
            reg.impus = []
            _end(batch, reg, Registration.EndReason.EXPIRED)
        _write(batch, ApplyReport())
    return len(regs)


# --- Per-device settings ------------------------------------------------------------------


@transaction.atomic
def registration_update_settings(
    *,
    actor: Actor,
    registration: Registration,
    enabled_services: list[str] | None = None,
    default_impu: str | None = None,
    do_not_disturb: bool | None = None,
    ring_priority: int | None = None,
) -> Registration:
    """Change one device's own settings; they reach the network with the identity's
    state, through the same outbox."""
    reg = (
        Registration.objects.select_for_update()
        .select_related("identity", "enterprise")
        .get(pk=registration.pk)
    )
    actor.ensure_acts_for(reg.enterprise)
    user = actor.user
    if user is None or user.pk != reg.user_id:
        raise NotAllowed("A device's settings belong to its user.")
    account_services.ensure_writable(reg.enterprise)
    fields = ["enabled_services", "default_impu", "do_not_disturb", "ring_priority"]
    before = audit.snapshot(reg, fields)
    if enabled_services is not None:
        unknown = set(enabled_services) - set(reg.identity.services)
        if unknown:
            raise RuleViolation(
                f"{', '.join(sorted(unknown))} is not among the identity's services.",
                field="enabled_services",
            )
        # All of the identity's services is the default, stored as "none chosen".
        chosen = sorted(set(enabled_services))
        reg.enabled_services = [] if chosen == sorted(reg.identity.services) else chosen
    if default_impu is not None:
        if default_impu and default_impu not in reg.identity.impus:
            raise RuleViolation(
                "Choose one of the identity's public identities.", field="default_impu"
            )
        reg.default_impu = default_impu
    if do_not_disturb is not None:
        reg.do_not_disturb = do_not_disturb
    if ring_priority is not None:
        if ring_priority not in dict(Registration.RING_PRIORITIES):
            raise RuleViolation(
                "Ring priority is 1 (highest) to 5 (lowest).", field="ring_priority"
            )
        reg.ring_priority = ring_priority
    changes = audit.diff(before, audit.snapshot(reg, fields))
    if changes:
        reg.save(update_fields=fields)
        request_sync(reg.identity)
        audit.record(
            actor=actor,
            action="registration.settings_changed",
            enterprise=reg.enterprise,
            target=reg,
            changes=changes,
        )
    return reg


# --- Network notices ----------------------------------------------------------------------


def _queue_notice(notice_id: int) -> None:
    send_network_notice = enqueue.task("telephony.tasks.send_network_notice")

    transaction.on_commit(lambda: send_network_notice.delay(notice_id), robust=True)


def _queue_deregistration(registration_id: int) -> None:
    deregister_ue = enqueue.task("telephony.tasks.deregister_ue")

    deregister_ue.delay(registration_id)


def send_notice(notice_id: int) -> str:
    """Deliver one notice through the network notification backend (a task runs this)."""
    from telephony.registrations.notify import NoticeError, notifier

    notice = (
        NetworkNotice.objects.select_related("registration__identity")
        .filter(pk=notice_id, state=NetworkNotice.State.PENDING)
        .first()
    )
    if notice is None:
        return "skipped"
    try:
        notifier().send(notice)
    except NoticeError as exc:
        NetworkNotice.objects.filter(pk=notice.pk).update(
            attempts=notice.attempts + 1, last_error=str(exc)[:500]
        )
        if exc.transient and notice.attempts + 1 < settings.SYNC_MAX_ATTEMPTS:
            raise
        NetworkNotice.objects.filter(pk=notice.pk).update(state=NetworkNotice.State.FAILED)
        return "failed"
    NetworkNotice.objects.filter(pk=notice.pk).update(
        state=NetworkNotice.State.SENT, sent_at=timezone.now(), attempts=notice.attempts + 1
    )
    return "sent"


def sweep(grace: timedelta | None = None) -> int:
    """Queue again sign-outs and notices whose task was lost. Periodic."""
    cutoff = timezone.now() - (grace or timedelta(seconds=settings.SYNC_SWEEP_AFTER_SECONDS))
    sign_outs = list(
        Registration.objects.filter(
            state=State.SIGN_OUT_REQUESTED, sign_out_sent_at=None, sign_out_requested_at__lt=cutoff
        ).values_list("pk", flat=True)[:1000]
    )
    notices = list(
        NetworkNotice.objects.filter(
            state=NetworkNotice.State.PENDING, created_at__lt=cutoff
        ).values_list("pk", flat=True)[:1000]
    )
    deregister_ue = enqueue.task("telephony.tasks.deregister_ue")
    send_network_notice = enqueue.task("telephony.tasks.send_network_notice")

    for pk in sign_outs:
        deregister_ue.delay(pk)
    for pk in notices:
        send_network_notice.delay(pk)
    return len(sign_outs) + len(notices)
