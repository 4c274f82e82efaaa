"""Everyday tasks as a new user does them in the browser, from the home page and the
words on the pages only (no URL typed): each walk is what the pages must make obvious.
The CSV import with bad rows, the sign-out of a lost phone and the offboarding of a
leaver are walked in test_browser.py."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.tests.factories import UserFactory
from portal.testing import sign_in_browser
from telephony.models import Grant
from telephony.tests.factories import make_identity
from telephony.tests.test_browser import (
    PASSWORD,
    ROB_TN,
    admin_of,
    register_robs_phones,
    swift_delivery,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


def test_an_employee_lends_a_colleague_his_number_until_friday(page):
    enterprise = swift_delivery()
    rob = UserFactory(enterprise=enterprise, full_name="Rob Smith")
    make_identity(rob, tn=ROB_TN)
    UserFactory(enterprise=enterprise, full_name="Jane Doe")
    friday = (timezone.localtime() + timedelta(days=4)).replace(hour=18, minute=0)

    sign_in_browser(page, rob, PASSWORD)
    page.get_by_role("link", name="Sharing").click()
    # His only identity is chosen already.
    assert ROB_TN in page.get_by_label("Identity to share").locator("option:checked").inner_text()
    page.get_by_label("Share with").select_option(label="Jane Doe")
    page.get_by_label("May make calls with it").uncheck()
    page.get_by_label("Until").fill(friday.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Share").click()

    row = page.get_by_role("row").filter(has_text="Jane Doe")
    row.get_by_text(friday.strftime("%Y-%m-%d %H:%M")).wait_for()
    assert row.get_by_text("active").is_visible()
    grant = Grant.objects.get(identity__owner=rob)
    assert (grant.grantee.full_name, grant.can_make_calls, grant.can_receive_calls) == (
        "Jane Doe",
        False,
        True,
    )
    assert timezone.localtime(grant.valid_until).strftime("%Y-%m-%d %H:%M") == friday.strftime(
        "%Y-%m-%d %H:%M"
    )


def test_on_a_phone_an_admin_finds_who_is_on_more_than_one_device(page, live_server):
    enterprise = swift_delivery()
    admin = admin_of(enterprise)
    make_identity(UserFactory(enterprise=enterprise, full_name="Rob Smith"), tn=ROB_TN)
    make_identity(UserFactory(enterprise=enterprise, full_name="Jane Doe"))
    register_robs_phones(live_server, enterprise)

    page.set_viewport_size(PHONE)
    sign_in_browser(page, admin, PASSWORD)
    page.locator(".nav-toggle-label").click()  # the ☰ a phone shows
    page.get_by_role("link", name="Devices", exact=True).click()
    page.get_by_label(re.compile("^Devices")).select_option(label="On more than one device")
    page.get_by_role("button", name="Filter").click()

    page.get_by_text("Rob Smith").first.wait_for()
    assert page.get_by_text("Jane Doe").count() == 0
    row = page.get_by_role("row").filter(has_text="Rob Smith")
    assert row.locator(".device-count").inner_text() == "2"
