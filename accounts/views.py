import json
import math
import re
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm, SetPasswordForm
from django.contrib.auth.views import INTERNAL_RESET_SESSION_TOKEN
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import timezone
from django.utils.functional import cached_property
from django.views.decorators.http import require_GET, require_POST
from django_otp import login as otp_login
from django_otp import user_has_device
from oauth2_provider import views as oidc_views
from oauth2_provider.exceptions import OAuthToolkitError
from oauth2_provider.models import Application
from oauthlib.oauth2.rfc6749.errors import CustomOAuth2Error

from kernel import csvfile, fragments
from kernel.errors import RuleViolation
from kernel.forms import filter_criteria
from kernel.http import client_ip, object_id, safe_next_url
from kernel.pages import call_service
from kernel.pagination import PAGE_SIZE, paginate
from kernel.ratelimit import over_limit, used_up
from kernel.tenancy import get_for_enterprise_or_404

from . import oidc, selectors, services, trail
from .audit import Actor
from .decorators import ADMIN, ADMIN_OR_HELPDESK, enterprise_role_required
from .forms import (
    AcceptInvitationForm,
    ActiveUserPasswordResetForm,
    ApiTokenForm,
    AuditFilterForm,
    EnrolForm,
    InviteForm,
    LoginForm,
    OidcClientForm,
    TimeZoneForm,
    TokenForm,
    UserEditForm,
)
from .middleware import TIME_ZONE_COOKIE
from .models import ApiToken, ClientRegistration, User, time_zone_names
from .two_factor import SESSION_DEVICE_ENROLLED, base32_secret, needs_verification, qr_code_svg

SESSION_BACKUP_CODES = "fresh_backup_codes"
SESSION_NEW_API_TOKEN = "fresh_api_token"  # noqa: S105 - a session key name
SESSION_INVITATION = "invitation_secret"
INVITATION_SECRET_MAX = 200  # minted secrets are far shorter; bounds what a session keeps
RESET_SECRET_MAX = 200  # "<uidb64>/<token>" is under 80 characters
RESET_LINK_PART = re.compile(r"[A-Za-z0-9_-]+")  # base64url and Django's "<b36>-<hex>" token


def _safe_next(request):
    return safe_next_url(request, reverse("home"))


def _signed_in(request):
    """The session is fully authenticated: record it and go where the user was heading."""
    services.user_signed_in(actor=Actor.from_request(request))
    return redirect(_safe_next(request))


# --- Sign-in and the second factor ----------------------------------------------------


class LoginView(auth_views.LoginView):
    form_class = LoginForm
    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form):
        auth_login(self.request, form.get_user())
        if user_has_device(self.request.user):
            self.request.session[SESSION_DEVICE_ENROLLED] = True
        if needs_verification(self.request):
            target = reverse("accounts:two_factor")
            return redirect(f"{target}?{self.request.GET.urlencode()}")
        return _signed_in(self.request)


