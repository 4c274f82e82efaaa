"""manage.py bench_data: bulk data that is what the services would have written, made
again in place of its earlier run, leaving everything else alone."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from accounts.models import AuditEvent, Enterprise, NetworkClient, User
from telephony.identities import sync
from telephony.inventory.numbers import luhn_valid, parse_tn
from telephony.models import (
    CallRecord,
    Identity,
    IdentitySync,
    Registration,
    SimulatedSubscription,
    TelephoneNumber,
)
from telephony.tests.factories import give_numbers, make_identity

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="bench_data writes with COPY"),
]


def bench_data(**options) -> dict:
    out = StringIO()
    call_command(
        "bench_data",
        employees=60,
        ues=150,
        calls=400,
        small_employees=10,
        any_database=True,
        stdout=out,
        **options,
    )
    return json.loads(out.getvalue())


def test_bench_data_is_consistent_and_replaces_only_its_own(enterprise, employee):
    give_numbers(enterprise)
    ours = make_identity(employee)
    report = bench_data()
    big = Enterprise.objects.get(slug="bench-big")
    made = report["enterprises"]["bench-big"]
    assert made["users"] == User.objects.filter(enterprise=big).count() == 60
    assert Registration.objects.active().filter(enterprise=big).count() == 150
    assert CallRecord.objects.filter(enterprise=big).count() == 400
    # The numbers are valid E.164 of the enterprise's blocks, the lines' ICCIDs check.
    for number in TelephoneNumber.objects.filter(enterprise=big, status="assigned")[:50]:
        assert parse_tn(number.e164)[0] == number.e164
    assert all(luhn_valid(line.iccid) for line in big.sim_lines.all())
    # Every live identity has a synced state that the simulated HSS holds as desired.
    assert sync.reconcile().drifted == 0
    synced = Identity.objects.live().filter(enterprise=big, sync__state="synced")
    assert (
        SimulatedSubscription.objects.filter(msisdn__in=synced.values("number__e164")).count()
        == synced.count()
    )
    assert AuditEvent.objects.filter(enterprise=big, action="identity.created").exists()
    client = NetworkClient.objects.get(name="Bench S-CSCF")
    assert client.serves(big)

    again = bench_data()
    assert again["deleted"] > 0
    assert Enterprise.objects.filter(slug__startswith="bench-").count() == 2
    assert User.objects.filter(enterprise__slug="bench-big").count() == 60
    assert NetworkClient.objects.filter(name="Bench S-CSCF").count() == 1
    assert IdentitySync.objects.filter(enterprise__slug="bench-big").count() == (
        Identity.objects.filter(enterprise__slug="bench-big").count()
    )
    # What is not the bench's stays.
    ours.refresh_from_db()
    assert ours.status == "active" and AuditEvent.objects.filter(enterprise=enterprise).exists()


def test_bench_data_refuses_a_database_that_is_not_for_benchmarks(monkeypatch):
    from django.core.management.base import CommandError

    monkeypatch.setitem(connection.settings_dict, "NAME", "portal")
    with pytest.raises(CommandError, match="does not look like a benchmark database"):
        call_command("bench_data", employees=1, ues=0, calls=0, stdout=StringIO())
