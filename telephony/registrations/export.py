"""The CSV of devices ticked on *Devices*: who holds each, on which number, since when.
Taking it is audited, as the employees' export is."""

from __future__ import annotations

from collections.abc import Iterator

from django.db import transaction
from django.utils import timezone

from accounts import audit
from accounts.audit import Actor
from accounts.models import Enterprise
from kernel import csvfile
from telephony.models import Registration

COLUMNS = [
    "full_name",
    "email",
    "device",
    "tn",
    "state",
    "access_network",
    "user_agent",
    "registered_since",
    "last_refreshed",
    "expires",
]


@transaction.atomic
def devices_export(
    *, actor: Actor, enterprise: Enterprise, registrations: list[Registration]
) -> Iterator[str]:
    """The ``registrations`` (all of ``enterprise``) as CSV lines for a streamed
    response; the audit row says how many were taken."""
    actor.ensure_acts_for(enterprise)
    audit.record(
        actor=actor,
        action="devices.exported",
        enterprise=enterprise,
        changes=audit.created(devices_ticked=len(registrations)),
        changes_enterprise=False,
    )
    return csvfile.lines(COLUMNS, (_row(reg) for reg in registrations))


def _row(reg: Registration) -> list[object]:
    return [
        reg.user.full_name,
        reg.user.email,
        reg.label,
        reg.identity.tn or reg.identity.former_tn,
        reg.get_state_display() if reg.is_active else Registration.State.ENDED.label,
        reg.network,
        reg.user_agent,
        # In the viewer's time zone, with its offset, as the pages show them.
        timezone.localtime(reg.first_registered_at).isoformat(timespec="seconds"),
        timezone.localtime(reg.last_refreshed_at).isoformat(timespec="seconds"),
        timezone.localtime(reg.expires_at).isoformat(timespec="seconds"),
    ]
