"""Journeys through the portal in a real browser (Debian's Chromium), each checking what
the user sees and what the system did, with a real Celery worker where the journey
waits on one: onboarding to a synced identity, an employee's first sign-in with an
authenticator and the sign-out of one of two phones, a CSV import followed on its
progress bar, and an offboarding to its finished receipt."""

import base64
import threading
from pathlib import Path

import pytest
import requests
from django.db import connection, transaction
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.audit import Actor
from accounts.models import AuditEvent, Invitation, User
from accounts.services import network_client_create
from accounts.tests.factories import (
    PASSWORD,
    AdminFactory,
    EnterpriseFactory,
    TOTPDeviceFactory,
    UserFactory,
)
from portal.testing import sign_in_browser, wait_for
from telephony.identities import services
from telephony.models import Grant, ImportJob, Registration, SimulatedSubscription
from telephony.tests.factories import give_numbers, make_identity
from telephony.tests.test_device_pages import register

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROB_PHONES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "rob-two-phones.xml"
ROB_TN = "+4930555000"  # the number docs/examples/rob-two-phones.xml registers
ROB_PHONE_LABELS = ["Android phone (IMEI …1481)", "iPhone (IMEI …3119)"]  # its two phones


def swift_delivery(**contract):
    enterprise = EnterpriseFactory(
        name="Swift Delivery",
        slug="swift-delivery",
        sip_domain="swift-delivery.example",
        **{f"contract__{key}": value for key, value in contract.items()},
    )
    give_numbers(enterprise, "+4930555000", "+4930555299")
    return enterprise


def admin_of(enterprise):
    admin = AdminFactory(
        enterprise=enterprise, full_name="Ada Admin", email="ada@swift-delivery.example"
    )
    TOTPDeviceFactory(user=admin)
    return admin