@login_required
def two_factor(request):
    """The gate after the password: verify with a device, or enrol one first."""
    user = request.user
    if user.is_verified():
        return redirect(_safe_next(request))
    if not user_has_device(user):
        return redirect(f"{reverse('accounts:two_factor_setup')}?{request.GET.urlencode()}")
    form = TokenForm(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        otp_login(request, form.device)
        request.session.pop(SESSION_DEVICE_ENROLLED, None)
        return _signed_in(request)
    return render(request, "accounts/two_factor_verify.html", {"form": form})


@login_required
def two_factor_setup(request):
    """Enrol an authenticator app: QR code, then a code from the app to confirm it."""
    user = request.user
    if user_has_device(user) and not user.is_verified():
        # Replacing an enrolled device needs the old one first.
        return redirect("accounts:two_factor")
    device = services.totp_device_for_enrolment(user)
    form = EnrolForm(device, request.POST or None)
    if request.method == "POST" and form.is_valid():
        first_sign_in = not user.is_verified()
        codes = services.two_factor_enrol(
            actor=Actor.from_request(request), user=user, device=device
        )
        otp_login(request, device)
        request.session[SESSION_BACKUP_CODES] = codes
        if first_sign_in:
            services.user_signed_in(actor=Actor.from_request(request))
        messages.success(request, "Your authenticator app is set up.")
        return redirect(f"{reverse('accounts:backup_codes')}?{request.GET.urlencode()}")
    context = {
        "form": form,
        "qr_svg": qr_code_svg(device),
        "secret": base32_secret(device),
        "replacing": user_has_device(user),
    }
    return render(request, "accounts/two_factor_setup.html", context)


@login_required
def backup_codes(request):
    """Shows freshly issued backup codes once; afterwards only how many are left."""
    codes = request.session.pop(SESSION_BACKUP_CODES, None)
    return render(
        request, "accounts/backup_codes.html", {"codes": codes, "next": _safe_next(request)}
    )


@login_required
@require_POST
def backup_codes_new(request):
    if not request.user.is_verified():
        # Only a session that has shown its second factor may mint new backup codes.
        raise PermissionDenied
    codes = services.backup_codes_regenerate(actor=Actor.from_request(request), user=request.user)
    request.session[SESSION_BACKUP_CODES] = codes
    return redirect("accounts:backup_codes")


# --- Own account ----------------------------------------------------------------------


@login_required
def profile(request):
    from django_otp.plugins.otp_static.models import StaticToken
    from django_otp.plugins.otp_totp.models import TOTPDevice

    context = {
        "authenticator": TOTPDevice.objects.filter(user=request.user, confirmed=True).first(),
        "backup_codes_left": StaticToken.objects.filter(device__user=request.user).count(),
        "time_zone_form": _time_zone_form(request, initial={"time_zone": request.user.time_zone}),
    }
    return render(request, "accounts/profile.html", context)


def _time_zone_form(request, **kwargs) -> TimeZoneForm:
    browser = request.COOKIES.get(TIME_ZONE_COOKIE, "")
    return TimeZoneForm(browser_zone=browser if browser in time_zone_names() else "", **kwargs)


@login_required
@require_POST
def time_zone(request):
    form = _time_zone_form(request, data=request.POST)
    if form.is_valid():
        services.user_set_time_zone(
            actor=Actor.from_request(request),
            user=request.user,
            time_zone=form.cleaned_data["time_zone"],
        )
        messages.success(request, "Times are now shown in your chosen zone.")
    else:
        messages.error(request, "Choose a time zone from the list.")
    return redirect("accounts:profile")


class AuditedPasswordForm(SetPasswordForm):
    """Sets the password through the service, so that the change is audited."""

    def __init__(self, user, *args, request=None, action="user.password_changed", **kwargs):
        super().__init__(user, *args, **kwargs)
        self.request = request
        self.action = action

    def save(self, commit=True):
        services.user_set_password(
            actor=Actor(user=self.user, ip=client_ip(self.request) if self.request else None),
            user=self.user,
            password=self.cleaned_data["new_password1"],
            action=self.action,
        )
        return self.user


class AuditedPasswordChangeForm(AuditedPasswordForm, PasswordChangeForm):
    pass


class PasswordChangeView(auth_views.PasswordChangeView):
    form_class = AuditedPasswordChangeForm
    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("accounts:profile")

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "request": self.request}

    def form_valid(self, form):
        messages.success(self.request, "Your password has been changed.")
        return super().form_valid(form)


def _link_open_page(request, *, what, missing, action="", secret=""):
    """The page an emailed link leads to. Its secret is in the URL fragment, which never
    reaches a server; the page's script (``portal/link-secret.js``) posts it to this same
    URL (or ``action``). So no access log, proxy or Referer ever carries it. A ``secret``
    already known (a link of the earlier form) is posted by the person, with a button."""
    return render(
        request,
        "accounts/link_open.html",
        {"title": what.capitalize(), "what": what, "missing": missing}
        | {"action": action, "secret": secret},
    )


