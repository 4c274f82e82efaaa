"""Django admin for operator staff: inventory with CSV upload, the sync queue."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from accounts.models import AuditEvent
from accounts.tests.factories import EnterpriseFactory
from telephony.models import IdentitySync, NumberBlock, SimLine, TelephoneNumber
from telephony.tests.factories import give_numbers, iccid_for, make_identity

pytestmark = pytest.mark.django_db


def upload(client, model, enterprise, text):
    return client.post(
        reverse(f"admin:telephony_{model}_upload"),
        {"enterprise": enterprise.pk, "file": SimpleUploadedFile("x.csv", text.encode())},
    )


def test_staff_load_number_blocks_from_csv(staff_client):
    acme = EnterpriseFactory()
    response = upload(
        staff_client,
        "numberblock",
        acme,
        "first_number,last_number,note\n+4930555000,+4930555009,Berlin\n+14155550100,+14155550104,\n",
    )
    assert response.status_code == 302
    assert NumberBlock.objects.filter(enterprise=acme).count() == 2
    assert TelephoneNumber.objects.filter(enterprise=acme).count() == 15
    assert AuditEvent.objects.filter(action="number_block.created", enterprise=acme).count() == 2


def test_a_csv_with_a_bad_row_loads_nothing_and_names_the_row(staff_client):
    acme = EnterpriseFactory()
    good, bad = iccid_for(1), iccid_for(2)[:-1] + str((int(iccid_for(2)[-1]) + 1) % 10)
    text = f"imsi,iccid\n262010000000001,{good}\n262010000000002,{bad}\n"
    response = upload(staff_client, "simline", acme, text)
    assert response.status_code == 200
    assert "row 3" in response.content.decode()
    assert not SimLine.objects.exists()


def test_staff_see_the_sync_queue_and_retry_failures(staff_client, employee, enterprise):
    give_numbers(enterprise)
    identity = make_identity(employee)
    IdentitySync.objects.filter(pk=identity.pk).update(state="failed", last_error="HSS said no")
    listing = staff_client.get(reverse("admin:telephony_identitysync_changelist") + "?state=failed")
    assert "HSS said no" in listing.content.decode()
    staff_client.post(
        reverse("admin:telephony_identitysync_changelist"),
        {"action": "retry", "_selected_action": [identity.pk]},
    )
    assert IdentitySync.objects.get(pk=identity.pk).state != "failed"


def test_staff_add_a_block_through_the_service_and_overlaps_are_refused(staff_client):
    acme, other = EnterpriseFactory(), EnterpriseFactory()
    add = reverse("admin:telephony_numberblock_add")
    staff_client.post(
        add, {"enterprise": acme.pk, "first_number": "+4930555000", "last_number": "+4930555004"}
    )
    assert TelephoneNumber.objects.filter(enterprise=acme).count() == 5
    response = staff_client.post(
        add,
        {"enterprise": other.pk, "first_number": "+4930555004", "last_number": "+4930555008"},
        follow=True,
    )
    assert "overlaps" in response.content.decode()
    assert not NumberBlock.objects.filter(enterprise=other).exists()


def test_staff_add_a_sim_line_through_the_service_and_a_bad_iccid_is_refused(staff_client):
    acme = EnterpriseFactory()
    add = reverse("admin:telephony_simline_add")
    staff_client.post(
        add, {"enterprise": acme.pk, "imsi": "262010000000001", "iccid": iccid_for(1)}
    )
    assert SimLine.objects.filter(enterprise=acme, imsi="262010000000001").exists()
    assert AuditEvent.objects.filter(action="sim_line.created", enterprise=acme).exists()
    bad = iccid_for(2)[:-1] + str((int(iccid_for(2)[-1]) + 1) % 10)
    response = staff_client.post(
        add, {"enterprise": acme.pk, "imsi": "262010000000002", "iccid": bad}, follow=True
    )
    assert response.status_code == 200
    assert not SimLine.objects.filter(imsi="262010000000002").exists()
    assert "ICCID" in response.content.decode()
