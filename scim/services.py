"""Writes for SCIM provisioning. Each is one transaction: account changes go through
``accounts.services`` and ``telephony.identities.services`` (invitation, onboarding with an
identity, deactivation and reactivation, the offboarding kill-switch), directory attributes are written here, and
every change leaves an audit row naming the SCIM token."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import audit
from accounts import services as account_services
from accounts.audit import Actor
from accounts.models import DirectoryGroup, DirectoryRecord, Enterprise, Role, Service, User
from kernel.errors import RuleViolation
from scim import selectors
from scim.documents import GroupDraft, UserDraft
from scim.errors import ScimError, bad_request
from scim.resources import (
    ACTIVE_STATUSES,
    Locations,
    account_attributes,
    etag_matches,
    group_resource,
    phone_digits,
    user_resource,
)
from telephony.identities import services as telephony_services
from telephony.inventory.numbers import parse_tn
from telephony.models import Identity, TelephoneNumber

# Entity tags leave references out, so any base URL renders the same tag.
_ANYWHERE = Locations("")


def _ensure_version(if_match: str | None, resource: dict[str, Any]) -> None:
    """RFC 7644 §3.14: a stale If-Match changes nothing. Called under the row lock, with
    the resource as it reads now."""
    current = resource["meta"]["version"]
    if if_match is not None and not etag_matches(if_match, current):
        raise ScimError(
            412, f"The resource has changed since it was read; its version is now {current}."
        )


def _ensure_user_version(if_match: str | None, user: User) -> None:
    if if_match is not None:
        current = selectors.user_by_id(user.member_of, str(user.pk))
        _ensure_version(if_match, user_resource(current, _ANYWHERE))


def _ensure_group_version(if_match: str | None, group: DirectoryGroup) -> None:
    if if_match is not None:
        current = selectors.group_by_id(group.enterprise, str(group.pk))
        _ensure_version(if_match, group_resource(current, _ANYWHERE))


def _record_state(record: DirectoryRecord) -> dict[str, Any]:
    return {"externalId": record.external_id, **record.attributes}


def _without_numbers(attributes: dict[str, Any], numbers: list[str]) -> dict[str, Any]:
    """The attributes less the phone numbers that identities hold (those read from the
    identities themselves)."""
    phones = [
        p for p in attributes.get("phoneNumbers", []) if phone_digits(p.get("value")) not in numbers
    ]
    attributes = {k: v for k, v in attributes.items() if k != "phoneNumbers"}
    return attributes | ({"phoneNumbers": phones} if phones else {})


# --- Users ----------------------------------------------------------------------------------


def _ensure_address_free(enterprise: Enterprise, email: str) -> None:
    holder = User.objects.filter(email__iexact=email).first()
    if holder is None:
        return
    if holder.enterprise_id != enterprise.pk:
        detail = account_services.address_unavailable(email)
    elif holder.status == User.Status.OFFBOARDED:
        detail = (
            f"{email} belongs to an offboarded account, which cannot be provisioned again; "
            "use another userName."
        )
    else:
        detail = f"{email} is already the userName of user {holder.pk}."
    raise ScimError(409, detail, "uniqueness")


def _number_in_blocks(enterprise: Enterprise, candidates: tuple[str, ...]) -> str:
    """The first work number (E.164) that lies in the enterprise's number blocks."""
    for raw in candidates:
        try:
            e164, _ = parse_tn(raw)
        except RuleViolation:
            continue
        if TelephoneNumber.objects.for_enterprise(enterprise).filter(e164=e164).exists():
            return e164
    return ""


def _identity_services(enterprise: Enterprise) -> list[str]:
    """Voice if the contract allows it, else the first service it allows."""
    allowed = enterprise.contract.allowed_services or []
    if Service.VOICE in allowed:
        return [Service.VOICE]
    return allowed[:1]


@transaction.atomic
def user_provision(*, actor: Actor, enterprise: Enterprise, draft: UserDraft) -> User:
    """A new user from the identity provider: invited, or, when a work number in the
    enterprise's blocks is given, onboarded with an identity on that number."""
    account_services.ensure_may_change(actor, enterprise)
    _ensure_address_free(enterprise, draft.user_name)
    full_name = draft.full_name or draft.user_name.split("@")[0]
    tn = _number_in_blocks(enterprise, draft.work_numbers)
    if tn:
        identity = telephony_services.employee_onboard(
            actor=actor,
            enterprise=enterprise,
            email=draft.user_name,
            full_name=full_name,
            services=_identity_services(enterprise),
            tn=tn,
        )
        user = identity.owner
    else:
        user = account_services.user_invite(
            actor=actor,
            enterprise=enterprise,
            email=draft.user_name,
            full_name=full_name,
            role=Role.EMPLOYEE,
        )
    record = DirectoryRecord.objects.create(
        enterprise=enterprise,
        user=user,
        external_id=draft.external_id,
        attributes=_without_numbers(draft.attributes, [tn] if tn else []),
    )
    audit.record(
        actor=actor,
        action="directory_record.created",
        enterprise=enterprise,
        target=record,
        changes=audit.diff({}, _record_state(record)),
    )
    if draft.active is False:  # provisioned ahead of their start, say
        telephony_services.employee_deactivate(actor=actor, user=user)
    return user


