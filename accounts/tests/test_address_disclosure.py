"""Pentest finding F-04: an address that belongs to another enterprise's member or to
operator staff is refused in the same words on every path (invite, onboarding, bulk
import, SCIM create), which say neither that an account exists nor whose it is."""

import pytest
from django.urls import reverse

from accounts import services
from accounts.audit import Actor
from accounts.models import User
from accounts.tests.factories import StaffFactory, UserFactory
from kernel.errors import RuleViolation
from scim.tests.test_scim import assert_error, scim_client, user_body
from telephony.bulk import services as bulk
from telephony.identities import services as telephony_services
from telephony.tests.factories import give_numbers

pytestmark = pytest.mark.django_db


@pytest.fixture
def held_elsewhere(other_enterprise):
    """Two addresses the asking enterprise must learn nothing about."""
    return {
        "another enterprise": UserFactory(enterprise=other_enterprise).email,
        "operator staff": StaffFactory().email,
    }


def assert_says_nothing_of_the_holder(answers: dict[str, str], held: dict[str, str]):
    neutral = {
        holder: answer.replace(held[holder], "<email>") for holder, answer in answers.items()
    }
    assert len(set(neutral.values())) == 1, neutral  # the same words whoever holds it
    answer = neutral["operator staff"]
    assert answer == "<email> cannot be used for an account here; use another address."
    for hint in ("account.", "already", "staff", "operator", "Other Co", "enterprise"):
        assert hint not in answer


def refusal(call) -> str:
    with pytest.raises(RuleViolation) as refused:
        call()
    assert refused.value.field == "email"
    return refused.value.message


def test_an_invitation(admin, enterprise, held_elsewhere):
    answers = {
        holder: refusal(
            lambda email=email: services.user_invite(
                actor=Actor(user=admin),
                enterprise=enterprise,
                email=email,
                full_name="X",
                role="employee",
            )
        )
        for holder, email in held_elsewhere.items()
    }
    assert_says_nothing_of_the_holder(answers, held_elsewhere)


def test_the_invitation_page(admin_client, held_elsewhere):
    for email in held_elsewhere.values():
        page = admin_client.post(
            reverse("accounts:user_invite"), {"full_name": "X", "email": email, "role": "employee"}
        ).content.decode()
        assert f"{email} cannot be used for an account here; use another address." in page
        assert "already has an account" not in page


def test_onboarding(admin, enterprise, held_elsewhere):
    give_numbers(enterprise)
    answers = {
        holder: refusal(
            lambda email=email: telephony_services.employee_onboard(
                actor=Actor(user=admin),
                enterprise=enterprise,
                email=email,
                full_name="X",
                services=["voice"],
            )
        )
        for holder, email in held_elsewhere.items()
    }
    assert_says_nothing_of_the_holder(answers, held_elsewhere)


def test_a_bulk_import(admin, enterprise, held_elsewhere):
    give_numbers(enterprise)
    rows = "\n".join(["email,full_name", *(f"{email},X" for email in held_elsewhere.values())])
    job = bulk.import_preview(
        actor=Actor(user=admin),
        enterprise=enterprise,
        csv_text=rows,
        filename="x.csv",
        send_invitations=False,
    )
    problems = [problem["message"] for problem in job.problems]
    answers = dict(zip(held_elsewhere, problems, strict=True))
    assert_says_nothing_of_the_holder(answers, held_elsewhere)


def test_a_scim_create(enterprise, admin, held_elsewhere):
    scim = scim_client(enterprise)
    answers = {
        holder: assert_error(scim.post("/Users", user_body(email)), 409, "uniqueness")["detail"]
        for holder, email in held_elsewhere.items()
    }
    assert_says_nothing_of_the_holder(answers, held_elsewhere)
    assert User.objects.filter(email__in=held_elsewhere.values()).count() == 2
