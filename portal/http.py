"""Facts about an incoming HTTP request that several parts need."""

from django.conf import settings


def client_ip(request) -> str | None:
    """The caller's address: REMOTE_ADDR, or the entry a trusted proxy added.

    With TRUSTED_PROXY_COUNT = n, the n-th address from the right of X-Forwarded-For
    is the one our outermost proxy saw; anything left of it is caller-controlled.
    """
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies:
        forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [a for a in forwarded if a]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR") or None
