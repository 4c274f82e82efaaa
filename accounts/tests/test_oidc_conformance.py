"""OpenID Connect as apps meet it: Authlib (the client library many apps use) against the
provider served by a live server. Discovery, code + PKCE, prompt=none, refresh rotation
with reuse detection, introspection, revocation, and every value discovery advertises
held against what the provider does."""

import json
from base64 import urlsafe_b64decode
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.django_client import OAuth
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from django.conf import settings as django_settings
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client, RequestFactory
from oauth2_provider.settings import oauth2_settings

from accounts import oidc
from accounts.audit import Actor
from accounts.services import network_client_create
from accounts.tests.factories import EnterpriseFactory, UserFactory
from portal.testing import sign_in_verified
from telephony.identities import sync
from telephony.tests.factories import give_numbers, make_identity

pytestmark = [pytest.mark.peer, pytest.mark.django_db(transaction=True)]

REDIRECT = "https://softphone.example/callback"
MMTEL = "https://ims.mnc001.mcc001.3gppnetwork.org"
EVERY_SCOPE = " ".join(django_settings.OIDC_SCOPES)


class Provider:
    """The provider under test, a user of it, and an app registered with it."""

    def __init__(self, base_url, client_id, user, network_credential):
        self.base_url = base_url
        self.client_id = client_id
        self.user = user
        self.network_credential = network_credential
        self.metadata = requests.get(
            f"{base_url}/.well-known/openid-configuration", timeout=10
        ).json()

    def app(self, scope="openid profile email mmtel"):
        """The app's side, as an app registers it with Authlib's Django integration."""
        registry = OAuth()
        return registry.register(
            "portal",
            client_id=self.client_id,
            server_metadata_url=f"{self.base_url}/.well-known/openid-configuration",
            client_kwargs={
                "scope": scope,
                "code_challenge_method": "S256",
                "token_endpoint_auth_method": "none",
            },
        )

    def session(self, token=None):
        """A plain Authlib OAuth 2.0 session for refresh, revocation and userinfo."""
        return OAuth2Session(
            self.client_id,
            token=token,
            token_endpoint_auth_method="none",
            timeout=10,
        )

    def browser(self, signed_in=True):
        """The user's browser: a session signed in to the portal (password and second
        factor), or none."""
        browser = requests.Session()
        if signed_in:
            django = sign_in_verified(Client(), self.user)
            cookie = django.cookies[django_settings.SESSION_COOKIE_NAME].value
            browser.cookies.set(django_settings.SESSION_COOKIE_NAME, cookie)
        return browser

    def authorize(self, app, browser, **params):
        """The app sends the browser to the authorization endpoint (Authlib keeps state,
        nonce and PKCE verifier in the app's own session); the redirect back to the app."""
        app_session = SessionStore()
        start = RequestFactory().get("/sign-in")
        start.session = app_session
        redirect = app.authorize_redirect(start, REDIRECT, **params)
        response = browser.get(redirect.url, allow_redirects=False, timeout=10)
        return app_session, response

    def callback(self, app, app_session, response):
        """The app's callback view: Authlib checks the state, exchanges the code with its
        verifier and verifies the ID token (signature by the JWKS, iss, aud, nonce,
        at_hash, expiry)."""
        callback = RequestFactory().get("/callback", redirect_query(response))
        callback.session = app_session
        return app.authorize_access_token(callback)

    def sign_in(self, app, **params):
        """The whole code flow as an app runs it: the token and the ID token's claims."""
        app_session, response = self.authorize(app, self.browser(), **params)
        assert response.status_code == 302, response.text[:300]
        assert redirect_query(response)["iss"] == self.metadata["issuer"]
        token = self.callback(app, app_session, response)
        return token, token.pop("userinfo")

    def introspect(self, token, credential=None):
        return requests.post(
            self.metadata["introspection_endpoint"],
            data={"token": token},
            headers={"Authorization": f"Bearer {credential or self.network_credential}"},
            timeout=10,
        )


