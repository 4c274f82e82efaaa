"""The enterprise authenticates its own users for MMTEL access (TR 22.873 [5.x.6-2]):
OpenID Connect on django-oauth-toolkit, only for enterprises whose contract allows it.

- The login behind the authorization endpoint is the portal's own: password plus the
  second factor the user's policy requires (the two-factor middleware guards it).
- Access tokens are RS256-signed JWTs carrying the enterprise and the IMPUs the user may
  use (own identities and active grants), so MMTEL elements can check them offline
  against the JWKS; network elements can also introspect them (RFC 7662) with their
  network client credential.
- The 3GPP mission-critical scopes add the MC identities (TS 24.482's mcptt_id and its
  siblings).
- Offboarding and suspension revoke every token of the user at once.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.module_loading import import_string
from jwcrypto import jwk, jwt
from jwcrypto.common import JWException
from oauth2_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)
from oauth2_provider.oauth2_validators import OAuth2Validator, validate_resource_as_url_prefix
from oauth2_provider.settings import oauth2_settings
from oauthlib.oauth2.rfc6749.errors import CustomOAuth2Error

from kernel.errors import RuleViolation

from . import audit
from .audit import Actor
from .models import ClientRegistration, Enterprise, NetworkClient, User

MC_SCOPES = {
    "3gpp:mc:ptt_service": "mcptt_id",
    "3gpp:mc:video_service": "mcvideo_id",
    "3gpp:mc:data_service": "mcdata_id",
}
# The claims the provider issues, as discovery lists them: those of every ID token
# (OIDC Core §2, with at_hash and jti) and those a scope adds (claims_for).
ID_TOKEN_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "jti"]
SCOPE_CLAIMS = {
    "profile": ["name"],
    "email": ["email", "email_verified"],
    "mmtel": ["enterprise", "impus"],
    **{scope: [claim] for scope, claim in MC_SCOPES.items()},
}


def may_authenticate(user: User) -> bool:
    """The user may obtain tokens: an active member of an enterprise whose contract lets
    it authenticate its users."""
    return bool(
        user.is_active and user.enterprise is not None and user.enterprise.is_active
        and user.enterprise.contract.may_authenticate_users
    )  # fmt: skip


def mc_identity(user: User) -> str:
    """The user's mission-critical identity: a SIP URI in the enterprise's domain."""
    return f"sip:{user.email.split('@', 1)[0]}@{user.member_of.sip_domain}"


def claims_for(user: User, scopes) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    if "profile" in scopes:
        claims["name"] = user.full_name
    if "email" in scopes:
        claims.update(email=user.email, email_verified=user.status == User.Status.ACTIVE)
    if "mmtel" in scopes:
        claims.update(
            enterprise=user.member_of.slug, impus=import_string(settings.OIDC_IMPUS_OF)(user)
        )
    for scope, claim in MC_SCOPES.items():
        if scope in scopes:
            claims[claim] = mc_identity(user)
    return claims


def asks_silently(request) -> bool:
    """An authorization request with ``prompt=none``: no page may be shown."""
    return request.path == reverse("oauth2_provider:authorize") and "none" in (
        request.GET.get("prompt", "").split()
    )


def issuer() -> str:
    return oauth2_settings.OIDC_ISS_ENDPOINT or settings.PORTAL_BASE_URL


def with_issuer(uri: str) -> str:
    """An authorization response's URI with the issuer (RFC 9207), if it lacks one."""
    parts = urlsplit(uri)
    if "iss" in parse_qs(parts.query):
        return uri
    query = "&".join(filter(None, [parts.query, urlencode({"iss": issuer()})]))
    return urlunsplit(parts._replace(query=query))


ID_TOKEN_HINT_MAX = 8192  # ours are about 1 KB; bounds the work a hostile hint costs


def hinted_subject(id_token_hint: str) -> str | None:
    """The user an ``id_token_hint`` names (OIDC Core §3.1.2.1): the subject of an ID
    token this provider signed, expired or not; None for anything else."""
    if len(id_token_hint) > ID_TOKEN_HINT_MAX:
        return None
    for pem in [
        oauth2_settings.OIDC_RSA_PRIVATE_KEY,
        *oauth2_settings.OIDC_RSA_PRIVATE_KEYS_INACTIVE,
    ]:
        try:
            token = jwt.JWT(
                jwt=id_token_hint,
                key=jwk.JWK.from_pem(pem.encode()),
                algs=["RS256"],
                check_claims=False,  # an expired ID token is still a fine hint
                expected_type="JWS",
            )
            claims = json.loads(token.claims)
        except (JWException, ValueError, TypeError):
            continue
        if isinstance(claims, dict) and claims.get("iss") == issuer():
            return str(claims.get("sub"))
    return None


