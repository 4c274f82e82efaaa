"""Writes for enterprises, users, invitations, second factors and API tokens.

Each service is one transaction: it validates, writes the rows and an audit row, and
queues side effects (emails) with ``transaction.on_commit``.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.mail.backends.base import BaseEmailBackend
from django.db import IntegrityError, models, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from kernel import enqueue
from kernel.credentials import hash_secret, new_secret
from kernel.errors import RuleViolation

from . import audit, selectors
from .audit import Actor, ensure_writable  # noqa: F401 - services' callers use it
from .models import (
    ApiToken,
    Enterprise,
    Invitation,
    NetworkClient,
    Notification,
    Role,
    ServiceContract,
    User,
    time_zone_names,
)

log = logging.getLogger(__name__)

USER_FIELDS = ["email", "full_name", "role", "status"]
CONTRACT_FIELDS = [
    "may_create_identities",
    "may_authenticate_users",
    "identity_quota",
    "allowed_services",
    "max_ues_per_user",
    "ue_limit_policy",
    "employee_2fa_required",
    "deactivation_grace_days",
]
BACKUP_CODE_COUNT = 10
# Role.values builds its list anew at each call: once here, for each row of an import.
ROLES = frozenset(Role.values)


def ensure_may_change(actor: Actor, enterprise: Enterprise | None) -> None:
    """The actor may change this enterprise now: it is theirs, and, for the enterprise's
    own people and tokens, not suspended. Checked early for a clear refusal before any
    work; ``audit.record`` checks the suspension again for every change."""
    actor.ensure_acts_for(enterprise)
    actor.ensure_may_change(enterprise)


def _full_clean(
    obj: models.Model, exclude: list[str] | None = None, *, unique: bool = True
) -> None:
    """``full_clean`` as one RuleViolation. ``unique=False`` leaves uniqueness and the
    table's constraints to a check the caller made (and to the database)."""
    try:
        obj.full_clean(exclude=exclude, validate_unique=unique, validate_constraints=unique)
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise RuleViolation(
            "; ".join(messages), code="invalid", field=None if field == "__all__" else field
        ) from exc


# --- Enterprises (operator staff) -----------------------------------------------------


@transaction.atomic
def enterprise_create(
    *, actor: Actor, name: str, slug: str, sip_domain: str, **contract_terms: Any
) -> Enterprise:
    """A new tenant with its service contract."""
    enterprise = Enterprise(name=name, slug=slug, sip_domain=sip_domain.lower())
    _full_clean(enterprise)
    enterprise.save()
    contract = ServiceContract(enterprise=enterprise, **contract_terms)
    _full_clean(contract, exclude=["enterprise"])
    contract.save()
    audit.record(
        actor=actor,
        action="enterprise.created",
        enterprise=enterprise,
        target=enterprise,
        changes=audit.diff({}, audit.snapshot(contract, CONTRACT_FIELDS)),
    )
    return enterprise


@transaction.atomic
def enterprise_set_status(*, actor: Actor, enterprise: Enterprise, status: str) -> Enterprise:
    """Suspend or reactivate a tenant. Suspension blocks its admins' changes."""
    if status not in Enterprise.Status.values:
        raise RuleViolation(f"Unknown status {status!r}.", field="status")
    before = enterprise.status
    if before == status:
        return enterprise
    enterprise.status = status
    enterprise.save(update_fields=["status"])
    audit.record(
        actor=actor,
        action=f"enterprise.{'suspended' if status == Enterprise.Status.SUSPENDED else 'resumed'}",
        enterprise=enterprise,
        target=enterprise,
        changes=audit.changed(status=(before, status)),
    )
    return enterprise


# --- Users and invitations ------------------------------------------------------------


def address_unavailable(email: str) -> str:
    """The answer when an address belongs to an account outside the asking enterprise.
    The same words whoever holds it, another enterprise or operator staff, so that an
    enterprise learns only that the address cannot be used (pentest finding F-04)."""
    return f"{email} cannot be used for an account here; use another address."