# ``active: false`` deactivates (reversibly) a user in one of these statuses.
DEACTIVATABLE = (*ACTIVE_STATUSES, User.Status.SUSPENDED)


def _ensure_reactivable(user: User) -> None:
    if timezone.now() >= account_services.reactivation_deadline(user):
        raise ScimError(
            400,
            f"{user.email} was deactivated longer than the grace period allows and is being "
            "offboarded; provision the person again with another userName.",
            "mutability",
        )


def _locked(user: User) -> tuple[User, DirectoryRecord]:
    """The user and their directory record (a new, unsaved one if SCIM never wrote
    them), locked for this change."""
    user = User.objects.select_for_update(of=("self",)).select_related("enterprise").get(pk=user.pk)
    record = DirectoryRecord.objects.select_for_update().filter(user=user).first()
    if record is None:
        record = DirectoryRecord(
            enterprise=user.enterprise, user=user, attributes=account_attributes(user)
        )
    return user, record


def _save(actor: Actor, record: DirectoryRecord, changes: dict[str, Any]) -> None:
    action = "directory_record.updated" if record.pk else "directory_record.created"
    record.save()
    if changes:
        audit.record(
            actor=actor, action=action, enterprise=record.enterprise, target=record, changes=changes
        )


@transaction.atomic
def user_replace(
    *, actor: Actor, user: User, draft: UserDraft, if_match: str | None = None
) -> User:
    """The user as the identity provider now wants them (PUT, and PATCH once applied).
    ``active`` turning false deactivates them (reversibly, as Okta and Entra expect),
    turning true again within the grace period reactivates them; an absent ``active``
    changes nothing. Only DELETE (or the grace period's end) offboards."""
    account_services.ensure_may_change(actor, user.enterprise)
    user, record = _locked(user)
    _ensure_user_version(if_match, user)
    renamed = draft.user_name != user.email
    if renamed:
        # userName is the sign-in address: a rename (Entra's UPN change) changes it.
        _ensure_address_free(user.member_of, draft.user_name)
    if user.status == User.Status.OFFBOARDED and draft.active:
        raise ScimError(
            400,
            f"{user.email} has been offboarded (identities removed, account closed) and cannot "
            "be reactivated; provision the person again with another userName.",
            "mutability",
        )
    if user.status == User.Status.DEACTIVATED and draft.active:
        _ensure_reactivable(user)
    account_changed = False
    if renamed:
        account_services.user_change_email(actor=actor, user=user, email=draft.user_name)
        account_changed = True
    if draft.full_name and draft.full_name != user.full_name:
        account_services.user_update(actor=actor, user=user, full_name=draft.full_name)
        account_changed = True
    before = _record_state(record)
    numbers = list(
        Identity.objects.live().filter(owner=user).values_list("number__e164", flat=True)
    )
    record.external_id = draft.external_id
    record.attributes = _without_numbers(draft.attributes, numbers)
    changes = audit.diff(before, _record_state(record))
    if draft.active is False and user.status in DEACTIVATABLE:
        telephony_services.employee_deactivate(actor=actor, user=user)
        account_changed = True
    elif draft.active and user.status == User.Status.DEACTIVATED:
        telephony_services.employee_reactivate(actor=actor, user=user)
        user.refresh_from_db()
        # SCIM's active knows no "suspended": true means the person may sign in, so
        # one suspended before the deactivation is resumed too, in this request.
        if user.status == User.Status.SUSPENDED:
            account_services.user_resume(actor=actor, user=user)
        account_changed = True
    elif draft.active and user.status == User.Status.SUSPENDED:
        account_services.user_resume(actor=actor, user=user)
        account_changed = True
    if changes or account_changed:
        _save(actor, record, changes)
    return user


@transaction.atomic
def user_delete(*, actor: Actor, user: User, if_match: str | None = None) -> None:
    """Deprovision: offboard (unless already), leave every directory group, and forget
    the directory record, after which the user reads as not found."""
    account_services.ensure_may_change(actor, user.enterprise)
    user, record = _locked(user)
    _ensure_user_version(if_match, user)
    if user.status != User.Status.OFFBOARDED:
        telephony_services.employee_offboard(actor=actor, user=user)
    memberships = DirectoryGroup.members.through.objects.filter(user=user)
    left = list(
        DirectoryGroup.objects.filter(pk__in=memberships.values("directorygroup_id"))
        .order_by("display_name")
        .values_list("pk", "display_name")
    )
    memberships.delete()
    _touch_groups([pk for pk, _ in left])
    audit.record(
        actor=actor,
        action="directory_record.deleted",
        enterprise=user.enterprise,
        target=record if record.pk else user,
        changes={"groups": [[name for _, name in left], []]} if left else {},
    )
    if record.pk:
        record.delete()


