"""The lists and the admin home kept rendered in the shared cache (kernel/fragments.py): a
page asked again is served without its queries; a recorded change shows at once; what
moves without one shows once the kept page is PAGE_FRAGMENT_SECONDS old; each enterprise,
role and time zone gets its own."""

import re
import time

import pytest
from django.core.cache import caches
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.audit import Actor
from accounts.models import User
from accounts.services import user_invite
from accounts.tests.factories import AdminFactory
from kernel import fragments, generations
from portal.testing import sign_in_verified
from telephony.tests.factories import give_numbers, make_identity, network_http
from telephony.tests.test_network import reginfo

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not generations.enabled(), reason="page fragments need CACHE_URL"),
]

PAGES = ["/", "/employees/", "/devices/", "/audit/"]


@pytest.fixture(autouse=True)
def kept(settings):
    settings.PAGE_FRAGMENT_SECONDS = 10


def signed_in(user) -> Client:
    return sign_in_verified(Client(), user)


def invite(admin) -> User:
    return user_invite(
        actor=Actor(user=admin),
        enterprise=admin.enterprise,
        email="nia@swift.example",
        full_name="Nia New",
        role="employee",
        send_invitation=False,
    )


def page(client, path) -> str:
    answer = client.get(path)
    assert answer.status_code == 200
    # The CSRF token of the sign-out form is masked anew for every answer.
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", answer.content.decode())


@pytest.mark.parametrize("path", PAGES)
def test_a_page_asked_again_is_the_same_page_without_its_queries(admin_client, employee, path):
    with CaptureQueriesContext(connection) as first:
        shown = page(admin_client, path)
    with CaptureQueriesContext(connection) as again:
        assert page(admin_client, path) == shown
    # The request's own: the session, the user, the second factor's device, the unread count.
    assert len(again.captured_queries) == 4 < len(first.captured_queries)


def test_a_recorded_change_shows_on_every_page_at_once(admin_client, admin):
    before = {path: page(admin_client, path) for path in PAGES}
    assert all("Nia New" not in shown for shown in before.values())
    invite(admin)
    for path in PAGES:
        assert "Nia New" in page(admin_client, path), path


def test_a_device_report_shows_at_once_where_devices_show_and_keeps_the_employee_list(
    admin_client, employee, enterprise
):
    give_numbers(enterprise)
    identity = make_identity(employee)
    network = network_http(enterprise)
    before = {path: page(admin_client, path) for path in PAGES}
    answer = network.post(
        "/network/v1/reginfo",
        data=reginfo(aor=f"sip:{identity.tn}@{enterprise.sip_domain};user=phone"),
        content_type="application/reginfo+xml",
    )
    assert answer.status_code == 200 and answer.json()["new_devices"] == 1, answer.content
    # The home's devices online, the device list and the trail's report: at once.
    for path in ("/", "/devices/", "/audit/"):
        assert page(admin_client, path) != before[path], path
    with CaptureQueriesContext(connection) as employees:
        assert page(admin_client, "/employees/") == before["/employees/"]
    assert len(employees.captured_queries) == 4  # kept: the request's own only


def test_an_unrecorded_change_shows_once_the_kept_page_is_older_than_its_freshness(
    admin_client, employee, monkeypatch
):
    assert "Rob Smith" in page(admin_client, "/employees/")
    User.objects.filter(pk=employee.pk).update(full_name="Robert Smith")  # no audit row
    assert "Robert Smith" not in page(admin_client, "/employees/")
    later = time.time() + 11
    monkeypatch.setattr(fragments.time, "time", lambda: later)
    # While another request renders it again, the others still get the aged page…
    monkeypatch.setattr(fragments, "_claim", lambda key, seconds: False)
    assert "Robert Smith" not in page(admin_client, "/employees/")
    # …and the one that claims it renders it anew.
    monkeypatch.undo()
    monkeypatch.setattr(fragments.time, "time", lambda: later)
    assert "Robert Smith" in page(admin_client, "/employees/")


def test_each_enterprise_role_and_time_zone_gets_its_own(
    admin_client, admin, helpdesk, employee, other_enterprise
):
    ours = page(admin_client, "/employees/")
    assert "Rob Smith" in ours
    theirs = signed_in(AdminFactory(enterprise=other_enterprise, full_name="Otto Other"))
    assert "Rob Smith" not in page(theirs, "/employees/")
    assert "Onboard an employee" in page(admin_client, "/")
    assert "Onboard an employee" not in page(signed_in(helpdesk), "/")
    invite(admin)  # something in the trail, which names the viewer's zone
    tokyo = signed_in(AdminFactory(enterprise=admin.enterprise, time_zone="Asia/Tokyo"))
    assert "(Asia/Tokyo)" in page(tokyo, "/audit/")
    assert "(Asia/Tokyo)" not in page(admin_client, "/audit/")


def test_without_the_cache_every_page_is_rendered(admin_client, employee, monkeypatch):
    def away(*args, **kwargs):
        raise ConnectionError("Redis does not answer")

    monkeypatch.setattr(caches[generations.CACHE], "get_many", away)
    for path in PAGES:
        page(admin_client, path)
    User.objects.filter(pk=employee.pk).update(full_name="Robert Smith")  # no audit row
    assert "Robert Smith" in page(admin_client, "/employees/")
    assert "Robert Smith" in page(admin_client, "/devices/")
