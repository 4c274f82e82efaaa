"""OpenID Connect identity management: an MMTEL client signs a user in with PKCE, a
network element introspects the token."""

import base64
import hashlib
import json
import secrets
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
import pytest
from django.test import Client
from django.urls import reverse

from accounts import oidc
from accounts.audit import Actor
from accounts.services import network_client_create
from accounts.tests.factories import EnterpriseFactory, UserFactory
from portal.testing import sign_in_verified
from telephony.identities import services as telephony_services
from telephony.identities import sync
from telephony.tests.factories import give_numbers, make_identity

pytestmark = pytest.mark.django_db
REDIRECT = "https://softphone.example/callback"
MMTEL = "https://ims.mnc001.mcc001.3gppnetwork.org"


@pytest.fixture(autouse=True)
def _resource_servers(settings):
    settings.OIDC_RESOURCE_SERVERS = [MMTEL, "https://mcptt.example"]


@pytest.fixture
def allowed(enterprise):
    enterprise.contract.may_authenticate_users = True
    enterprise.contract.save()
    return enterprise


@pytest.fixture
def app(allowed):
    return oidc.client_register(
        actor=Actor.system(),
        enterprise=allowed,
        name="Softphone",
        redirect_uris=[REDIRECT],
        first_party=True,
    ).application


@pytest.fixture
def rob(employee, allowed):
    give_numbers(allowed)
    identity = make_identity(employee, alias="rob")
    sync.push_identity(identity.pk)
    return identity


def pkce():
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    return verifier, challenge


def authorize(browser, app, challenge, scope="openid profile email mmtel", **extra):
    params = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT,
        "scope": scope,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "st4te",
        "nonce": "n0nce",
        **extra,
    }
    return browser.get(reverse("oauth2_provider:authorize"), params)


def exchange(app, code, verifier, **extra):
    return Client().post(
        reverse("oauth2_provider:token"),
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": app.client_id,
            "code_verifier": verifier,
            **extra,
        },
    )


def signed_in_tokens(employee, app, scope="openid profile email mmtel"):
    browser = sign_in_verified(Client(), employee)
    verifier, challenge = pkce()
    response = authorize(browser, app, challenge, scope)
    assert response.status_code == 302, response.content[:500]
    query = parse_qs(urlparse(response.url).query)
    assert query["state"] == ["st4te"]
    tokens = exchange(app, query["code"][0], verifier)
    assert tokens.status_code == 200, tokens.content
    return tokens.json()


def introspect(element, token):
    """RFC 7662: a form-encoded POST."""
    return element.post(
        reverse("oauth2_provider:introspect"),
        urlencode({"token": token}),
        content_type="application/x-www-form-urlencoded",
    )


def jwks_key(kid):
    keys = Client().get(reverse("oauth2_provider:jwks-info")).json()["keys"]
    return jwt.PyJWK(next(k for k in keys if k["kid"] == kid)).key


def test_the_flow_end_to_end_with_pkce_and_a_network_element_introspecting(
    employee, app, rob, allowed
):
    tokens = signed_in_tokens(employee, app, "openid profile email mmtel 3gpp:mc:ptt_service")
    assert tokens["token_type"] == "Bearer" and tokens["refresh_token"]

    # Access and ID tokens are RS256 JWTs that verify against the published JWKS.
    header = jwt.get_unverified_header(tokens["access_token"])
    # RFC 9068: the audience is the resource server (the MMTEL realm by default).
    access = jwt.decode(
        tokens["access_token"],
        jwks_key(header["kid"]),
        algorithms=["RS256"],
        audience=MMTEL,
    )
    assert access["client_id"] == app.client_id
    assert access["sub"] == str(employee.pk) and access["enterprise"] == allowed.slug
    assert set(rob.impus) <= set(access["impus"])
    assert access["mcptt_id"] == f"sip:{employee.email.split('@')[0]}@{allowed.sip_domain}"
    id_header = jwt.get_unverified_header(tokens["id_token"])
    identity = jwt.decode(
        tokens["id_token"], jwks_key(id_header["kid"]), algorithms=["RS256"], audience=app.client_id
    )
    assert identity["nonce"] == "n0nce" and identity["email"] == employee.email

    userinfo = Client().get(
        reverse("oauth2_provider:user-info"), HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}"
    )
    assert userinfo.status_code == 200 and userinfo.json()["impus"] == access["impus"]

    _, raw = network_client_create(actor=Actor.system(), name="P-CSCF", enterprises=[allowed])
    element = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    answer = introspect(element, tokens["access_token"]).json()
    assert answer["active"] is True and answer["username"] == employee.email
    assert set(rob.impus) <= set(answer["impus"])
    # An element of another enterprise learns nothing.
    _, other_raw = network_client_create(
        actor=Actor.system(), name="Other", enterprises=[EnterpriseFactory()]
    )
    other = Client(HTTP_AUTHORIZATION=f"Bearer {other_raw}")
    assert introspect(other, tokens["access_token"]).json() == {"active": False}
    # Introspection needs a network credential.
    assert introspect(Client(), tokens["access_token"]).status_code == 401


