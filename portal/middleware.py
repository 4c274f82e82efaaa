from django.http import Http404
from django.shortcuts import render

# Pages load scripts and styles only from our own static files (htmx is vendored), so
# the policy can forbid inline code outright.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault(
            "Permissions-Policy", "camera=(), microphone=(), geolocation=()"
        )
        return response


class PortalNotFoundPageMiddleware:
    """With DEBUG on (`make run`), answer "not found" with the portal's own page, as in
    production: Django's debug 404 page lists every URL pattern of the site. Installed by
    the settings only then; DJANGO_DEBUG_ERROR_PAGES=true brings Django's page back."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        # A path that matched no pattern never reaches a view, so process_exception
        # does not see its Resolver404; it leaves the request without a resolver_match.
        if response.status_code == 404 and getattr(request, "resolver_match", None) is None:
            return self.not_found(request)
        return response

    def process_exception(self, request, exception):
        if isinstance(exception, Http404):
            return self.not_found(request)
        return None

    @staticmethod
    def not_found(request):
        return render(request, "errors/404.html", status=404)
