"""The identities journey in a real browser, with a real worker syncing to the HSS."""

import pytest

from accounts.tests.factories import PASSWORD, AdminFactory, EnterpriseFactory, TOTPDeviceFactory
from portal.testing import sign_in_browser
from telephony.models import SimulatedSubscription
from telephony.tests.factories import give_numbers

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_an_admin_onboards_rob_smith_sees_him_synced_then_offboards_him(page, celery_worker):
    enterprise = EnterpriseFactory(name="Swift Delivery", sip_domain="swift-delivery.example")
    give_numbers(enterprise, "+4930555000", "+4930555099")
    admin = AdminFactory(enterprise=enterprise)
    TOTPDeviceFactory(user=admin)
    sign_in_browser(page, admin, PASSWORD)

    page.get_by_role("link", name="Employees").click()
    page.get_by_role("link", name="Onboard an employee").click()
    page.get_by_label("Full name").fill("Rob Smith")
    page.get_by_label("Email").fill("rob.smith@swift-delivery.example")
    page.get_by_label("Video").check()
    page.get_by_role("button", name="Onboard").click()

    page.get_by_role("heading", name="+4930555000").wait_for()
    # The sync panel polls until the worker has pushed the identity.
    page.locator("#sync-panel").get_by_text("In step with the HSS").wait_for(timeout=20_000)
    assert SimulatedSubscription.objects.get(msisdn="+4930555000").display_name == "Rob Smith"

    page.get_by_role("link", name="Rob Smith").first.click()
    page.get_by_role("link", name="Offboard…").click()
    page.get_by_role("button", name="Offboard Rob Smith").click()
    page.get_by_text("All steps are finished").wait_for(timeout=20_000)
    assert page.locator(".step-done").count() == 4
    assert not SimulatedSubscription.objects.exists()
