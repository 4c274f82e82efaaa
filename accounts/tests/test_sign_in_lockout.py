"""Pentest F-02: the lockout counts an account's failed sign-ins however its email is
spelled, on every way in (the portal's page, Django admin's and an app's OIDC sign-in,
which all end at the portal's sign-in page)."""

import pytest
from axes.models import AccessAttempt
from django.urls import reverse

from accounts.tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

SPELLINGS = ["Rob@swift.example", "rob@SWIFT.example", " ROB@swift.example ", "rOb@swift.example"]


def post_sign_in(client, email, password, url=None):
    return client.post(url or reverse("accounts:login"), {"username": email, "password": password})


def test_every_capitalisation_counts_towards_one_lockout(client, employee):
    for email in SPELLINGS:
        assert post_sign_in(client, email, "wrong").status_code == 200
    assert post_sign_in(client, "ROB@SWIFT.EXAMPLE", "wrong").status_code == 429
    # Locked: no spelling gets in, not even with the right password.
    for email in [employee.email, *SPELLINGS]:
        response = post_sign_in(client, email, PASSWORD)
        assert response.status_code == 429, email
    assert AccessAttempt.objects.get().username == employee.email


def test_the_lockout_holds_on_the_way_to_an_app_and_to_django_admin(client, employee):
    for _ in range(5):
        post_sign_in(client, employee.email, "wrong")
    to_app = reverse("accounts:login") + "?next=/o/authorize/%3Fclient_id%3Dx"
    assert post_sign_in(client, "Rob@Swift.Example", PASSWORD, to_app).status_code == 429
    # Django admin has no sign-in form of its own: it sends everyone to the portal's.
    response = post_sign_in(client, "Rob@Swift.Example", PASSWORD, reverse("admin:login"))
    assert response.status_code == 302 and response.url.startswith(reverse("accounts:login"))
    assert "_auth_user_id" not in client.session


def test_a_right_password_in_another_capitalisation_signs_in_and_resets_the_count(client, employee):
    post_sign_in(client, employee.email, "wrong")
    assert post_sign_in(client, "ROB@swift.example", PASSWORD).status_code == 302
    assert not AccessAttempt.objects.filter(failures_since_start__gt=0).exists()


def test_an_unknown_address_is_counted_lower_cased(client, employee):
    post_sign_in(client, "Nobody@Swift.Example", "wrong")
    assert AccessAttempt.objects.get().username == "nobody@swift.example"
