"""The audit trail as people read it: sentences, formatted values, filters by person and
object, the CSV export, and every time in the viewer's time zone."""

import csv
import decimal
import io
import uuid
import zoneinfo
from datetime import UTC, datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts import audit, services, trail
from accounts.audit import Actor
from accounts.middleware import TIME_ZONE_COOKIE
from accounts.models import AuditEvent, User
from accounts.tests.factories import UserFactory
from portal.testing import sign_in_verified

pytestmark = pytest.mark.django_db

NOON_UTC = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


def _event(action="user.updated", **fields) -> AuditEvent:
    return AuditEvent.objects.select_related("actor_user").get(
        pk=AuditEvent.objects.filter(action=action, **fields).latest("id").pk
    )


def test_an_event_reads_as_a_sentence_naming_the_person_and_the_object(admin, employee):
    services.user_update(actor=Actor(user=admin), user=employee, full_name="Robbie Smith")
    event = _event()
    assert trail.sentence(event) == "Ada Admin changed person Robbie Smith"
    assert [(c.field, c.before, c.after) for c in trail.changes(event)] == [
        ("Full name", "Rob Smith", "Robbie Smith")
    ]


def test_the_system_and_a_persons_own_acts_read_naturally(enterprise, employee):
    audit.record(actor=Actor.system(), action="identity.drift_found", enterprise=enterprise)
    assert trail.sentence(_event("identity.drift_found")).startswith("The portal found")
    services.user_set_time_zone(actor=Actor(user=employee), user=employee, time_zone="Asia/Tokyo")
    assert trail.sentence(_event("user.time_zone_changed")) == (
        "Rob Smith chose the time zone of their own account"
    )


def test_values_are_formatted_for_people():
    assert trail.value(None) == trail.value("") == trail.value([]) == "—"
    assert trail.value(True) == "yes" and trail.value(False) == "no"
    assert trail.value(["voice", "video"]) == "voice, video"
    assert trail.value(12500) == "12,500"
    assert trail.value("+4930555000") == "+49 30 555000"
    assert trail.value("262010000000001") == "262010000000001"  # an IMSI is no number
    with timezone.override(zoneinfo.ZoneInfo("America/New_York")):
        assert trail.value(NOON_UTC.isoformat()) == "1 Jul 2026, 08:00"


def test_the_page_shows_sentences_and_the_viewers_time_zone(admin_client, admin, employee):
    services.user_update(actor=Actor(user=admin), user=employee, full_name="Robbie Smith")
    admin_client.cookies[TIME_ZONE_COOKIE] = "Asia/Tokyo"
    page = admin_client.get(reverse("accounts:audit")).content.decode()
    assert "Ada Admin changed person Robbie Smith" in page
    assert "(Asia/Tokyo)" in page
    # A zone chosen in My account wins over the browser's; a bogus cookie is ignored.
    User.objects.filter(pk=admin.pk).update(time_zone="Europe/Lisbon")
    assert "(Europe/Lisbon)" in admin_client.get(reverse("accounts:audit")).content.decode()
    User.objects.filter(pk=admin.pk).update(time_zone="")
    admin_client.cookies[TIME_ZONE_COOKIE] = "Mars/Olympus_Mons"
    assert "(UTC)" in admin_client.get(reverse("accounts:audit")).content.decode()


def test_times_on_the_page_are_in_the_viewers_zone(admin_client, admin, enterprise):
    event = audit.record(actor=Actor(user=admin), action="user.updated", enterprise=enterprise)
    admin_client.cookies[TIME_ZONE_COOKIE] = "Asia/Tokyo"
    local = timezone.localtime(event.created_at, zoneinfo.ZoneInfo("Asia/Tokyo"))
    page = admin_client.get(reverse("accounts:audit")).content.decode()
    assert f"{local:%-d %b %Y, %H:%M}" in page


def test_filters_by_person_find_what_they_did_and_what_was_done_to_them(
    admin_client, admin, employee, helpdesk
):
    services.user_update(actor=Actor(user=admin), user=employee, full_name="Robbie Smith")
    services.user_update(actor=Actor(user=employee), user=helpdesk, full_name="Hugo H.")
    services.user_update(actor=Actor(user=admin), user=helpdesk, full_name="Hugo Helper")
    url = reverse("accounts:audit")
    page = admin_client.get(url, {"person": "rob@swift"}).content.decode()
    assert "changed person Robbie Smith" in page  # done to Rob
    assert "Robbie Smith changed person Hugo H." in page  # by Rob
    assert "Hugo Helper" not in page  # neither by nor about Rob
    page = admin_client.get(url, {"kind": "accounts.user", "q": "Hugo Helper"}).content.decode()
    assert "changed person Hugo Helper" in page
    page = admin_client.get(url, {"kind": "telephony.identity"}).content.decode()
    assert "Hugo Helper" not in page
    page = admin_client.get(url, {"kind": "accounts.nothing"}).content.decode()
    assert "Not filtered by object:" in page


