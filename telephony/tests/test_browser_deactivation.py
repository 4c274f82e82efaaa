"""The employee page's leaver buttons in a real browser (Debian's Chromium): an admin
deactivates Rob Smith (reversibly), reactivates him, deactivates him again and offboards
him now; each step checked in what the admin sees and in what the system did."""

import pytest

from accounts.models import User
from accounts.tests.factories import PASSWORD, TOTPDeviceFactory, UserFactory
from portal.testing import sign_in_browser
from telephony.tests.factories import make_identity
from telephony.tests.test_browser import ROB_TN, admin_of, in_hss, swift_delivery

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def status_of(user) -> str:
    user.refresh_from_db()
    return user.status


def test_an_admin_deactivates_reactivates_and_offboards_now_from_the_employee_page(
    browser, page, live_server
):
    enterprise = swift_delivery(deactivation_grace_days=30)
    admin = admin_of(enterprise)
    rob = UserFactory(enterprise=enterprise, full_name="Rob Smith", email="rob@s.example")
    TOTPDeviceFactory(user=rob)
    make_identity(rob, tn=ROB_TN)
    assert in_hss(ROB_TN).enabled

    # Rob is signed in on another computer.
    robs_browser = browser.new_context(base_url=live_server.url)
    robs_page = robs_browser.new_page()
    sign_in_browser(robs_page, rob, PASSWORD)

    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    sign_in_browser(page, admin, PASSWORD)
    page.get_by_role("link", name="Employees", exact=True).click()
    page.get_by_role("link", name="Rob Smith").click()
    assert page.get_by_role("link", name="Offboard…").is_visible()
    assert not page.get_by_role("button", name="Reactivate").count()

    page.get_by_role("button", name="Deactivate").click()
    page.get_by_role("heading", name="Deactivation of Rob Smith").wait_for()
    assert dialogs and "after 30 days they are offboarded" in dialogs[0]
    assert status_of(rob) == User.Status.DEACTIVATED
    assert not in_hss(ROB_TN).enabled
    robs_page.reload()
    robs_page.wait_for_url("**/login/**")  # his session ended with the deactivation

    page.get_by_role("link", name="rob@s.example").click()
    page.get_by_role("heading", name="Rob Smith Deactivated").wait_for()
    assert page.get_by_text("unless reactivated").is_visible()
    assert not page.get_by_role("button", name="Deactivate").count()

    page.get_by_role("button", name="Reactivate").click()
    page.get_by_role("heading", name="Reactivation of Rob Smith").wait_for()
    assert status_of(rob) == User.Status.ACTIVE
    assert in_hss(ROB_TN).enabled
    # His old session stays ended; he may sign in again.
    robs_page.goto("/my/devices/")
    robs_page.wait_for_url("**/login/**")
    sign_in_browser(robs_page, rob, PASSWORD)
    robs_page.get_by_role("heading", name="Hello, Rob Smith").wait_for()
    robs_browser.close()

    page.get_by_role("link", name="rob@s.example").click()
    page.get_by_role("button", name="Deactivate").click()
    page.get_by_role("heading", name="Deactivation of Rob Smith").wait_for()
    page.get_by_role("link", name="rob@s.example").click()
    page.get_by_role("link", name="Offboard now…").click()
    page.get_by_role("button", name="Offboard Rob Smith").click()
    page.get_by_role("heading", name="Offboarding of Rob Smith").wait_for()
    page.get_by_text("All steps are finished").wait_for(timeout=20_000)
    assert status_of(rob) == User.Status.OFFBOARDED
    assert in_hss(ROB_TN) is None

    page.get_by_role("link", name="rob@s.example").click()
    page.get_by_role("heading", name="Rob Smith Offboarded").wait_for()
    for name in ("Deactivate", "Reactivate"):
        assert not page.get_by_role("button", name=name).count()
    assert not page.get_by_role("link", name="Offboard now…").count()
