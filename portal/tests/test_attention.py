"""The admin home answers "is everything all right?": what needs attention first, then
the figures."""

import html
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import ServiceContract
from portal.models import HssCheck
from telephony.models import (
    CallRecord,
    IdentitySync,
    ImportJob,
    Registration,
    SimulatedHssOutage,
)
from telephony.tests.factories import give_numbers, make_identity

pytestmark = pytest.mark.django_db


@pytest.fixture
def rob(enterprise, employee):
    give_numbers(enterprise)
    return make_identity(employee)


def home(client) -> str:
    return client.get(reverse("home")).content.decode()


def attention_lines(page: str) -> list[str]:
    if "Needs your attention" not in page:
        return []
    section = page.split('id="attention-title"', 1)[1].split("</section>", 1)[0]
    return [html.unescape(line.split(">", 1)[1]) for line in section.split("<li ")[1:]]


def test_a_healthy_enterprise_is_told_so(admin_client, rob):
    IdentitySync.objects.update(state=IdentitySync.State.SYNCED)
    page = home(admin_client)
    assert "Everything is running: nothing needs your attention." in page
    assert attention_lines(page) == []


def test_failed_syncs_come_first_then_changes_waiting_too_long(admin_client, rob, employee):
    second = make_identity(employee)
    IdentitySync.objects.filter(identity=rob).update(state=IdentitySync.State.FAILED)
    IdentitySync.objects.filter(identity=second).update(
        requested_at=timezone.now() - timedelta(minutes=6)
    )
    lines = attention_lines(home(admin_client))
    assert lines[0].startswith("1 identity could not be synced with the HSS.")
    assert "?sync=failed" in lines[0]
    assert lines[1].startswith("1 change has waited for the HSS for more than 5 minutes.")


def test_a_change_on_its_way_for_a_minute_is_no_worry(admin_client, rob):
    assert attention_lines(home(admin_client)) == []


def test_an_hss_that_refuses_writes_or_is_out_of_service_is_said(admin_client, rob, settings):
    IdentitySync.objects.update(state=IdentitySync.State.SYNCED)
    HssCheck.objects.create(
        backend=settings.HSS_BACKEND, problem="wrong provisioning key", checked_at=timezone.now()
    )
    SimulatedHssOutage.objects.create(down=True, reason="drill")
    lines = attention_lines(home(admin_client))
    assert lines[0].startswith("The HSS refuses the portal's changes (wrong provisioning key)")
    assert lines[1].startswith("The HSS is out of service")
    # An outage past its end is over, whatever the switch says.
    SimulatedHssOutage.objects.update(until=timezone.now() - timedelta(seconds=1))
    HssCheck.objects.update(problem="")
    assert attention_lines(home(admin_client)) == []


def test_an_import_that_left_rows_out_is_linked(admin_client, admin, enterprise, rob):
    IdentitySync.objects.update(state=IdentitySync.State.SYNCED)
    job = ImportJob.objects.create(
        enterprise=enterprise,
        created_by=admin,
        filename="joiners.csv",
        csv_text="",
        state=ImportJob.State.DONE,
        failed_count=2,
    )
    (line,) = attention_lines(home(admin_client))
    assert line.startswith("The import of joiners.csv left 2 rows out.")
    assert reverse("telephony:import_job", args=[job.pk]) in line


def test_the_contract_quota_is_told_when_near_and_when_full(admin_client, enterprise, rob):
    IdentitySync.objects.update(state=IdentitySync.State.SYNCED)
    ServiceContract.objects.filter(enterprise=enterprise).update(identity_quota=1)
    (line,) = attention_lines(home(admin_client))
    assert line.startswith("1 of the contract's 1 identities are in use; new ones are refused.")
    ServiceContract.objects.filter(enterprise=enterprise).update(identity_quota=10)
    assert attention_lines(home(admin_client)) == []


def _calls(enterprise, identity, levels: str, age: timedelta):
    at = timezone.now() - age
    CallRecord.objects.bulk_create(
        CallRecord(
            enterprise=enterprise,
            identity=identity,
            direction=CallRecord.Direction.OUTGOING,
            orig_tn=identity.tn,
            dest_tns=["+4940123499"],
            attestation=level,
            created_at=at,
        )
        for level in levels
    )


def test_a_drop_in_verified_calls_is_told_with_both_shares(admin_client, enterprise, rob):
    IdentitySync.objects.update(state=IdentitySync.State.SYNCED)
    _calls(enterprise, rob, "A" * 180, timedelta(days=3))
    _calls(enterprise, rob, "A" * 10 + "C" * 9, timedelta(hours=2))
    assert attention_lines(home(admin_client)) == []  # 19 calls: too few to tell
    _calls(enterprise, rob, "C", timedelta(hours=1))
    (line,) = attention_lines(home(admin_client))
    assert line.startswith(
        "50 % of calls went out fully verified (A) in the last 24 hours, against 95 %"
    )
    page = home(admin_client)
    assert "of 20 calls in 24 hours went out fully verified (A)" in page


def test_devices_online_now_are_counted(admin_client, enterprise, rob, employee):
    now = timezone.now()
    for n, expires in enumerate((now + timedelta(hours=1), now - timedelta(minutes=1))):
        Registration.objects.create(
            enterprise=enterprise,
            identity=rob,
            user=employee,
            device_key=f"instance:urn:uuid:{n}",
            label=f"Phone {n}",
            contact_uri=f"sip:ue{n}@192.0.2.{n + 1}",
            expires_at=expires,
        )
    page = home(admin_client)
    assert '<span class="card-figure">1</span><span class="card-label">devices online now' in page


def test_the_home_makes_the_same_queries_whatever_needs_attention(
    admin_client, admin, enterprise, rob, employee, django_assert_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as quiet:
        home(admin_client)
    IdentitySync.objects.update(state=IdentitySync.State.FAILED)
    for n in range(5):
        make_identity(employee)
        ImportJob.objects.create(
            enterprise=enterprise,
            created_by=admin,
            filename=f"f{n}.csv",
            csv_text="",
            state=ImportJob.State.FAILED,
        )
    with django_assert_num_queries(len(quiet.captured_queries)):
        home(admin_client)