def test_grants_add_the_shared_identities_to_the_token(employee, app, rob, allowed):
    colleague = UserFactory(enterprise=allowed)
    shared = make_identity(colleague)
    telephony_services.grant_create(actor=Actor(user=colleague), identity=shared, grantee=employee)
    claims = jwt.decode(
        signed_in_tokens(employee, app)["access_token"], options={"verify_signature": False}
    )
    assert set(shared.impus) <= set(claims["impus"])


def test_tokens_are_refused_after_offboarding(employee, app, rob, allowed, admin):
    tokens = signed_in_tokens(employee, app)
    _, raw = network_client_create(actor=Actor.system(), name="P-CSCF", enterprises=[allowed])
    element = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    receipt = telephony_services.employee_offboard(actor=Actor(user=admin), user=employee)
    assert "App sign-in tokens revoked: 1" in [step["step"] for step in receipt.steps]
    assert introspect(element, tokens["access_token"]).json() == {"active": False}
    userinfo = Client().get(
        reverse("oauth2_provider:user-info"), HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}"
    )
    assert userinfo.status_code == 401
    refreshed = Client().post(
        reverse("oauth2_provider:token"),
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": app.client_id,
        },
    )
    assert refreshed.status_code == 400


def test_suspension_revokes_tokens(employee, app, rob, admin):
    tokens = signed_in_tokens(employee, app)
    from accounts import services

    services.user_suspend(actor=Actor(user=admin), user=employee)
    userinfo = Client().get(
        reverse("oauth2_provider:user-info"), HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}"
    )
    assert userinfo.status_code == 401


def test_a_contract_without_user_authentication_refuses_the_flow(employee, app, allowed):
    allowed.contract.may_authenticate_users = False
    allowed.contract.save()
    browser = sign_in_verified(Client(), employee)
    response = authorize(browser, app, pkce()[1])
    assert response.status_code == 403
    assert "does not include signing in" in response.content.decode()


def test_pkce_is_required(employee, app):
    browser = sign_in_verified(Client(), employee)
    response = authorize(browser, app, "", code_challenge_method="")
    assert "error=invalid_request" in response.url or response.status_code == 400


def test_the_wrong_verifier_gets_no_token(employee, app):
    browser = sign_in_verified(Client(), employee)
    _, challenge = pkce()
    code = parse_qs(urlparse(authorize(browser, app, challenge).url).query)["code"][0]
    assert exchange(app, code, "x" * 50).status_code == 400


def test_another_enterprises_app_is_refused(employee, allowed):
    foreign = oidc.client_register(
        actor=Actor.system(),
        enterprise=EnterpriseFactory(),
        name="Theirs",
        redirect_uris=[REDIRECT],
        first_party=True,
    ).application
    browser = sign_in_verified(Client(), employee)
    assert authorize(browser, foreign, pkce()[1]).status_code == 403


def test_a_third_party_app_asks_for_consent(employee, allowed):
    third = oidc.client_register(
        actor=Actor.system(),
        enterprise=allowed,
        name="Partner dialer",
        redirect_uris=[REDIRECT],
        first_party=False,
    ).application
    browser = sign_in_verified(Client(), employee)
    _, challenge = pkce()
    page = authorize(browser, third, challenge)
    assert page.status_code == 200 and "Allow Partner dialer?" in page.content.decode()
    form = {
        k: v[0]
        for k, v in parse_qs(
            urlparse(page.request["PATH_INFO"] + "?" + page.request["QUERY_STRING"]).query
        ).items()
    }
    answer = browser.post(
        reverse("oauth2_provider:authorize"),
        {**form, "allow": "Authorize", "redirect_uri": REDIRECT, "client_id": third.client_id},
    )
    assert answer.status_code == 302 and "code=" in answer.url