def _ensure_address_free(
    enterprise: Enterprise | None, email: str, *, exclude: User | None = None
) -> None:
    """Refuse an address another account holds, naming that account's holder only when
    it is of the same enterprise (F-04)."""
    holder = User.objects.filter(email__iexact=email).exclude(pk=getattr(exclude, "pk", None))
    holder = holder.first()
    if holder is not None:
        message = (
            f"{email} already has an account."
            if enterprise is not None and holder.enterprise_id == enterprise.pk
            else address_unavailable(email)
        )
        raise RuleViolation(message, code="duplicate", field="email")


def normalised_email(email: str) -> str:
    """An address as accounts keep it: lower case."""
    address: str = User.objects.normalize_email(email)
    return address.strip().lower()


@transaction.atomic
def user_invite(
    *,
    actor: Actor,
    enterprise: Enterprise,
    email: str,
    full_name: str,
    role: str,
    send_invitation: bool = True,
) -> User:
    """Create an invited user and email them a one-time link to set a password (or,
    with ``send_invitation=False``, leave the invitation for an admin to send later)."""
    ensure_may_change(actor, enterprise)
    email = normalised_email(email)
    _ensure_address_free(enterprise, email)
    user = new_member(enterprise=enterprise, email=email, full_name=full_name, role=role)
    members_invited(actor=actor, enterprise=enterprise, users=[user], send=send_invitation)
    return user


def new_member(*, enterprise: Enterprise, email: str, full_name: str, role: str) -> User:
    """An invited member of the enterprise, checked, not saved yet. Its address is
    normalised and free: the caller has looked (``_ensure_address_free``, or one query
    for many addresses)."""
    if role not in ROLES:
        raise RuleViolation(f"Unknown role {role!r}.", field="role")
    user = User(
        email=email,
        full_name=full_name.strip(),
        enterprise=enterprise,
        role=role,
        status=User.Status.INVITED,
    )
    user.set_unusable_password()
    # Not the enterprise either: the caller's, a row (validating it is a query a user).
    _full_clean(user, exclude=["password", "enterprise"], unique=False)
    return user


def members_invited(*, actor: Actor, enterprise: Enterprise, users: list[User], send: bool) -> None:
    """Save new members (``new_member``) with their audit rows, in one INSERT each, and
    their invitations, sent in batches once the transaction commits (with ``send``)."""
    User.objects.bulk_create(users)
    audit.record_many(
        action="user.invited",
        entries=[
            audit.Entry(
                actor,
                enterprise,
                audit.diff({}, audit.snapshot(user, USER_FIELDS)),
                target=user,
            )
            for user in users
        ],
    )
    if send:
        _new_invitations(actor=actor, users=users)


def _revoke_open_invitations(user: User) -> int:
    """Stop every link of the user's that could still be accepted; how many there were."""
    return Invitation.objects.filter(user=user, accepted_at=None, revoked_at=None).update(
        revoked_at=timezone.now()
    )


def _new_invitation(*, actor: Actor, user: User) -> Invitation:
    return _new_invitations(actor=actor, users=[user])[0]


# Invitations one task emails: a file's thousands go out without a task each.
INVITATION_BATCH = 50


def _new_invitations(*, actor: Actor, users: list[User]) -> list[Invitation]:
    deliver_invitations = enqueue.task("accounts.tasks.deliver_invitations")

    invitations = Invitation.objects.bulk_create(
        Invitation(
            enterprise=user.member_of,
            user=user,
            created_by=actor.user,
            expires_at=Invitation.default_expiry(),
        )
        for user in users
    )
    ids = [invitation.pk for invitation in invitations]
    for start in range(0, len(ids), INVITATION_BATCH):

        def deliver(batch: list[int] = ids[start : start + INVITATION_BATCH]) -> None:
            deliver_invitations.delay(batch)

        transaction.on_commit(deliver, robust=True)
    return invitations


