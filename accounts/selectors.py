"""Reads for accounts; each starts from the tenant."""

from datetime import date, datetime, time
from typing import Any

from django.db.models import CharField, Count, Exists, Max, OuterRef, Q, QuerySet
from django.db.models.functions import Cast
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from oauth2_provider.models import get_application_model

from .models import ApiToken, AuditEvent, ClientRegistration, Enterprise, Invitation, User


def users_for_enterprise(
    enterprise: Enterprise, *, q: str = "", role: str = "", status: str = ""
) -> QuerySet[User]:
    users: QuerySet[User] = User.objects.for_enterprise(enterprise).annotate(
        has_authenticator=Exists(TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True))
    )
    if q:
        users = users.filter(Q(full_name__icontains=q) | Q(email__icontains=q))
    if role:
        users = users.filter(role=role)
    if status:
        users = users.filter(status=status)
    return users.order_by("full_name", "email")


def user_counts(enterprise: Enterprise) -> dict[str, int]:
    """Users of the enterprise by status, plus the total, in one query."""
    counts: dict[str, int] = User.objects.for_enterprise(enterprise).aggregate(
        total=Count("id"),
        **{status: Count("id", filter=Q(status=status)) for status in User.Status.values},
    )
    return counts


def pending_invitations(enterprise: Enterprise) -> QuerySet[Invitation]:
    return Invitation.objects.for_enterprise(enterprise).filter(
        accepted_at=None, revoked_at=None, expires_at__gt=timezone.now()
    )


def api_tokens(enterprise: Enterprise, purpose: str = ApiToken.Purpose.API) -> QuerySet[ApiToken]:
    return (
        ApiToken.objects.for_enterprise(enterprise)
        .filter(purpose=purpose)
        .select_related("created_by")
    )


def api_tokens_created_by(user: User) -> QuerySet[ApiToken]:
    """The API and SCIM tokens a person created that still work: they belong to the
    enterprise, so the person's offboarding alone leaves them active."""
    return ApiToken.objects.for_enterprise(user.enterprise).filter(
        created_by=user, revoked_at__isnull=True
    )


def _start_of(day: date, *, end: bool = False) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.max if end else time.min))


def audit_events(
    enterprise: Enterprise,
    *,
    q: str = "",
    actor_kind: str = "",
    since: date | None = None,
    until: date | None = None,
    target: tuple[str, str] | None = None,
    person: str = "",
    kind: str = "",
) -> QuerySet[AuditEvent]:
    """The enterprise's trail, newest first, with the acting person (sentences name
    them). ``person``: what a person (name or email) did, and what was done to them;
    ``kind``: events about one kind of object (its ``target_type``)."""
    events = AuditEvent.objects.for_enterprise(enterprise).select_related("actor_user")
    if q:
        events = events.filter(
            Q(actor_label__icontains=q) | Q(target_label__icontains=q) | Q(action__icontains=q)
        )
    if actor_kind:
        events = events.filter(actor_kind=actor_kind)
    if since:
        events = events.filter(created_at__gte=_start_of(since))
    if until:
        events = events.filter(created_at__lte=_start_of(until, end=True))
    if target:
        events = events.filter(target_type=target[0], target_id=target[1])
    if person:
        people = User.objects.for_enterprise(enterprise).filter(
            Q(full_name__icontains=person) | Q(email__icontains=person)
        )
        ids = people.annotate(text_id=Cast("pk", CharField())).values("text_id")
        events = events.filter(
            Q(actor_user__in=people.values("pk"))
            | Q(target_type="accounts.user", target_id__in=ids)
        )
    if kind:
        events = events.filter(target_type=kind)
    return events.order_by("-created_at", "-id")


def oidc_clients(enterprise: Enterprise) -> QuerySet[ClientRegistration]:
    """The client apps the enterprise's people may sign in to: its own and network-wide ones."""
    return (
        ClientRegistration.objects.filter(Q(enterprise=enterprise) | Q(enterprise=None))
        .select_related("application")
        .order_by("application__name")
    )


def connected_apps(user: User) -> QuerySet[Any]:
    """The apps holding access tokens for the person, with how many and the latest."""
    # django-oauth-toolkit has no hints: its application model is Any here.
    apps: QuerySet[Any] = (
        get_application_model()
        .objects.filter(accesstoken__user=user)
        .annotate(tokens=Count("accesstoken"), last_issued=Max("accesstoken__created"))
        .order_by("name")
    )
    return apps