def test_discovery_advertises_every_endpoint(client):
    data = client.get("/.well-known/openid-configuration").json()
    for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
                "introspection_endpoint", "revocation_endpoint"):  # fmt: skip
        assert data[key].startswith("http"), key
    assert "S256" in data["code_challenge_methods_supported"]
    assert "3gpp:mc:ptt_service" in data["scopes_supported"]
    assert "RS256" in data["id_token_signing_alg_values_supported"]


def test_revocation_endpoint_revokes_a_token(employee, app, rob, allowed):
    tokens = signed_in_tokens(employee, app)
    revoked = Client().post(
        reverse("oauth2_provider:revoke-token"),
        {"token": tokens["access_token"], "client_id": app.client_id},
    )
    assert revoked.status_code == 200
    userinfo = Client().get(
        reverse("oauth2_provider:user-info"), HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}"
    )
    assert userinfo.status_code == 401


def test_an_employee_withdraws_an_apps_access(employee, app, rob):
    tokens = signed_in_tokens(employee, app)
    browser = sign_in_verified(Client(), employee)
    page = browser.get(reverse("accounts:connected_apps")).content.decode()
    assert "Softphone" in page
    for wrong in ("", "x", "²", "99999"):
        response = browser.post(reverse("accounts:connected_apps"), {"application": wrong})
        assert response.status_code == 404
    browser.post(reverse("accounts:connected_apps"), {"application": app.pk})
    userinfo = Client().get(
        reverse("oauth2_provider:user-info"), HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}"
    )
    assert userinfo.status_code == 401


def test_admins_register_and_remove_client_apps(admin_client, allowed):
    page = admin_client.get(reverse("accounts:identity_provider")).content.decode()
    assert "/.well-known/openid-configuration" in page
    admin_client.post(
        reverse("accounts:identity_provider"),
        {
            "client-name": "Desk phone",
            "client-redirect_uris": "https://desk.example/cb",
            "client-first_party": "on",
        },
    )
    registration = allowed.oidc_clients.get()
    assert registration.application.skip_authorization is True
    admin_client.post(reverse("accounts:oidc_client_remove", args=[registration.pk]))
    assert not allowed.oidc_clients.exists()


def test_the_jwks_publishes_inactive_keys_for_rotation(settings):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from oauth2_provider.settings import oauth2_settings

    old = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_RSA_PRIVATE_KEYS_INACTIVE": [old]}
    oauth2_settings.reload()
    try:
        keys = Client().get(reverse("oauth2_provider:jwks-info")).json()["keys"]
    finally:
        settings.OAUTH2_PROVIDER = {
            **settings.OAUTH2_PROVIDER,
            "OIDC_RSA_PRIVATE_KEYS_INACTIVE": [],
        }
        oauth2_settings.reload()
    assert len(keys) == 2 and len({k["kid"] for k in keys}) == 2
    assert json.dumps(keys)  # plain JSON


# --- prompt=none (OIDC Core §3.1.2.6) -------------------------------------------------------


def answer(response):
    """The query of the redirect to the app; fails when the response is not one."""
    assert response.status_code == 302, response.content[:300]
    assert response.url.startswith(REDIRECT + "?"), response.url
    return {k: v[0] for k, v in parse_qs(urlparse(response.url).query).items()}


def test_prompt_none_with_a_session_answers_with_the_code(employee, app):
    browser = sign_in_verified(Client(), employee)
    verifier, challenge = pkce()
    query = answer(authorize(browser, app, challenge, prompt="none"))
    assert query["state"] == "st4te" and "error" not in query
    assert exchange(app, query["code"], verifier).status_code == 200


def test_prompt_none_without_a_session_answers_login_required(app, settings):
    query = answer(authorize(Client(), app, pkce()[1], prompt="none"))
    assert query == {
        "error": "login_required",
        "error_description": "Sign in to the portal first.",
        "state": "st4te",
        "iss": settings.PORTAL_BASE_URL,
    }


def test_prompt_none_with_the_second_factor_owed_answers_login_required(admin, app):
    # An admin must show a second factor: a password-only session is not signed in.
    browser = Client()
    browser.force_login(admin)
    query = answer(authorize(browser, app, pkce()[1], prompt="none"))
    assert query["error"] == "login_required"


def test_prompt_none_asks_for_consent_a_third_party_app_was_not_given(employee, allowed):
    third = oidc.client_register(
        actor=Actor.system(),
        enterprise=allowed,
        name="Partner dialer",
        redirect_uris=[REDIRECT],
        first_party=False,
    ).application
    browser = sign_in_verified(Client(), employee)
    assert answer(authorize(browser, third, pkce()[1], prompt="none"))["error"] == (
        "consent_required"
    )