@transaction.atomic
def invitation_resend(*, actor: Actor, user: User) -> Invitation:
    """Revoke the user's open invitations and send a fresh one."""
    ensure_may_change(actor, user.enterprise)
    if user.status != User.Status.INVITED:
        raise RuleViolation(f"{user.email} has already joined; there is nothing to resend.")
    _revoke_open_invitations(user)
    invitation = _new_invitation(actor=actor, user=user)
    audit.record(
        actor=actor, action="user.invitation_resent", enterprise=user.enterprise, target=user
    )
    return invitation


def invitation_deliver(*, invitation_id: int, connection: BaseEmailBackend | None = None) -> None:
    """Mint the invitation's secret and email the link (a new session with the mail
    server). Runs in a worker; raises OSError when the mail server does not take it,
    for the task to retry. A second delivery finds it already sent and does nothing."""
    if invitations_deliver(invitation_ids=[invitation_id], connection=connection):
        raise ConnectionError("the mail server did not take the invitation")


@transaction.atomic
def invitations_deliver(
    *, invitation_ids: list[int], connection: BaseEmailBackend | None = None
) -> list[int]:
    """Mint the secrets of these invitations and email their links over ``connection``
    (a session with the mail server that the batch shares). Returns those the mail
    server refused: nothing of them was written, and each goes on in a retrying task.

    The secret exists only in the email; the database keeps its hash. The pending ones
    are locked and read in one statement and the hashes of those sent written in one,
    committed once: a batch, not three round trips and a disk flush per email. A worker
    that dies mid-batch commits nothing; what it emailed then carries a link that does
    not work, and the sweep sends those again (``invitations_sweep``)."""
    pending = (
        Invitation.objects.select_for_update(of=("self",))
        .select_related("user", "enterprise")
        .filter(pk__in=invitation_ids, sent_at=None)
        .order_by("pk")
    )
    sent, refused = [], []
    for invitation in pending:
        if invitation.state != "pending":
            continue
        raw, token_hash = new_secret("inv")
        context = {
            "invitation": invitation,
            "user": invitation.user,
            "enterprise": invitation.enterprise,
            # The secret rides in the fragment, which browsers never send: it stays out of
            # every access log and Referer (pentest F-05); the page posts it.
            "link": f"{settings.PORTAL_BASE_URL}{reverse('accounts:invitation')}#{raw}",
            "operator_name": settings.OPERATOR_NAME,
        }
        try:
            send_mail(
                subject=f"You are invited to the {invitation.enterprise.name} business "
                "telephony portal",
                message=render_to_string("emails/invitation.txt", context),
                from_email=None,
                recipient_list=[invitation.user.email],
                connection=connection,
            )
        except OSError:
            log.warning("the mail server did not take invitation %s", invitation.pk)
            refused.append(invitation.pk)
            continue
        invitation.token_hash, invitation.sent_at = token_hash, timezone.now()
        sent.append(invitation)
    Invitation.objects.bulk_update(sent, ["token_hash", "sent_at"])
    return refused


def invitations_sweep() -> int:
    """Queue again invitations whose email task was lost (e.g. the broker was down when
    the invitation was made). Periodic."""
    deliver_invitation = enqueue.task("accounts.tasks.deliver_invitation")

    cutoff = timezone.now() - timedelta(seconds=settings.SYNC_SWEEP_AFTER_SECONDS)
    unsent = Invitation.objects.filter(
        sent_at=None, accepted_at=None, revoked_at=None, created_at__lt=cutoff,
        expires_at__gt=timezone.now(),
    ).values_list("pk", flat=True)[:1000]  # fmt: skip
    ids = list(unsent)
    for pk in ids:
        deliver_invitation.delay(pk)
    return len(ids)


def invitation_for_secret(raw: str) -> Invitation | None:
    return (
        Invitation.objects.select_related("user", "enterprise")
        .filter(token_hash=hash_secret(raw))
        .first()
    )


# Invitation links of the earlier form carried the secret in the path (in access logs,
# proxies, Referer). Only invitations created before this release have such links, so
# that route opens theirs only, and ends once the last of them has expired.
PATH_LINKS_BEFORE = datetime(2026, 12, 7, tzinfo=UTC)


