"""How the audit trail reads: each event as a sentence a person understands ("Ada Admin
relocated +49 30 555000 (Rob Smith) …"), its changes with their values formatted, and
the trail as CSV. Events are stored as facts (audit.record); this is only their reading.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import phonenumbers
from django.utils import formats, timezone

from kernel import csvfile

from .models import AuditEvent

# What the objects of the trail are called on the pages (one name per thing).
OBJECT_KINDS = {
    "accounts.user": "person",
    "accounts.enterprise": "enterprise",
    "accounts.apitoken": "API token",
    "accounts.networkclient": "network client",
    "accounts.clientregistration": "app",
    "accounts.servicecontract": "contract",
    "accounts.directoryrecord": "directory record",
    "accounts.directorygroup": "directory group",
    "telephony.identity": "identity",
    "telephony.grant": "sharing",
    "telephony.simline": "SIM line",
    "telephony.numberblock": "number block",
    "telephony.telephonenumber": "number",
    "telephony.registration": "device",
    "telephony.importjob": "import",
    "telephony.signingcredential": "signing certificate",
    "telephony.callername": "business caller name",
    "telephony.simulatedhssoutage": "simulated HSS outage",
}

# Sentences for acts whose last word alone says too little; ``{actor}`` and ``{target}``.
SENTENCES = {
    "user.signed_in": "{actor} signed in",
    "user.joined": "{actor} accepted the invitation and joined",
    "user.invited": "{actor} invited {target}",
    "user.invitation_resent": "{actor} sent {target} a new invitation",
    "user.password_changed": "{actor} changed the password of {target}",
    "user.password_reset": "{actor} set a new password for {target} from a reset link",
    "user.backup_codes_regenerated": "{actor} made new backup codes for {target}",
    "user.time_zone_changed": "{actor} chose the time zone of {target}",
    "employees.exported": "{actor} exported the list of employees",
    "devices.exported": "{actor} exported the list of devices",
    "audit.exported": "{actor} exported the audit trail",
    "identity.sync_retried": "{actor} asked the HSS sync of {target} to try again",
    "identity.drift_found": "{actor} found {target} out of step with the HSS",
    "hss.orphan_removed": "{actor} removed {target} from the HSS, which the portal does not hold",
    "grant.created": "{actor} shared {target}",
    "grant.revoked": "{actor} stopped the sharing {target}",
    "grant.expired": "The sharing {target} ended as planned",
    "grant.paused": "{actor} paused the sharing {target}",
    "grant.resumed": "{actor} resumed the sharing {target}",
    "registration.sign_out_requested": "{actor} signed out the device {target}",
    "registration.reported": "{actor} reported registrations",
    "registration.third_party_registered": "{actor} reported {target} registered",
    "registration.third_party_refreshed": "{actor} reported {target} still registered",
    "registration.third_party_deregistered": "{actor} reported {target} signed out",
    "registration.settings_changed": "{actor} changed the device settings",
    "import.previewed": "{actor} checked an import file",
    "import.started": "{actor} started an import",
    "import.finished": "The import {target} finished",
    "import.failed": "The import {target} failed",
    "oidc.client_registered": "{actor} registered the app {target}",
    "oidc.client_removed": "{actor} removed the app {target}",
    "oidc.tokens_revoked": "{actor} ended the app sign-ins of {target}",
    "oidc.app_access_revoked": "{actor} disconnected the app {target}",
    "signing_credential.delegated": "{actor} issued the delegate certificate {target}",
}

# The verb of the other acts, from the action's last word ("identity.suspended").
VERBS = {
    "created": "created",
    "updated": "changed",
    "changed": "changed",
    "removed": "removed",
    "deleted": "deleted",
    "suspended": "suspended",
    "resumed": "resumed",
    "revoked": "revoked",
    "offboarded": "offboarded",
    "deactivated": "deactivated",
    "reactivated": "reactivated",
    "email_changed": "changed the email of",
    "imported": "imported",
    "replaced": "replaced",
}

FIELD_NAMES = {
    "tn": "Number",
    "imsi": "IMSI",
    "iccid": "ICCID",
    "impi": "IMPI",
    "impu": "IMPU",
    "ki": "Key",
    "email": "Email",
    "ip": "IP address",
    "redirect_uris": "Redirect URIs",
}

CAMEL_HUMP = re.compile(r"(?<=[a-z])(?=[A-Z])")
OWNER_IN_LABEL = re.compile(r"\(([^()]+)\)$")
E164 = re.compile(r"\+[1-9]\d{5,14}\b")
ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:\d{2}|Z)?$")


def number(e164: str) -> str:
    """+4930555000 as people write it: +49 30 555000."""
    try:
        parsed = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def _numbers_in(text: str) -> str:
    return E164.sub(lambda match: number(match.group()), text)


def value(raw: object) -> str:
    """A stored before/after value as a page shows it: lists joined, times in the
    viewer's time zone, yes/no, numbers grouped, phone numbers spaced; — for none."""
    if raw is None or raw == "" or raw == []:
        return "—"
    if isinstance(raw, bool):
        return "yes" if raw else "no"
    if isinstance(raw, int | float):
        return formats.number_format(raw, force_grouping=True)
    if isinstance(raw, list | tuple):
        return ", ".join(value(item) for item in raw)
    if isinstance(raw, dict):
        return ", ".join(f"{field_name(key).lower()}: {value(item)}" for key, item in raw.items())
    text = str(raw)
    if ISO_DATETIME.match(text):
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            return text
        if timezone.is_aware(moment):
            return when(moment)
    return _numbers_in(text)


