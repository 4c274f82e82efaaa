"""Active UEs: applying what the IMS core reports (RFC 3680 reginfo, or the same as
JSON) to per-device registration records. What follows new devices (notices, the device
limit) is notices.py; sign-out, per-device settings and expiry have their own modules.

A report is applied whole or not at all, in one transaction and a fixed number of
queries whatever its size: the AoRs are resolved to identities in one go, the
registrations of those identities are loaded and locked together, and the changes are
written back in bulk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from accounts import audit
from accounts.audit import Actor
from accounts.models import NetworkClient
from kernel.errors import NotAllowed, RuleViolation
from telephony.models import (
    Identity,
    ReginfoVersion,
    Registration,
    RegistrationEvent,
    ThirdPartyRegistration,
)
from telephony.registrations import notices
from telephony.registrations.records import (
    EVENT_FIELDS,
    FLAP_WINDOW,
    REGISTRATION_FIELDS,
    Batch,
    end,
    remember,
    write,
    write_changes,
)
from telephony.registrations.reginfo import ContactInfo, ReginfoDocument, RegistrationInfo

Kind = RegistrationEvent.Kind
State = Registration.State
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
# documents are remembered per AoR (and subscription).
REPLAY_WINDOW = timedelta(minutes=5)
REPLAY_MEMORY = 32
# A subscription is named by the SIP edge after its SUBSCRIBE dialog's Call-ID (RFC 3261
# ``word [@ word]``: visible ASCII). Its versions are forgotten after a day without a
# document: a subscription lasts as long as a registration, and one heard from again
# later simply starts over, as a new one would.
SUBSCRIPTION_RE = re.compile(r"[\x21-\x7e]{1,255}")
SUBSCRIPTION_MEMORY = timedelta(days=1)
TEL_RE = re.compile(r"^tel:(\+\d{6,15})(?:;.*)?$", re.IGNORECASE)
SIP_RE = re.compile(r"^sips?:([^@;]+)@([^;:>]+)(?::\d+)?(?:;.*)?$", re.IGNORECASE)

# What follows a report's new devices, in its transaction once its rows are written: the
# notices and the device limit. A named seam: a test holds a report here to race another.
new_device_policy: Callable[[Batch], None] = notices.after_new_devices


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
        for aliased in live.filter(alias__in=aliases):
            by_alias[(aliased.alias, aliased.enterprise.sip_domain)] = aliased
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


def device_key_of(*, instance: str, contact_uri: str) -> str:
    """A device is known by its ``+sip.instance``, else its contact URI."""
    return f"instance:{instance}" if instance else f"contact:{contact_uri}"


def device_key(contact: ContactInfo) -> str:
    return device_key_of(instance=contact.instance, contact_uri=contact.uri)


# --- Applying a report ------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One report as the IMS core sent it: who sent it, and in which subscription (the
    SIP edge's SUBSCRIBE dialog; None for an HTTP client that names none)."""

    actor: Actor
    client: NetworkClient
    document: ReginfoDocument
    subscription: str | None = None


Outcome = ApplyReport | NotAllowed | RuleViolation


def apply_report(
    *,
    actor: Actor,
    client: NetworkClient,
    document: ReginfoDocument,
    subscription: str | None = None,
) -> ApplyReport:
    """Apply one report of the IMS core, whole or not at all (apply_reports' rules);
    raise its refusal."""
    (outcome,) = apply_reports([Received(actor, client, document, subscription)])
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def subscription_error(subscription: str | None) -> RuleViolation | None:
    """Why a subscription the SIP edge names is refused; None if it is not."""
    if subscription is None or SUBSCRIPTION_RE.fullmatch(subscription):
        return None
    return RuleViolation(
        "The subscription must be 1 to 255 visible ASCII characters (a Call-ID).",
        code="invalid_subscription",
        field="subscription",
    )


def apply_reports(received: list[Received]) -> list[Outcome]:
    """Apply reports of the IMS core in the order received, each whole or not at all,
    in one transaction and a fixed number of queries however many there are: their
    AoRs resolved, their streams' versions and their identities' registrations read and
    locked together, every change written back in bulk. The outcome of each, in order.

    A report is refused whole (NotAllowed) if any AoR belongs to an enterprise its
    client does not serve, or (RuleViolation) for a malformed subscription; the others
    apply regardless. AoRs that name no identity are reported back, not guessed. Which
    registrations apply is decided per AoR, or per AoR in the ``subscription`` the SIP
    edge names (a NOTIFY's dialog), by _fresh_registrations.
    """
    outcomes: list[Outcome] = [
        subscription_error(item.subscription) or ApplyReport() for item in received
    ]
    now = timezone.now()
    with transaction.atomic():
        identities = resolve_aors({r.aor for item in received for r in item.document.registrations})
        applying: list[tuple[Received, ApplyReport]] = []
        for number, (item, outcome) in enumerate(zip(received, outcomes, strict=True)):
            if not isinstance(outcome, ApplyReport):
                continue
            aors = {r.aor for r in item.document.registrations}
            outcome.unknown_aors = sorted(aors - set(identities))
            foreign = {
                identities[aor].enterprise.name
                for aor in aors & set(identities)
                if not item.client.serves(identities[aor].enterprise)
            }
            if foreign:
                outcomes[number] = NotAllowed(
                    f"This network client does not serve {', '.join(sorted(foreign))}: "
                    "nothing applied."
                )
            else:
                applying.append((item, outcome))
        fresh = _fresh_registrations(applying, identities, now)
        known = {identities[info.aor] for infos in fresh for info in infos}
        batch = _load(known, now)
        ues = UeFacts(known)
        for (item, outcome), infos in zip(applying, fresh, strict=True):
            for info in infos:
                identity = identities[info.aor]
                _apply_registration(batch, info, identity, item.document.state, outcome, ues)
        write(batch)
        new_device_policy(batch)
        _audit(applying, identities)
    return outcomes


