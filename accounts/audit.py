"""Who acts, and the record of what they did.

Every service takes an ``Actor`` and writes an ``AuditEvent`` through ``record`` in
its own transaction, so a change and its audit row commit or roll back together.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import models

from kernel import generations
from kernel.errors import NotAllowed, RuleViolation
from kernel.http import client_ip

from .models import ApiToken, AuditEvent, Enterprise, NetworkClient, User


@dataclass(frozen=True)
class Actor:
    """The principal behind a change: a signed-in user, an API token, a network
    client, or the system itself (periodic tasks)."""

    user: User | None = None
    api_token: ApiToken | None = None
    network_client: NetworkClient | None = None
    ip: str | None = None

    @classmethod
    def from_request(cls, request) -> Actor:
        ip = client_ip(request)
        auth = getattr(request, "auth", None)
        if isinstance(auth, ApiToken):
            return cls(api_token=auth, ip=ip)
        if isinstance(auth, NetworkClient):
            return cls(network_client=auth, ip=ip)
        user = request.user if request.user.is_authenticated else None
        return cls(user=user, ip=ip)

    @classmethod
    def system(cls) -> Actor:
        return cls()

    @property
    def kind(self) -> str:
        if self.user is not None:
            return AuditEvent.ActorKind.USER
        if self.api_token is not None:
            return AuditEvent.ActorKind.API_TOKEN
        if self.network_client is not None:
            return AuditEvent.ActorKind.NETWORK_CLIENT
        return AuditEvent.ActorKind.SYSTEM

    @property
    def label(self) -> str:
        if self.user is not None:
            return self.user.email
        if self.api_token is not None:
            kind = "SCIM token" if self.api_token.purpose == ApiToken.Purpose.SCIM else "API token"
            return f"{kind} “{self.api_token.name}” (…{self.api_token.hint})"
        if self.network_client is not None:
            return f"Network client “{self.network_client.name}”"
        return "system"

    @property
    def enterprise(self) -> Enterprise | None:
        """The one enterprise this actor is confined to; None for staff and the system."""
        if self.user is not None:
            return self.user.enterprise
        if self.api_token is not None:
            return self.api_token.enterprise
        return None

    def ensure_acts_for(self, enterprise: Enterprise | None) -> None:
        """Refuse a change to an enterprise that is not the actor's own.

        Views already scope every lookup to the request's enterprise; this is the
        services' own check, so that no caller can cross tenants by mistake. None is
        no enterprise (an operator staff account): only staff and the system act there.
        """
        if self.network_client is not None:
            if enterprise is None or not self.network_client.serves(enterprise):
                raise NotAllowed("This network client does not serve that enterprise.")
            return
        own = self.enterprise
        if own is None:
            if self.user is not None and not self.user.is_staff:
                raise NotAllowed("No enterprise.")
            return
        if enterprise is None or own.pk != enterprise.pk:
            raise NotAllowed("Not your enterprise.")

    def ensure_may_change(self, enterprise: Enterprise | None = None) -> None:
        """A suspended enterprise changes nothing through its own people and tokens.
        Operator staff and the system are confined to no enterprise and still may (a
        leaver must be removable whatever the enterprise's standing); network clients
        report what the network did, which is no change of the enterprise's."""
        if self.enterprise is None:
            return
        ensure_writable(self.enterprise)
        if enterprise is not None:  # the same tenant, perhaps read more recently
            ensure_writable(enterprise)


def ensure_writable(enterprise: Enterprise) -> None:
    """Refuse changes to a suspended enterprise (its people may still look)."""
    if not enterprise.is_active:
        raise RuleViolation(
            f"{enterprise.name} is suspended by the operator; changes are blocked.",
            code="enterprise_suspended",
        )


# Made once: an ``A | B`` in the isinstance calls below is built anew at each call.
_MOMENTS = datetime.datetime | datetime.date | datetime.time
_TEXTUAL = decimal.Decimal | uuid.UUID
_SEQUENCES = list | tuple | set | frozenset


def _plain(value):
    """A JSON-safe rendering of a field value for the before/after record."""
    if value is None or type(value) is str:  # most values: none of the checks below
        return value
    if isinstance(value, models.Model):
        return str(value)
    if isinstance(value, _MOMENTS):
        return value.isoformat()
    if isinstance(value, _TEXTUAL):
        return str(value)
    if isinstance(value, _SEQUENCES):
        return [_plain(v) for v in value]
    return value


def snapshot(obj: models.Model, fields: list[str]) -> dict[str, Any]:
    """The values of ``fields`` on ``obj`` now, for diffing after a change."""
    return {name: _plain(getattr(obj, name)) for name in fields}


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list]:
    """``{field: [before, after]}`` for every field whose value changed."""
    changes = {}
    for key in dict.fromkeys([*before, *after]):
        old, new = _plain(before.get(key)), _plain(after.get(key))
        if old != new:
            changes[key] = [old, new]
    return changes


