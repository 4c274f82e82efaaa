"""The example documents in docs/ parse and do what the README says."""

from pathlib import Path

import pytest

from accounts.audit import Actor
from accounts.services import network_client_create
from accounts.tests.factories import EnterpriseFactory, UserFactory
from telephony.models import NetworkNotice, Registration
from telephony.registrations import ingest
from telephony.registrations.reginfo import parse_reginfo_xml
from telephony.tests.factories import give_line, give_numbers, make_identity

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "rob-two-phones.xml"


@pytest.mark.django_db
def test_robs_two_phones_register_and_he_is_told(django_capture_on_commit_callbacks):
    swift = EnterpriseFactory(name="Swift Delivery", sip_domain="swift-delivery.example")
    give_numbers(swift, "+4930555000", "+4930555099")
    rob = make_identity(
        UserFactory(enterprise=swift, full_name="Rob Smith"), imsi=give_line(swift).imsi
    )
    client, _ = network_client_create(actor=Actor.system(), name="Demo S-CSCF", enterprises=[swift])
    report = ingest.apply_report(
        actor=Actor(network_client=client),
        client=client,
        document=parse_reginfo_xml(EXAMPLE.read_bytes()),
    )
    assert (report.new_devices, report.unknown_aors) == (2, [])
    assert sorted(r.label for r in Registration.objects.active()) == [
        "Android phone (IMEI …1481)",
        "iPhone (IMEI …3119)",
    ]
    # Both phones are new in one report: they join one after the other, so Rob is told
    # once, and each phone's client gets one message (who joined, or who is there).
    assert rob.owner.notifications.filter(kind="already_logged_on").count() == 1
    assert sorted(NetworkNotice.objects.values_list("kind", flat=True)) == [
        "already_logged_on",
        "logged_on_elsewhere",
    ]
