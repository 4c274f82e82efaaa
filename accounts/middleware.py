import zoneinfo
from urllib.parse import urlencode

from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone

from kernel.tenancy import enterprise_of

from .models import time_zone_names
from .oidc import asks_silently
from .two_factor import needs_verification

# Paths an unverified user may still reach: the second-factor pages themselves,
# sign-out, and the machine-facing endpoints, which authenticate on their own.
TWO_FACTOR_EXEMPT_PREFIXES = (
    "/account/2fa/",
    "/logout/",
    "/static/",
    "/api/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/network/",
    "/scim/",
    "/certs/",
    "/.well-known/",
    # OpenID Connect back-channel endpoints; /o/authorize/ stays behind the
    # second factor because it signs the user in to an app.
    "/o/token/",
    "/o/introspect/",
    "/o/revoke_token/",
    "/o/userinfo/",
    "/o/.well-known/",
)


class EnterpriseMiddleware:
    """Resolves the request's enterprise once, from the signed-in user."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.enterprise = enterprise_of(request.user)
        return self.get_response(request)


class TwoFactorMiddleware:
    """Sends a signed-in user who owes a second factor to verify or enrol first."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # A silent OpenID Connect request is answered login_required by its view instead.
        if (
            needs_verification(request)
            and not request.path.startswith(TWO_FACTOR_EXEMPT_PREFIXES)
            and not asks_silently(request)
        ):
            query = urlencode({"next": request.get_full_path()})
            return redirect(f"{reverse('accounts:two_factor')}?{query}")
        return self.get_response(request)


# The cookie portal.js sets to the browser's time zone.
TIME_ZONE_COOKIE = "tz"


def viewer_time_zone(request) -> str:
    """The zone chosen in My account, else the browser's; "" when neither is a zone."""
    chosen = getattr(request.user, "time_zone", "")
    if chosen in time_zone_names():
        return chosen
    browser = request.COOKIES.get(TIME_ZONE_COOKIE, "")
    return browser if browser in time_zone_names() else ""


# Machine interfaces answer in UTC, whoever calls them.
UTC_PREFIXES = ("/api/", "/scim/", "/network/")


class TimeZoneMiddleware:
    """Every time on a page in the viewer's time zone; the portal's TIME_ZONE otherwise."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        name = "" if request.path.startswith(UTC_PREFIXES) else viewer_time_zone(request)
        if name:
            timezone.activate(zoneinfo.ZoneInfo(name))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
