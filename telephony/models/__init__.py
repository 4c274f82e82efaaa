"""Telephony's tables, one module per concern; import them from here."""

from .bulk import ImportJob
from .identities import Grant, GrantQuerySet, Identity, IdentityQuerySet, OffboardingReceipt
from .inventory import NumberBlock, SimLine, TelephoneNumber
from .registrations import (
    NetworkNotice,
    ReginfoVersion,
    Registration,
    RegistrationEvent,
    RegistrationQuerySet,
)
from .sync import IdentitySync, SimulatedSubscription, SyncAttempt

__all__ = [
    "Grant",
    "GrantQuerySet",
    "Identity",
    "IdentityQuerySet",
    "IdentitySync",
    "ImportJob",
    "NetworkNotice",
    "NumberBlock",
    "OffboardingReceipt",
    "ReginfoVersion",
    "Registration",
    "RegistrationEvent",
    "RegistrationQuerySet",
    "SimLine",
    "SimulatedSubscription",
    "SyncAttempt",
    "TelephoneNumber",
]
