"""The call path's door (telephony/network/callpath.py): the STI-AS, the STI-VS and the
edge's INVITEs are answered without the browser middleware and DRF's request cycle,
yet refuse what every network view refuses, in the same words."""

import logging
import time
from types import SimpleNamespace

import pytest
from django.test import Client
from django.urls import reverse

from kernel import ratelimit
from telephony.models import CallRecord
from telephony.tests.sip_messages import invite

pytestmark = pytest.mark.django_db

DOOR = "telephony.network.callpath.CallPathMiddleware"


def signing_request(tn="4930123400"):
    return {
        "signingRequest": {
            "orig": {"tn": tn},
            "dest": {"tn": ["4940123499"]},
            "iat": int(time.time()),
            "origid": "9b3f2c1e-5a7d-4e8b-9f00-1c2d3e4f5a6b",
        }
    }


# Each route of the door, with a body it takes.
ROUTES = {
    "network-stir-signing": ("application/json", signing_request()),
    "network-stir-verification": (
        "application/json",
        {"verificationRequest": {"from": {"tn": "1"}, "to": {"tn": ["2"]}, "identity": "x"}},
    ),
    "network-sip-invite": ("message/sip", invite()),
}


def post(client, name, **extra):
    content_type, body = ROUTES[name]
    return client.post(reverse(name), body, content_type=content_type, **extra)


@pytest.fixture
def another_network_view(network):
    """A network view DRF answers whole, to compare the door's refusals with."""

    def answer(client, **extra):
        return client.post(
            reverse("network-registrations"), {}, content_type="application/json", **extra
        )

    return answer


@pytest.mark.parametrize("name", ROUTES)
def test_a_missing_or_wrong_credential_is_refused_as_at_every_network_view(
    name, network, another_network_view
):
    for client in (Client(), Client(HTTP_AUTHORIZATION="Bearer ntk_guessed")):
        door, drf = post(client, name), another_network_view(client)
        assert door.status_code == drf.status_code == 401
        assert door.json() == drf.json()
        assert door["WWW-Authenticate"] == drf["WWW-Authenticate"] == 'Bearer realm="network"'
    assert not CallRecord.objects.exists()


@pytest.mark.parametrize("name", ROUTES)
def test_a_body_of_another_media_type_is_refused_415_once_the_credential_is_checked(
    name, network, another_network_view
):
    door = network.post(reverse(name), "<x/>", content_type="application/xml")
    drf = network.post(reverse("network-registrations"), "<x/>", content_type="application/xml")
    assert door.status_code == drf.status_code == 415
    assert door.json()["code"] == drf.json()["code"] == "unsupported_media_type"
    assert Client().post(reverse(name), "<x/>", content_type="application/xml").status_code == 401


@pytest.mark.parametrize("name", ROUTES)
def test_only_post_is_answered(name, network):
    refused = network.get(reverse(name))
    assert refused.status_code == 405
    assert refused["Allow"] == "POST"
    assert refused.json()["code"] == "method_not_allowed"


@pytest.mark.parametrize("name", ROUTES)
def test_a_client_over_its_rate_gets_429_with_retry_after(name, network, settings, monkeypatch):
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: 1_800_000_030.5))
    settings.NETWORK_RATE_LIMIT = "2/minute"
    ratelimit.cache.clear()
    assert 429 not in [post(network, name).status_code for _ in range(2)]
    refused = post(network, name)
    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled"
    assert int(refused["Retry-After"]) == 30


@pytest.mark.parametrize("name", ROUTES)
def test_a_host_not_allowed_is_refused(name, network):
    assert post(network, name, HTTP_HOST="evil.example").status_code == 400


def test_an_empty_body_is_refused_in_each_routes_own_words(network):
    signing = network.post(reverse("network-stir-signing"), b"", content_type="application/json")
    assert signing.status_code == 400
    assert signing.json()["requestError"]["serviceException"]["messageId"] == "SVC4000"
    sip = network.post(reverse("network-sip-invite"), b"", content_type="message/sip")
    assert sip.status_code == 400
    assert sip.json()["detail"] == "The body is empty or has no Content-Type."


def test_the_door_skips_the_browser_middleware_and_keeps_the_request_log(network, rob, pki, caplog):
    with caplog.at_level(logging.INFO, logger="portal.request"):
        signed = post(network, "network-stir-signing")
    assert signed.status_code == 200
    assert signed.json()["signingResponse"]["identity"]
    # Nothing below the door ran: no session, no enterprise resolved.
    assert not hasattr(signed.wsgi_request, "session")
    assert not hasattr(signed.wsgi_request, "enterprise")
    assert signed["X-Request-ID"] and signed["X-Content-Type-Options"] == "nosniff"
    assert "POST network/v1/stir/signing 200" in caplog.text
    # A DRF view of the network API passes the whole chain.
    assert hasattr(network.get(reverse("network-ping")).wsgi_request, "session")


def test_without_the_door_the_views_answer_alike(network, rob, pki, settings):
    through_door = post(network, "network-stir-signing")
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != DOOR]
    same_client = Client(HTTP_AUTHORIZATION=network.defaults["HTTP_AUTHORIZATION"])
    alone = post(same_client, "network-stir-signing")
    assert hasattr(alone.wsgi_request, "session")  # the whole chain ran this time
    assert through_door.status_code == alone.status_code == 200
    assert through_door.json().keys() == alone.json().keys() == {"signingResponse"}
    assert Client().post(reverse("network-stir-signing")).status_code == 401
    assert CallRecord.objects.count() == 2