class PasswordResetView(auth_views.PasswordResetView):
    form_class = ActiveUserPasswordResetForm
    template_name = "accounts/password_reset.html"
    email_template_name = "emails/password_reset.txt"
    subject_template_name = "emails/password_reset_subject.txt"
    success_url = reverse_lazy("accounts:password_reset_done")

    # Django reads an attribute; this one is computed from the settings at request time.
    @property
    def extra_email_context(self):  # type: ignore[override]
        # The email appends "#<uid>/<token>" (templates/emails/password_reset.txt).
        return {"link": f"{settings.PORTAL_BASE_URL}{reverse('accounts:password_reset_link')}"}


def password_reset_link(request):
    """Where the reset link leads: ``#<uidb64>/<token>``. The token goes to the session
    under Django's own key, as Django's first request would put it there, and the form
    opens at a URL without it."""
    if request.method != "POST":
        return _link_open_page(request, what="password reset link", missing="or ask for a new one.")
    secret = request.POST.get("secret", "")
    uidb64, _, token = secret.partition("/")
    parts_ok = RESET_LINK_PART.fullmatch(uidb64) and RESET_LINK_PART.fullmatch(token)
    if len(secret) > RESET_SECRET_MAX or not parts_ok:
        return render(request, "accounts/password_reset_confirm.html", {"validlink": False})
    request.session[INTERNAL_RESET_SESSION_TOKEN] = token
    return redirect("accounts:password_reset_confirm", uidb64=uidb64)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    form_class = AuditedPasswordForm
    template_name = "accounts/password_reset_confirm.html"
    success_url = reverse_lazy("accounts:password_reset_complete")

    def get_form_kwargs(self):
        return {
            **super().get_form_kwargs(),
            "request": self.request,
            "action": "user.password_reset",
        }


# --- Invitations ----------------------------------------------------------------------


def invitation(request):
    """Where the invitation link leads (``#inv_…``): the session keeps the posted secret
    for the clean accept page."""
    if request.method == "POST":
        secret = request.POST.get("secret", "")[:INVITATION_SECRET_MAX]
        if secret:
            request.session[SESSION_INVITATION] = secret
        return redirect("accounts:invitation_accept")
    return _link_open_page(
        request, what="invitation", missing="or ask your administrator to send a new one."
    )


def invitation_open(request, secret):
    """A link in the earlier form, with the secret in the path, for an invitation sent
    before the fragment form. A GET writes nothing (another site can send one): the
    person confirms, and the form posts the secret where the fragment page does."""
    secret = secret[:INVITATION_SECRET_MAX]
    if services.invitation_for_path_link(secret) is None:
        problem = "This invitation link is not valid. Check that you copied the whole link."
        return render(request, "accounts/invitation_problem.html", {"problem": problem}, status=410)
    return _link_open_page(
        request,
        what="invitation",
        missing="or ask your administrator to send a new one.",
        action=reverse("accounts:invitation"),
        secret=secret,
    )


def invitation_accept(request):
    secret = request.session.get(SESSION_INVITATION, "")
    invitation = services.invitation_for_secret(secret) if secret else None
    problem = None
    if invitation is None:
        problem = "This invitation link is not valid. Check that you copied the whole link."
    elif invitation.state != "pending":
        problem = services.INVITATION_PROBLEMS[invitation.state]
    if problem:
        return render(request, "accounts/invitation_problem.html", {"problem": problem}, status=410)
    form = AcceptInvitationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.invitation_accept(
                raw_secret=secret, password=form.cleaned_data["password"], ip=client_ip(request)
            )
        except RuleViolation as exc:
            form.add_rule_violation(exc)
        else:
            request.session.pop(SESSION_INVITATION, None)
            auth_login(request, user, backend="accounts.backends.EmailBackend")
            messages.success(request, f"Welcome, {user.full_name}.")
            return redirect("home")
    return render(
        request, "accounts/invitation_accept.html", {"form": form, "invitation": invitation}
    )