def unknown_resources(resources) -> list[str]:
    """The resource indicators (RFC 8707) that name no resource server of ours."""
    return [r for r in resources if r not in settings.OIDC_RESOURCE_SERVERS]


def audience(resources) -> str | list[str]:
    """An access token's ``aud`` (RFC 9068): the resource servers it was narrowed to,
    else the default one."""
    resources = list(resources or settings.OIDC_RESOURCE_SERVERS[:1])
    return resources[0] if len(resources) == 1 else resources


def token_serves(request_uri: str, audiences: list[str]) -> bool:
    """Whether a token narrowed to ``audiences`` may be used at ``request_uri`` here.
    The provider's own userinfo endpoint answers any token it issued (OIDC Core §5.3);
    everything else needs a matching resource, as django-oauth-toolkit checks it."""
    if urlsplit(request_uri).path == reverse("oauth2_provider:user-info"):
        return True
    return validate_resource_as_url_prefix(request_uri, audiences)


class PortalValidator(OAuth2Validator):
    """The portal's rules on top of django-oauth-toolkit's: who may sign in where, and
    the claims tokens carry."""

    def get_additional_claims(self, request):
        return claims_for(request.user, request.scopes)

    def get_oidc_claims(self, token, token_handler, request):
        # Claims are chosen by scope in claims_for; "sub" always.
        return {"sub": str(request.user.pk), **self.get_additional_claims(request)}

    def get_discovery_claims(self, request):
        by_scope = [claim for claims in SCOPE_CLAIMS.values() for claim in claims]
        return list(dict.fromkeys(ID_TOKEN_CLAIMS + by_scope))

    # prompt=none is answered by the authorization view, which has the session: it
    # refuses with login_required before oauthlib asks, and turns a consent page into
    # consent_required after. Here the user is signed in and silence is allowed.
    def validate_silent_login(self, request):
        return True

    def validate_silent_authorization(self, request):
        return True

    def validate_user(self, username, password, client, request, *args, **kwargs):
        return False  # no password grant: users sign in on the portal's own pages

    def validate_code(self, client_id, code, client, request, *args, **kwargs):
        valid = super().validate_code(client_id, code, client, request, *args, **kwargs)
        if valid:
            self._settle_resources(request)
        return valid

    def validate_refresh_token(self, refresh_token, client, request, *args, **kwargs):
        valid = super().validate_refresh_token(refresh_token, client, request, *args, **kwargs)
        if valid and may_authenticate(request.user):
            self._settle_resources(request)
            return True
        return False

    def _settle_resources(self, request):
        """Resolve the token request's resources (RFC 8707: asked for, or inherited from
        the code or refresh token) before the access token is made, since its ``aud``
        says them; a resource server we do not know is refused with invalid_target."""
        self._check_and_set_request_resource(request)
        unknown = unknown_resources(request.resource)
        if unknown:
            raise CustomOAuth2Error(
                error="invalid_target",
                description=f"Unknown resource: {unknown[0]}",
                request=request,
            )


def _signing_key() -> jwk.JWK:
    return jwk.JWK.from_pem(oauth2_settings.OIDC_RSA_PRIVATE_KEY.encode())


def signed_access_token(request, refresh_token=False) -> str:
    """The access token: a JWT signed with the OIDC key (kid = the JWK thumbprint that
    the JWKS publishes), carrying the user's enterprise, IMPUs and MC identities."""
    now = int(time.time())
    user = request.user
    scopes = list(request.scopes or [])
    claims = {
        "iss": settings.PORTAL_BASE_URL,
        "sub": str(user.pk),
        "aud": audience(getattr(request, "resource", None)),
        "client_id": request.client_id,
        "iat": now,
        "exp": now + oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS,
        "jti": str(uuid.uuid4()),
        "scope": " ".join(scopes),
        **claims_for(user, scopes),
    }
    key = _signing_key()
    token = jwt.JWT(
        header={"alg": "RS256", "typ": "at+jwt", "kid": key.thumbprint()}, claims=claims
    )
    token.make_signed_token(key)
    return token.serialize()