def register_robs_phones(live_server, enterprise) -> dict:
    """The IMS core reports Rob Smith's two phones, as the README's example does."""
    _, token = network_client_create(actor=Actor.system(), name="S-CSCF", enterprises=[enterprise])
    response = requests.post(
        f"{live_server.url}/network/v1/reginfo",
        data=ROB_PHONES.read_bytes(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/reginfo+xml"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def in_hss(msisdn: str) -> SimulatedSubscription | None:
    return SimulatedSubscription.objects.filter(msisdn=msisdn).first()


def shared_with(msisdn: str) -> list[str]:
    """The numbers of others that the HSS lets ``msisdn``'s subscriber use."""
    subscription = in_hss(msisdn)
    return [shared[0] for shared in subscription.shared_msisdns] if subscription else []


# --- Onboarding -------------------------------------------------------------------------


@pytest.mark.worker
def test_an_admin_onboards_rob_smith_and_sees_his_identity_synced(page, celery_worker):
    enterprise = swift_delivery()
    admin = admin_of(enterprise)
    sign_in_browser(page, admin, PASSWORD)

    page.get_by_role("link", name="Employees", exact=True).click()
    page.get_by_role("link", name="Onboard an employee").click()
    page.get_by_label("Full name").fill("Rob Smith")
    page.get_by_label("Email").fill("rob.smith@swift-delivery.example")
    page.get_by_label("Video").check()
    page.get_by_role("button", name="Onboard").click()

    # He lands on the new identity: its number, IMPUs and IMPI derived from it.
    page.get_by_role("heading", name=ROB_TN).wait_for()
    for impu in (f"tel:{ROB_TN}", f"sip:{ROB_TN}@swift-delivery.example;user=phone"):
        assert page.get_by_text(impu, exact=True).is_visible()
    # The sync panel polls until the worker has pushed the identity.
    page.locator("#sync-panel").get_by_text("In step with the HSS").wait_for(timeout=20_000)

    rob = User.objects.get(email="rob.smith@swift-delivery.example")
    identity = rob.identities.get()
    subscription = in_hss(ROB_TN)
    assert subscription.display_name == "Rob Smith"
    assert set(subscription.services) == {"voice", "video"}
    assert set(identity.impus) <= set(subscription.impus)
    assert identity.sync.state == "synced"
    assert AuditEvent.objects.filter(actor_user=admin, action="identity.created").exists()
    # The invitation is emailed by the worker too.
    wait_for(lambda: Invitation.objects.filter(user=rob, sent_at__isnull=False).exists())

    # The employee list and the home page tell the same.
    page.get_by_role("link", name="Employees", exact=True).click()
    row = page.get_by_role("row").filter(has_text="Rob Smith")
    assert row.get_by_text("Invited").is_visible()
    assert row.get_by_text("in step").is_visible()
    page.get_by_role("link", name="Home", exact=True).click()
    in_step = page.locator(".card").filter(has_text="in step with the HSS")
    assert in_step.locator(".card-figure").inner_text() == "1"


# --- An employee's devices ----------------------------------------------------------------


@pytest.mark.worker
def test_an_employee_enrols_an_authenticator_then_signs_out_one_of_two_phones(
    page, live_server, celery_worker
):
    enterprise = swift_delivery(employee_2fa_required=True)
    rob = UserFactory(
        enterprise=enterprise, full_name="Rob Smith", email="rob.smith@swift-delivery.example"
    )
    make_identity(rob, tn=ROB_TN)
    assert register_robs_phones(live_server, enterprise)["new_devices"] == 2
    wait_for(lambda: in_hss(ROB_TN))

    # First sign-in: his contract requires a second factor, so he enrols one.
    page.goto("/login/")
    page.get_by_label("Email").fill(rob.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("heading", name="Set up a second factor").wait_for()
    secret = page.get_by_test_id("totp-secret").inner_text()
    page.get_by_label("Code from the app").fill(f"{TOTP(base64.b32decode(secret)).token():06d}")
    page.get_by_role("button", name="Confirm").click()
    page.get_by_role("heading", name="Backup codes").wait_for()
    assert page.locator("ol.codes li").count() == 10
    page.get_by_role("link", name="I have saved them").click()
    page.get_by_role("heading", name="Hello, Rob Smith").wait_for()
    assert TOTPDevice.objects.get(user=rob).confirmed
    assert StaticToken.objects.filter(device__user=rob).count() == 10
    # He was told that he is registered on more than one phone.
    assert page.get_by_test_id("unread-count").is_visible()
    page.get_by_role("link", name="Notifications").click()
    page.get_by_text("is now also signed in").first.wait_for()

    page.get_by_role("link", name="My devices").click()
    devices = page.get_by_test_id("my-device")
    assert devices.count() == 2
    # Each panel is found by its heading: the notices under the other one name it too.
    iphone = devices.filter(has=page.locator("h2", has_text="iPhone (IMEI …3119)"))
    android = devices.filter(has=page.locator("h2", has_text="Android phone (IMEI …1481)"))
    assert iphone.get_by_text("registered", exact=True).is_visible()
    assert android.get_by_text("registered", exact=True).is_visible()

    page.once("dialog", lambda dialog: dialog.accept())
    iphone.get_by_role("button", name="Sign out").click()
    page.get_by_text("Sign-out of iPhone (IMEI …3119) requested.").wait_for()
    # The panel follows the request until the worker has had the network deregister it.
    iphone.get_by_text("signed out", exact=True).wait_for(timeout=20_000)
    assert iphone.get_by_role("button", name="Sign out").count() == 0
    assert android.get_by_text("registered", exact=True).is_visible()

    ended = Registration.objects.get(user=rob, user_agent__startswith="Apple iPhone")
    assert (ended.state, ended.end_reason) == ("ended", "signed_out")
    assert ended.sign_out_sent_at is not None
    assert in_hss(ROB_TN).deregistered_at is not None
    assert Registration.objects.get(user=rob, user_agent__startswith="Samsung").state == "active"

    # Seen again later: the phone still registered first, the signed-out one below.
    page.reload()
    assert "Android phone" in devices.first.inner_text()
    assert page.get_by_role("heading", name="Signed out or expired").is_visible()


# --- Bulk import --------------------------------------------------------------------------


class HeldEmail:
    """Holds a running import at one row: another transaction inserts that row's email
    first and keeps it open, so the worker's insert waits on PostgreSQL's unique index
    (its earlier chunks are committed by then). ``release()`` rolls it back and the
    worker goes on with the row as if nothing had happened."""

    def __init__(self, email: str):
        self.email = email
        self.holding = threading.Event()
        self.released = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._hold, daemon=True)
        self.thread.start()
        assert self.holding.wait(10) and self.error is None, self.error

    def _hold(self):
        try:
            with transaction.atomic():
                User.objects.create(email=self.email, full_name="held", is_staff=True)
                self.holding.set()
                self.released.wait(120)
                transaction.set_rollback(True)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self.error = exc
            self.holding.set()
        finally:
            connection.close()

    def release(self):
        self.released.set()
        self.thread.join(10)


def driver_email(row: int) -> str:
    return f"driver{row:03d}@swift-delivery.example"


@pytest.mark.worker
def test_an_admin_imports_250_employees_and_follows_the_progress_bar(page, celery_worker):
    if connection.vendor != "postgresql":
        pytest.skip("holds the worker on a PostgreSQL unique index")
    enterprise = swift_delivery(identity_quota=300)
    admin = admin_of(enterprise)
    rows = ["email,full_name,services"] + [
        f"{driver_email(n)},Driver {n},voice" for n in range(1, 251)
    ]
    sign_in_browser(page, admin, PASSWORD)

    page.get_by_role("link", name="Employees", exact=True).click()
    page.get_by_role("link", name="Import CSV").click()
    page.get_by_label("CSV file").set_input_files(
        {"name": "drivers.csv", "mimeType": "text/csv", "buffer": "\n".join(rows).encode()}
    )
    page.get_by_role("button", name="Check the file").click()
    page.get_by_text("Every row can be imported: 250 employees").wait_for()
    assert not User.objects.filter(email=driver_email(1)).exists()  # nothing written yet

    # Chunks are 100 rows: hold the worker in the second chunk, then in the third.
    holds = [HeldEmail(driver_email(150)), HeldEmail(driver_email(230))]
    try:
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Start the import").click()
        bar = page.locator("#import-progress progress")
        page.get_by_text("100 of 250 rows done (40%)").wait_for(timeout=30_000)
        assert bar.get_attribute("value") == "100"
        assert page.locator("#import-progress .badge").inner_text() == "Running"
        assert User.objects.filter(enterprise=enterprise, role="employee").count() == 100

        holds[0].release()
        page.get_by_text("200 of 250 rows done (80%)").wait_for(timeout=30_000)
        assert bar.get_attribute("value") == "200"

        holds[1].release()
        page.get_by_text("The import is done").wait_for(timeout=30_000)
    finally:
        for hold in holds:
            hold.release()

    assert page.get_by_text("250 of 250 rows done (100%)").is_visible()
    assert page.get_by_text("250 employees with an identity").is_visible()
    assert page.locator("#import-progress [hx-trigger]").count() == 0  # it stopped polling
    job = ImportJob.objects.get(enterprise=enterprise)
    assert (job.state, job.created_count, job.failed_count) == ("done", 250, 0)
    assert User.objects.filter(email__in=[driver_email(150), driver_email(230)]).count() == 2
    assert AuditEvent.objects.filter(action="import.finished", actor_user=admin).exists()

    page.get_by_role("link", name="See the employees").click()
    page.get_by_text("251 in all").wait_for()


# --- Offboarding --------------------------------------------------------------------------


@pytest.mark.worker
def test_offboarding_rob_smith_ends_his_session_and_every_step_of_the_receipt_finishes(
    browser, page, live_server, celery_worker
):
    enterprise = swift_delivery()
    admin = admin_of(enterprise)
    rob, maria, chen = (
        UserFactory(enterprise=enterprise, full_name=name, email=f"{name.split()[0].lower()}@s.example")
        for name in ("Rob Smith", "Maria Garcia", "Chen Wei")
    )  # fmt: skip
    TOTPDeviceFactory(user=rob)
    robs = make_identity(rob, tn=ROB_TN)
    marias, chens = make_identity(maria), make_identity(chen)
    services.grant_create(actor=Actor(user=maria), identity=marias, grantee=rob)
    services.grant_create(actor=Actor(user=rob), identity=robs, grantee=chen)
    register_robs_phones(live_server, enterprise)
    wait_for(lambda: ROB_TN in shared_with(chens.tn))

    # Rob is signed in on another computer.
    robs_browser = browser.new_context(base_url=live_server.url)
    robs_page = robs_browser.new_page()
    sign_in_browser(robs_page, rob, PASSWORD)
    robs_page.get_by_role("heading", name="Hello, Rob Smith").wait_for()

    sign_in_browser(page, admin, PASSWORD)
    page.get_by_role("link", name="Employees", exact=True).click()
    page.get_by_role("link", name="Rob Smith").click()
    page.get_by_role("link", name="Offboard…").click()
    assert page.get_by_text(f"disable and remove {ROB_TN} in the HSS").is_visible()
    assert page.get_by_text("end 2 active sharings").is_visible()
    page.get_by_role("button", name="Offboard Rob Smith").click()

    page.get_by_role("heading", name="Offboarding of Rob Smith").wait_for()
    # The receipt follows the network steps until the HSS confirms them.
    page.get_by_text("All steps are finished").wait_for(timeout=20_000)
    steps = page.locator(".receipt li")
    assert steps.count() == 4
    assert page.locator(".receipt li.step-done").count() == 4
    assert page.get_by_text("Sharing ended: 1 given, 1 received").is_visible()

    rob.refresh_from_db()
    assert rob.status == "offboarded"
    assert not TOTPDevice.objects.filter(user=rob).exists()
    assert in_hss(ROB_TN) is None
    assert not Registration.objects.filter(user=rob).exclude(state="ended").exists()
    assert not Grant.objects.active().filter(identity__in=[robs, marias]).exists()
    # Chen's subscription no longer lists the number Rob had shared with him.
    wait_for(lambda: ROB_TN not in shared_with(chens.tn))

    # Rob's other session is over: the next page he opens asks him to sign in.
    robs_page.get_by_role("link", name="My devices").click()
    robs_page.wait_for_url("**/login/**")
    robs_browser.close()

    # The employee list leaves leavers out until asked for them.
    page.get_by_role("link", name="Employees", exact=True).click()
    assert page.get_by_role("row").filter(has_text="Rob Smith").count() == 0
    page.get_by_label("Status").select_option("offboarded")
    page.get_by_role("button", name="Filter").click()
    row = page.get_by_role("row").filter(has_text="Rob Smith")
    assert row.get_by_text("Offboarded").is_visible()


# --- The devices dashboard ----------------------------------------------------------------


def test_a_registration_posted_by_the_ims_core_appears_on_an_open_dashboard(page, live_server):
    enterprise = swift_delivery()
    admin = admin_of(enterprise)
    make_identity(UserFactory(enterprise=enterprise, full_name="Rob Smith"), tn=ROB_TN)
    sign_in_browser(page, admin, PASSWORD)
    page.goto("/devices/")
    page.get_by_role("heading", name="Active devices").wait_for()
    assert page.get_by_test_id("device").count() == 0

    register_robs_phones(live_server, enterprise)
    # No reload: the table refreshes itself within a few seconds.
    page.get_by_test_id("device").filter(has_text="IMEI …1481").wait_for(timeout=5_000)
    row = page.get_by_role("row").filter(has_text="Rob Smith")
    assert row.locator(".device-count").inner_text() == "2"


def test_an_admin_ticks_two_devices_the_ticks_outlast_a_refresh_and_both_sign_out(
    page, live_server
):
    enterprise = swift_delivery()
    admin = admin_of(enterprise)
    rob = UserFactory(enterprise=enterprise, full_name="Rob Smith")
    make_identity(rob, tn=ROB_TN)
    jane = UserFactory(enterprise=enterprise, full_name="Jane Doe")
    janes = make_identity(jane)
    register_robs_phones(live_server, enterprise)
    sign_in_browser(page, admin, PASSWORD)
    page.goto("/devices/")
    ticked = [page.get_by_label(f"Tick {phone} of Rob Smith") for phone in ROB_PHONE_LABELS]
    for box in ticked:
        box.check()

    # Jane's laptop registers: the table refreshes to show it, and Rob's phones stay ticked.
    network, _ = network_client_create(
        actor=Actor.system(), name="Lab S-CSCF", enterprises=[enterprise]
    )
    register(network, janes, "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
    page.get_by_label("Tick Soft client (…6bf6) of Jane Doe").wait_for(timeout=10_000)
    assert all(box.is_checked() for box in ticked)

    page.get_by_label("With the ticked devices").select_option("sign_out")
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("heading", name="Sign out: 2 devices").wait_for()
    for phone in ROB_PHONE_LABELS:
        assert page.get_by_text(f"{phone} of Rob Smith").is_visible()
    assert page.get_by_text("Jane Doe").count() == 0
    page.get_by_role("button", name="Sign out: 2 devices").click()
    page.get_by_role("link", name="Back to Devices").wait_for()
    assert page.get_by_text("Sign-out requested").count() == 2
    assert not Registration.objects.active().filter(user=rob).exists()
    assert Registration.objects.active().filter(user=jane).count() == 1


def test_an_employees_devices_and_notification_badge_update_while_the_page_is_open(
    page, live_server
):
    enterprise = swift_delivery()
    rob = UserFactory(
        enterprise=enterprise, full_name="Rob Smith", email="rob.smith@swift-delivery.example"
    )
    make_identity(rob, tn=ROB_TN)
    sign_in_browser(page, rob, PASSWORD)
    page.get_by_role("link", name="My devices").click()
    page.get_by_text("No device has registered with your identities yet.").wait_for()
    assert page.get_by_test_id("unread-count").count() == 0
    page.get_by_role("button", name="Sign out all devices").wait_for(state="detached")

    register_robs_phones(live_server, enterprise)
    # No reload: both phones, the sign-out-all button and the unread notice appear.
    devices = page.get_by_test_id("my-device")
    devices.filter(has=page.locator("h2", has_text="iPhone (IMEI …3119)")).wait_for(timeout=5_000)
    devices.filter(has=page.locator("h2", has_text="Android phone (IMEI …1481)")).wait_for(
        timeout=5_000
    )
    assert page.get_by_role("button", name="Sign out all devices").is_visible()
    page.get_by_test_id("unread-count").wait_for(timeout=5_000)
    unread = rob.notifications.filter(read_at=None).count()
    assert unread and page.get_by_test_id("unread-count").inner_text() == str(unread)
    assert page.get_by_role("heading", name="My devices").is_visible()  # not a page in a page


def test_on_a_phone_an_admin_ticks_two_leavers_and_offboards_both_at_once(page):
    enterprise = swift_delivery()
    admin = admin_of(enterprise)
    leavers = [
        UserFactory(enterprise=enterprise, full_name=name, status=User.Status.ACTIVE)
        for name in ("Lee Leaver", "Lou Leaver")
    ]
    stays = UserFactory(enterprise=enterprise, full_name="Sam Stays", status=User.Status.ACTIVE)
    for person in [*leavers, stays]:
        make_identity(person)
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in_browser(page, admin, PASSWORD)
    page.goto("/employees/")
    for person in leavers:
        page.get_by_label(f"Tick {person.full_name}").check()
    page.get_by_label("With the ticked people").select_option("offboard")
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("heading", name="Offboard: 2 employees").wait_for()
    assert page.get_by_text("Sam Stays").count() == 0
    page.get_by_role("button", name="Offboard: 2 employees").click()
    assert page.get_by_role("link", name="Receipt →").count() == 2
    assert {u.status for u in User.objects.filter(pk__in=[p.pk for p in leavers])} == {
        User.Status.OFFBOARDED
    }
    assert User.objects.get(pk=stays.pk).status == User.Status.ACTIVE