# --- Users of the enterprise ----------------------------------------------------------


@enterprise_role_required(ADMIN)
def user_invite(request):
    form = InviteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = call_service(
            request,
            lambda: services.user_invite(
                actor=Actor.from_request(request),
                enterprise=request.enterprise,
                **form.cleaned_data,
            ),
            success=lambda invited: f"Invitation sent to {invited.email}.",
            form=form,
        )
        if user is not None:
            return redirect("telephony:employee_detail", pk=user.pk)
    return render(request, "accounts/user_invite.html", {"form": form})


@enterprise_role_required(ADMIN)
def user_edit(request, pk):
    user = get_for_enterprise_or_404(User, request.enterprise, pk=pk)
    form = UserEditForm(
        request.POST or None, initial={"full_name": user.full_name, "role": user.role}
    )
    if (
        request.method == "POST"
        and form.is_valid()
        and call_service(
            request,
            lambda: services.user_update(
                actor=Actor.from_request(request), user=user, **form.cleaned_data
            ),
            success="Saved.",
            form=form,
        )
    ):
        return redirect("telephony:employee_detail", pk=user.pk)
    return render(request, "accounts/user_edit.html", {"form": form, "member": user})


# Account actions on a member: name -> (service, roles allowed, button label, style, applies).
# Offboarding is the telephony kill-switch, with its own confirmation page.
USER_ACTIONS = {
    "resend-invitation": (
        services.invitation_resend,
        ADMIN_OR_HELPDESK,
        "Resend invitation",
        "",
        lambda u: u.status == User.Status.INVITED,
    ),
    "suspend": (
        services.user_suspend,
        ADMIN,
        "Suspend sign-in",
        "warning",
        lambda u: u.status == User.Status.ACTIVE,
    ),
    "resume": (
        services.user_resume,
        ADMIN,
        "Resume sign-in",
        "",
        lambda u: u.status == User.Status.SUSPENDED,
    ),
    "reset-2fa": (
        services.two_factor_reset,
        ADMIN,
        "Reset second factor",
        "warning",
        lambda u: u.status == User.Status.ACTIVE,
    ),
}


def account_actions(viewer: User, member: User) -> list[tuple[str, str, str]]:
    """(name, label, style) of the account actions ``viewer`` may take on ``member``."""
    return [
        (name, label, style)
        for name, (_, roles, label, style, applies) in USER_ACTIONS.items()
        if viewer.role in roles and applies(member)
    ]


@enterprise_role_required(ADMIN_OR_HELPDESK)
@require_POST
def user_action(request, pk, action):
    if action not in USER_ACTIONS:
        raise PermissionDenied
    service, roles, label, _, _ = USER_ACTIONS[action]
    if request.user.role not in roles:
        raise PermissionDenied
    user = get_for_enterprise_or_404(User, request.enterprise, pk=pk)
    call_service(
        request,
        lambda: service(actor=Actor.from_request(request), user=user),
        success=f"{label}: done for {user}.",
    )
    return redirect("telephony:employee_detail", pk=user.pk)


# --- API tokens, audit trail, contract ------------------------------------------------


@enterprise_role_required(ADMIN)
def api_token_list(request):
    form = ApiTokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        created = call_service(
            request,
            lambda: services.api_token_create(
                actor=Actor.from_request(request),
                enterprise=request.enterprise,
                **form.cleaned_data,
            ),
            form=form,
        )
        if created is not None:
            request.session[SESSION_NEW_API_TOKEN] = created[1]
            return redirect("accounts:api_tokens")
    context = {
        "form": form,
        "tokens": selectors.api_tokens(request.enterprise),
        "new_token": request.session.pop(SESSION_NEW_API_TOKEN, None),
    }
    return render(request, "accounts/api_tokens.html", context)