def created(**values: Any) -> dict[str, list]:
    """``{field: [None, value]}``: the record of what a new object was made with."""
    return {name: [None, _plain(value)] for name, value in values.items()}


def removed(**values: Any) -> dict[str, list]:
    """``{field: [value, None]}``: the record of what a removed object was."""
    return {name: [_plain(value), None] for name, value in values.items()}


def changed(**pairs: tuple[Any, Any]) -> dict[str, list]:
    """``{field: [before, after]}`` for changes the service states itself (a state
    moved on, a count): every pair is kept, unlike ``diff``, which drops equal ones."""
    return {name: [_plain(before), _plain(after)] for name, (before, after) in pairs.items()}


def record(
    *,
    actor: Actor,
    action: str,
    enterprise: Enterprise | None,
    target: models.Model | None = None,
    changes: dict[str, Any] | None = None,
    changes_enterprise: bool = True,
) -> AuditEvent:
    """Append one audit row. Call inside the service's transaction.

    Every change writes its audit row here, so this is where "a suspended enterprise
    changes nothing" holds for every service, whichever page, API or task called it:
    the refusal rolls the whole transaction back. ``changes_enterprise=False`` marks
    the few recorded acts that are not the enterprise's changes: signing in, taking
    the export, a person's own password and second factor, closing an import's books.
    """
    if changes_enterprise:
        actor.ensure_may_change(enterprise)
    event = _event(actor, action, enterprise, target, changes)
    _bump(actor, enterprise, action)
    event.save(force_insert=True)
    return event


@dataclass(frozen=True)
class Entry:
    """One row of ``record_many``."""

    actor: Actor
    enterprise: Enterprise | None
    changes: dict[str, Any]
    target: models.Model | None = None


def record_many(*, action: str, entries: list[Entry]) -> None:
    """``record`` for many acts of one kind at once (one INSERT): for a service that
    applies many requests in one transaction."""
    # Checked once for each actor and enterprise (in the entries' order), not each row.
    for actor, enterprise in dict.fromkeys((e.actor, e.enterprise) for e in entries):
        actor.ensure_may_change(enterprise)
        _bump(actor, enterprise, action)
    events = [_event(e.actor, action, e.enterprise, e.target, e.changes) for e in entries]
    AuditEvent.objects.bulk_create(events)


# What devices report, and their settings: what the device pages show, and nothing the
# call path decides on.
DEVICE_ACTIONS = "registration."
# What may give an identity an address (a number, an alias) that named nobody before.
ADDRESS_ACTIONS = ("identity.created", "identity.relocated", "identity.updated")


def _bump(actor: Actor, enterprise: Enterprise | None, action: str) -> None:
    # Every change passes here, so here the call path's cached facts (and the kept page
    # fragments) learn of it. Registrations only lapse what shows devices: UEs report
    # many times a minute, and would otherwise lapse every fact of a busy enterprise.
    # Operator staff's and the system's changes (number blocks, credentials, network
    # clients) may concern numbers no enterprise held before: every entry lapses.
    if action.startswith(DEVICE_ACTIONS) and enterprise is not None:
        generations.bump_devices_after_commit(enterprise.pk)
        return
    if action in ADDRESS_ACTIONS:
        generations.bump_addresses_after_commit()
    generations.bump_after_commit(
        enterprise_id=enterprise.pk if enterprise is not None else None,
        operator=actor.enterprise is None and actor.network_client is None,
    )


def _event(
    actor: Actor,
    action: str,
    enterprise: Enterprise | None,
    target: models.Model | None,
    changes: dict[str, Any] | None,
) -> AuditEvent:
    return AuditEvent(
        enterprise=enterprise,
        actor_kind=actor.kind,
        actor_user=actor.user,
        actor_token=actor.api_token,
        actor_network_client=actor.network_client,
        actor_label=actor.label[:254],
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_label=str(target)[:254] if target is not None else "",
        changes=changes or {},
        ip=actor.ip,
    )
