"""The identities journey in a real browser, with a real worker syncing to the HSS."""

import pytest

from accounts.tests.factories import PASSWORD, AdminFactory, EnterpriseFactory, TOTPDeviceFactory
from portal.testing import sign_in_browser
from telephony.models import SimulatedSubscription
from telephony.tests.factories import give_numbers

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.worker
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


def test_a_registration_posted_by_the_ims_core_appears_on_an_open_dashboard(page, live_server):
    import requests

    from accounts.audit import Actor
    from accounts.services import network_client_create
    from accounts.tests.factories import UserFactory
    from telephony.tests.factories import make_identity

    enterprise = EnterpriseFactory(name="Swift Delivery", sip_domain="swift-delivery.example")
    give_numbers(enterprise, "+4930555000", "+4930555099")
    admin = AdminFactory(enterprise=enterprise)
    TOTPDeviceFactory(user=admin)
    rob = make_identity(UserFactory(enterprise=enterprise, full_name="Rob Smith"))
    _, token = network_client_create(actor=Actor.system(), name="S-CSCF", enterprises=[enterprise])
    sign_in_browser(page, admin, PASSWORD)
    page.goto("/devices/")
    page.get_by_role("heading", name="Active devices").wait_for()
    assert page.get_by_test_id("device").count() == 0

    body = f"""<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="full">
      <registration aor="tel:{rob.tn}" id="r1" state="active">
        <contact id="c1" state="active" event="registered" expires="600">
          <uri>sip:{rob.tn}@198.51.100.20:5060</uri>
          <unknown-param name="+sip.instance">"&lt;urn:gsma:imei:35209900-176148-1&gt;"</unknown-param>
        </contact>
      </registration></reginfo>"""
    response = requests.post(
        f"{live_server.url}/network/v1/reginfo",
        data=body.encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/reginfo+xml"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    # No reload: the table refreshes itself within a few seconds.
    page.get_by_test_id("device").filter(has_text="IMEI …1481").wait_for(timeout=5_000)