def invitation_for_path_link(raw: str) -> Invitation | None:
    """The invitation a link of the earlier form names, while it may be opened so."""
    if timezone.now() >= PATH_LINKS_BEFORE + settings.INVITATION_VALIDITY:
        return None
    invitation = invitation_for_secret(raw)
    if invitation is None or invitation.created_at >= PATH_LINKS_BEFORE:
        return None
    return invitation


INVITATION_PROBLEMS = {
    "accepted": "This invitation has already been used. Sign in, or reset your password.",
    "revoked": "This invitation was replaced by a newer one. Use the link in the latest email.",
    "expired": "This invitation has expired. Ask your administrator to send a new one.",
}


@transaction.atomic
def invitation_accept(*, raw_secret: str, password: str, ip: str | None = None) -> User:
    """The invitee sets a password; the account becomes active. One use only."""
    invitation = (
        Invitation.objects.select_for_update()
        .select_related("user", "enterprise")
        .filter(token_hash=hash_secret(raw_secret))
        .first()
    )
    if invitation is None:
        raise RuleViolation("This invitation link is not valid.", code="invalid_invitation")
    if invitation.state != "pending":
        raise RuleViolation(
            INVITATION_PROBLEMS[invitation.state], code=f"invitation_{invitation.state}"
        )
    user = invitation.user
    if user.status != User.Status.INVITED:
        raise RuleViolation(INVITATION_PROBLEMS["accepted"], code="invitation_accepted")
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise RuleViolation(" ".join(exc.messages), code="weak_password", field="password") from exc
    user.set_password(password)
    user.status = User.Status.ACTIVE
    user.save(update_fields=["password", "status"])
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    audit.record(
        actor=Actor(user=user, ip=ip),
        action="user.joined",
        enterprise=user.enterprise,
        target=user,
        changes=audit.changed(status=(User.Status.INVITED, User.Status.ACTIVE)),
    )
    return user


def _ensure_keeps_an_admin(
    user: User, *, new_role: str | None = None, leaving: bool = False
) -> None:
    """An enterprise must keep at least one active admin, or nobody can manage it."""
    if user.role != Role.ADMIN or user.status != User.Status.ACTIVE:
        return
    if not leaving and new_role in (None, Role.ADMIN):
        return
    others = (
        User.objects.for_enterprise(user.enterprise)
        .active()
        .filter(role=Role.ADMIN)
        .exclude(pk=user.pk)
    )
    if not others.exists():
        raise RuleViolation(
            f"{user} is the only active admin of {user.enterprise}; appoint another admin first.",
            code="last_admin",
        )


def _ensure_not_self(actor: Actor, user: User, what: str) -> None:
    if actor.user is not None and actor.user.pk == user.pk:
        raise RuleViolation(f"You cannot {what} your own account.", code="self")


@transaction.atomic
def user_update(
    *, actor: Actor, user: User, full_name: str | None = None, role: str | None = None
) -> User:
    """Change a user's name or role."""
    ensure_may_change(actor, user.enterprise)
    before = audit.snapshot(user, USER_FIELDS)
    if role is not None and role != user.role:
        if role not in Role.values:
            raise RuleViolation(f"Unknown role {role!r}.", field="role")
        _ensure_not_self(actor, user, "change the role of")
        _ensure_keeps_an_admin(user, new_role=role)
        user.role = role
    if full_name is not None:
        user.full_name = full_name.strip()
    _full_clean(user, exclude=["password"])
    changes = audit.diff(before, audit.snapshot(user, USER_FIELDS))
    if changes:
        user.save(update_fields=[*changes])
        audit.record(
            actor=actor,
            action="user.updated",
            enterprise=user.enterprise,
            target=user,
            changes=changes,
        )
    return user