@enterprise_role_required(ADMIN)
@require_POST
def api_token_revoke(request, pk):
    token = get_for_enterprise_or_404(ApiToken, request.enterprise, pk=pk)
    services.api_token_revoke(actor=Actor.from_request(request), token=token)
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect(safe_next_url(request, reverse("accounts:api_tokens")))


# The audit trail only grows: counting all of it on every view would cost more each
# day. Past this many entries the page says "more than" and the date filters go further.
AUDIT_COUNT_CAP = 10_000


class CappedPaginator(Paginator):
    """A paginator that counts at most ``cap`` objects (``capped`` tells whether there
    are more), so that a page costs the same however long the list has grown."""

    object_list: QuerySet[Any]

    def __init__(self, object_list: QuerySet[Any], per_page: int, *, cap: int, **kwargs: Any):
        super().__init__(object_list, per_page, **kwargs)
        self.cap = cap
        self.capped = False

    @cached_property
    def count(self) -> int:
        counted = self.object_list[: self.cap + 1].count()
        self.capped = counted > self.cap
        return min(counted, self.cap)


@enterprise_role_required(ADMIN_OR_HELPDESK)
def audit_list(request):
    filters = AuditFilterForm(request.GET or None)

    def parts() -> fragments.Parts:
        events = selectors.audit_events(request.enterprise, **filter_criteria(filters))
        paginator = CappedPaginator(events, PAGE_SIZE, cap=AUDIT_COUNT_CAP)
        return fragments.render(
            request,
            {"filters": "includes/filters.html", "table": "accounts/includes/audit_page.html"},
            {"filters": filters, "page": paginator.get_page(request.GET.get("page"))},
        )

    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "shown": fragments.cached(request, "audit", parts, shows_devices=True),
        "export_query": query.urlencode(),
    }
    return render(request, "accounts/audit_list.html", context)


@enterprise_role_required(ADMIN_OR_HELPDESK)
@require_GET
def audit_export(request):
    """The filtered trail as CSV, in the viewer's time zone; a filter that is not valid
    sends the admin back to the list, which says why."""
    filters = AuditFilterForm(request.GET or None)
    criteria = filter_criteria(filters)
    if filters.errors:
        return redirect(f"{reverse('accounts:audit')}?{request.GET.urlencode()}")
    enterprise = request.enterprise
    services.audit_export_recorded(actor=Actor.from_request(request), enterprise=enterprise)
    events = selectors.audit_events(enterprise, **criteria).iterator(chunk_size=2000)
    lines = trail.csv_lines(events, timezone.get_current_timezone())
    return csvfile.download(lines, f"{enterprise.slug}-audit-{timezone.localdate():%Y-%m-%d}.csv")


@enterprise_role_required(ADMIN_OR_HELPDESK)
def enterprise_detail(request):
    return render(request, "accounts/enterprise.html", {"contract": request.enterprise.contract})


# --- Notifications --------------------------------------------------------------------


@login_required
def notification_list(request):
    notifications = request.user.notifications.all()
    return render(
        request, "accounts/notifications.html", {"page": paginate(request, notifications)}
    )


def notification_badge(request):
    """The unread count in the navigation, which every page polls (templates/base.html)."""
    if not request.user.is_authenticated or request.enterprise is None:
        return HttpResponse(status=286)  # htmx's "stop polling": signed out meanwhile
    return render(request, "includes/notification_badge.html")


@login_required
@require_POST
def notifications_read(request):
    services.notifications_mark_read(user=request.user)
    return redirect(safe_next_url(request, reverse("accounts:notifications")))


# --- OpenID Connect --------------------------------------------------------------------