def test_prompt_none_for_a_user_who_may_not_sign_in_answers_access_denied(employee, app):
    employee.enterprise.contract.may_authenticate_users = False
    employee.enterprise.contract.save()
    browser = sign_in_verified(Client(), employee)
    assert answer(authorize(browser, app, pkce()[1], prompt="none"))["error"] == "access_denied"


def test_prompt_none_gives_a_code_once_a_third_party_app_has_consent(employee, allowed):
    third = oidc.client_register(
        actor=Actor.system(),
        enterprise=allowed,
        name="Partner dialer",
        redirect_uris=[REDIRECT],
        first_party=False,
    ).application
    browser = sign_in_verified(Client(), employee)
    verifier, challenge = pkce()
    page = authorize(browser, third, challenge)
    consent = {
        "client_id": third.client_id,
        "redirect_uri": REDIRECT,
        "scope": "openid profile email mmtel",
        "response_type": "code",
        "state": "st4te",
        "nonce": "n0nce",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "allow": "Authorize",
    }
    assert page.status_code == 200
    code = answer(browser.post(reverse("oauth2_provider:authorize"), consent))["code"]
    assert exchange(third, code, verifier).status_code == 200
    query = answer(authorize(browser, third, pkce()[1], prompt="none"))
    assert "code" in query and "error" not in query


def test_prompt_none_with_a_hint_naming_someone_else_answers_login_required(employee, app, allowed):
    colleague = UserFactory(enterprise=allowed)
    theirs = signed_in_tokens(colleague, app)["id_token"]
    mine = signed_in_tokens(employee, app)["id_token"]
    browser = sign_in_verified(Client(), employee)
    assert "code" in answer(authorize(browser, app, pkce()[1], prompt="none", id_token_hint=mine))
    for hint in (theirs, "not.a.token", "x" * 10_000):
        query = answer(authorize(browser, app, pkce()[1], prompt="none", id_token_hint=hint))
        assert query["error"] == "login_required", hint[:20]


def test_prompt_none_never_redirects_to_an_unregistered_uri(app):
    response = authorize(
        Client(), app, pkce()[1], prompt="none", redirect_uri="https://evil.example/cb"
    )
    assert response.status_code == 400 and "evil.example" not in response.get("Location", "")


# --- Resource indicators (RFC 8707) and the access token's audience (RFC 9068) ---------------


def claims_of(tokens):
    return jwt.decode(tokens["access_token"], options={"verify_signature": False})


def test_a_resource_narrows_the_audience_and_refresh_keeps_it(employee, app):
    browser = sign_in_verified(Client(), employee)
    verifier, challenge = pkce()
    code = answer(authorize(browser, app, challenge, resource="https://mcptt.example"))["code"]
    tokens = exchange(app, code, verifier).json()
    assert claims_of(tokens)["aud"] == "https://mcptt.example"
    refreshed = (
        Client()
        .post(
            reverse("oauth2_provider:token"),
            {
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": app.client_id,
            },
        )
        .json()
    )
    assert claims_of(refreshed)["aud"] == "https://mcptt.example"
    # The narrowed token still reads the user's claims from this provider.
    userinfo = Client().get(
        reverse("oauth2_provider:user-info"),
        HTTP_AUTHORIZATION=f"Bearer {refreshed['access_token']}",
    )
    assert userinfo.status_code == 200


def test_an_unknown_resource_is_refused_with_invalid_target(employee, app):
    browser = sign_in_verified(Client(), employee)
    verifier, challenge = pkce()
    query = answer(authorize(browser, app, challenge, resource="https://elsewhere.example"))
    assert query["error"] == "invalid_target" and query["state"] == "st4te"
    # At the token endpoint too.
    code = answer(authorize(browser, app, challenge))["code"]
    refused = exchange(app, code, verifier, resource="https://elsewhere.example")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_target"


def test_introspection_says_the_audience(employee, app, allowed):
    tokens = signed_in_tokens(employee, app)
    _, raw = network_client_create(actor=Actor.system(), name="P-CSCF", enterprises=[allowed])
    element = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert introspect(element, tokens["access_token"]).json()["aud"] == MMTEL


def test_discovery_advertises_only_what_is_true(client):
    data = client.get("/.well-known/openid-configuration").json()
    assert data["response_types_supported"] == ["code"]
    assert data["token_endpoint_auth_methods_supported"] == ["none"]
    assert data["id_token_signing_alg_values_supported"] == ["RS256"]
    assert {"sub", "name", "email", "impus", "mcptt_id"} <= set(data["claims_supported"])
