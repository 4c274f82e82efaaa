"""Secrets never reach a log line, an audit row or a task message.

Each test drives a flow that handles a secret the way a person or a machine would (the
pages, the API, the OpenID provider, Django admin), including its failure paths, while
every log record of every logger is captured at DEBUG level. Then no record (its message,
arguments or traceback), no audit row and no task argument may contain the secret.
"""

import base64
import hashlib
import json
import logging
import re
import secrets
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts import oidc
from accounts.audit import Actor
from accounts.models import AuditEvent
from accounts.services import network_client_create
from accounts.tests.factories import PASSWORD, StaffFactory, TOTPDeviceFactory
from portal.testing import sign_in_verified, totp_code
from telephony.callauth import credentials
from telephony.callauth.stir import certificates

pytestmark = pytest.mark.django_db


class Capture:
    """Every log record of every logger, and every task sent."""

    def __init__(self):
        self.records: list[logging.LogRecord] = []
        self.tasks: list[str] = []

    def texts(self):
        for record in self.records:
            yield f"{record.name}: {record.getMessage()}"
            if record.exc_info:
                yield logging.Formatter().formatException(record.exc_info)
            yield repr(record.args)
        for event in AuditEvent.objects.all():
            yield f"audit {event.action}: {event.actor_label} {event.target_label} " + json.dumps(
                event.changes, default=str
            )
        yield from self.tasks

    def assert_absent(self, *values: str):
        assert self.records, "nothing was logged: the capture is not working"
        for value in values:
            assert value, "an empty secret proves nothing"
            for text in self.texts():
                assert value not in text, f"a secret ({value[:6]}…) leaked into: {text[:300]}"


@pytest.fixture
def capture(monkeypatch):
    """Run as with LOG_LEVEL=DEBUG (the root logger at DEBUG; loggers the settings pin
    keep their level) and keep every record and every task sent."""
    from celery.app.task import Task

    found = Capture()

    class Keep(logging.Handler):
        def emit(self, record):
            found.records.append(record)

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    original_apply_async = Task.apply_async

    def apply_async(self, args=None, kwargs=None, **options):
        found.tasks.append(f"task {self.name}: {json.dumps([args, kwargs], default=str)}")
        return original_apply_async(self, args, kwargs, **options)

    monkeypatch.setattr(Task, "apply_async", apply_async)
    # Make sure the capture sees a record, so that "nothing leaked" means something.
    logging.getLogger("portal.tests").debug("capture started")
    try:
        yield found
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_signing_in_with_password_and_code_logs_neither(client, admin, helpdesk, capture):
    device = TOTPDeviceFactory(user=admin)
    wrong_password = "Wrong-password-" + secrets.token_hex(8)
    client.post(reverse("accounts:login"), {"username": admin.email, "password": wrong_password})
    client.post(reverse("accounts:login"), {"username": admin.email, "password": PASSWORD})
    code = totp_code(device)
    response = client.post(reverse("accounts:two_factor"), {"method": "totp", "token": code})
    assert response.status_code == 302
    # A wrong code, from someone else (a failure throttles the device for a while).
    other = TOTPDeviceFactory(user=helpdesk)
    wrong_code = f"{(int(totp_code(other)) + 1) % 1_000_000:06d}"
    failing = Client()
    failing.post(reverse("accounts:login"), {"username": helpdesk.email, "password": PASSWORD})
    failing.post(reverse("accounts:two_factor"), {"method": "totp", "token": wrong_code})
    capture.assert_absent(PASSWORD, wrong_password)
    for text in capture.texts():
        assert not re.search(rf"\b({code}|{wrong_code})\b", text), text[:300]


def test_backup_codes_are_not_logged(admin, capture):
    client = sign_in_verified(Client(), admin)
    page = client.post(reverse("accounts:backup_codes_new"), follow=True).content.decode()
    codes = re.findall(r"\b[a-z0-9]{8,}\b", page.split("backup", 1)[-1])
    client.logout()
    assert codes
    capture.assert_absent(*set(codes))


def test_invitation_and_password_reset_secrets_are_not_logged(
    admin_client, capture, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("accounts:user_invite"),
            {"full_name": "Nina New", "email": "nina@swift.example", "role": "employee"},
        )
    invitation_secret = re.search(r"/invitation/#(\S+)", mail.outbox[-1].body).group(1)
    opening = reverse("accounts:invitation")
    client = Client()
    new_password = "Nina-chooses-" + secrets.token_hex(8)
    client.post(opening, {"secret": invitation_secret}, follow=True)
    client.post(
        reverse("accounts:invitation_accept"),
        {"password": new_password, "password_confirm": new_password},
    )
    # A used link, and one that never existed (also in the earlier link form).
    Client().post(opening, {"secret": invitation_secret}, follow=True)
    forged = "F" + invitation_secret[1:]
    Client().post(opening, {"secret": forged}, follow=True)
    Client().get(f"/invitation/{forged}/", follow=True)

    client.logout()
    client.post(reverse("accounts:password_reset"), {"email": "nina@swift.example"})
    link = re.search(r"https?://[^/]+(/password-reset/link/)#(\S+)/(\S+)", mail.outbox[-1].body)
    reset_token = link.group(3)
    form_url = client.post(link.group(1), {"secret": f"{link.group(2)}/{reset_token}"}).url
    reset_password = "Reset-to-" + secrets.token_hex(8)
    client.post(form_url, {"new_password1": reset_password, "new_password2": reset_password})
    forged = f"{link.group(2)}/{reset_token[:-2]}xx"
    Client().post(link.group(1), {"secret": forged}, follow=True)

    capture.assert_absent(invitation_secret, forged, new_password, reset_token, reset_password)