# --- Groups ---------------------------------------------------------------------------------


def _touch_groups(group_ids: list[int]) -> None:
    DirectoryGroup.objects.filter(pk__in=group_ids).update(updated_at=timezone.now())


def _touch_users(enterprise: Enterprise, user_ids: set[int]) -> None:
    """A membership change changes the users' ``groups``, hence their lastModified."""
    if not user_ids:
        return
    known = set(
        DirectoryRecord.objects.filter(user_id__in=user_ids).values_list("user_id", flat=True)
    )
    DirectoryRecord.objects.filter(user_id__in=known).update(updated_at=timezone.now())
    DirectoryRecord.objects.bulk_create(
        DirectoryRecord(enterprise=enterprise, user=user, attributes=account_attributes(user))
        for user in User.objects.filter(pk__in=user_ids - known).order_by("pk")
    )


def _members(enterprise: Enterprise, member_ids: tuple[int, ...]) -> list[User]:
    members = list(selectors.users(enterprise).filter(pk__in=member_ids).order_by("pk"))
    missing = set(member_ids) - {m.pk for m in members}
    if missing:
        raise bad_request(f"No user {min(missing)} in this enterprise; it cannot be a member.")
    return members


def _ensure_name_free(enterprise: Enterprise, name: str, group: DirectoryGroup | None) -> None:
    clash = DirectoryGroup.objects.for_enterprise(enterprise).filter(display_name__iexact=name)
    if group is not None:
        clash = clash.exclude(pk=group.pk)
    if clash.exists():
        raise ScimError(409, f"A group named “{name}” already exists.", "uniqueness")


def _membership_changes(before: list[User], after: list[User]) -> dict[str, list[Any]]:
    removed = sorted({u.email for u in before} - {u.email for u in after})
    added = sorted({u.email for u in after} - {u.email for u in before})
    changes: dict[str, list[Any]] = {}
    if added:
        changes["members added"] = [None, added]
    if removed:
        changes["members removed"] = [removed, None]
    return changes


def _write_group(
    actor: Actor, group: DirectoryGroup, draft: GroupDraft, before: list[User], action: str
) -> DirectoryGroup:
    enterprise = group.enterprise
    _ensure_name_free(enterprise, draft.display_name, group if group.pk else None)
    members = _members(enterprise, draft.member_ids)
    fields_before = {"displayName": group.display_name, "externalId": group.external_id}
    group.display_name, group.external_id = draft.display_name, draft.external_id
    changes = audit.diff(
        fields_before if group.pk else {},
        {"displayName": group.display_name, "externalId": group.external_id},
    )
    changes |= _membership_changes(before, members)
    if not changes:
        return group
    try:
        with transaction.atomic():
            group.save()
    except IntegrityError as exc:  # a concurrent request took the name
        raise ScimError(
            409, f"A group named “{draft.display_name}” already exists.", "uniqueness"
        ) from exc
    group.members.set(members)
    _touch_users(enterprise, {u.pk for u in before} ^ {u.pk for u in members})
    audit.record(actor=actor, action=action, enterprise=enterprise, target=group, changes=changes)
    return group


@transaction.atomic
def group_create(*, actor: Actor, enterprise: Enterprise, draft: GroupDraft) -> DirectoryGroup:
    account_services.ensure_may_change(actor, enterprise)
    group = DirectoryGroup(enterprise=enterprise)
    return _write_group(actor, group, draft, [], "directory_group.created")


@transaction.atomic
def group_replace(
    *, actor: Actor, group: DirectoryGroup, draft: GroupDraft, if_match: str | None = None
) -> DirectoryGroup:
    """The group as the identity provider now wants it (PUT, and PATCH once applied)."""
    account_services.ensure_may_change(actor, group.enterprise)
    group = (
        DirectoryGroup.objects.select_for_update(of=("self",))
        .select_related("enterprise")
        .get(pk=group.pk)
    )
    _ensure_group_version(if_match, group)
    before = list(group.members.order_by("pk"))
    return _write_group(actor, group, draft, before, "directory_group.updated")


@transaction.atomic
def group_delete(*, actor: Actor, group: DirectoryGroup, if_match: str | None = None) -> None:
    account_services.ensure_may_change(actor, group.enterprise)
    group = (
        DirectoryGroup.objects.select_for_update(of=("self",))
        .select_related("enterprise")
        .get(pk=group.pk)
    )
    _ensure_group_version(if_match, group)
    members = list(group.members.order_by("pk"))
    _touch_users(group.enterprise, {u.pk for u in members})
    audit.record(
        actor=actor,
        action="directory_group.deleted",
        enterprise=group.enterprise,
        target=group,
        changes={"displayName": [group.display_name, None]} | _membership_changes(members, []),
    )
    group.delete()
