"""A device's own settings (services, default public identity, do not disturb, ring
priority); they reach the network with the identity's state, through the outbox."""

from __future__ import annotations

from django.db import transaction

from accounts import audit
from accounts.audit import Actor
from kernel.errors import NotAllowed, RuleViolation
from telephony.identities.sync import request_sync
from telephony.models import (
    Registration,
    RegistrationEvent,
)

Kind = RegistrationEvent.Kind
State = Registration.State
# A UE that drops and is back within this long is flapping, not a new registration.


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
    audit.ensure_writable(reg.enterprise)
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
