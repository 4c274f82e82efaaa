"""Writes for identities, sharing grants and the offboarding
kill-switch. Each service is one transaction that checks the operator's policy,
writes its rows, an audit row and, when the HSS must follow, bumps the identity's
sync row (the outbox); the sync task is queued after commit."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import DurationField, ExpressionWrapper, F, Q, QuerySet
from django.utils import timezone
from oauth2_provider.models import get_access_token_model

from accounts import audit
from accounts import selectors as account_selectors
from accounts import services as account_services
from accounts.audit import Actor
from accounts.models import Enterprise, Role, User
from kernel.errors import RuleViolation
from telephony.identities import onboarding, rules
from telephony.identities import sync as sync_engine
from telephony.inventory import services as inventory
from telephony.models import (
    Grant,
    Identity,
    IdentitySync,
    OffboardingReceipt,
    TelephoneNumber,
)

logger = logging.getLogger(__name__)


# --- Identities ---------------------------------------------------------------------------


def _clean_alias(enterprise: Enterprise, alias: str, *, exclude: Identity | None = None) -> str:
    live = Identity.objects.for_enterprise(enterprise).live()
    if exclude is not None:
        live = live.exclude(pk=exclude.pk)
    return rules.clean_alias(enterprise, alias, taken=lambda a: live.filter(alias=a).exists())


def _onboarded(
    actor: Actor, enterprise: Enterprise, joiner: onboarding.Joiner, **kw: Any
) -> Identity:
    (outcome,) = onboarding.onboard(actor=actor, enterprise=enterprise, joiners=[joiner], **kw)
    if isinstance(outcome, RuleViolation):
        raise outcome
    return outcome


@transaction.atomic
def identity_create(
    *,
    actor: Actor,
    owner: User,
    services: list[str],
    display_name: str = "",
    tn: str = "",
    imsi: str = "",
    alias: str = "",
) -> Identity:
    """A new identity for an employee: a TN from the enterprise's blocks (chosen, or
    the next free), an optional SIM line from its pool, IMPUs and IMPI derived."""
    if owner.enterprise is None:
        raise RuleViolation("Operator staff hold no identities.")
    joiner = onboarding.Joiner(
        owner=owner, services=services, display_name=display_name, tn=tn, imsi=imsi, alias=alias
    )
    return _onboarded(actor, owner.enterprise, joiner)


@transaction.atomic
def employee_onboard(
    *,
    actor: Actor,
    enterprise: Enterprise,
    email: str,
    full_name: str,
    services: list[str],
    role: str = Role.EMPLOYEE,
    display_name: str = "",
    tn: str = "",
    imsi: str = "",
    alias: str = "",
    send_invitation: bool = True,
) -> Identity:
    """One step for a joiner: the account, its invitation and a first identity. Someone
    who already has an account in the enterprise (made by an import, SCIM or an
    invitation) keeps it and gets the identity."""
    joiner = onboarding.Joiner(
        email=email,
        full_name=full_name,
        role=role,
        services=services,
        display_name=display_name,
        tn=tn,
        imsi=imsi,
        alias=alias,
    )
    return _onboarded(actor, enterprise, joiner, send_invitations=send_invitation)


def _locked(identity: Identity) -> Identity:
    """The identity, locked for this change. FOR NO KEY UPDATE: a concurrent push may
    still add sync-history rows that point at it (their key check only needs to share).
    Read again once locked: a locking query that waited for a concurrent change (a
    relocation) re-reads the identity's row but not the rows it joins, so its number
    or line would come back empty."""
    rows = Identity.objects.select_for_update(of=("self",), no_key=True).order_by()
    rows.values_list("pk").get(pk=identity.pk)  # waits for a concurrent change to commit
    return Identity.objects.select_related("enterprise", "number", "line", "owner").get(
        pk=identity.pk
    )


def _sync_grantees(identity: Identity) -> None:
    """The grantees' own subscriptions list this identity's number while it is active:
    when its number or state changes, theirs follow."""
    grantees = Grant.objects.active().filter(identity=identity).values("grantee_id")
    sync_engine.request_syncs(list(Identity.objects.live().filter(owner_id__in=grantees)))


def _changed(actor: Actor, identity: Identity, before: dict[str, Any], action: str) -> Identity:
    """Audit what changed and have the HSS follow."""
    changes = audit.diff(before, rules.identity_snapshot(identity))
    if changes:
        identity.save()
        sync_engine.request_sync(identity)
        if {"tn", "status"} & set(changes):
            _sync_grantees(identity)
        audit.record(
            actor=actor,
            action=action,
            enterprise=identity.enterprise,
            target=identity,
            changes=changes,
        )
    return identity


@transaction.atomic
def identity_update(
    *,
    actor: Actor,
    identity: Identity,
    services: list[str] | None = None,
    display_name: str | None = None,
    alias: str | None = None,
) -> Identity:
    """Change the entitled services, the caller name or the alias."""
    contract = rules.ensure_may_provision(actor, identity.enterprise)
    identity = _locked(identity)
    _ensure_live(identity)
    before = rules.identity_snapshot(identity)
    if services is not None:
        identity.services = rules.clean_services(contract, services)
    if display_name is not None:
        identity.display_name = rules.clean_display_name(display_name)
    if alias is not None:
        identity.alias = _clean_alias(identity.enterprise, alias, exclude=identity)
    return _changed(actor, identity, before, "identity.updated")


def _ensure_live(identity: Identity) -> None:
    if identity.status == Identity.Status.REMOVED:
        raise RuleViolation(f"The identity {identity.former_tn} has been removed.", code="removed")


def _live_number(identity: Identity) -> TelephoneNumber:
    """The number of a live identity (a removed one keeps only ``former_tn``)."""
    if identity.number is None:
        raise RuleViolation(f"The identity {identity.former_tn} has been removed.", code="removed")
    return identity.number


def _set_status(actor: Actor, identity: Identity, status: str, action: str) -> Identity:
    account_services.ensure_may_change(actor, identity.enterprise)
    identity = _locked(identity)
    _ensure_live(identity)
    if identity.status == status:
        raise RuleViolation(
            f"The identity {identity.tn} is already {identity.get_status_display().lower()}."
        )
    before = rules.identity_snapshot(identity)
    identity.status = status
    return _changed(actor, identity, before, action)


@transaction.atomic
def identity_suspend(*, actor: Actor, identity: Identity) -> Identity:
    """Disable the identity in the HSS; it keeps its number, line and grants."""
    return _set_status(actor, identity, Identity.Status.SUSPENDED, "identity.suspended")


@transaction.atomic
def identity_resume(*, actor: Actor, identity: Identity) -> Identity:
    # A deactivation is undone as a whole, so that reactivation restores exactly it.
    if User.objects.filter(pk=identity.owner_id, status=User.Status.DEACTIVATED).exists():
        raise RuleViolation(
            f"{identity.owner} is deactivated; reactivate them to resume their identities.",
            code="owner_deactivated",
        )
    return _set_status(actor, identity, Identity.Status.ACTIVE, "identity.resumed")


@transaction.atomic
def identity_relocate(
    *, actor: Actor, identity: Identity, country: str = "", tn: str = "", imsi: str | None = None
) -> Identity:
    """Move the identity to a new number (in ``country``, or the chosen ``tn``); the old
    number goes into quarantine. ``imsi`` swaps the SIM line ("" removes it)."""
    rules.ensure_may_provision(actor, identity.enterprise)
    identity = _locked(identity)
    _ensure_live(identity)
    if not (country or tn):
        raise RuleViolation("Give the new country or the new number.", field="country")
    before = rules.identity_snapshot(identity)
    old_number = _live_number(identity)
    identity.number = inventory.allocate_number(identity.enterprise, tn=tn, country=country)
    identity.former_tn = old_number.e164  # the sync engine makes sure the HSS lets it go
    inventory.quarantine_number(old_number)
    if imsi is not None and imsi != before["imsi"]:
        rules.ensure_line_given(imsi)
        identity.line = inventory.take_line(identity.enterprise, imsi) if imsi else None
    return _changed(actor, identity, before, "identity.relocated")


def _end_grants(grants: QuerySet[Grant], reason: str, actor: Actor) -> list[Grant]:
    """End grants, and have the grantees' own subscriptions follow."""
    ended = list(grants.select_related("identity", "grantee", "enterprise"))
    now = timezone.now()
    for grant in ended:
        grant.revoked_at = now
        grant.end_reason = reason
        grant.save(update_fields=["revoked_at", "end_reason"])
        audit.record(
            actor=actor,
            action=f"grant.{reason}",
            enterprise=grant.enterprise,
            target=grant,
            changes=audit.changed(active=(True, False)),
        )
    grantees = {g.grantee_id for g in ended}
    sync_engine.request_syncs(list(Identity.objects.live().filter(owner_id__in=grantees)))
    return ended