def test_api_scim_and_network_tokens_are_not_logged(admin_client, enterprise, capture):
    raws = []
    for purpose_page in ("accounts:api_tokens", "accounts:identity_provider"):
        response = admin_client.post(
            reverse(purpose_page), {"name": "HR system", "role": "admin"}, follow=True
        )
        raws += re.findall(r"\b((?:ptk|stk)_[\w-]{20,})", response.content.decode())
    assert any(r.startswith("ptk_") for r in raws)
    _, network_raw = network_client_create(
        actor=Actor.system(), name="S-CSCF", enterprises=[enterprise]
    )
    raws.append(network_raw)
    for raw in raws:
        for path in ("/api/v1/enterprise/", "/scim/v2/Users", "/network/v1/registrations"):
            Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get(path)
            Client(HTTP_AUTHORIZATION=f"Bearer {raw}x").get(path)  # a wrong one
    capture.assert_absent(*raws, *(raw + "x" for raw in raws))


def _pkce():
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_oidc_codes_verifiers_and_tokens_are_not_logged(enterprise, employee, capture):
    enterprise.contract.may_authenticate_users = True
    enterprise.contract.save()
    redirect_uri = "https://softphone.example/callback"
    app = oidc.client_register(
        actor=Actor.system(),
        enterprise=enterprise,
        name="Softphone",
        redirect_uris=[redirect_uri],
        first_party=True,
    ).application
    browser = sign_in_verified(Client(), employee)
    verifier, challenge = _pkce()
    response = browser.get(
        reverse("oauth2_provider:authorize"),
        {"response_type": "code", "client_id": app.client_id, "redirect_uri": redirect_uri,
         "scope": "openid mmtel", "code_challenge": challenge, "code_challenge_method": "S256",
         "state": "s", "nonce": "n"},
    )  # fmt: skip
    code = parse_qs(urlparse(response.url).query)["code"][0]
    token_url = reverse("oauth2_provider:token")
    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "client_id": app.client_id, "code_verifier": verifier}  # fmt: skip
    tokens = Client().post(token_url, exchange).json()
    # A replayed code and a wrong verifier fail, and are logged as failures only.
    Client().post(token_url, exchange)
    Client().post(token_url, {**exchange, "code_verifier": verifier[::-1]})
    refreshed = Client().post(
        token_url,
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
         "client_id": app.client_id},
    ).json()  # fmt: skip
    _, network_raw = network_client_create(
        actor=Actor.system(), name="P-CSCF", enterprises=[enterprise]
    )
    element = Client(HTTP_AUTHORIZATION=f"Bearer {network_raw}")
    for token in (tokens["access_token"], refreshed["access_token"]):
        element.post(
            reverse("oauth2_provider:introspect"),
            urlencode({"token": token}),
            content_type="application/x-www-form-urlencoded",
        )
        Client(HTTP_AUTHORIZATION=f"Bearer {token}").get(reverse("oauth2_provider:user-info"))
    Client().post(
        reverse("oauth2_provider:revoke-token"),
        {"token": refreshed["refresh_token"], "client_id": app.client_id},
    )
    capture.assert_absent(
        code,
        verifier,
        tokens["access_token"],
        tokens["refresh_token"],
        tokens["id_token"],
        refreshed["access_token"],
        refreshed["refresh_token"],
    )


def test_an_imported_signing_key_is_not_logged(capture):
    staff = StaffFactory()
    admin_site = sign_in_verified(Client(), staff)
    key = certificates.generate_key()
    key_pem = certificates.private_key_pem(key).decode()
    lab = credentials.lab_pki_create(actor=Actor.system(), operator_name="iCA", spc="1234")
    cert_pem = lab.certificate_pem
    url = reverse("admin:telephony_signingcredential_import")
    # Refused (the key does not belong to the certificate), then accepted.
    admin_site.post(
        url,
        {"kind": "operator", "name": "Wrong key", "certificate_pem": cert_pem,
         "private_key_pem": key_pem},
    )  # fmt: skip
    own_key_pem = certificates.private_key_pem(credentials.unseal(lab)).decode()
    response = admin_site.post(
        url,
        {"kind": "operator", "name": "Imported", "certificate_pem": cert_pem,
         "private_key_pem": own_key_pem},
    )  # fmt: skip
    assert response.status_code == 302, response.content[:500]
    body_lines = [line for pem in (key_pem, own_key_pem) for line in pem.splitlines()[1:-1]]
    capture.assert_absent(*body_lines)
