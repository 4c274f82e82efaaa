"""Fixtures of the telephony tests: Rob's identity; for call authentication, the network
element that asks the STI service (an SBC's credential), and a lab PKI with Rob's
identity signing under it. Tests that report registrations define their own ``network``
(an S-CSCF)."""

import pytest

from accounts.audit import Actor
from telephony.callauth import credentials
from telephony.identities import sync
from telephony.tests.factories import give_numbers, make_identity, network_http


@pytest.fixture
def identity(employee, enterprise):
    """Rob's identity on the enterprise's first number; its push has not run (nothing
    commits in a test's transaction)."""
    give_numbers(enterprise)
    return make_identity(employee)


@pytest.fixture
def network(enterprise):
    return network_http(enterprise, name="SBC")


@pytest.fixture
def pki(enterprise):
    """The operator's lab PKI and the enterprise's delegate certificate under it."""
    operator = credentials.lab_pki_create(actor=Actor.system(), operator_name="iCA", spc="1234")
    give_numbers(enterprise)
    delegate = credentials.delegate_certificate_issue(actor=Actor.system(), enterprise=enterprise)
    return operator, delegate


@pytest.fixture
def rob(employee, pki):
    """Rob Smith's identity, synced, on a number the delegate certificate covers."""
    identity = make_identity(employee)
    sync.push_identity(identity.pk)
    return identity