def _fresh_registrations(
    applying: list[tuple[Received, ApplyReport]], identities, now
) -> list[list[RegistrationInfo]]:
    """For each report, its registrations for known AoRs that apply, recording where
    each AoR's stream stands (its row locked, so concurrent reports for it queue), in
    the order received: a report's decision sees those of the reports before it.

    RFC 3680 numbers the documents of one subscription. When the SIP edge names the
    subscription a document came in, its versions are kept per (AoR, subscription):

    - The subscription's first document applies, at whatever version it starts
      (Kamailio's S-CSCF starts each at 2); if ``partial``, full state is needed.
    - A later one applies if newer. A ``partial`` one more than one version ahead
      means reports were lost: it applies (its contacts are the newest word on them)
      and full state is needed until a ``full`` document comes.
    - A ``full`` one of the same version applies unless it is a replay: a notifier
      that does not count (Kamailio's presence_reginfo sends every document as
      version 0) still sends the state as it is now.
    - Anything else (an older document, a replay) is stale: skipped.

    Without a subscription (an HTTP client) the portal sees the documents of every
    subscription for an AoR and cannot tell them apart; presence_reginfo sends every
    document as ``full`` version 0. So, per AoR:

    - A document seen within REPLAY_WINDOW, seen again, is a replay: skipped.
    - A newer version applies, with the gap rule above.
    - A ``full`` document that is not newer is a new subscription's first report: the
      full state as it is now, so it applies and its version becomes the AoR's.
    - A ``partial`` document that is not newer is stale: skipped.
    - The first report for an AoR applies; if ``partial``, the AoR needs full state.
    """
    streams = {
        (item.subscription or "", r.aor)
        for item, _ in applying
        for r in item.document.registrations
        if r.aor in identities
    }
    if not streams:
        return [[] for _ in applying]
    # Rows are locked in one order (by id), so that batches sharing AoRs queue rather
    # than deadlock; the filter may match a few more rows than the streams, harmlessly.
    locked = ReginfoVersion.objects.select_for_update().order_by("pk")

    def read(pairs) -> dict[tuple[str, str], ReginfoVersion]:
        rows = locked.filter(subscription__in={s for s, _ in pairs}, aor__in={a for _, a in pairs})
        return {(v.subscription, v.aor): v for v in rows if (v.subscription, v.aor) in pairs}

    versions = read(streams)
    missing = streams - set(versions)
    if missing:
        # A stream's first reports queue here too (an HTTP retry racing its original):
        # the second insert waits for the first transaction and then finds its row.
        ReginfoVersion.objects.bulk_create(
            [ReginfoVersion(aor=aor, subscription=stream, version=None) for stream, aor in missing],
            ignore_conflicts=True,
        )
        versions.update(read(missing))
    remember(versions.values(), VERSION_FIELDS)
    oldest = (now - REPLAY_WINDOW).timestamp()
    fresh_of_reports = []
    for item, report in applying:
        document = item.document
        full = document.state == "full"
        # Without a subscription, a full document that is not newer is a new
        # subscription's; within one, only a full document of the same version is news.
        restarts = full and item.subscription is None
        fresh, needing = [], set()
        for info in document.registrations:
            if info.aor not in identities:
                continue
            digest = _digest(document, info)
            seen = versions[(item.subscription or "", info.aor)]
            if seen.version is None:  # the stream's first report
                seen.full_state_needed = not full
                seen.version = document.version
            else:
                seen.recent = [entry for entry in seen.recent if entry[1] >= oldest]
                replay = any(entry[0] == digest for entry in seen.recent)
                newer = document.version > seen.version
                uncounted = full and document.version == seen.version
                if replay or not (newer or restarts or uncounted):
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
        report.stale = sorted(set(report.stale))
        report.full_state_needed = sorted(v.aor for v in needing if v.full_state_needed)
        fresh_of_reports.append(fresh)
    write_changes(ReginfoVersion, list(versions.values()), VERSION_FIELDS)
    return fresh_of_reports