def _remove(actor: Actor, identity: Identity) -> Identity:
    """Disable and remove the identity in the HSS (deregistering its UEs), quarantine
    its number, free its line and end the grants on it."""
    before = rules.identity_snapshot(identity)
    _end_grants(
        Grant.objects.current().filter(identity=identity), Grant.EndReason.IDENTITY_REMOVED, actor
    )
    number = _live_number(identity)
    identity.former_tn = number.e164
    identity.status = Identity.Status.REMOVED
    identity.number = None
    identity.line = None
    identity.save()
    inventory.quarantine_number(number)
    sync_engine.request_sync(identity)
    audit.record(
        actor=actor,
        action="identity.removed",
        enterprise=identity.enterprise,
        target=identity,
        changes=audit.diff(before, {**before, "status": Identity.Status.REMOVED}),
    )
    return identity


@transaction.atomic
def identity_remove(*, actor: Actor, identity: Identity) -> Identity:
    account_services.ensure_may_change(actor, identity.enterprise)
    identity = _locked(identity)
    _ensure_live(identity)
    return _remove(actor, identity)


@transaction.atomic
def employee_offboard(
    *, actor: Actor, user: User, revoke_api_tokens: bool = False
) -> OffboardingReceipt:
    """The leaver's kill-switch: every identity disabled and removed from the HSS (its
    UEs deregistered), every grant given or received revoked, the apps they signed in to cut
    off, the account closed. Returns the receipt of each step. The API tokens they created
    stay unless ``revoke_api_tokens``: they are the enterprise's credentials (its HR system,
    its SCIM feed), not the leaver's, and the receipt says how many still work."""
    enterprise = user.member_of
    account_services.ensure_may_change(actor, enterprise)
    # Locked first, so that no identity or grant can be added for them meanwhile.
    user = User.objects.select_for_update().get(pk=user.pk)
    steps = []
    given = _end_grants(
        Grant.objects.current().filter(identity__owner=user), Grant.EndReason.OWNER_LEFT, actor
    )
    received = _end_grants(
        Grant.objects.current().filter(grantee=user), Grant.EndReason.GRANTEE_LEFT, actor
    )
    locked = (
        Identity.objects.live()
        .select_for_update(of=("self",), no_key=True)
        .filter(owner=user)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    identities = list(  # read once locked (see _locked)
        Identity.objects.live()
        .select_related("enterprise", "number", "line", "owner")
        .filter(pk__in=list(locked))
        .order_by("pk")
    )
    for identity in identities:
        tn = identity.tn
        _remove(actor, identity)
        steps.append(
            {
                "step": f"Identity {tn}: disabled, UEs deregistered and removed from the HSS; "
                "number in quarantine",
                "outcome": "requested",
                "identity_id": identity.pk,
            }
        )
    if not identities:
        steps.append({"step": "No identities held", "outcome": "done"})
    steps.append(
        {"step": f"Sharing ended: {len(given)} given, {len(received)} received", "outcome": "done"}
    )
    if revoke_api_tokens:
        revoked = account_services.api_tokens_revoke_created_by(actor=actor, user=user)
        steps.append(
            {"step": f"API tokens they created revoked: {len(revoked)}", "outcome": "done"}
        )
    elif kept := account_selectors.api_tokens_created_by(user).count():
        steps.append(
            {
                "step": f"API tokens they created kept active, as the enterprise's: {kept}",
                "outcome": "done",
            }
        )
    app_tokens = get_access_token_model().objects.filter(user=user).count()
    account_services.user_offboard(actor=actor, user=user)
    steps.append({"step": f"App sign-in tokens revoked: {app_tokens}", "outcome": "done"})
    steps.append(
        {
            "step": "Account closed: sign-in blocked, sessions ended, second factors removed, "
            "open invitations revoked",
            "outcome": "done",
        }
    )
    receipt = OffboardingReceipt.objects.create(
        enterprise=enterprise, user=user, actor_label=actor.label, steps=steps
    )
    return receipt


# --- Reversible deactivation (how Okta and Entra deprovision) ----------------------------


def _pause_grants(grants: QuerySet[Grant], paused: bool, actor: Actor) -> list[Grant]:
    """Pause grants (no rights, not ended) or resume them; the grantees' own
    subscriptions follow, as when grants end."""
    changed = list(grants.select_related("identity", "grantee", "enterprise").order_by("pk"))
    now = timezone.now()
    for grant in changed:
        grant.paused_at = now if paused else None
        grant.save(update_fields=["paused_at"])
        audit.record(
            actor=actor,
            action="grant.paused" if paused else "grant.resumed",
            enterprise=grant.enterprise,
            target=grant,
            changes=audit.changed(active=(not paused, paused is False)),
        )
    grantees = {g.grantee_id for g in changed}
    sync_engine.request_syncs(list(Identity.objects.live().filter(owner_id__in=grantees)))
    return changed


def _locked_identities(user: User, status: str) -> list[Identity]:
    """The user's identities in ``status``, locked, read once locked (see ``_locked``)."""
    locked = (
        Identity.objects.filter(owner=user, status=status)
        .select_for_update(of=("self",), no_key=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    return list(
        Identity.objects.select_related("enterprise", "number", "line", "owner")
        .filter(pk__in=list(locked))
        .order_by("pk")
    )


def _grants_of(user: User) -> Q:
    return Q(identity__owner=user) | Q(grantee=user)


@transaction.atomic
def employee_deactivate(*, actor: Actor, user: User) -> OffboardingReceipt:
    """Deactivate at once and reversibly (an identity provider's ``active: false``, or
    an admin): sign-in blocked, sessions and app tokens ended, every active identity
    suspended in the HSS, every grant given or received paused. Reactivation within
    the contract's grace period undoes exactly this; after it, offboarding follows."""
    enterprise = user.member_of
    account_services.ensure_may_change(actor, enterprise)
    user = User.objects.select_for_update().get(pk=user.pk)
    app_tokens = get_access_token_model().objects.filter(user=user).count()
    account_services.user_deactivate(actor=actor, user=user)
    steps: list[dict[str, Any]] = [
        {"step": "Sign-in blocked, sessions ended", "outcome": "done"},
        {"step": f"App sign-in tokens revoked: {app_tokens}", "outcome": "done"},
    ]
    paused = _pause_grants(Grant.objects.active().filter(_grants_of(user)), True, actor)
    suspended = []
    for identity in _locked_identities(user, Identity.Status.ACTIVE):
        before = rules.identity_snapshot(identity)
        identity.status = Identity.Status.SUSPENDED
        _changed(actor, identity, before, "identity.suspended")
        suspended.append(identity.pk)
        steps.append(
            {
                "step": f"Identity {identity.tn}: suspended in the HSS",
                "outcome": "requested",
                "identity_id": identity.pk,
            }
        )
    for identity in _locked_identities(user, Identity.Status.SUSPENDED):
        if identity.pk not in suspended:
            steps.append(
                {
                    "step": f"Identity {identity.tn}: was suspended already and stays so",
                    "outcome": "done",
                }
            )
    if len(steps) == 2:
        steps.append({"step": "No identities held", "outcome": "done"})
    steps.append({"step": f"Sharing paused: {len(paused)}", "outcome": "done"})
    due = account_services.reactivation_deadline(user)
    steps.append(
        {
            "step": f"Offboarding scheduled for {due:%Y-%m-%d %H:%M} UTC, unless reactivated "
            "before",
            "outcome": "done",
        }
    )
    return OffboardingReceipt.objects.create(
        enterprise=enterprise,
        user=user,
        kind=OffboardingReceipt.Kind.DEACTIVATION,
        actor_label=actor.label,
        steps=steps,
        suspended_identities=suspended,
    )


@transaction.atomic
def employee_reactivate(*, actor: Actor, user: User) -> OffboardingReceipt:
    """Undo a deactivation within the grace period: the account's former status back,
    the identities that the deactivation suspended resumed (those suspended before stay
    so), and the paused grants resumed unless the other party is still deactivated."""
    enterprise = user.member_of
    account_services.ensure_may_change(actor, enterprise)
    user = User.objects.select_for_update().get(pk=user.pk)
    deactivation = (
        OffboardingReceipt.objects.filter(user=user, kind=OffboardingReceipt.Kind.DEACTIVATION)
        .order_by("-created_at", "-pk")
        .first()
    )
    account_services.user_reactivate(actor=actor, user=user)
    steps: list[dict[str, Any]] = [
        {"step": f"Sign-in allowed again: {user.get_status_display().lower()}", "outcome": "done"}
    ]
    to_resume = set(deactivation.suspended_identities if deactivation else [])
    for identity in _locked_identities(user, Identity.Status.SUSPENDED):
        if identity.pk not in to_resume:
            steps.append(
                {"step": f"Identity {identity.tn}: stays suspended, as before", "outcome": "done"}
            )
            continue
        before = rules.identity_snapshot(identity)
        identity.status = Identity.Status.ACTIVE
        _changed(actor, identity, before, "identity.resumed")
        steps.append(
            {
                "step": f"Identity {identity.tn}: resumed in the HSS",
                "outcome": "requested",
                "identity_id": identity.pk,
            }
        )
    deactivated = User.Status.DEACTIVATED
    resumable = (
        Grant.objects.current()
        .filter(_grants_of(user))
        .exclude(paused_at=None)
        .exclude(identity__owner__status=deactivated)
        .exclude(grantee__status=deactivated)
    )
    resumed = _pause_grants(resumable, False, actor)
    steps.append({"step": f"Sharing resumed: {len(resumed)}", "outcome": "done"})
    return OffboardingReceipt.objects.create(
        enterprise=enterprise,
        user=user,
        kind=OffboardingReceipt.Kind.REACTIVATION,
        actor_label=actor.label,
        steps=steps,
    )


def deactivations_expire() -> int:
    """Offboard the users whose deactivation outlasted their contract's grace period.
    Periodic; each user in their own transaction, so one failure stops no other."""
    grace = ExpressionWrapper(
        F("enterprise__contract__deactivation_grace_days") * timedelta(days=1),
        output_field=DurationField(),
    )
    due = User.objects.filter(
        status=User.Status.DEACTIVATED, deactivated_at__lte=timezone.now() - grace
    ).order_by("deactivated_at")
    offboarded = 0
    for pk in list(due.values_list("pk", flat=True)):
        try:
            with transaction.atomic():
                # Under the lock again: an admin may have reactivated them meanwhile.
                user = (
                    User.objects.select_for_update(of=("self",))
                    .select_related("enterprise")
                    .get(pk=pk)
                )
                if user.status != User.Status.DEACTIVATED:
                    continue
                if timezone.now() < account_services.reactivation_deadline(user):
                    continue
                employee_offboard(actor=Actor.system(), user=user)
        except RuleViolation as exc:
            logger.warning("Deactivated user %s not offboarded: %s", pk, exc.message)
            continue
        offboarded += 1
    return offboarded


# --- Sharing grants (TS 22.173 4.6) -------------------------------------------------------


@transaction.atomic
def grant_create(
    *,
    actor: Actor,
    identity: Identity,
    grantee: User,
    can_make_calls: bool = True,
    can_receive_calls: bool = True,
    valid_until: datetime | None = None,
) -> Grant:
    """The identity's owner lets another employee use it; or an admin does, on the
    owner's behalf (audited as such, and the owner is told)."""
    account_services.ensure_may_change(actor, identity.enterprise)
    identity = _locked(identity)
    by_owner = actor.user is not None and actor.user.pk == identity.owner_id
    if not (by_owner or _acts_as_admin(actor)):
        raise RuleViolation("Only the identity's owner or an admin can share it.", code="not_owner")
    if identity.status != Identity.Status.ACTIVE:
        raise RuleViolation(f"The identity {identity.tn or identity.former_tn} is not active.")
    if grantee.enterprise_id != identity.enterprise_id:
        raise RuleViolation(
            "You can share only with people of your own enterprise.", field="grantee"
        )
    if grantee.pk == identity.owner_id:
        raise RuleViolation(
            "You already own this identity." if by_owner else f"{grantee} owns this identity.",
            field="grantee",
        )
    grantee = User.objects.select_for_update().get(pk=grantee.pk)  # not offboarded meanwhile
    if grantee.status != User.Status.ACTIVE:
        raise RuleViolation(f"{grantee} is not an active employee.", field="grantee")
    if not (can_make_calls or can_receive_calls):
        raise RuleViolation("Allow making calls, receiving calls, or both.")
    if valid_until is not None and valid_until <= timezone.now():
        raise RuleViolation("The end of the sharing must lie in the future.", field="valid_until")
    if Grant.objects.active().filter(identity=identity, grantee=grantee).exists():
        raise RuleViolation(f"{identity.tn} is shared with {grantee} already; end that first.")
    grant = Grant.objects.create(
        enterprise=identity.enterprise,
        identity=identity,
        grantee=grantee,
        can_make_calls=can_make_calls,
        can_receive_calls=can_receive_calls,
        valid_until=valid_until,
        created_by=actor.user,
    )
    sync_engine.request_syncs(list(Identity.objects.live().filter(owner=grantee)))
    audit.record(
        actor=actor,
        action="grant.created",
        enterprise=identity.enterprise,
        target=grant,
        changes=audit.created(
            grantee=grantee.email,
            rights=grant.rights,
            valid_until=valid_until.isoformat() if valid_until else None,
            **({} if by_owner else {"on_behalf_of": str(identity.owner)}),
        ),
    )
    if not by_owner:
        account_services.notify(
            user=identity.owner,
            kind="grant_created_for_you",
            title=(
                f"{actor.label if actor.user is None else actor.user.full_name} shared your "
                f"number {identity.tn} with {grantee.full_name}"
            )[:200],
            body=f"{grantee.full_name} may {grant.rights} calls with it"
            + (f" until {valid_until.astimezone(UTC):%Y-%m-%d %H:%M} UTC." if valid_until else ".")
            + " You can end this on the Sharing page at any time.",
            link="/grants/",
            email=True,
        )
    return grant


def _acts_as_admin(actor: Actor) -> bool:
    """An enterprise admin, or an API token with the admin role."""
    if actor.user is not None:
        return actor.user.is_enterprise_admin
    return actor.api_token is not None and actor.api_token.role == Role.ADMIN


@transaction.atomic
def grant_revoke(*, actor: Actor, grant: Grant) -> Grant:
    """The owner withdraws a grant (the grantee may give it up; an admin may end it)."""
    account_services.ensure_may_change(actor, grant.enterprise)
    user = actor.user
    if user is not None or actor.api_token is not None:
        parties = (grant.identity.owner_id, grant.grantee_id)
        allowed = _acts_as_admin(actor) or (user is not None and user.pk in parties)
    else:  # the system always may
        allowed = True
    if not allowed:
        raise RuleViolation(
            "Only the owner, the person it is shared with or an admin can end a sharing.",
            code="not_owner",
        )
    if grant.has_ended:
        raise RuleViolation("This sharing has already ended.")
    _end_grants(Grant.objects.filter(pk=grant.pk), Grant.EndReason.REVOKED, actor)
    grant.refresh_from_db()
    return grant


def grants_expire() -> int:
    """Record the grants whose time is up and have the HSS follow. Periodic."""
    due = Grant.objects.filter(revoked_at=None, valid_until__lte=timezone.now())
    with transaction.atomic():
        return len(
            _end_grants(
                due.select_for_update(of=("self",), no_key=True),
                Grant.EndReason.EXPIRED,
                Actor.system(),
            )
        )


# --- The outbox -------------------------------------------------------------------------


@transaction.atomic
def sync_retry(*, actor: Actor, identity: Identity) -> Identity:
    """An admin asks for another try of a failed sync."""
    account_services.ensure_may_change(actor, identity.enterprise)
    sync = IdentitySync.objects.select_for_update().get(pk=identity.pk)
    if sync.state != IdentitySync.State.FAILED:
        raise RuleViolation("Only a failed sync can be retried.")
    sync_engine.request_sync(identity)
    audit.record(
        actor=actor,
        action="identity.sync_retried",
        enterprise=identity.enterprise,
        target=identity,
        changes=audit.changed(sync=(IdentitySync.State.FAILED, IdentitySync.State.PENDING)),
    )
    return identity