def redirect_query(response) -> dict:
    location = response.headers["Location"]
    assert location.startswith(REDIRECT + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@pytest.fixture
def provider(live_server, settings, monkeypatch):
    # The app reaches the provider over plain HTTP on loopback.
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    # One request per connection: the live server's request threads then end, and give
    # back their database connections, before the test database is dropped.
    default_headers = requests.sessions.default_headers
    monkeypatch.setattr(
        requests.sessions,
        "default_headers",
        lambda: requests.structures.CaseInsensitiveDict(
            {**default_headers(), "Connection": "close"}
        ),
    )
    settings.PORTAL_BASE_URL = live_server.url
    settings.OIDC_RESOURCE_SERVERS = [MMTEL, "https://mcptt.example"]
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_ISS_ENDPOINT": live_server.url}
    oauth2_settings.reload()
    enterprise = EnterpriseFactory(name="Swift Delivery", sip_domain="swift.example")
    enterprise.contract.may_authenticate_users = True
    enterprise.contract.save()
    user = UserFactory(enterprise=enterprise, full_name="Rob Smith", email="rob@swift.example")
    give_numbers(enterprise)
    sync.push_identity(make_identity(user, alias="rob").pk)
    app = oidc.client_register(
        actor=Actor.system(),
        enterprise=enterprise,
        name="Softphone",
        redirect_uris=[REDIRECT],
        first_party=True,
    ).application
    _, credential = network_client_create(
        actor=Actor.system(), name="P-CSCF", enterprises=[enterprise]
    )
    yield Provider(live_server.url, app.client_id, user, credential)
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_ISS_ENDPOINT": ""}
    oauth2_settings.reload()


def test_code_flow_with_pkce_gives_a_verified_id_token_and_a_resource_access_token(provider):
    app = provider.app()
    assert app.load_server_metadata()["issuer"] == provider.base_url
    token, claims = provider.sign_in(app)
    assert claims["sub"] == str(provider.user.pk) and claims["email"] == "rob@swift.example"
    assert claims["aud"] == provider.client_id and claims["iss"] == provider.base_url
    userinfo = app.userinfo(token=token)
    assert userinfo["sub"] == claims["sub"] and userinfo["impus"]
    access = provider.introspect(token["access_token"]).json()
    assert access["active"] is True and access["aud"] == MMTEL
    assert access["client_id"] == provider.client_id


def test_prompt_none_answers_silently_with_and_without_a_session(provider):
    app = provider.app()
    # Signed in: the code, with no page shown.
    token, claims = provider.sign_in(app, prompt="none")
    assert token["access_token"] and claims["sub"] == str(provider.user.pk)
    # Not signed in: login_required at the redirect URI, which Authlib reports as such.
    app_session, response = provider.authorize(
        app, provider.browser(signed_in=False), prompt="none"
    )
    assert redirect_query(response)["state"] in str(dict(app_session))
    with pytest.raises(OAuthError) as refused:
        provider.callback(app, app_session, response)
    assert refused.value.error == "login_required"


def test_refresh_rotates_and_a_reused_refresh_token_ends_the_family(provider):
    token, _ = provider.sign_in(provider.app())
    session = provider.session(token)
    endpoint = provider.metadata["token_endpoint"]
    rotated = session.refresh_token(endpoint, refresh_token=token["refresh_token"])
    assert rotated["refresh_token"] != token["refresh_token"]
    assert rotated["access_token"] != token["access_token"]
    assert provider.introspect(rotated["access_token"]).json()["active"] is True
    # The old refresh token again: refused, and the whole family with it.
    with pytest.raises(OAuthError) as reused:
        provider.session().refresh_token(endpoint, refresh_token=token["refresh_token"])
    assert reused.value.error == "invalid_grant"
    with pytest.raises(OAuthError):
        provider.session().refresh_token(endpoint, refresh_token=rotated["refresh_token"])


def test_revocation_ends_the_access_token_for_introspection_and_userinfo(provider):
    token, _ = provider.sign_in(provider.app())
    session = provider.session(token)
    assert provider.introspect(token["access_token"]).json()["active"] is True
    revoked = session.revoke_token(
        provider.metadata["revocation_endpoint"],
        token=token["access_token"],
        token_type_hint="access_token",
    )
    assert revoked.status_code == 200
    assert provider.introspect(token["access_token"]).json() == {"active": False}
    assert session.get(provider.metadata["userinfo_endpoint"]).status_code == 401


def test_a_resource_indicator_narrows_the_audience_and_an_unknown_one_is_refused(provider):
    app = provider.app()
    token, _ = provider.sign_in(app, resource="https://mcptt.example")
    assert provider.introspect(token["access_token"]).json()["aud"] == "https://mcptt.example"
    _, response = provider.authorize(app, provider.browser(), resource="https://other.example")
    assert redirect_query(response)["error"] == "invalid_target"


# --- Every advertised value, held against behaviour -------------------------------------------


def _refused_response_type(provider, response_type):
    """A response type is refused: an error page, or an error (and nothing else) at the
    redirect URI."""
    verifier = "v" * 64
    response = provider.browser().get(
        provider.metadata["authorization_endpoint"],
        params={
            "response_type": response_type,
            "client_id": provider.client_id,
            "redirect_uri": REDIRECT,
            "scope": "openid",
            "state": "s",
            "nonce": "n",
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        },
        allow_redirects=False,
        timeout=10,
    )
    if response.status_code == 302:
        location = response.headers["Location"]
        return "error=" in location and "code=" not in location and "token=" not in location
    return response.status_code >= 400


def check_issuer(provider, value):
    assert value == provider.base_url
    _, claims = provider.sign_in(provider.app())
    assert claims["iss"] == value


def check_endpoint(name):
    def check(provider, value):
        assert value.startswith(provider.base_url + "/")
        # Each endpoint answers (its own way) rather than 404.
        method = "GET" if name in ("authorization", "jwks") else "POST"
        # A redirect (to sign in) is an answer too: not followed.
        answer = requests.request(method, value, timeout=10, allow_redirects=False)
        assert answer.status_code != 404

    return check


def check_scopes(provider, value):
    assert set(value) == set(EVERY_SCOPE.split())
    token, claims = provider.sign_in(provider.app(scope=" ".join(value)))
    assert set(token["scope"].split()) == set(value)
    assert claims["mcptt_id"] and claims["mcvideo_id"] and claims["mcdata_id"]


def check_response_types(provider, value):
    assert value == ["code"]
    provider.sign_in(provider.app())
    for other in ("token", "id_token", "code id_token", "code token", "code id_token token"):
        assert _refused_response_type(provider, other), other


def check_subject_types(provider, value):
    assert value == ["public"]
    # The same subject whichever app asks.
    other = oidc.client_register(
        actor=Actor.system(),
        enterprise=provider.user.enterprise,
        name="Desk phone",
        redirect_uris=[REDIRECT],
        first_party=True,
    ).application
    _, first = provider.sign_in(provider.app())
    second_app = Provider(
        provider.base_url, other.client_id, provider.user, provider.network_credential
    )
    _, second = second_app.sign_in(second_app.app())
    assert first["sub"] == second["sub"]


def check_signing_algs(provider, value):
    assert value == ["RS256"]
    token, _ = provider.sign_in(provider.app())
    # Authlib verified the ID token against the JWKS, restricted to these algorithms.
    header = token["id_token"].split(".")[0]
    assert json.loads(urlsafe_b64decode(header + "=" * (-len(header) % 4)))["alg"] == "RS256"


def check_token_auth_methods(provider, value):
    assert value == ["none"]
    provider.sign_in(provider.app())  # a public client: no secret at the token endpoint


def check_code_challenge_methods(provider, value):
    assert value == ["S256"]
    provider.sign_in(provider.app())
    response = provider.browser().get(
        provider.metadata["authorization_endpoint"],
        params={
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": REDIRECT,
            "scope": "openid",
            "state": "s",
            "code_challenge": "p" * 50,
            "code_challenge_method": "plain",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code >= 400 or "error=" in response.headers["Location"]


def check_claims(provider, value):
    token, claims = provider.sign_in(provider.app(scope=EVERY_SCOPE))
    issued = set(claims) | set(provider.app().userinfo(token=token))
    assert set(value) <= issued, set(value) - issued


def check_prompts(provider, value):
    assert set(value) == {"none", "login"}
    provider.sign_in(provider.app(), prompt="none")
    _, response = provider.authorize(provider.app(), provider.browser(), prompt="login")
    assert response.status_code == 302 and urlsplit(response.headers["Location"]).path == (
        "/login/"
    )


def check_client_id_metadata_documents(provider, value):
    assert value is False
    response = provider.browser().get(
        provider.metadata["authorization_endpoint"],
        params={
            "response_type": "code",
            "client_id": "https://softphone.example/client.json",
            "redirect_uri": REDIRECT,
            "scope": "openid",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code >= 400


def check_iss_parameter(provider, value):
    assert value is True
    provider.sign_in(provider.app())  # asserts iss on the success response
    _, response = provider.authorize(
        provider.app(), provider.browser(signed_in=False), prompt="none"
    )
    assert redirect_query(response)["iss"] == provider.base_url  # and on an error


def check_introspection_auth(provider, value):
    assert value == ["bearer"]
    token, _ = provider.sign_in(provider.app())
    assert provider.introspect(token["access_token"]).json()["active"] is True
    anonymous = requests.post(
        provider.metadata["introspection_endpoint"],
        data={"token": token["access_token"]},
        timeout=10,
    )
    assert anonymous.status_code == 401


def check_revocation_auth(provider, value):
    assert value == ["none"]
    token, _ = provider.sign_in(provider.app())
    provider.session(token).revoke_token(
        provider.metadata["revocation_endpoint"], token=token["access_token"]
    )
    assert provider.introspect(token["access_token"]).json() == {"active": False}


def check_grant_types(provider, value):
    assert value == ["authorization_code", "refresh_token"]
    token, _ = provider.sign_in(provider.app())
    provider.session(token).refresh_token(
        provider.metadata["token_endpoint"], refresh_token=token["refresh_token"]
    )
    for grant in ("client_credentials", "password", "implicit"):
        refused = requests.post(
            provider.metadata["token_endpoint"],
            data={
                "grant_type": grant,
                "client_id": provider.client_id,
                "username": provider.user.email,
                "password": "x",
            },
            timeout=10,
        )
        assert refused.status_code in (400, 401), grant


METADATA_CHECKS = {
    "issuer": check_issuer,
    "authorization_endpoint": check_endpoint("authorization"),
    "token_endpoint": check_endpoint("token"),
    "userinfo_endpoint": check_endpoint("userinfo"),
    "jwks_uri": check_endpoint("jwks"),
    "introspection_endpoint": check_endpoint("introspection"),
    "revocation_endpoint": check_endpoint("revocation"),
    "scopes_supported": check_scopes,
    "response_types_supported": check_response_types,
    "subject_types_supported": check_subject_types,
    "id_token_signing_alg_values_supported": check_signing_algs,
    "token_endpoint_auth_methods_supported": check_token_auth_methods,
    "code_challenge_methods_supported": check_code_challenge_methods,
    "claims_supported": check_claims,
    "prompt_values_supported": check_prompts,
    "client_id_metadata_document_supported": check_client_id_metadata_documents,
    "authorization_response_iss_parameter_supported": check_iss_parameter,
    "introspection_endpoint_auth_methods_supported": check_introspection_auth,
    "revocation_endpoint_auth_methods_supported": check_revocation_auth,
    "grant_types_supported": check_grant_types,
}


def test_every_advertised_value_is_true(provider):
    advertised = provider.metadata
    # A value added to discovery without a check here fails until one is written.
    assert set(advertised) == set(METADATA_CHECKS)
    for key, check in METADATA_CHECKS.items():
        check(provider, advertised[key])