@transaction.atomic
def user_change_email(*, actor: Actor, user: User, email: str) -> User:
    """A new sign-in address for the user (an identity provider renames them: Entra
    changes the UPN). The address stays unique across all accounts; sessions, second
    factors and identities are unchanged."""
    ensure_may_change(actor, user.enterprise)
    if user.status == User.Status.OFFBOARDED:
        raise RuleViolation(f"{user} is offboarded; their address cannot change.")
    email = User.objects.normalize_email(email).strip().lower()
    before = user.email
    if email == before:
        return user
    _ensure_address_free(user.enterprise, email, exclude=user)
    user.email = email
    _full_clean(user, exclude=["password"])
    try:
        with transaction.atomic():
            user.save(update_fields=["email"])
    except IntegrityError as exc:  # a concurrent request took the address: whose, unsaid
        raise RuleViolation(address_unavailable(email), code="duplicate", field="email") from exc
    audit.record(
        actor=actor,
        action="user.email_changed",
        enterprise=user.enterprise,
        target=user,
        changes=audit.changed(email=(before, email)),
    )
    if user.status == User.Status.INVITED and _revoke_open_invitations(user):
        # The pending link went to the old address: it stops working, the new one gets
        # a fresh invitation.
        _new_invitation(actor=actor, user=user)
        audit.record(
            actor=actor, action="user.invitation_resent", enterprise=user.enterprise, target=user
        )
    return user


def _set_status(actor: Actor, user: User, status: str, action: str) -> User:
    before = user.status
    user.status = status
    user.save(update_fields=["status"])
    audit.record(
        actor=actor,
        action=action,
        enterprise=user.enterprise,
        target=user,
        changes=audit.changed(status=(before, status)),
    )
    return user


@transaction.atomic
def user_suspend(*, actor: Actor, user: User) -> User:
    """Block sign-in for now; the user's sessions end, and stay ended after resuming."""
    ensure_may_change(actor, user.enterprise)
    _ensure_not_self(actor, user, "suspend")
    if user.status != User.Status.ACTIVE:
        raise RuleViolation(f"Only an active user can be suspended; {user} is {user.status}.")
    _ensure_keeps_an_admin(user, leaving=True)
    _revoke_app_tokens(user)
    _end_sessions(user)
    return _set_status(actor, user, User.Status.SUSPENDED, "user.suspended")


@transaction.atomic
def user_resume(*, actor: Actor, user: User) -> User:
    ensure_may_change(actor, user.enterprise)
    if user.status != User.Status.SUSPENDED:
        raise RuleViolation(f"Only a suspended user can be resumed; {user} is {user.status}.")
    return _set_status(actor, user, User.Status.ACTIVE, "user.resumed")


@transaction.atomic
def user_offboard(*, actor: Actor, user: User) -> User:
    """The leaver's account: closed for good, password and second factors removed,
    open invitations revoked. Telephony teardown is added by the identities flow."""
    ensure_may_change(actor, user.enterprise)
    _ensure_not_self(actor, user, "offboard")
    if user.status == User.Status.OFFBOARDED:
        raise RuleViolation(f"{user} is already offboarded.")
    _ensure_keeps_an_admin(user, leaving=True)
    Invitation.objects.filter(user=user, accepted_at=None, revoked_at=None).update(
        revoked_at=timezone.now()
    )
    _delete_second_factors(user)
    _revoke_app_tokens(user)
    # A new password hash also invalidates every session the user still holds.
    user.set_unusable_password()
    user.save(update_fields=["password"])
    return _set_status(actor, user, User.Status.OFFBOARDED, "user.offboarded")


@transaction.atomic
def user_deactivate(*, actor: Actor, user: User) -> User:
    """The account's part of a reversible deactivation: sign-in blocked, sessions ended
    (for good: reactivation asks to sign in again), app tokens revoked, an open invitation withdrawn; password and
    second factors kept for reactivation. Identities and grants: ``telephony``."""
    ensure_may_change(actor, user.enterprise)
    _ensure_not_self(actor, user, "deactivate")
    if user.status not in (User.Status.ACTIVE, User.Status.INVITED, User.Status.SUSPENDED):
        raise RuleViolation(f"{user} is {user.get_status_display().lower()}; not deactivated.")
    _ensure_keeps_an_admin(user, leaving=True)
    Invitation.objects.filter(user=user, accepted_at=None, revoked_at=None).update(
        revoked_at=timezone.now()
    )
    _revoke_app_tokens(user)
    _end_sessions(user)
    user.status_before_deactivation = user.status
    user.deactivated_at = timezone.now()
    user.save(update_fields=["status_before_deactivation", "deactivated_at"])
    return _set_status(actor, user, User.Status.DEACTIVATED, "user.deactivated")


