"""Pentest F-05: the invitation's secret never travels in a URL that a server, proxy or
access log sees. The emailed link carries it in the fragment; the page posts it."""

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.audit import Actor
from accounts.models import Invitation, Role, User

NEW_PASSWORD = "a fine new password 7"


def invite(admin):
    services.user_invite(
        actor=Actor(user=admin),
        enterprise=admin.enterprise,
        email="nina@swift.example",
        full_name="Nina New",
        role=Role.EMPLOYEE,
    )


def mailed_link():
    return re.search(r"https?://\S+", mail.outbox[-1].body).group(0)


@pytest.mark.django_db
def test_the_emailed_link_keeps_the_secret_in_its_fragment(
    admin, client, request_lines, log_lines, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        invite(admin)
    link = mailed_link()
    parts = urlsplit(link)
    secret = parts.fragment
    assert parts.path == reverse("accounts:invitation") and not parts.query
    assert secret.startswith("inv_") and secret not in parts.path

    # The browser requests the path only; the page's script posts the fragment.
    page = client.get(parts.path)
    assert b"portal/link-secret.js" in page.content
    response = client.post(parts.path, {"secret": secret})
    assert response.url == reverse("accounts:invitation_accept")
    assert "Nina New" in client.get(response.url).content.decode()
    done = client.post(response.url, {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
    assert done.status_code == 302 and secret not in done.url
    assert User.objects.get(email="nina@swift.example").status == User.Status.ACTIVE

    assert request_lines and not [line for line in request_lines if secret in line]
    assert log_lines and not [line for line in log_lines if secret in line]


@pytest.mark.django_db
def test_a_page_opened_without_the_secret_says_so(client):
    assert client.post(reverse("accounts:invitation"), {"secret": ""}).url == reverse(
        "accounts:invitation_accept"
    )
    assert client.get(reverse("accounts:invitation_accept")).status_code == 410


def old_form_link(admin, monkeypatch, django_capture_on_commit_callbacks) -> tuple[str, str]:
    """(path, secret) of a link of the earlier form, with the secret in the path, of an
    invitation sent just before the release that changed the form."""
    monkeypatch.setattr(services, "PATH_LINKS_BEFORE", timezone.now() + timedelta(minutes=1))
    with django_capture_on_commit_callbacks(execute=True):
        invite(admin)
    secret = urlsplit(mailed_link()).fragment
    return reverse("accounts:invitation_open", args=[secret]), secret


@pytest.mark.django_db
def test_an_earlier_form_link_asks_before_it_keeps_the_secret(
    admin, client, monkeypatch, django_capture_on_commit_callbacks
):
    path, secret = old_form_link(admin, monkeypatch, django_capture_on_commit_callbacks)
    page = client.get(path)
    assert page.status_code == 200 and b"Open my invitation" in page.content
    # The GET alone (another site can make the browser send it) keeps nothing.
    assert client.get(reverse("accounts:invitation_accept")).status_code == 410

    response = client.post(reverse("accounts:invitation"), {"secret": secret})
    assert "Nina New" in client.get(response.url).content.decode()


@pytest.mark.django_db
def test_an_earlier_form_link_opens_no_invitation_sent_since(
    admin, client, monkeypatch, django_capture_on_commit_callbacks
):
    path, _ = old_form_link(admin, monkeypatch, django_capture_on_commit_callbacks)
    assert client.get(path).status_code == 200
    Invitation.objects.update(created_at=services.PATH_LINKS_BEFORE)
    assert client.get(path).status_code == 410
    assert client.get(reverse("accounts:invitation_accept")).status_code == 410


@pytest.mark.django_db
def test_earlier_form_links_end_when_the_last_of_their_invitations_expired(
    admin, client, settings, monkeypatch, django_capture_on_commit_callbacks
):
    path, _ = old_form_link(admin, monkeypatch, django_capture_on_commit_callbacks)
    cutover = timezone.now() - settings.INVITATION_VALIDITY
    monkeypatch.setattr(services, "PATH_LINKS_BEFORE", cutover + timedelta(minutes=1))
    Invitation.objects.update(created_at=cutover)
    assert client.get(path).status_code == 200  # sent before, within its lifetime

    monkeypatch.setattr(services, "PATH_LINKS_BEFORE", cutover)
    Invitation.objects.update(created_at=cutover - timedelta(minutes=1))
    assert client.get(path).status_code == 410


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_emailed_link_works_in_a_browser_and_no_request_carries_the_secret(page, request_lines):
    from accounts.tests.factories import AdminFactory, EnterpriseFactory

    admin = AdminFactory(enterprise=EnterpriseFactory(name="Swift Delivery"))
    invite(admin)
    link = mailed_link()
    secret = urlsplit(link).fragment
    locations, referers = [], []
    page.on("response", lambda r: locations.append(r.headers.get("location", "")))
    page.on("request", lambda r: referers.append(r.headers.get("referer", "")))

    page.goto(f"{urlsplit(link).path}#{secret}")
    page.get_by_role("heading", name="Welcome, Nina New").wait_for()
    assert secret not in page.url
    page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Create my account").click()
    page.wait_for_url(lambda url: "/invitation/" not in url)

    assert [line for line in request_lines if line.startswith("GET /invitation/?")]
    for seen in request_lines + locations + referers:
        assert secret not in seen, seen
