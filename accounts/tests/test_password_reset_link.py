"""The password-reset link keeps its token out of every URL a server, proxy or access log
sees, as the invitation link does (pentest F-05's class): the token is in the fragment,
the page's script posts it, and the form opens at a URL without it. Log records are
checked in portal/tests/test_secrets_in_logs.py."""

import re
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEvent

NEW_PASSWORD = "a fine new password 7"


def mailed_link():
    return re.search(r"https?://\S+", mail.outbox[-1].body).group(0)


def ask_for_a_reset(client, email):
    client.post(reverse("accounts:password_reset"), {"email": email})
    return urlsplit(mailed_link())


@pytest.mark.django_db
def test_the_emailed_link_keeps_the_token_in_its_fragment(client, employee, request_lines):
    link = ask_for_a_reset(client, employee.email)
    uidb64, token = link.fragment.split("/")
    assert link.path == reverse("accounts:password_reset_link") and not link.query
    assert len(token) > 20 and token not in link.path

    page = client.get(link.path)
    assert b"portal/link-secret.js" in page.content
    opened = client.post(link.path, {"secret": link.fragment})
    assert opened.url == reverse("accounts:password_reset_confirm", kwargs={"uidb64": uidb64})
    assert token not in opened.url
    assert b"Choose a new password" in client.get(opened.url).content
    done = client.post(opened.url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.url == reverse("accounts:password_reset_complete")
    employee.refresh_from_db()
    assert employee.check_password(NEW_PASSWORD)
    assert AuditEvent.objects.filter(action="user.password_reset", target_id=str(employee.pk))

    # Used once: the same link opens no form again.
    again = Client()
    again.post(link.path, {"secret": link.fragment})
    assert b"Link no longer valid" in again.get(opened.url).content

    assert request_lines and not [line for line in request_lines if token in line]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "secret",
    ["", "no-slash", "/token-only", "MQ/", "MQ/x y", "MQ/../../etc", "MQ/" + "a" * 500],
)
def test_a_broken_link_says_it_is_not_valid(client, secret):
    response = client.post(reverse("accounts:password_reset_link"), {"secret": secret})
    assert response.status_code == 200
    assert b"Link no longer valid" in response.content


@pytest.mark.django_db
def test_a_forged_token_opens_no_form(client, employee):
    link = ask_for_a_reset(client, employee.email)
    uidb64, token = link.fragment.split("/")
    opened = client.post(link.path, {"secret": f"{uidb64}/{token[:-2]}xx"}, follow=True)
    assert b"Link no longer valid" in opened.content
    answer = client.post(
        reverse("accounts:password_reset_confirm", kwargs={"uidb64": uidb64}),
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert b"Link no longer valid" in answer.content
    employee.refresh_from_db()
    assert not employee.check_password(NEW_PASSWORD)


@pytest.mark.django_db
def test_a_token_in_the_path_is_not_accepted(client, employee):
    """Django's own link form (the token in the first request's path) is gone."""
    link = ask_for_a_reset(client, employee.email)
    uidb64, token = link.fragment.split("/")
    assert client.get(f"/password-reset/{uidb64}/{token}/").status_code == 404


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_emailed_link_works_in_a_browser_and_no_request_carries_the_token(page, request_lines):
    from accounts.tests.factories import EnterpriseFactory, UserFactory

    rob = UserFactory(
        enterprise=EnterpriseFactory(name="Swift Delivery"),
        full_name="Rob Smith",
        email="rob@swift.example",
    )
    locations, referers = [], []
    page.on("response", lambda r: locations.append(r.headers.get("location", "")))
    page.on("request", lambda r: referers.append(r.headers.get("referer", "")))

    page.goto(reverse("accounts:password_reset"))
    page.get_by_label("Email").fill("Rob@Swift.example")
    page.get_by_role("button", name="Send link").click()
    page.wait_for_url(lambda url: url.endswith(reverse("accounts:password_reset_done")))
    link = urlsplit(mailed_link())
    token = link.fragment.split("/")[1]

    page.goto(f"{link.path}#{link.fragment}")
    page.get_by_role("heading", name="Choose a new password").wait_for()
    assert token not in page.url
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password confirmation").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set password").click()
    page.wait_for_url(lambda url: url.endswith(reverse("accounts:password_reset_complete")))
    rob.refresh_from_db()
    assert rob.check_password(NEW_PASSWORD)

    assert [line for line in request_lines if line.startswith("POST /password-reset/link/")]
    for seen in request_lines + locations + referers:
        assert token not in seen, seen