def reactivation_deadline(user: User) -> datetime:
    """Until when a deactivated user can be reactivated."""
    if user.deactivated_at is None:
        raise RuleViolation(f"{user} is not deactivated.")
    grace = timedelta(days=user.member_of.contract.deactivation_grace_days)
    return user.deactivated_at + grace


@transaction.atomic
def user_reactivate(*, actor: Actor, user: User) -> User:
    """Undo ``user_deactivate`` within the grace period: the former status back (an
    invited user gets a new invitation)."""
    ensure_may_change(actor, user.enterprise)
    if user.status != User.Status.DEACTIVATED:
        raise RuleViolation(f"Only a deactivated user can be reactivated; {user} is {user.status}.")
    if timezone.now() >= reactivation_deadline(user):
        raise RuleViolation(
            f"The grace period to reactivate {user} ended; their offboarding is due.",
            code="grace_period_over",
        )
    status = user.status_before_deactivation or User.Status.ACTIVE
    user.status_before_deactivation = ""
    user.deactivated_at = None
    user.save(update_fields=["status_before_deactivation", "deactivated_at"])
    _set_status(actor, user, status, "user.reactivated")
    if status == User.Status.INVITED:
        _new_invitation(actor=actor, user=user)
    return user


def _end_sessions(user: User) -> None:
    """Every browser session of the user ends: its stored hash no longer matches."""
    user.sessions_ended_at = timezone.now()
    user.save(update_fields=["sessions_ended_at"])


def _revoke_app_tokens(user: User) -> None:
    """Every OpenID Connect token the user holds stops working at once."""
    from .oidc import revoke_tokens

    revoked = revoke_tokens(user)
    if revoked:
        audit.record(
            actor=Actor.system(),
            action="oidc.tokens_revoked",
            enterprise=user.enterprise,
            target=user,
            changes=audit.changed(tokens=(revoked, 0)),
        )


@transaction.atomic
def user_set_time_zone(*, actor: Actor, user: User, time_zone: str) -> User:
    """The zone every time is shown in for this person; "" for the browser's own."""
    if time_zone and time_zone not in time_zone_names():
        raise RuleViolation(
            f"“{time_zone}” is not a time zone; choose one from the list.",
            code="bad_time_zone",
            field="time_zone",
        )
    before = user.time_zone
    if before != time_zone:
        user.time_zone = time_zone
        user.save(update_fields=["time_zone"])
        audit.record(
            actor=actor,
            action="user.time_zone_changed",
            enterprise=user.enterprise,
            target=user,
            changes=audit.changed(time_zone=(before or "browser's", time_zone or "browser's")),
            changes_enterprise=False,
        )
    return user


@transaction.atomic
def audit_export_recorded(*, actor: Actor, enterprise: Enterprise) -> None:
    """Record in the trail that someone took the trail away."""
    actor.ensure_acts_for(enterprise)
    audit.record(
        actor=actor, action="audit.exported", enterprise=enterprise, changes_enterprise=False
    )


@transaction.atomic
def user_set_password(
    *, actor: Actor, user: User, password: str, action: str = "user.password_changed"
) -> User:
    """A new password chosen by the user (change, or reset by emailed link)."""
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise RuleViolation(" ".join(exc.messages), code="weak_password", field="password") from exc
    user.set_password(password)
    user.save(update_fields=["password"])
    audit.record(
        actor=actor,
        action=action,
        enterprise=user.enterprise,
        target=user,
        changes_enterprise=False,
    )
    return user


