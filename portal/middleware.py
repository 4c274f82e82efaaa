import logging

from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
from django.http import Http404
from django.shortcuts import render
from django.views.defaults import bad_request

request_logger = logging.getLogger("django.request")

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


class RuleViolationMiddleware:
    """A business rule that a page's view does not handle itself (a suspended
    enterprise, most often) is shown with its message, not as a server error. The
    service raised it inside its transaction, so nothing was changed. NotAllowed is a
    403. The API has its own handler (kernel.api.errors)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        from kernel.errors import NotAllowed, RuleViolation

        if not isinstance(exception, RuleViolation):
            return None
        status = 403 if isinstance(exception, NotAllowed) else 400
        return render(request, "errors/refused.html", {"message": exception.message}, status=status)


class PortalErrorPagesMiddleware:
    """With DEBUG on (`make run`), answer "not found" and server errors with the portal's
    own pages, as in production: Django's debug 404 page lists every URL pattern of the
    site, its 500 page the settings. A server error's traceback still goes to the log
    (the console of `make run`). Installed by the settings only with DEBUG on;
    DJANGO_DEBUG_ERROR_PAGES=true brings Django's pages back."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        # A path that matched no pattern never reaches a view, so process_exception
        # does not see its Resolver404; it leaves the request without a resolver_match.
        if response.status_code == 404 and getattr(request, "resolver_match", None) is None:
            return render(request, "errors/404.html", status=404)
        return response

    def process_exception(self, request, exception):
        if isinstance(exception, Http404):
            return render(request, "errors/404.html", status=404)
        if isinstance(exception, PermissionDenied):
            return None  # Django answers it with the portal's 403 page, DEBUG or not
        if isinstance(exception, BadRequest | SuspiciousOperation):
            return bad_request(request, exception)  # Django's plain 400, as in production
        request_logger.error(
            "Internal Server Error: %s",
            request.path,
            exc_info=exception,
            extra={"request": request},
        )
        return render(request, "errors/500.html", status=500)
