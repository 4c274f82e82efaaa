"""Third-party registration at the portal's SIP edge (TS 24.229 §5.4.1.7): the S-CSCF
registers each IMPU whose iFC names the portal, and the edge subscribes to its ``reg``
events. The portal keeps, per AoR, which S-CSCF serves it and until when — so that a
restarted edge can subscribe again — and what the S-CSCF said about the UE behind the
REGISTER, for the NOTIFY that binds it (reginfo carries no user agent).

The edge holds no business logic: it posts the REGISTER here (parsed by sipmessage.py)
and does what the answer says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts import audit
from accounts.audit import Actor
from accounts.models import NetworkClient
from kernel import enqueue, jsonrpc
from kernel.errors import NotAllowed, RuleViolation
from telephony.models import Identity, Registration, ThirdPartyRegistration
from telephony.registrations import records
from telephony.registrations.ingest import device_key_of, device_label, resolve_aors
from telephony.registrations.sipmessage import ThirdPartyRegister, UeRegistration

# The most registrations one page of the edge's restart listing holds.
PAGE_SIZE = 10_000


@dataclass(frozen=True)
class RegisterAnswer:
    """What the edge does next: subscribe to the IMPU's ``reg`` events, or not."""

    aor: str
    expires: int
    known: bool  # the IMPU names an identity the portal serves

    def as_dict(self) -> dict:
        return {
            "aor": self.aor,
            "expires": self.expires,
            "known": self.known,
            "subscribe": self.known and self.expires > 0,
        }


def register(*, actor: Actor, client: NetworkClient, message: ThirdPartyRegister) -> RegisterAnswer:
    """Apply one third-party REGISTER: keep (``expires`` > 0) or forget (0) where the
    IMPU is registered, with an audit row; an IMPU that names no identity changes
    nothing. Refused (NotAllowed) for an enterprise this client does not serve."""
    answer = RegisterAnswer(aor=message.impu, expires=message.expires, known=False)
    with transaction.atomic():
        identity = resolve_aors([message.impu]).get(message.impu)
        if identity is None:
            return answer
        if not client.serves(identity.enterprise):
            raise NotAllowed(
                f"This network client does not serve {identity.enterprise.name}: nothing applied."
            )
        answer = RegisterAnswer(aor=message.impu, expires=message.expires, known=True)
        locked = ThirdPartyRegistration.objects.select_for_update()
        row = locked.filter(aor=message.impu).first()
        if message.expires == 0:
            # Every contact of the IMPU is gone, whatever NOTIFY the edge may miss.
            ended = records.end_aor(identity, message.impu)
            if row is not None or ended:
                if row is not None:
                    row.delete()
                changes = audit.removed(aor=message.impu, scscf=row.scscf if row else "")
                audit.record(
                    actor=actor,
                    action="registration.third_party_deregistered",
                    enterprise=identity.enterprise,
                    target=identity,
                    changes={**changes, "ended_devices": [None, ended]},
                )
            return answer
        _keep(actor, identity, row, message)
    return answer


def _keep(
    actor: Actor,
    identity: Identity,
    row: ThirdPartyRegistration | None,
    message: ThirdPartyRegister,
) -> None:
    now = timezone.now()
    before = {"scscf": row.scscf} if row is not None else None
    if row is None:
        # Concurrent first REGISTERs of an AoR queue here: the second insert waits for
        # the first transaction and then finds its row.
        ThirdPartyRegistration.objects.bulk_create(
            [
                ThirdPartyRegistration(
                    aor=message.impu,
                    identity=identity,
                    enterprise_id=identity.enterprise_id,
                    scscf=message.scscf,
                    expires_at=now,
                )
            ],
            ignore_conflicts=True,
        )
        row = ThirdPartyRegistration.objects.select_for_update().get(aor=message.impu)
    if row.identity_id != identity.pk:  # the number moved on: what was known is not
        row.identity, row.enterprise_id, row.devices = identity, identity.enterprise_id, []
    row.scscf = message.scscf
    row.expires_at = now + timedelta(seconds=message.expires)
    row.updated_at = now
    if message.ue is not None:
        row.remember_device(_facts(message.ue))
        _describe_device(identity, message.ue)
    row.save()
    if before is None:
        action = "registration.third_party_registered"
        changes = audit.created(aor=row.aor, scscf=row.scscf, expires=message.expires)
    else:
        action = "registration.third_party_refreshed"
        changes = {
            **audit.diff(before, {"scscf": row.scscf}),
            **audit.changed(expires=(None, message.expires)),
        }
    audit.record(
        actor=actor,
        action=action,
        enterprise=identity.enterprise,
        target=identity,
        changes=changes,
    )


def _facts(ue: UeRegistration) -> dict:
    return {
        "key": device_key_of(instance=ue.instance, contact_uri=ue.contact_uri),
        "contact": ue.contact_uri,
        "instance": ue.instance,
        "user_agent": ue.user_agent,
        "access_network": ue.access_network,
    }


