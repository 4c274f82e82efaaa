"""Request-rate limits: per credential at the REST API, SCIM and the network API, per
address at the OAuth token endpoint; answered 429 with Retry-After in each endpoint's
own error format."""

from types import SimpleNamespace

import pytest
from django.http import JsonResponse
from django.test import Client
from oauth2_provider.views import TokenView
from rest_framework.test import APIClient

from accounts.audit import Actor
from accounts.models import Role
from accounts.services import api_token_create, network_client_create
from accounts.tests.factories import api_token
from kernel import ratelimit

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _mid_window(monkeypatch):
    """The limits' clock stands still mid-minute and mid-second: a test's requests never
    straddle two fixed windows (one did, at 18:07:59.995 and 18:08:00.003, and its
    second request was the first of a new window)."""
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: 1_800_000_030.5))


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_an_api_token_over_its_rate_gets_429_and_others_are_served(
    api, enterprise, other_enterprise, settings
):
    settings.API_RATE_LIMIT = "3/minute"
    assert [api.get("/api/v1/enterprise/").status_code for _ in range(3)] == [200] * 3
    refused = api.get("/api/v1/enterprise/")
    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled"
    assert 1 <= int(refused["Retry-After"]) <= 60
    # Another credential of the same enterprise, and another enterprise, are unaffected.
    assert bearer(api_token(enterprise)[1]).get("/api/v1/enterprise/").status_code == 200
    assert bearer(api_token(other_enterprise)[1]).get("/api/v1/enterprise/").status_code == 200


def test_a_signed_in_users_api_calls_count_against_that_user(admin_client, settings):
    settings.API_RATE_LIMIT = "2/minute"
    codes = [admin_client.get("/api/v1/enterprise/").status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_a_scim_token_over_its_rate_gets_a_scim_error_with_retry_after(enterprise, settings):
    settings.API_RATE_LIMIT = "1/minute"
    _, raw = api_token_create(
        actor=Actor.system(), enterprise=enterprise, name="IdP", role=Role.ADMIN, purpose="scim"
    )
    scim = bearer(raw)
    assert scim.get("/scim/v2/Users").status_code == 200
    refused = scim.get("/scim/v2/Users")
    assert refused.status_code == 429
    assert refused.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert refused.json()["status"] == "429"
    assert int(refused["Retry-After"]) >= 1


def test_network_clients_are_unlimited_unless_the_operator_sets_a_rate(enterprise, settings):
    _, raw = network_client_create(actor=Actor.system(), name="S-CSCF", enterprises=[enterprise])
    network = bearer(raw)
    assert settings.NETWORK_RATE_LIMIT == ""
    assert {network.get("/network/v1/ping").status_code for _ in range(30)} == {200}
    settings.NETWORK_RATE_LIMIT = "2/second"
    ratelimit.cache.clear()
    codes = [network.get("/network/v1/ping").status_code for _ in range(3)]
    assert codes[:2] == [200, 200] and codes[2] == 429


GUESS = {"grant_type": "authorization_code", "code": "guess", "client_id": "x"}


def test_the_token_endpoint_limits_refused_requests_per_address(db, settings):
    settings.TOKEN_RATE_LIMIT = "2/minute"
    here, elsewhere = Client(REMOTE_ADDR="198.51.100.7"), Client(REMOTE_ADDR="198.51.100.8")
    assert {here.post("/o/token/", GUESS).status_code for _ in range(2)} <= {400, 401}
    refused = here.post("/o/token/", GUESS)
    assert refused.status_code == 429
    assert refused.json()["error"] == "slow_down"
    assert refused["Cache-Control"] == "no-store" and int(refused["Retry-After"]) >= 1
    assert elsewhere.post("/o/token/", GUESS).status_code in (400, 401)


def test_answered_token_requests_do_not_count(db, settings, monkeypatch):
    """A company's apps behind one NAT address refresh their tokens unhindered."""
    settings.TOKEN_RATE_LIMIT = "2/minute"
    answered = JsonResponse({"access_token": "…", "token_type": "Bearer"})
    monkeypatch.setattr(TokenView, "post", lambda self, request, *args, **kwargs: answered)
    here = Client(REMOTE_ADDR="198.51.100.7")
    assert {here.post("/o/token/", GUESS).status_code for _ in range(5)} == {200}


def test_a_window_ends_and_the_count_starts_again(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(ratelimit.time, "time", lambda: clock[0])
    assert ratelimit.over_limit("t", "who", "2/minute") is None
    assert ratelimit.over_limit("t", "who", "2/minute") is None
    assert ratelimit.over_limit("t", "who", "2/minute") == 20.0  # the window began at 960
    clock[0] = 1021.0
    assert ratelimit.over_limit("t", "who", "2/minute") is None


@pytest.mark.parametrize("rate", ["lots", "10/fortnight", "/minute", "-1/second"])
def test_a_mistyped_rate_is_refused(rate):
    with pytest.raises(ratelimit.ImproperlyConfigured):
        ratelimit.parse_rate(rate)