class OidcAuthorizationView(oidc_views.AuthorizationView):
    """django-oauth-toolkit's authorization endpoint, behind the portal's own sign-in and
    second factor, for users whose enterprise contract lets it authenticate them, and
    only towards their enterprise's (or network-wide) client applications.

    ``prompt=none`` never shows a page (OIDC Core §3.1.2.6): the app gets its code, or
    ``login_required``, ``consent_required`` or ``access_denied`` at its redirect URI;
    ``login_required`` too when its ``id_token_hint`` names someone else."""

    def dispatch(self, request, *args, **kwargs):
        silent = oidc.asks_silently(request)
        if silent and (not request.user.is_authenticated or needs_verification(request)):
            return self.refuse(request, "login_required", "Sign in to the portal first.")
        if request.user.is_authenticated:
            problem = None
            if not oidc.may_authenticate(request.user):
                problem = (
                    f"{settings.OPERATOR_NAME}'s contract with your enterprise does not include "
                    "signing in to telephony apps with your portal account."
                )
            else:
                application = Application.objects.filter(
                    client_id=request.GET.get("client_id", "")
                ).first()
                if application is not None and not oidc.client_allowed(application, request.user):
                    problem = "This app is not registered for your enterprise."
            if problem and silent:
                return self.refuse(request, "access_denied", problem)
            hint = request.GET.get("id_token_hint")
            if silent and hint and oidc.hinted_subject(hint) != str(request.user.pk):
                # The app asks about someone other than who is signed in here.
                return self.refuse(
                    request, "login_required", "You are signed in to the portal as someone else."
                )
            if problem:
                return render(
                    request, "accounts/oidc_refused.html", {"problem": problem}, status=403
                )
        return super().dispatch(request, *args, **kwargs)

    def get(self, request, *args, **kwargs):
        unknown = oidc.unknown_resources(request.GET.getlist("resource"))
        if unknown:
            return self.refuse(request, "invalid_target", f"Unknown resource: {unknown[0]}")
        response = super().get(request, *args, **kwargs)
        if oidc.asks_silently(request) and response.status_code == 200:
            # The consent page would have been shown.
            return self.refuse(request, "consent_required", "The app needs your consent.")
        return response

    def refuse(self, request, error: str, description: str):
        """Answer at the app's redirect URI (RFC 6749 §4.1.2.1) once the request is known
        to come from a registered client and redirect URI; otherwise show the error."""
        try:
            _, credentials = self.validate_authorization_request(request)
        except OAuthToolkitError as exc:
            return self.error_response(exc, application=None)
        application = Application.objects.get(client_id=credentials["client_id"])
        failure = OAuthToolkitError(
            error=CustomOAuth2Error(
                error=error, description=description, state=credentials.get("state")
            ),
            redirect_uri=credentials["redirect_uri"],
        )
        return self.error_response(failure, application)

    def redirect(self, redirect_to, application):
        # RFC 9207: "iss" in every authorization response, errors included.
        return super().redirect(oidc.with_issuer(redirect_to), application)


class OidcTokenView(oidc_views.TokenView):
    """django-oauth-toolkit's token endpoint, limited in refused requests per address
    (TOKEN_RATE_LIMIT), so that codes, refresh tokens and client secrets cannot be
    guessed at full speed. Only refusals count: the apps of a whole company behind one
    NAT address refresh their tokens unhindered."""

    def post(self, request, *args, **kwargs):
        address = str(client_ip(request))
        wait = used_up("token", address, settings.TOKEN_RATE_LIMIT)
        if wait is None:
            response = super().post(request, *args, **kwargs)
            if response.status_code in (400, 401):
                over_limit("token", address, settings.TOKEN_RATE_LIMIT)
            return response
        response = JsonResponse(
            {
                "error": "slow_down",
                "error_description": "Too many refused token requests from this address; "
                f"try again in {math.ceil(wait)} seconds.",
            },
            status=429,
        )
        response["Retry-After"] = str(math.ceil(wait))
        response["Cache-Control"] = "no-store"
        return response