def _describe_device(identity: Identity, ue: UeRegistration) -> None:
    """Give the UE's record, if a NOTIFY made it already, what the REGISTER said."""
    if not (ue.user_agent or ue.access_network):
        return
    keys = [device_key_of(instance=ue.instance, contact_uri=ue.contact_uri)]
    if ue.instance:  # a record first made without its instance
        keys.append(device_key_of(instance="", contact_uri=ue.contact_uri))
    records = {
        reg.device_key: reg
        for reg in Registration.objects.select_for_update().filter(
            identity=identity, device_key__in=keys
        )
    }
    reg = next((records[key] for key in keys if key in records), None)
    if reg is None:
        return
    user_agent = ue.user_agent or reg.user_agent
    access_network = ue.access_network or reg.access_network
    label = device_label(
        user_agent=user_agent, instance=reg.instance_id, contact_uri=reg.contact_uri
    )
    if (user_agent, access_network, label) != (reg.user_agent, reg.access_network, reg.label):
        reg.user_agent, reg.access_network, reg.label = user_agent, access_network, label
        reg.save(update_fields=["user_agent", "access_network", "label"])


# --- The edge's restart -----------------------------------------------------------------


@dataclass(frozen=True)
class LiveRegistration:
    aor: str
    scscf: str
    expires: int  # seconds left, at least 1


def live_registrations(
    *, client: NetworkClient, after: int = 0, limit: int = PAGE_SIZE, at: datetime | None = None
) -> tuple[list[LiveRegistration], int | None]:
    """The registrations not yet expired of the enterprises ``client`` serves, at most
    ``limit`` after the cursor ``after``, and the cursor of the next page (None at the
    end). A restarted edge subscribes to each again."""
    now = at or timezone.now()
    rows = list(
        ThirdPartyRegistration.objects.filter(
            enterprise_id__in=client.served_enterprise_ids, expires_at__gt=now, pk__gt=after
        )
        .order_by("pk")
        .values_list("pk", "aor", "scscf", "expires_at")[: limit + 1]
    )
    page = [
        LiveRegistration(
            aor=aor, scscf=scscf, expires=max(1, math.ceil((expires_at - now).total_seconds()))
        )
        for _, aor, scscf, expires_at in rows[:limit]
    ]
    more = rows[limit - 1][0] if len(rows) > limit else None
    return page, more


def parse_limit(raw: str | None) -> int:
    """A page size from 1 to PAGE_SIZE (PAGE_SIZE if none); RuleViolation otherwise."""
    if raw is None:
        return PAGE_SIZE
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw[:6]) <= PAGE_SIZE:
        raise RuleViolation(f"limit is a number from 1 to {PAGE_SIZE}.", code="invalid_limit")
    return int(raw)


def parse_cursor(raw: str | None) -> int:
    """A page cursor as live_registrations gives it; RuleViolation if it is not one."""
    if raw is None:
        return 0
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise RuleViolation("The cursor is not one this listing gave.", code="invalid_cursor")
    return int(raw)


# --- Ends -------------------------------------------------------------------------------


def forget_registrations_of(identity: Identity, reason: str) -> int:
    """The HSS no longer holds the identity: the network will not register it again,
    and a restarted edge must not subscribe for it. Plugged into the sync engine."""
    rows = ThirdPartyRegistration.objects.filter(identity=identity)
    aors = list(rows.values_list("aor", flat=True))
    deleted, _ = rows.delete()
    if aors:
        forget = enqueue.task("telephony.tasks.forget_at_edge")
        transaction.on_commit(lambda: forget.delay(aors), robust=True)
    return deleted


# The edge's tables that name an IMPU (sipedge/kamailio.cfg).
EDGE_TABLES = ("reg", "scscf", "due")


def forget_at_edge(aors: list[str]) -> None:
    """Have the SIP edge drop ``aors`` (Kamailio's ``htable.delete`` over its JSON-RPC),
    so that it takes no new subscription for them; the live ones lapse. A task runs it;
    an unreachable edge raises RpcUnavailable for the task to retry."""
    for aor in aors:
        for table in EDGE_TABLES:
            jsonrpc.call(
                settings.SIP_EDGE_RPC_URL,
                "htable.delete",
                [table, aor],
                timeout=settings.SIP_EDGE_RPC_TIMEOUT_SECONDS,
            )


def prune_expired(limit: int = 5000) -> int:
    """Forget registrations whose expiry passed without a de-registration (the edge
    was down, say). Periodic; at most ``limit`` rows a run, none a REGISTER holds."""
    with transaction.atomic():
        expired = list(
            ThirdPartyRegistration.objects.filter(expires_at__lte=timezone.now())
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        deleted, _ = ThirdPartyRegistration.objects.filter(pk__in=expired).delete()
    return deleted
