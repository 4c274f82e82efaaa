"""Deactivation and suspension end the person's sessions for good: reactivating or
resuming them does not bring an old session back (the receipt says "sessions ended")."""

import pytest
from django.test import Client
from django.urls import reverse

from accounts import services
from accounts.audit import Actor
from portal.testing import sign_in_verified

pytestmark = pytest.mark.django_db


def signed_in(client) -> bool:
    return client.get(reverse("accounts:profile")).status_code == 200


@pytest.mark.parametrize(
    ("end", "undo"),
    [
        (services.user_deactivate, services.user_reactivate),
        (services.user_suspend, services.user_resume),
    ],
)
def test_an_old_session_stays_ended_after_the_person_is_let_back_in(employee, admin, end, undo):
    browser = sign_in_verified(Client(), employee)
    other_browser = sign_in_verified(Client(), employee)
    assert signed_in(browser) and signed_in(other_browser)

    end(actor=Actor(user=admin), user=employee)
    assert not signed_in(browser)  # this one asks once, while blocked
    undo(actor=Actor(user=admin), user=employee)

    assert not signed_in(browser)
    assert not signed_in(other_browser)  # this one never asked while blocked
    assert signed_in(sign_in_verified(Client(), employee))


def test_a_session_of_someone_never_blocked_keeps_working(employee):
    """The session hash is Django's until sessions are first ended: no one is signed out
    by the change itself."""
    browser = sign_in_verified(Client(), employee)
    employee.refresh_from_db()
    assert employee.sessions_ended_at is None
    assert signed_in(browser)