def when(moment: datetime.datetime) -> str:
    """A moment in the viewer's time zone (the one the request activated)."""
    return formats.date_format(timezone.localtime(moment), "j M Y, H:i")


def field_name(key: str) -> str:
    """``valid_until`` and SCIM's ``externalId`` alike: "Valid until", "External id"."""
    return FIELD_NAMES.get(key) or CAMEL_HUMP.sub(" ", key).replace("_", " ").capitalize()


def actor_name(event: AuditEvent) -> str:
    """The person by name (read with ``actor_user``), else the label kept at the time."""
    if event.actor_user is not None and event.actor_user.full_name:
        return event.actor_user.full_name
    if event.actor_kind == AuditEvent.ActorKind.SYSTEM:
        return "The portal"
    return event.actor_label


def _target(event: AuditEvent) -> str:
    label = _numbers_in(event.target_label)
    if event.target_type == "accounts.user" and event.target_id == str(event.actor_user_id):
        return "their own account"
    return label


def sentence(event: AuditEvent) -> str:
    """The event as one sentence, without a full stop."""
    actor, target = actor_name(event), _target(event)
    template = SENTENCES.get(event.action)
    if template is None and event.action.endswith(".relocated"):
        before, after = (event.changes.get("tn") or [None, None])[:2]
        moved = f" from {value(before)} to {value(after)}" if before and after else ""
        # An identity reads "+4930555000 (Rob Smith)": the person, since both numbers follow.
        holder = OWNER_IN_LABEL.search(event.target_label)
        return f"{actor} relocated {holder.group(1) if holder else target}{moved}"
    if template is None:
        _, _, act = event.action.partition(".")
        verb = VERBS.get(act, act.replace("_", " "))
        kind = OBJECT_KINDS.get(event.target_type, "")
        if target.lower().startswith(kind.lower()):
            kind = ""  # "Directory record of Lee Wong" names its kind itself
        thing = f"{kind} {target}".strip() if target else kind
        template = "{actor} " + verb + (" " + thing.replace("{", "{{").replace("}", "}}"))
        template = template.rstrip()
    said = template.format(actor=actor, target=target)
    # An admin acting for someone else (a sharing made on the owner's behalf).
    _, behalf = (event.changes or {}).get("on_behalf_of") or [None, None]
    return f"{said} on behalf of {behalf}" if behalf else said


@dataclass(frozen=True)
class Change:
    field: str
    before: str
    after: str
    added: bool  # no value before: show only the new one


def changes(event: AuditEvent) -> list[Change]:
    out = []
    for key, pair in (event.changes or {}).items():
        before, after = pair if isinstance(pair, list) and len(pair) == 2 else [None, pair]
        out.append(Change(field_name(key), value(before), value(after), before is None))
    return out


CSV_COLUMNS = ["When", "Who", "What happened", "Action", "Object", "Changes", "From"]


def csv_lines(events: Iterable[AuditEvent], zone: datetime.tzinfo) -> Iterator[str]:
    """The trail as CSV lines, times in ``zone``: a streamed response is written after
    the request's own time zone is gone."""
    return csvfile.lines(CSV_COLUMNS, (_csv_row(event, zone) for event in events))


def _csv_row(event: AuditEvent, zone: datetime.tzinfo) -> list[str]:
    with timezone.override(zone):
        return [
            timezone.localtime(event.created_at).isoformat(timespec="seconds"),
            event.actor_label,
            sentence(event),
            event.action,
            event.target_label,
            "; ".join(f"{c.field}: {c.before} → {c.after}" for c in changes(event)),
            event.ip or "",
        ]