def test_the_export_is_the_filtered_trail_as_csv_and_is_itself_audited(
    admin_client, admin, employee, enterprise
):
    services.user_update(actor=Actor(user=admin), user=employee, full_name="=HYPERLINK(1)")
    services.user_update(actor=Actor(user=admin), user=admin, full_name="Ada Admin")
    response = admin_client.get(reverse("accounts:audit_export"), {"person": "rob@"})
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="swift-audit-')
    text = b"".join(response.streaming_content).decode()
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert rows[0] == trail.CSV_COLUMNS
    assert len(rows) == 2  # Rob's one event; Ada's own edit is not about Rob
    assert rows[1][2] == "Ada Admin changed person =HYPERLINK(1)"
    assert rows[1][4] == "'=HYPERLINK(1)"  # never run as a formula
    assert AuditEvent.objects.filter(action="audit.exported", actor_user=admin).exists()


def test_an_export_with_a_filter_that_is_not_valid_goes_back_to_the_list(admin_client):
    response = admin_client.get(reverse("accounts:audit_export"), {"since": "soon"})
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:audit") + "?since=soon"
    assert not AuditEvent.objects.filter(action="audit.exported").exists()


def test_only_admins_and_helpdesk_export_the_trail_of_their_own_enterprise(
    client, employee, admin_client, other_enterprise
):
    stranger = UserFactory(enterprise=other_enterprise, full_name="Zed Other")
    services.user_update(actor=Actor(user=stranger), user=stranger, full_name="Zed Elsewhere")
    text = b"".join(admin_client.get(reverse("accounts:audit_export")).streaming_content)
    assert b"Zed" not in text
    employee_client = sign_in_verified(client, employee)
    assert employee_client.get(reverse("accounts:audit_export")).status_code == 403


def test_choosing_a_time_zone_is_saved_audited_and_checked(client, employee):
    employee_client = sign_in_verified(client, employee)
    url = reverse("accounts:time_zone")
    employee_client.post(url, {"time_zone": "America/New_York"})
    employee.refresh_from_db()
    assert employee.time_zone == "America/New_York"
    event = _event("user.time_zone_changed")
    assert event.changes == {"time_zone": ["browser's", "America/New_York"]}
    response = employee_client.post(url, {"time_zone": "Nowhere/Special"}, follow=True)
    assert "Choose a time zone from the list." in response.content.decode()
    employee.refresh_from_db()
    assert employee.time_zone == "America/New_York"
    page = employee_client.get(reverse("accounts:profile")).content.decode()
    assert "Times are shown in <strong>America/New_York</strong>" in page


def test_the_api_gives_each_event_its_sentence_and_filters_by_person(admin, employee):
    from rest_framework.test import APIClient

    from accounts.tests.factories import api_token

    services.user_update(actor=Actor(user=admin), user=employee, full_name="Robbie Smith")
    _, secret = api_token(admin.enterprise)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    answer = api.get("/api/v1/audit/", {"person": "rob@"}).json()
    summaries = [row["summary"] for row in answer["results"]]
    assert summaries == ["Ada Admin changed person Robbie Smith"]


def test_the_api_answers_in_utc_whatever_zone_the_person_chose(admin_client, admin):
    User.objects.filter(pk=admin.pk).update(time_zone="Asia/Tokyo")
    services.user_update(actor=Actor(user=admin), user=admin, full_name="Ada A.")
    admin_client.cookies[TIME_ZONE_COOKIE] = "Asia/Tokyo"
    created = admin_client.get("/api/v1/audit/").json()["results"][0]["created_at"]
    assert created.endswith("Z") or created.endswith("+00:00")


def test_scim_fields_and_labels_that_name_their_kind_read_plainly(enterprise):
    assert trail.field_name("externalId") == "External id"
    assert trail.value({"givenName": "Lee", "familyName": "Wong"}) == (
        "given name: Lee, family name: Wong"
    )
    event = audit.record(
        actor=Actor.system(), action="registration.reported", enterprise=enterprise
    )
    assert trail.sentence(event) == "The portal reported registrations"


def test_a_diff_keeps_the_changed_fields_as_json_safe_values(enterprise):
    key = uuid.UUID("12345678-1234-5678-1234-567812345678")
    before = {"status": User.Status.INVITED, "name": "Ann", "seen": None, "tags": ("b", "a")}
    after = {
        "status": User.Status.ACTIVE,
        "name": "Ann",
        "seen": NOON_UTC,
        "tags": ["b", "a"],
        "enterprise": enterprise,
        "price": decimal.Decimal("1.50"),
        "key": key,
    }

    assert audit.diff(before, after) == {
        "status": ["invited", "active"],
        "seen": [None, "2026-07-01T12:00:00+00:00"],
        "enterprise": [None, str(enterprise)],
        "price": [None, "1.50"],
        "key": [None, str(key)],
    }
