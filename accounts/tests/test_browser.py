"""Sign-in with a second factor, in a real browser."""

import base64
import subprocess

import pytest
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.tests.factories import PASSWORD, AdminFactory, EnterpriseFactory, TOTPDeviceFactory
from portal.testing import require_program, totp_code

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in_with_password(page, user):
    page.goto("/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()


def test_an_admin_signs_in_with_password_and_authenticator_code(page):
    admin = AdminFactory(enterprise=EnterpriseFactory(name="Swift Delivery"))
    device = TOTPDeviceFactory(user=admin)

    sign_in_with_password(page, admin)
    page.get_by_role("heading", name="Confirm it is you").wait_for()
    page.get_by_role("textbox", name="Code").fill("000000")
    page.get_by_role("button", name="Verify").click()
    page.get_by_text("That code is not valid.").wait_for()

    type(device).objects.filter(pk=device.pk).update(throttling_failure_count=0)
    page.get_by_role("textbox", name="Code").fill(totp_code(device))
    page.get_by_role("button", name="Verify").click()
    page.get_by_role("heading", name="Swift Delivery").wait_for()
    assert page.get_by_role("link", name="Audit trail", exact=True).is_visible()


def decode_qr(png: bytes) -> str:
    """What a camera would read from the picture: Debian's zbarimg decodes it."""
    zbarimg = require_program("zbarimg")
    result = subprocess.run(
        [zbarimg, "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", "-"],
        input=png,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, f"no QR code in the picture: {result.stderr.decode()}"
    return result.stdout.decode().strip()


def test_a_new_admin_enrols_an_authenticator_from_the_qr_page(page):
    admin = AdminFactory(enterprise=EnterpriseFactory(name="Swift Delivery"))

    sign_in_with_password(page, admin)
    page.get_by_role("heading", name="Set up a second factor").wait_for()
    # The QR code as Chromium drew it carries the authenticator's otpauth URI.
    device = TOTPDevice.objects.get(user=admin, confirmed=False)
    assert decode_qr(page.locator("figure.qr").screenshot()) == device.config_url
    secret = page.get_by_test_id("totp-secret").inner_text()
    code = TOTP(base64.b32decode(secret)).token()
    page.get_by_label("Code from the app").fill(f"{code:06d}")
    page.get_by_role("button", name="Confirm").click()

    page.get_by_role("heading", name="Backup codes").wait_for()
    assert page.locator("ol.codes li").count() == 10
    page.get_by_role("link", name="I have saved them").click()
    page.get_by_role("heading", name="Swift Delivery").wait_for()


def test_the_first_tab_offers_to_skip_the_menu(page):
    page.goto("/login/")
    skip = page.get_by_role("link", name="Skip to content")
    # First in the tab order, out of sight until it has the focus.
    first = "document.querySelector('a[href], button, input, select, textarea, [tabindex]')"
    assert page.evaluate(f"{first}.textContent") == "Skip to content"
    assert skip.bounding_box()["y"] < 0
    skip.focus()
    assert skip.bounding_box()["y"] >= 0
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "content"


def test_on_a_phone_the_menu_opens_by_keyboard(page):
    from portal.testing import sign_in_browser

    admin = AdminFactory(enterprise=EnterpriseFactory(name="Swift Delivery"))
    TOTPDeviceFactory(user=admin)
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in_browser(page, admin, PASSWORD)
    audit = page.get_by_role("link", name="Audit trail", exact=True)
    assert not audit.is_visible()
    for _ in range(6):  # the skip link first, then the menu
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "nav-toggle":
            break
    assert page.evaluate("document.activeElement.id") == "nav-toggle"
    page.keyboard.press("Space")
    audit.wait_for(state="visible")


def test_the_audit_trail_reads_in_the_browsers_time_zone_and_exports_what_is_filtered(
    browser, live_server
):
    from accounts import services
    from accounts.audit import Actor
    from accounts.models import AuditEvent
    from accounts.tests.factories import UserFactory
    from portal.testing import sign_in_browser

    admin = AdminFactory(enterprise=EnterpriseFactory(name="Swift Delivery"), full_name="Ada Admin")
    TOTPDeviceFactory(user=admin)
    rob = UserFactory(enterprise=admin.enterprise, full_name="Rob Smith", email="rob@swift.example")
    services.user_update(actor=Actor(user=admin), user=rob, full_name="Robbie Smith")
    services.user_update(actor=Actor(user=admin), user=admin, full_name="Ada Admin-Lee")
    # A laptop in Tokyo: the page's script tells the portal, and times follow.
    context = browser.new_context(
        base_url=live_server.url, timezone_id="Asia/Tokyo", accept_downloads=True
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        sign_in_browser(page, admin, PASSWORD)
        page.goto("/audit/")
        page.reload()  # the first page set the cookie; from now on, times are Tokyo's
        page.get_by_role("columnheader", name="When (Asia/Tokyo)").wait_for()
        assert page.get_by_text("Ada Admin-Lee changed person Robbie Smith").is_visible()

        page.get_by_label("Person", exact=True).fill("rob@")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url("**person=rob%40**")
        assert page.get_by_text("changed person Ada Admin-Lee").count() == 0
        with page.expect_download() as download:
            page.get_by_role("link", name="Export CSV").click()
        text = download.value.path().read_text(encoding="utf-8-sig")
        assert "changed person Robbie Smith" in text and "Ada Admin-Lee\n" not in text
        assert "+09:00" in text  # the times of the file are the viewer's too
        assert AuditEvent.objects.filter(action="audit.exported", actor_user=admin).exists()
    finally:
        context.close()