class OidcDiscoveryView(oidc_views.ConnectDiscoveryInfoView):
    """The OpenID Provider metadata, advertising introspection and revocation too."""

    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        data = json.loads(response.content)
        base = settings.PORTAL_BASE_URL
        data.update(
            introspection_endpoint=f"{base}{reverse('oauth2_provider:introspect')}",
            introspection_endpoint_auth_methods_supported=["bearer"],
            revocation_endpoint=f"{base}{reverse('oauth2_provider:revoke-token')}",
            revocation_endpoint_auth_methods_supported=["none"],
            grant_types_supported=["authorization_code", "refresh_token"],
            id_token_signing_alg_values_supported=["RS256"],
        )
        response.content = json.dumps(data)
        return response


@enterprise_role_required(ADMIN)
def identity_provider(request):
    """SCIM provisioning and OpenID Connect settings of the enterprise."""
    token_form = (
        ApiTokenForm(request.POST or None, prefix="scim")
        if "scim-name" in request.POST
        else ApiTokenForm(prefix="scim")
    )
    client_form = (
        OidcClientForm(request.POST or None, prefix="client")
        if "client-name" in request.POST
        else OidcClientForm(prefix="client")
    )
    if request.method == "POST":
        actor = Actor.from_request(request)
        if token_form.is_bound and token_form.is_valid():
            try:
                _, raw = services.api_token_create(
                    actor=actor,
                    enterprise=request.enterprise,
                    purpose=ApiToken.Purpose.SCIM,
                    **token_form.cleaned_data,
                )
            except RuleViolation as exc:
                token_form.add_rule_violation(exc)
            else:
                request.session[SESSION_NEW_API_TOKEN] = raw
                return redirect("accounts:identity_provider")
        if client_form.is_bound and client_form.is_valid():
            data = client_form.cleaned_data
            try:
                registration = oidc.client_register(
                    actor=actor,
                    enterprise=request.enterprise,
                    name=data["name"],
                    redirect_uris=data["redirect_uris"].split(),
                    first_party=data["first_party"],
                )
            except RuleViolation as exc:
                client_form.add_rule_violation(exc)
            else:
                messages.success(
                    request,
                    f"Registered {registration}: client id {registration.application.client_id}",
                )
                return redirect("accounts:identity_provider")
    context = {
        "token_form": token_form,
        "client_form": client_form,
        "tokens": selectors.api_tokens(request.enterprise, ApiToken.Purpose.SCIM),
        "new_token": request.session.pop(SESSION_NEW_API_TOKEN, None),
        "clients": selectors.oidc_clients(request.enterprise),
        "contract": request.enterprise.contract,
        "base_url": settings.PORTAL_BASE_URL,
        "provisioning": selectors.audit_events(request.enterprise).filter(
            actor_token__purpose=ApiToken.Purpose.SCIM
        )[:15],
    }
    return render(request, "accounts/identity_provider.html", context)


@enterprise_role_required(ADMIN)
@require_POST
def oidc_client_remove(request, pk):
    registration = get_for_enterprise_or_404(ClientRegistration, request.enterprise, pk=pk)
    oidc.client_remove(actor=Actor.from_request(request), registration=registration)
    messages.success(request, f"Removed {registration}; its tokens are revoked.")
    return redirect("accounts:identity_provider")


@login_required
def connected_apps(request):
    """The apps holding tokens for the signed-in person, which they can revoke."""
    apps = selectors.connected_apps(request.user)
    if request.method == "POST":
        application = apps.filter(pk=object_id(request.POST.get("application", ""))).first()
        if application is None:
            raise Http404("That app holds no access for you.")
        count = oidc.app_access_revoke(
            actor=Actor.from_request(request), user=request.user, application=application
        )
        messages.success(
            request, f"Access withdrawn ({count} token{'s' if count != 1 else ''} revoked)."
        )
        return redirect("accounts:connected_apps")
    return render(request, "accounts/connected_apps.html", {"apps": apps})
