"""Security headers on every kind of answer, and the session and CSRF cookies.

``check --deploy`` under production settings is tested in test_settings.py, and the login
page's CSP and frame denial in accounts/tests/test_views.py; this file checks that the
headers are on pages, errors, the REST API, the network API, SCIM, the OpenID provider and
static files alike, that production turns on HSTS (over TLS only) and secure cookies, and
what the cookies carry.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.urls import reverse

from accounts.audit import Actor
from accounts.services import network_client_create
from accounts.tests.factories import PASSWORD, TOTPDeviceFactory, api_token
from portal.testing import totp_code

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
SECURITY_SETTINGS = [
    "DEBUG",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_REDIRECT_EXEMPT",
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SAMESITE",
    "CSRF_COOKIE_SECURE",
    "CSRF_COOKIE_HTTPONLY",
    "CSRF_COOKIE_SAMESITE",
    "X_FRAME_OPTIONS",
    "SECURE_CONTENT_TYPE_NOSNIFF",
    "SECURE_REFERRER_POLICY",
    "SECURE_CROSS_ORIGIN_OPENER_POLICY",
]


def production_settings(tmp_path, **extra_env) -> dict:
    """The security settings as the production settings module computes them."""
    from portal.tests.test_settings import production_env

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ALLOWED_HOSTS"))}
    env.update(DJANGO_SETTINGS_MODULE="portal.settings", **production_env(tmp_path, **extra_env))
    script = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n, None) for n in {SECURITY_SETTINGS!r}}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    if values["SECURE_PROXY_SSL_HEADER"]:
        values["SECURE_PROXY_SSL_HEADER"] = tuple(values["SECURE_PROXY_SSL_HEADER"])
    return values


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    return production_settings(tmp_path_factory.mktemp("production"))


def test_production_turns_on_hsts_ssl_redirect_and_secure_cookies(production):
    assert production["DEBUG"] is False
    assert production["SECURE_SSL_REDIRECT"] is True
    assert production["SECURE_HSTS_SECONDS"] >= 365 * 24 * 3600
    assert production["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert production["SESSION_COOKIE_SECURE"] is True
    assert production["CSRF_COOKIE_SECURE"] is True
    # X-Forwarded-Proto is trusted only when told that a TLS proxy is in front.
    assert production["SECURE_PROXY_SSL_HEADER"] is None


def test_a_tls_proxy_is_trusted_only_when_configured(tmp_path):
    values = production_settings(tmp_path, BEHIND_TLS_PROXY="true")
    assert values["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")


def test_development_keeps_cookies_usable_over_plain_http():
    assert settings.SESSION_COOKIE_SECURE is False
    assert not getattr(settings, "SECURE_HSTS_SECONDS", 0)


def _answers(enterprise, admin):
    """One answer of every kind: pages, errors, APIs, machine endpoints, static files."""
    TOTPDeviceFactory(user=admin)
    _, api_raw = api_token(enterprise)
    _, network_raw = network_client_create(
        actor=Actor.system(), name="S-CSCF", enterprises=[enterprise]
    )
    from accounts import services as account_services

    _, scim_raw = account_services.api_token_create(
        actor=Actor.system(), enterprise=enterprise, name="IdP", role="admin", purpose="scim"
    )
    api = Client(HTTP_AUTHORIZATION=f"Bearer {api_raw}")
    network = Client(HTTP_AUTHORIZATION=f"Bearer {network_raw}")
    scim = Client(HTTP_AUTHORIZATION=f"Bearer {scim_raw}")
    anonymous = Client()
    return {
        "login page": anonymous.get(reverse("accounts:login")),
        "a page's redirect to sign in": anonymous.get(reverse("telephony:employees")),
        "a 404 page": anonymous.get("/no-such-page/"),
        "REST API": api.get("/api/v1/enterprise/"),
        "REST API error": api.get("/api/v1/users/999999/"),
        "REST API without credential": anonymous.get("/api/v1/enterprise/"),
        "network API": network.post(
            "/network/v1/stir/signing", "{}", content_type="application/json"
        ),
        "SCIM": scim.get("/scim/v2/Users"),
        "OpenID discovery": anonymous.get("/.well-known/openid-configuration"),
        "OpenID token endpoint": anonymous.post(
            reverse("oauth2_provider:token"), {"grant_type": "authorization_code"}
        ),
        "API schema": anonymous.get("/api/schema/"),
        "static file": anonymous.get("/static/portal/portal.css"),
        "health": anonymous.get("/healthz"),
    }


def test_every_kind_of_answer_carries_the_security_headers(enterprise, admin):
    for kind, response in _answers(enterprise, admin).items():
        assert response.get("X-Content-Type-Options") == "nosniff", kind
        assert response.get("Referrer-Policy") == "same-origin", kind
        assert response.get("Cross-Origin-Opener-Policy") == "same-origin", kind
        assert response.get("X-Frame-Options") == "DENY", kind
        policy = response["Content-Security-Policy"]
        for directive in ("default-src 'self'", "script-src 'self'", "object-src 'none'",
                          "frame-ancestors 'none'", "base-uri 'self'", "form-action 'self'"):  # fmt: skip
            assert directive in policy, (kind, directive)
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, kind


def test_hsts_is_sent_over_tls_only_and_plain_http_is_redirected(enterprise, admin, production):
    tls = {k: production[k] for k in production if "HSTS" in k or "REDIRECT" in k}
    with override_settings(**tls):
        client = Client()
        plain = client.get(reverse("accounts:login"))
        assert plain.status_code == 301
        assert plain["Location"].startswith("https://")
        assert "Strict-Transport-Security" not in plain
        for path in (reverse("accounts:login"), "/api/v1/enterprise/", "/scim/v2/Users"):
            secure = client.get(path, secure=True)
            value = secure["Strict-Transport-Security"]
            assert f"max-age={production['SECURE_HSTS_SECONDS']}" in value, path
            assert "includeSubDomains" in value, path
        # Health checks stay reachable over plain HTTP for load balancers.
        assert client.get("/healthz").status_code == 200


def _set_cookie(response, name):
    morsel = response.cookies.get(name)
    assert morsel is not None and morsel.value, f"{name} was not set"
    return morsel


def _sign_in(client, admin, *, secure):
    device = TOTPDeviceFactory(user=admin)
    page = client.get(reverse("accounts:login"), secure=secure)
    response = client.post(
        reverse("accounts:login"),
        {"username": admin.email, "password": PASSWORD},
        secure=secure,
    )
    assert response.status_code == 302, response.content[:300]
    verified = client.post(
        reverse("accounts:two_factor"),
        {"method": "totp", "token": totp_code(device)},
        secure=secure,
    )
    return page, response, verified


def test_the_session_and_csrf_cookies_are_httponly_and_same_site(admin):
    client = Client()
    page, signed_in, verified = _sign_in(client, admin, secure=False)
    csrf = _set_cookie(page, settings.CSRF_COOKIE_NAME)
    assert csrf["httponly"] and csrf["samesite"] == "Lax"
    for response in (signed_in, verified):
        session = _set_cookie(response, settings.SESSION_COOKIE_NAME)
        assert session["httponly"] and session["samesite"] == "Lax"
        assert int(session["max-age"]) <= 12 * 3600


def test_in_production_the_cookies_are_secure(admin, production):
    cookies = {k: production[k] for k in production if "COOKIE" in k}
    with override_settings(**cookies):
        page, signed_in, _ = _sign_in(Client(), admin, secure=True)
        assert _set_cookie(page, settings.CSRF_COOKIE_NAME)["secure"]
        assert _set_cookie(signed_in, settings.SESSION_COOKIE_NAME)["secure"]


def test_signing_in_gives_a_new_session_id(admin):
    client = Client()
    client.get(reverse("accounts:login"))
    client.cookies[settings.SESSION_COOKIE_NAME] = "attacker-chosen-session-id"
    _, signed_in, verified = _sign_in(client, admin, secure=False)
    for response in (signed_in, verified):
        assert response.cookies[settings.SESSION_COOKIE_NAME].value != "attacker-chosen-session-id"
