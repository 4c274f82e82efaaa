"""Django admin for operator staff: inventory with CSV upload, the sync queue."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from accounts.audit import Actor
from accounts.models import AuditEvent
from accounts.tests.factories import EnterpriseFactory
from kernel.errors import RuleViolation
from telephony.inventory import services
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


def upload_bytes(client, model, enterprise, data):
    return client.post(
        reverse(f"admin:telephony_{model}_upload"),
        {"enterprise": enterprise.pk, "file": SimpleUploadedFile("x.csv", data)},
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"imsi,iccid\n" + b"0" * services.INVENTORY_MAX_BYTES, "larger than 2 MB"),
        (
            ("imsi,iccid\n" + "262010000000001,x\n" * (services.INVENTORY_MAX_ROWS + 1)).encode(),
            "more than 5,000 rows",
        ),
        ("imsi,iccid,note\n262010000000001,1,Müller\n".encode("latin-1"), "not UTF-8"),
        ("imsi,iccid\n".encode("utf-16"), "UTF-16"),
        (b"imsi,iccid\n\x00\x01", "binary data"),
    ],
)
def test_an_inventory_file_too_large_too_long_or_not_utf8_is_refused_whole(
    staff_client, data, message
):
    acme = EnterpriseFactory()
    response = upload_bytes(staff_client, "simline", acme, data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not SimLine.objects.exists()
    assert not AuditEvent.objects.filter(action="sim_line.created").exists()


def test_an_inventory_file_at_the_row_cap_with_bom_and_semicolons_loads(monkeypatch):
    monkeypatch.setattr(services, "INVENTORY_MAX_ROWS", 3)
    acme = EnterpriseFactory()
    rows = "".join(f"26201{n:010d};{iccid_for(n)}\n\n" for n in range(1, 4))

    def load(text):
        return services.inventory_import(
            actor=Actor.system(), enterprise=acme, kind="lines", csv_text=text
        )

    with pytest.raises(RuleViolation, match="more than 3 rows"):
        load("\ufeffimsi;iccid\n" + rows + f"262010000000009;{iccid_for(9)}\n")
    assert not SimLine.objects.exists()
    assert load("\ufeffimsi;iccid\n" + rows) == 3
    assert SimLine.objects.filter(enterprise=acme).count() == 3


def test_staff_see_per_enterprise_what_needs_attention_and_filter_by_it(
    staff_client, employee, enterprise, django_assert_max_num_queries
):
    quiet = EnterpriseFactory(name="Quiet Co")
    give_numbers(enterprise)
    identity = make_identity(employee)
    make_identity(employee)
    IdentitySync.objects.filter(identity=identity).update(state=IdentitySync.State.FAILED)
    url = reverse("admin:accounts_enterprise_changelist")
    with django_assert_max_num_queries(12):
        page = staff_client.get(url).content.decode()
    for column in ("Identities (of quota)", "Failed syncs", "Devices online"):
        assert column in page
    quota = enterprise.contract.identity_quota
    assert f"2 of {quota}" in page
    failing = staff_client.get(url, {"attention": "sync"}).content.decode()
    assert "Swift Delivery" in failing and "Quiet Co" not in failing
    assert quiet.name in staff_client.get(url).content.decode()


def test_a_logo_url_typed_without_a_scheme_is_https(staff_client):
    from telephony.models import CallerName

    acme = EnterpriseFactory()
    name = CallerName.objects.create(enterprise=acme, name="Acme")
    answer = staff_client.post(
        reverse("admin:telephony_callername_change", args=[name.pk]),
        {
            "enterprise": acme.pk,
            "name": "Acme",
            "vetting": "pending",
            "logo_url": "brand.example/acme.png",
        },
    )
    assert answer.status_code == 302
    name.refresh_from_db()
    assert name.logo_url == "https://brand.example/acme.png"
