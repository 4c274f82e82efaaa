"""Facts about an incoming HTTP request that several parts need."""

from django.conf import settings
from django.utils.http import url_has_allowed_host_and_scheme


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


def object_id(text: str) -> int | None:
    """A row id given as text in a request (form field, URL, SCIM id), or None: ASCII
    digits only, at most 18 of them (a 64-bit integer)."""
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return None


def is_htmx(request) -> bool:
    """The request comes from htmx and wants a page fragment."""
    return request.headers.get("HX-Request") == "true"


def safe_next_url(request, default: str) -> str:
    """The ``next`` the request asks for, if it stays on this site; else ``default``."""
    target = request.POST.get("next") or request.GET.get("next")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default
