"""The call path's door: the STI-AS, the STI-VS and the SIP edge's INVITEs, answered
without what only pages and the REST API use.

An SBC waits on every one of these requests, and they are most of the network API's
traffic. A machine's request never uses the session, CSRF, two-factor, messages or time
zone middleware, nor DRF's request wrapper, content negotiation and renderers; together
they cost about as much as a signing's own work (docs/callpath.md, *The door*). So:

- ``CallPathMiddleware`` calls these routes' views right after the middleware every
  answer passes (the request's id and log line, the security headers), skipping the rest
  of the chain and the URL resolver;
- ``CallPathView`` takes a request through the steps DRF would, in the same order and
  with the same answers: the body read (capped) and parsed, the call's cache entries
  fetched with the credential's client in one round trip, the network credential, the
  client's rate limit, then the refusal of a bad body, then the service. The call's
  record goes to the record stream once the answer is sent (``records.answer_first``).

DRF still describes these views in the API schema (their authentication, permission and
rate limit classes are the ones these steps apply).
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import ResolverMatch, get_script_prefix, resolve, reverse
from rest_framework import exceptions
from rest_framework.views import APIView

from accounts.api.authentication import NetworkClientAuthentication
from accounts.api.permissions import IsNetworkClient
from kernel.api.errors import BodyTooLarge, error_body, rule_violation_body
from kernel.errors import RuleViolation
from kernel.generations import Reader
from kernel.ratelimit import NetworkRateThrottle
from telephony.callauth import records

# The routes (URL names) CallPathMiddleware answers at once.
ROUTES = ("network-stir-signing", "network-stir-verification", "network-sip-invite")


def read_capped(stream) -> bytes:
    """At most NETWORK_MAX_BODY_BYTES of the body; a larger body is refused, not truncated."""
    limit = settings.NETWORK_MAX_BODY_BYTES
    body = stream.read(limit + 1) if stream is not None else b""
    if len(body) > limit:
        raise BodyTooLarge(f"The body is larger than {limit // 1024} KiB.")
    return body


def json_answer(body: Any, *, status: int = 200, headers: dict[str, str] | None = None):
    """JSON as the API renders it (UTF-8, compact)."""
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return HttpResponse(content, status=status, content_type="application/json", headers=headers)


def refusal(exc: exceptions.APIException | RuleViolation) -> HttpResponse:
    """The API's error body (kernel.api.errors) and the headers DRF gives it."""
    if isinstance(exc, RuleViolation):
        status, body = rule_violation_body(exc)
        return json_answer(body, status=status)
    detail = exc.detail
    code = str(getattr(detail, "code", "error"))
    headers = {}
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        headers["WWW-Authenticate"] = NetworkClientAuthentication().authenticate_header(None)
    elif (wait := getattr(exc, "wait", None)) is not None:  # Throttled
        headers["Retry-After"] = str(math.ceil(wait))
    elif isinstance(exc, exceptions.MethodNotAllowed):
        headers["Allow"] = "POST"
    status = exc.status_code
    return json_answer(error_body(status, code, str(detail)), status=status, headers=headers)


class CallPathView(APIView):
    """A view on the call path: DRF describes it, ``dispatch`` answers it (the module
    says how). Each view names its body's media type, reads it (``read``), says what the
    call reads of the cache first (``call_keys``) and answers it (``post``)."""

    authentication_classes = [NetworkClientAuthentication]
    permission_classes = [IsNetworkClient]
    throttle_classes = [NetworkRateThrottle]
    media_type = ""

    def read(self, body: bytes) -> Any:
        """The parsed body; an ``APIException`` for one the view cannot take."""
        raise NotImplementedError

    def empty(self) -> Any:
        """What an empty body stands for (each view refuses it its own way)."""
        raise NotImplementedError

    def call_keys(self, data: Any) -> list[str]:
        """What the call reads of the cache first, from the parsed body."""
        raise NotImplementedError

    def post(self, request: HttpRequest, data: Any) -> HttpResponse:
        """The answer to the parsed body; ``request.auth`` is the client,
        ``request.callpath`` what the request read of the cache."""
        raise NotImplementedError

    def dispatch(self, request, *args, **kwargs):
        if request.method != "POST":
            return refusal(exceptions.MethodNotAllowed(request.method))
        records.answer_first()
        request.callpath = Reader(near=True)
        try:
            data: Any = self._body(request)
            keys, refused = self.call_keys(data), None
        except exceptions.APIException as exc:
            data, keys, refused = None, [], exc
        try:
            credential = NetworkClientAuthentication.cache_key(request)
            request.callpath.fetch([k for k in (credential, *keys) if k])
            authenticated = NetworkClientAuthentication().authenticate(request)
            if authenticated is None:
                raise exceptions.NotAuthenticated()
            request.user, request.auth = authenticated
            for throttle in self.get_throttles():
                if not throttle.allow_request(request, self):
                    raise exceptions.Throttled(throttle.wait())
            if refused is not None:
                raise refused
            return self.post(request, data)
        except (exceptions.APIException, RuleViolation) as exc:
            return refusal(exc)

    def _body(self, request) -> Any:
        """As DRF's parsing: no body is ``empty()``; a body of another (or no) media
        type is refused 415."""
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0  # as Django reads it: no body
        if length <= 0:
            return self.empty()
        media_type = request.META.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        if media_type != self.media_type:
            raise exceptions.UnsupportedMediaType(request.META.get("CONTENT_TYPE", ""))
        return self.read(read_capped(request))


class CallPathMiddleware:
    """Calls the view of a call path route (``ROUTES``) at once, with what the URL
    resolver would have matched; every other request goes on down the chain. Placed
    after the middleware whose work every answer needs."""

    def __init__(self, get_response):
        self.get_response = get_response
        self._routes: dict[str, ResolverMatch] | None = None

    def routes(self) -> dict[str, ResolverMatch]:
        """Each route's path (as ``path_info``) and what the resolver matches for it."""
        if self._routes is None:  # once the URLconf is loaded
            prefix = get_script_prefix()
            paths = ["/" + reverse(name).removeprefix(prefix) for name in ROUTES]
            self._routes = {path: resolve(path) for path in paths}
        return self._routes

    def __call__(self, request):
        match = self.routes().get(request.path_info)
        if match is None:
            return self.get_response(request)
        request.get_host()  # the host is checked against ALLOWED_HOSTS, as for any request
        request.resolver_match = match
        return match.func(request, *match.args, **match.kwargs)