# --- Second factor --------------------------------------------------------------------


def _delete_second_factors(user: User) -> None:
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()


def totp_device_for_enrolment(user: User) -> TOTPDevice:
    """The user's pending (unconfirmed) authenticator, made on first visit."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)
    return device


def two_factor_verify(*, user: User, method: str, token: str) -> TOTPDevice | StaticDevice:
    """Check a second-factor code: one from the authenticator app (``method`` "totp")
    or one backup code ("backup"). Returns the device that verified it.

    The device row is locked so that concurrent guesses are counted one by one, and
    django-otp's throttle state (failures, next allowed try) is committed before a
    refusal is raised, so that wrong codes count even though they change nothing else.
    Nothing is audited here: a verified sign-in is, by ``user_signed_in``.
    """
    model = TOTPDevice if method == "totp" else StaticDevice
    with transaction.atomic():
        device = model.objects.select_for_update().filter(user=user, confirmed=True).first()
        allowed = device is not None and device.verify_is_allowed()[0]
        verified = allowed and device.verify_token(token)
    if device is None:
        raise RuleViolation("You have no device of that kind.", code="no_device")
    if not allowed:
        raise RuleViolation("Too many wrong codes. Wait a little and try again.", code="throttled")
    if not verified:
        raise RuleViolation("That code is not valid.", code="invalid_token")
    return device


@transaction.atomic
def two_factor_enrol(*, actor: Actor, user: User, device: TOTPDevice) -> list[str]:
    """Confirm a verified authenticator, replacing any earlier one, and issue fresh
    backup codes. Returns the codes: they are shown once."""
    if device.user_id != user.pk:
        raise RuleViolation("That authenticator belongs to someone else.")
    TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    codes = _issue_backup_codes(user)
    audit.record(
        actor=actor,
        action="user.2fa_enrolled",
        enterprise=user.enterprise,
        target=user,
        changes_enterprise=False,
    )
    return codes


@transaction.atomic
def backup_codes_regenerate(*, actor: Actor, user: User) -> list[str]:
    codes = _issue_backup_codes(user)
    audit.record(
        actor=actor,
        action="user.backup_codes_regenerated",
        enterprise=user.enterprise,
        target=user,
        changes_enterprise=False,
    )
    return codes


def _issue_backup_codes(user: User) -> list[str]:
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name="Backup codes", confirmed=True)
    # 10 characters from a 32-letter alphabet without look-alikes: 50 bits each.
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    codes = ["".join(secrets.choice(alphabet) for _ in range(10)) for _ in range(BACKUP_CODE_COUNT)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=c) for c in codes])
    return codes


@transaction.atomic
def two_factor_reset(*, actor: Actor, user: User) -> User:
    """Remove a user's second factors (lost phone); they enrol again at next sign-in."""
    ensure_may_change(actor, user.enterprise)
    _ensure_not_self(actor, user, "reset the second factor of")
    _delete_second_factors(user)
    audit.record(actor=actor, action="user.2fa_reset", enterprise=user.enterprise, target=user)
    return user


def user_signed_in(*, actor: Actor) -> None:
    if actor.user is None:
        raise TypeError("Only a person signs in.")
    audit.record(
        actor=actor,
        action="user.signed_in",
        enterprise=actor.user.enterprise,
        target=actor.user,
        changes_enterprise=False,
    )


# --- API tokens -----------------------------------------------------------------------


@transaction.atomic
def api_token_create(
    *,
    actor: Actor,
    enterprise: Enterprise,
    name: str,
    role: str,
    purpose: str = ApiToken.Purpose.API,
) -> tuple[ApiToken, str]:
    """A new token for the REST API or for SCIM provisioning; the raw value is returned
    once and never stored."""
    ensure_may_change(actor, enterprise)
    if role not in (Role.ADMIN, Role.HELPDESK):
        raise RuleViolation("A token is either read-and-write or read-only.", field="role")
    raw, key_hash = new_secret(ApiToken.PREFIXES[ApiToken.Purpose(purpose)])
    token = ApiToken(
        enterprise=enterprise,
        purpose=purpose,
        name=name.strip(),
        role=role,
        key_hash=key_hash,
        hint=raw[-4:],
        created_by=actor.user,
    )
    _full_clean(token)
    token.save()
    audit.record(
        actor=actor,
        action="api_token.created",
        enterprise=enterprise,
        target=token,
        changes=audit.created(name=token.name, role=token.role, purpose=token.purpose),
    )
    return token, raw


