"""Request-rate limits: per credential at the APIs, per address at the token endpoint.

One enterprise's runaway script must not take the portal from the others, and a token
endpoint must not take guesses at full speed. Each limit is a fixed window counted in
the cache, one increment per request: shared by every process and machine when
``CACHE_URL`` names a Redis server, per process otherwise.
"""

import time

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from rest_framework.throttling import BaseThrottle

from kernel.http import client_ip

WINDOWS = {"second": 1, "minute": 60, "hour": 3600}


def parse_rate(rate: str) -> tuple[int, int] | None:
    """``"600/minute"`` → (600, 60); an empty rate is no limit."""
    if not rate:
        return None
    count, _, unit = rate.partition("/")
    if not count.isdigit() or unit not in WINDOWS:
        raise ImproperlyConfigured(f"{rate!r} is not a rate such as 600/minute.")
    return int(count), WINDOWS[unit]


def _window(scope: str, who: str, window: int) -> tuple[str, float]:
    """The cache key of the current window, and the seconds until it ends."""
    now = time.time()
    start = int(now // window) * window
    return f"rate:{scope}:{who}:{start}", max(start + window - now, 1.0)


def over_limit(scope: str, who: str, rate: str) -> float | None:
    """Count one request of ``who``; None while within ``rate``, else the seconds until
    its window ends."""
    parsed = parse_rate(rate)
    if parsed is None:
        return None
    limit, window = parsed
    key, left = _window(scope, who, window)
    try:
        count = cache.incr(key)  # one round trip in the common case
    except ValueError:  # the window's first request
        count = 1 if cache.add(key, 1, timeout=window + 1) else cache.incr(key)
    return None if count <= limit else left


def used_up(scope: str, who: str, rate: str) -> float | None:
    """Whether ``who`` has used up ``rate`` in the current window, without counting this
    request: None if not, else the seconds until the window ends. For limits that count
    only some requests (with ``over_limit`` once the outcome is known)."""
    parsed = parse_rate(rate)
    if parsed is None:
        return None
    limit, window = parsed
    key, left = _window(scope, who, window)
    return None if (cache.get(key) or 0) < limit else left


def credential(request) -> str:
    """Who a request counts against: its token or network client, else the signed-in
    user, else its address."""
    auth = request.auth
    if auth is not None and getattr(auth, "pk", None) is not None:
        return f"{auth._meta.label_lower}:{auth.pk}"
    if request.user and request.user.is_authenticated:
        return f"user:{request.user.pk}"
    return f"ip:{client_ip(request)}"


class CredentialRateThrottle(BaseThrottle):
    """The REST API's and SCIM's limit (``API_RATE_LIMIT``); answered 429 with
    Retry-After in the endpoint's own error body."""

    scope = "api"
    setting = "API_RATE_LIMIT"

    def allow_request(self, request, view):
        self.retry_after = over_limit(
            self.scope, credential(request), getattr(settings, self.setting)
        )
        return self.retry_after is None

    def wait(self):
        return self.retry_after


class NetworkRateThrottle(CredentialRateThrottle):
    """The network API's limit per network client (``NETWORK_RATE_LIMIT``)."""

    scope = "network"
    setting = "NETWORK_RATE_LIMIT"
