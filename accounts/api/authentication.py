from datetime import timedelta

from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from rest_framework import authentication, exceptions

from accounts.api import schema  # noqa: F401 - registers how these show in the OpenAPI schema
from accounts.models import ApiToken, NetworkClient
from accounts.two_factor import needs_verification
from kernel import generations
from kernel.credentials import hash_secret

# last_used_at is a hint for admins, not a log: write it at most once a minute.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenUser:
    """The principal behind an API token: acts within the token's enterprise and role."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = id = None

    def __init__(self, token: ApiToken):
        self.token = token
        self.enterprise = token.enterprise
        self.enterprise_id = token.enterprise_id
        self.role = token.role

    def __str__(self):
        return f"API token {self.token.name}"

    def is_verified(self) -> bool:
        return True


def bearer_credential(request, prefix: str) -> str | None:
    """The token from ``Authorization: Bearer <prefix>_…``, or None if another scheme
    or another kind of token is used (other authenticators may take it)."""
    parts = authentication.get_authorization_header(request).split()
    if not parts or parts[0].lower() != b"bearer":
        return None
    if len(parts) != 2:
        raise exceptions.AuthenticationFailed("Malformed Authorization header.")
    try:
        raw = parts[1].decode("ascii")
    except UnicodeDecodeError as exc:
        raise exceptions.AuthenticationFailed("Malformed token.") from exc
    return raw if raw.startswith(f"{prefix}_") else None


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer ptk_…`` with an enterprise's API token (``stk_…`` with a
    SCIM token, for the SCIM endpoints)."""

    purpose = ApiToken.Purpose.API

    def authenticate(self, request):
        raw = bearer_credential(request, ApiToken.PREFIXES[self.purpose])
        if raw is None:
            return None
        token = (
            ApiToken.objects.select_related("enterprise", "enterprise__contract")
            .filter(key_hash=hash_secret(raw), revoked_at=None, purpose=self.purpose)
            .first()
        )
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return TokenUser(token), token

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class ScimTokenAuthentication(ApiTokenAuthentication):
    purpose = ApiToken.Purpose.SCIM

    def authenticate_header(self, request):
        return 'Bearer realm="scim"'


class VerifiedSessionAuthentication(authentication.SessionAuthentication):
    """The browser's session (with CSRF), but only once any second factor it owes is shown."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None or needs_verification(request._request):
            return None
        return result


class NetworkClientAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer ntk_…`` with a network client's credential. The request's
    user stays anonymous; ``request.auth`` is the client."""

    @staticmethod
    def cache_key(request) -> str | None:
        """Where the call path's cache keeps the client of the request's credential (a
        view that reads more of that cache fetches it with the rest, ``request.callpath``)."""
        raw = bearer_credential(request, NetworkClient.TOKEN_PREFIX)
        return None if raw is None else f"network-client:{hash_secret(raw)}"

    def authenticate(self, request):
        key = self.cache_key(request)
        if key is None:
            return None
        reader = getattr(request, "callpath", None) or generations.Reader()
        # From the call path's cache: a client's changes (a revocation above all) are
        # operator staff's, and lapse every cached client when they commit.
        client = reader.value(key, lambda: _network_client(key.split(":", 1)[1]))
        if client is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked network credential.")
        now = timezone.now()
        if client.last_used_at is None or now - client.last_used_at > LAST_USED_RESOLUTION:
            NetworkClient.objects.filter(pk=client.pk).update(last_used_at=now)
            client.last_used_at = now
            reader.keep(key)
        return AnonymousUser(), client

    def authenticate_header(self, request):
        return 'Bearer realm="network"'


def _network_client(key_hash: str):
    """The client with this credential and the enterprises it serves (None: not kept,
    so that guessed credentials cannot fill the cache)."""
    client = NetworkClient.objects.filter(key_hash=key_hash, revoked_at=None).first()
    if client is None:
        return None, None
    client.served_enterprise_ids  # noqa: B018 - read now, to be kept with it
    return client, set()