def prune_subscription_versions(limit: int = 5000) -> int:
    """Forget the versions of subscriptions not heard from for SUBSCRIPTION_MEMORY
    (ended ones: the edge subscribes afresh for every REGISTER). Periodic; at most
    ``limit`` rows a run. A row a report holds is not waited for, and one it just
    refreshed no longer qualifies."""
    before = timezone.now() - SUBSCRIPTION_MEMORY
    with transaction.atomic():
        old = list(
            ReginfoVersion.objects.exclude(subscription="")
            .filter(updated_at__lt=before)
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        deleted, _ = ReginfoVersion.objects.filter(pk__in=old).delete()
    return deleted


def _digest(document: ReginfoDocument, info: RegistrationInfo) -> str:
    """What one registration of a document says, as a short fingerprint: the same for a
    replay of the document, different for any other report."""
    text = repr((document.state, document.version, info))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


VERSION_FIELDS = ["version", "recent", "full_state_needed", "updated_at"]


class UeFacts:
    """What third-party REGISTERs said about the UEs of a report's identities (contact,
    ``+sip.instance``, user agent, access network): read in one query, and only when a
    contact comes without its instance or a device is bound without a user agent."""

    def __init__(self, identities):
        self._identity_ids = [i.pk for i in identities]
        self._rows: dict[int, list[ThirdPartyRegistration]] | None = None

    def _of_identity(self, identity_id: int) -> list[ThirdPartyRegistration]:
        if self._rows is None:
            self._rows = {}
            rows = ThirdPartyRegistration.objects.filter(identity_id__in=self._identity_ids)
            for row in rows.only("identity_id", "devices").order_by("-updated_at"):
                self._rows.setdefault(row.identity_id, []).append(row)
        return self._rows.get(identity_id, [])

    def of(self, identity_id: int, key: str) -> dict | None:
        for row in self._of_identity(identity_id):
            facts = row.device(key)
            if facts is not None:
                return facts
        return None

    def instance_of(self, identity_id: int, contact_uri: str) -> str:
        """The ``+sip.instance`` the UE registering ``contact_uri`` named, or ""."""
        for row in self._of_identity(identity_id):
            for facts in reversed(row.devices):
                if facts.get("contact") == contact_uri and facts.get("instance"):
                    return facts["instance"]
        return ""


def _load(identities, now) -> Batch:
    rows = list(
        Registration.objects.select_for_update(of=("self",))
        .select_related("last_event")
        .filter(identity__in=[i.pk for i in identities])
    )
    remember(rows, REGISTRATION_FIELDS)
    remember([r.last_event for r in rows if r.last_event is not None], EVENT_FIELDS)
    return Batch(now=now, registrations={(r.identity_id, r.device_key): r for r in rows})


def _apply_registration(
    batch: Batch, info, identity: Identity, doc_state: str, report, ues: UeFacts
) -> None:
    matched = set()
    for contact in info.contacts:
        if not contact.instance:
            # Some S-CSCFs leave +sip.instance out of reginfo (Kamailio's presence_reginfo
            # always, its S-CSCF on terminated contacts): the UE's own REGISTER named it.
            instance = ues.instance_of(identity.pk, contact.uri)
            contact = dataclasses.replace(contact, instance=instance) if instance else contact
        reg = _record_for(batch, identity, contact)
        if contact.state == "active":
            if reg is None or not _ended_after(reg, contact):
                reg = _bind(batch, identity, reg, info.aor, contact, report, ues)
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


def _bound_to(batch: Batch, identity: Identity, aor: str) -> list[Registration]:
    return [
        reg
        for reg in batch.by_identity.get(identity.pk, ())
        if reg.state != State.ENDED and aor in reg.impus
    ]


def _record_for(batch: Batch, identity: Identity, contact: ContactInfo) -> Registration | None:
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
            for reg in batch.by_identity.get(identity.pk, ())
            if reg.state != State.ENDED and reg.contact_uri == contact.uri
        ),
        None,
    )


def _bind(
    batch: Batch, identity: Identity, reg, aor: str, contact: ContactInfo, report, ues: UeFacts
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
        batch.add(reg)
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
    if not reg.user_agent:
        # reginfo from an S-CSCF carries no user agent; the third-party REGISTER that
        # came before this NOTIFY may have (TS 24.229's message/sip bodies).
        seen = ues.of(identity.pk, reg.device_key)
        if seen is not None:
            reg.user_agent = seen.get("user_agent", "") or reg.user_agent
            reg.access_network = reg.access_network or seen.get("access_network", "")
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
    batch: Batch,
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
            end(batch, reg, Registration.EndReason.SIGNED_OUT)
        else:
            end(batch, reg, reason, detail)
        report.ended += 1
    batch.touch(reg)


def _audit(applying: list[tuple[Received, ApplyReport]], identities) -> None:
    """A row per report that changed something, for each enterprise it spoke of."""
    entries = []
    for item, report in applying:
        if not report.applied:
            continue
        enterprises = {
            identities[r.aor].enterprise_id: identities[r.aor].enterprise
            for r in item.document.registrations
            if r.aor in identities
        }
        changes = {
            "contacts": [None, report.applied],
            "new_devices": [None, report.new_devices],
            "ended": [None, report.ended],
        }
        entries += [audit.Entry(item.actor, e, changes) for e in enterprises.values()]
    audit.record_many(action="registration.reported", entries=entries)
