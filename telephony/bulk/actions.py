"""Acting on many employees, identities or devices at once (the checkboxes of *Employees*,
*Identities* and *Devices*). Each one's change is the same service call, audit row and transaction as
on its own page, so a refusal for one stops nobody else; every outcome is reported, with
the kill-switch's receipt for an offboarding."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.urls import reverse

from accounts import services as account_services
from accounts.audit import Actor
from accounts.models import Role, User
from kernel.errors import RuleViolation
from telephony.identities import services
from telephony.models import Identity, Registration
from telephony.registrations import signout

# One confirmation page lists everyone: more than this is an import's work.
MAX_SELECTED = 100


@dataclass(frozen=True)
class Outcome:
    subject: Any  # the employee, the identity or the device
    done: bool
    detail: str
    link: str = ""


@dataclass(frozen=True)
class BulkAction:
    label: str
    roles: tuple[str, ...]
    # What happens to each, said on the confirmation page.
    consequence: str
    run: Callable[[Actor, Any], Outcome]
    dangerous: bool = False


def _suspend(actor: Actor, person: User) -> Outcome:
    account_services.user_suspend(actor=actor, user=person)
    return Outcome(person, True, "Sign-in suspended")


def _resume(actor: Actor, person: User) -> Outcome:
    account_services.user_resume(actor=actor, user=person)
    return Outcome(person, True, "Sign-in resumed")


def _sign_out(actor: Actor, person: User) -> Outcome:
    count = signout.registrations_sign_out_all(actor=actor, user=person)
    return Outcome(person, True, f"Sign-out requested for {count} device{'s' * (count != 1)}")


def _offboard(actor: Actor, person: User) -> Outcome:
    receipt = services.employee_offboard(actor=actor, user=person)
    return Outcome(person, True, "Offboarded", reverse("telephony:receipt", args=[receipt.pk]))


EMPLOYEE_ACTIONS = {
    "suspend": BulkAction(
        "Suspend sign-in",
        (Role.ADMIN,),
        "cannot sign in to the portal or its apps until resumed; their numbers keep working",
        _suspend,
    ),
    "resume": BulkAction("Resume sign-in", (Role.ADMIN,), "can sign in again", _resume),
    "sign_out": BulkAction(
        "Sign out all devices",
        (Role.ADMIN, Role.HELPDESK),
        "has every device signed out of the network; they can sign in again",
        _sign_out,
    ),
    "offboard": BulkAction(
        "Offboard",
        (Role.ADMIN,),
        "leaves: every identity is removed from the HSS, every sharing ends, every app is "
        "cut off and the account is closed. This cannot be undone",
        _offboard,
        dangerous=True,
    ),
}


def _identity_action(service, done: str) -> Callable[[Actor, Identity], Outcome]:
    def run(actor: Actor, identity: Identity) -> Outcome:
        service(actor=actor, identity=identity)
        return Outcome(identity, True, done)

    return run


IDENTITY_ACTIONS = {
    "suspend": BulkAction(
        "Suspend",
        (Role.ADMIN,),
        "is disabled in the HSS and its devices signed out; it keeps its number, line and sharing",
        _identity_action(services.identity_suspend, "Suspended"),
    ),
    "resume": BulkAction(
        "Resume",
        (Role.ADMIN,),
        "works again in the HSS",
        _identity_action(services.identity_resume, "Resumed"),
    ),
    "retry_sync": BulkAction(
        "Retry the HSS sync",
        (Role.ADMIN,),
        "is pushed to the HSS again",
        _identity_action(services.sync_retry, "Sync queued again"),
    ),
}


def _device_sign_out(actor: Actor, registration: Registration) -> Outcome:
    signout.registration_sign_out(actor=actor, registration=registration)
    return Outcome(registration, True, "Sign-out requested")


# Helpdesk signs devices out too, as on the single path (signout.SIGN_OUT_OTHERS).
DEVICE_ACTIONS = {
    "sign_out": BulkAction(
        "Sign out",
        (Role.ADMIN, Role.HELPDESK),
        "is signed out of the network; its owner can sign in on it again",
        _device_sign_out,
    ),
}


def actions_for(actions: dict[str, BulkAction], role: str) -> dict[str, BulkAction]:
    return {name: action for name, action in actions.items() if role in action.roles}


def bulk_act(
    *, actor: Actor, subjects: list, actions: dict[str, BulkAction], action: str
) -> list[Outcome]:
    """Run ``action`` for each subject, each in the service's own transaction."""
    chosen = actions[action]
    outcomes = []
    for subject in subjects:
        try:
            outcomes.append(chosen.run(actor, subject))
        except RuleViolation as exc:
            outcomes.append(Outcome(subject, False, exc.message))
    return outcomes
