"""Telephony's tables, one module per concern; import them from here."""

from .bulk import ImportJob
from .calls import CallerName, CallRecord, SigningCredential
from .identities import Grant, GrantQuerySet, Identity, IdentityQuerySet, OffboardingReceipt
from .inventory import NumberBlock, SimLine, TelephoneNumber
from .registrations import (
    NetworkNotice,
    ReginfoVersion,
    Registration,
    RegistrationEvent,
    RegistrationQuerySet,
    RegistrationReport,
    ThirdPartyRegistration,
)
from .sync import IdentitySync, SimulatedHssOutage, SimulatedSubscription, SyncAttempt

__all__ = [
    "CallRecord",
    "CallerName",
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
    "RegistrationReport",
    "SigningCredential",
    "SimLine",
    "SimulatedHssOutage",
    "SimulatedSubscription",
    "SyncAttempt",
    "TelephoneNumber",
    "ThirdPartyRegistration",
]