@transaction.atomic
def api_token_revoke(*, actor: Actor, token: ApiToken) -> ApiToken:
    actor.ensure_acts_for(token.enterprise)
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record(
            actor=actor, action="api_token.revoked", enterprise=token.enterprise, target=token
        )
    return token


@transaction.atomic
def api_tokens_revoke_created_by(*, actor: Actor, user: User) -> list[ApiToken]:
    """Revoke every token ``user`` created (API and SCIM), when an admin chooses to, e.g.
    at that person's offboarding; each revocation is audited as a single one would be."""
    tokens = list(selectors.api_tokens_created_by(user).select_for_update())
    for token in tokens:
        api_token_revoke(actor=actor, token=token)
    return tokens


# --- Network clients (operator staff) -------------------------------------------------


@transaction.atomic
def network_client_create(
    *, actor: Actor, name: str, enterprises: list[Enterprise]
) -> tuple[NetworkClient, str]:
    """A credential for a system of the IMS core; the raw value is returned once."""
    raw, key_hash = new_secret(NetworkClient.TOKEN_PREFIX)
    client = NetworkClient(name=name.strip(), key_hash=key_hash, hint=raw[-4:])
    _full_clean(client)
    client.save()
    client.enterprises.set(enterprises)
    audit.record(
        actor=actor,
        action="network_client.created",
        enterprise=None,
        target=client,
        changes=audit.created(name=client.name, enterprises=sorted(e.name for e in enterprises)),
    )
    return client, raw


@transaction.atomic
def network_client_revoke(*, actor: Actor, client: NetworkClient) -> NetworkClient:
    if client.revoked_at is None:
        client.revoked_at = timezone.now()
        client.save(update_fields=["revoked_at"])
        audit.record(actor=actor, action="network_client.revoked", enterprise=None, target=client)
    return client


# --- Notifications --------------------------------------------------------------------


def notify(
    *, user: User, kind: str, title: str, body: str = "", link: str = "", email: bool = False
) -> Notification:
    """Tell a person something in the portal, and by email if asked (after commit)."""
    email_notification = enqueue.task("accounts.tasks.email_notification")

    notification = Notification.objects.create(
        enterprise=user.member_of, user=user, kind=kind, title=title, body=body, link=link
    )
    if email:
        transaction.on_commit(lambda: email_notification.delay(notification.pk), robust=True)
    return notification


def notify_admins(
    *, enterprise: Enterprise, kind: str, title: str, body: str = "", link: str = ""
) -> None:
    for admin in User.objects.for_enterprise(enterprise).active().filter(role=Role.ADMIN):
        notify(user=admin, kind=kind, title=title, body=body, link=link)


def notification_email(*, notification_id: int) -> None:
    """Email one notification (a worker runs this)."""
    notification = Notification.objects.select_related("user").filter(pk=notification_id).first()
    if notification is None or not notification.user.is_active:
        return
    link = f"{settings.PORTAL_BASE_URL}{notification.link}" if notification.link else ""
    send_mail(
        subject=notification.title,
        message=render_to_string(
            "emails/notification.txt", {"notification": notification, "link": link}
        ),
        from_email=None,
        recipient_list=[notification.user.email],
    )


def notifications_mark_read(*, user: User, ids: list[int] | None = None) -> int:
    """Mark the user's notifications (or these ones of theirs) read."""
    unread = Notification.objects.filter(user=user, read_at=None)
    if ids is not None:
        unread = unread.filter(pk__in=ids)
    return unread.update(read_at=timezone.now())
