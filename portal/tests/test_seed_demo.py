import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.models import ApiToken, Enterprise, User

pytestmark = pytest.mark.django_db


def seed_json() -> dict:
    out = StringIO()
    call_command("seed_demo", "--json", stdout=out)
    return json.loads(out.getvalue())


def test_seed_demo_is_idempotent_and_prints_usable_credentials(settings, client):
    settings.DEBUG = True
    first = seed_json()
    counts = (User.objects.count(), Enterprise.objects.count(), ApiToken.objects.count())
    second = seed_json()
    assert first == second
    assert counts == (User.objects.count(), Enterprise.objects.count(), ApiToken.objects.count())

    by_email = {u["email"]: u for u in first["users"]}
    rob = by_email["rob.smith@swift-delivery.example"]
    assert rob["role"] == "employee" and rob["enterprise"] == "Swift Delivery"
    assert rob["otpauth"].startswith("otpauth://totp/")
    assert {u["role"] for u in first["users"]} == {"operator", "admin", "helpdesk", "employee"}
    response = client.post("/login/", {"username": rob["email"], "password": rob["password"]})
    assert response.status_code == 302 and response.url.startswith("/account/2fa/")

    assert first["network_token"].startswith("ntk_")
    assert first["scim_token"].startswith("stk_")
    assert first["oidc_client"]["client_id"] == "demo-softphone"
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {first['api_token']}")
    emails = {u["email"] for u in api.get("/api/v1/users/").json()["results"]}
    assert "rob.smith@swift-delivery.example" in emails


def test_seed_demo_refuses_to_run_in_production(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("seed_demo")
    assert not User.objects.exists()
