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
    service raised it inside its transaction, so nothing was changed. The API has its
    own handler (portal.api.errors)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        from django.shortcuts import render

        from .errors import RuleViolation

        if not isinstance(exception, RuleViolation):
            return None
        return render(request, "errors/refused.html", {"message": exception.message}, status=400)