# --- Revocation ----------------------------------------------------------------------------


def revoke_tokens(user: User) -> int:
    """Every token the user holds, at once: access, refresh, ID tokens and pending codes."""
    access = get_access_token_model().objects.filter(user=user)
    count = access.count()
    get_refresh_token_model().objects.filter(user=user, revoked=None).update(revoked=timezone.now())
    access.delete()
    get_id_token_model().objects.filter(user=user).delete()
    get_grant_model().objects.filter(user=user).delete()
    return count


@transaction.atomic
def app_access_revoke(*, actor: Actor, user: User, application) -> int:
    """A person withdraws one app's access to their account."""
    tokens = get_access_token_model().objects.filter(user=user, application=application)
    count = tokens.count()
    get_refresh_token_model().objects.filter(
        user=user, application=application, revoked=None
    ).update(revoked=timezone.now())
    tokens.delete()
    audit.record(
        actor=actor,
        action="oidc.app_access_revoked",
        enterprise=user.enterprise,
        target=user,
        changes=audit.removed(app=application.name),
    )
    return count


# --- Introspection (RFC 7662) --------------------------------------------------------------


def introspect(client: NetworkClient, raw_token: str) -> dict:
    """What a network element may know about a token: ``{"active": false}`` unless it is
    a live access token of a user who may authenticate, in an enterprise this client
    serves."""
    # django-oauth-toolkit finds tokens by this checksum (it stores no plaintext).
    checksum = hashlib.sha256(raw_token.encode()).hexdigest()
    token = (
        get_access_token_model()
        .objects.select_related("user__enterprise__contract", "application")
        .filter(token_checksum=checksum)
        .first()
    )
    if (
        token is None
        or token.is_expired()
        or token.user is None
        or not may_authenticate(token.user)
        or not client.serves(token.user.enterprise)
    ):
        return {"active": False}
    scopes = token.scope.split()
    return {
        "active": True,
        "scope": token.scope,
        "client_id": token.application.client_id,
        "username": token.user.email,
        "token_type": "Bearer",
        "exp": int(token.expires.timestamp()),
        "sub": str(token.user.pk),
        "aud": audience(token.resource),
        "iss": settings.PORTAL_BASE_URL,
        **claims_for(token.user, scopes),
    }


# --- Client registry ------------------------------------------------------------------------


@transaction.atomic
def client_register(
    *,
    actor: Actor,
    enterprise: Enterprise | None,
    name: str,
    redirect_uris: list[str],
    first_party: bool,
) -> ClientRegistration:
    """An MMTEL client application of the enterprise (or, for operator staff, of the
    whole network). A public client: it proves itself with PKCE, holds no secret.
    First-party clients skip the consent screen."""
    if enterprise is not None:
        actor.ensure_acts_for(enterprise)
    uris = [u.strip() for u in redirect_uris if u.strip()]
    if not uris:
        raise RuleViolation("Give at least one redirect URI.", field="redirect_uris")
    application = get_application_model()(
        name=name.strip(),
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris=" ".join(uris),
        algorithm="RS256",
        skip_authorization=first_party,
    )
    try:
        application.full_clean(exclude=["client_secret", "user"])
    except Exception as exc:
        messages = getattr(exc, "messages", [str(exc)])
        raise RuleViolation(" ".join(messages), field="redirect_uris") from exc
    application.save()
    registration = ClientRegistration.objects.create(
        application=application, enterprise=enterprise, first_party=first_party
    )
    audit.record(
        actor=actor,
        action="oidc.client_registered",
        enterprise=enterprise,
        target=registration,
        changes=audit.created(name=application.name, redirect_uris=uris, first_party=first_party),
    )
    return registration


@transaction.atomic
def client_remove(*, actor: Actor, registration: ClientRegistration) -> None:
    """Remove a client application; every token issued to it goes with it."""
    if registration.enterprise is not None:
        actor.ensure_acts_for(registration.enterprise)
    audit.record(
        actor=actor,
        action="oidc.client_removed",
        enterprise=registration.enterprise,
        target=registration,
        changes=audit.removed(name=registration.application.name),
    )
    registration.application.delete()


def client_allowed(application, user: User) -> bool:
    """A user signs in only to their enterprise's client applications or network-wide ones."""
    registration = ClientRegistration.objects.filter(application=application).first()
    return registration is not None and registration.enterprise_id in (None, user.enterprise_id)
