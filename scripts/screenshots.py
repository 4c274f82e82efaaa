"""Screenshots of the main pages for the README: ``make screenshots``.

Builds a throwaway portal under ``var/screenshots/`` (its own SQLite file and mail
folder; tasks run in this process, so no broker is needed), loads the demo data
(``seed_demo``), lets the IMS core register the demo phones and sign two weeks of calls
through the network API, then drives Debian's Chromium through the pages as the demo
users and writes 1280-pixel-wide PNGs to ``docs/screenshots/``, and the main pages at
a phone's size (``phone-*.png``). Nothing is downloaded;
the database of ``make run`` is not touched.
"""

import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "screenshots"
OUT = ROOT / "docs" / "screenshots"
WIDTH, HEIGHT = 1280, 800
MAX_HEIGHT = 1500  # long pages are cut here: a screenshot shows the top of the page

# Rob Smith's two phones are docs/examples/rob-two-phones.xml; these are the others'.
MARIA_SOFTPHONE = """<reginfo xmlns="urn:ietf:params:xml:ns:reginfo"
  xmlns:ext="urn:x-enterprise-portal:params:xml:ns:reginfo-ext" version="1" state="full">
  <registration aor="tel:{tn}" id="m1" state="active">
    <contact id="m1c" state="active" event="registered" expires="3600">
      <uri>sip:{tn}@203.0.113.45:5061;transport=tls</uri>
      <unknown-param name="+sip.instance">"&lt;urn:uuid:5b1f7c1e-8f3a-4d62-9e0b-2a6f0d9c4e11&gt;"</unknown-param>
      <ext:user-agent>Linphone Desktop/5.2 (Windows 11)</ext:user-agent>
      <ext:access-network>IEEE-802.11</ext:access-network>
    </contact>
  </registration>
</reginfo>"""
CHEN_PHONE = """<reginfo xmlns="urn:ietf:params:xml:ns:reginfo"
  xmlns:ext="urn:x-enterprise-portal:params:xml:ns:reginfo-ext" version="1" state="full">
  <registration aor="tel:{tn}" id="c1" state="active">
    <contact id="c1c" state="active" event="registered" expires="3600">
      <uri>sip:{tn}@198.51.100.61:5060;transport=tcp</uri>
      <unknown-param name="+sip.instance">"&lt;urn:gsma:imei:35391805-112233-4&gt;"</unknown-param>
      <ext:user-agent>Google Pixel IMS/8.1 (Android 15)</ext:user-agent>
      <ext:access-network>3GPP-NR-FDD; utran-cell-id-3gpp=26201000c0ffee01</ext:access-network>
    </contact>
  </registration>
</reginfo>"""

FIRST_NAMES = [
    "Anna", "Ben", "Clara", "David", "Elif", "Felix", "Greta", "Hannes", "Ines", "Jonas",
    "Katrin", "Lukas", "Mia", "Niklas", "Olga", "Paul", "Rosa", "Sven", "Tara", "Yusuf",
]  # fmt: skip
LAST_NAMES = [
    "Bauer", "Demir", "Fischer", "Hoffmann", "Kaya", "Klein", "Meyer", "Novak", "Richter",
]  # fmt: skip
IMPORT_ROWS = 180


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def configure() -> None:
    """A portal of its own: nothing of the caller's environment reaches it."""
    for name in (
        "DATABASE_URL", "CELERY_BROKER_URL", "HSS_BACKEND", "HSS_BUILTIN_LATENCY_MS",
        "HSS_BUILTIN_FAILURE_RATE", "EMAIL_HOST", "NETWORK_NOTIFY_BACKEND", "TIME_ZONE",
    ):  # fmt: skip
        os.environ.pop(name, None)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DJANGO_DEBUG="true",  # seed_demo runs only in a development portal
        PORTAL_VAR_DIR=str(VAR),
        # The address `make run` serves, as it shows in the pages (SCIM, discovery URLs).
        PORTAL_BASE_URL="http://127.0.0.1:8000",
        LOG_LEVEL="ERROR",
        # Playwright's sync API runs an event loop in this thread; the ORM calls made
        # around it are still synchronous.
        DJANGO_ALLOW_ASYNC_UNSAFE="true",
    )
    shutil.rmtree(VAR, ignore_errors=True)
    VAR.mkdir(parents=True)
    sys.path.insert(0, str(ROOT))

    import logging

    import django

    django.setup()
    logging.getLogger("django.request").setLevel(logging.ERROR)  # the demo's 400s and 404s
    from portal.celery import app

    # Tasks run in this process right after each commit, as a fast worker would.
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True


def start_server(port: int):
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.test.testcases import LiveServerThread

    server = LiveServerThread("127.0.0.1", StaticFilesHandler, port=port)
    server.daemon = True
    server.start()
    server.is_ready.wait(30)
    if server.error:
        raise server.error
    return server


# --- Demo traffic from the IMS core ------------------------------------------------------


def network_post(base_url: str, path: str, body: bytes, content_type: str) -> dict:
    import requests

    from portal.management.commands.seed_demo import DEMO_NETWORK_TOKEN

    response = requests.post(
        base_url + path,
        data=body,
        headers={"Authorization": f"Bearer {DEMO_NETWORK_TOKEN}", "Content-Type": content_type},
        timeout=30,
    )
    if response.status_code != 200:
        raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:300]}")
    return response.json()


def register_phones(base_url: str) -> None:
    from telephony.models import Identity

    def tn(email):
        return Identity.objects.live().get(owner__email=email).tn

    rob = (ROOT / "docs" / "examples" / "rob-two-phones.xml").read_bytes()
    maria = MARIA_SOFTPHONE.format(tn=tn("maria.garcia@swift-delivery.example")).encode()
    chen = CHEN_PHONE.format(tn=tn("chen.wei@swift-delivery.example")).encode()
    for document in (chen, maria, rob):
        answer = network_post(base_url, "/network/v1/reginfo", document, "application/reginfo+xml")
        if not answer["applied"]:
            raise RuntimeError(f"the IMS core's document was not applied: {answer}")


def provision_from_idp(base_url: str) -> None:
    """The corporate identity provider pushes a joiner over SCIM, with a work number."""
    import json

    import requests

    from portal.management.commands.seed_demo import DEMO_SCIM_TOKEN

    user = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "lee.wong@swift-delivery.example",
        "name": {"givenName": "Lee", "familyName": "Wong"},
        "displayName": "Lee Wong",
        "phoneNumbers": [{"type": "work", "value": "+4930555020"}],
        "active": True,
    }
    response = requests.post(
        f"{base_url}/scim/v2/Users",
        data=json.dumps(user),
        headers={
            "Authorization": f"Bearer {DEMO_SCIM_TOKEN}",
            "Content-Type": "application/scim+json",
        },
        timeout=30,
    )
    if response.status_code != 201:
        raise RuntimeError(f"SCIM answered {response.status_code}: {response.text[:300]}")


def sign_calls(base_url: str) -> None:
    """Two weeks of calls, signed and verified by the portal's STI-AS and STI-VS; each
    day's records are then moved back to that day (they keep the decision made when
    they were signed)."""
    import json
    import random
    import uuid
    from datetime import timedelta

    from django.db.models import Max
    from django.utils import timezone

    from telephony.models import CallRecord, Identity

    rng = random.Random(2026)  # noqa: S311 - demo data: the same picture every time
    staff = {
        i.owner.email.split("@")[0]: i.tn
        for i in Identity.objects.live().select_related("number", "owner")
    }
    customers = [f"+49301234{n:04d}" for n in range(40)]
    now = timezone.now()

    def sign(orig, dest, impu=None, age=0):
        request = {"orig": {"tn": orig.lstrip("+")}, "dest": {"tn": [dest.lstrip("+")]}}
        iat = int(time.time()) - age
        request.update(iat=iat, origid=str(uuid.UUID(int=rng.getrandbits(128))))
        if impu:
            request["origImpu"] = impu
        body = json.dumps({"signingRequest": request}).encode()
        answer = network_post(base_url, "/network/v1/stir/signing", body, "application/json")
        return answer["signingResponse"]["identity"]

    def verify(orig, dest, identity):
        request = {"from": {"tn": orig.lstrip("+")}, "to": {"tn": [dest.lstrip("+")]}}
        request.update(identity=identity, time=int(time.time()))
        body = json.dumps({"verificationRequest": request}).encode()
        network_post(base_url, "/network/v1/stir/verification", body, "application/json")

    def move_back(after_pk, days):
        """Spread the records made since ``after_pk`` over working hours ``days`` ago."""
        day = (now - timedelta(days=days)).replace(hour=7, minute=0, second=0, microsecond=0)
        for pk in CallRecord.objects.filter(pk__gt=after_pk).values_list("pk", flat=True):
            at = day + timedelta(minutes=rng.randint(0, 11 * 60))
            if at >= now:
                at = now - timedelta(minutes=rng.randint(1, 90))
            CallRecord.objects.filter(pk=pk).update(created_at=at)

    def last_pk():
        return CallRecord.objects.aggregate(last=Max("pk"))["last"] or 0

    for days in range(13, -1, -1):
        before = last_pk()
        weekend = (now - timedelta(days=days)).weekday() >= 5
        for _ in range(rng.randint(2, 6) if weekend else rng.randint(14, 26)):
            caller = rng.choice(["rob.smith", "rob.smith", "maria.garcia", "chen.wei"])
            sign(staff[caller], rng.choice(customers))
        if not weekend and rng.random() < 0.5:
            # Chen calls with Maria's number, which she has not shared with him: B.
            sign(staff["maria.garcia"], rng.choice(customers),
                 impu=f"tel:{staff['chen.wei']}")  # fmt: skip
        move_back(before, days)

    # Incoming calls from customers to Rob, verified; one Identity header arrives stale.
    before = last_pk()
    for customer in rng.sample(customers, 6):
        verify(customer, staff["rob.smith"], sign(customer, staff["rob.smith"]))
    verify(customers[0], staff["rob.smith"], sign(customers[0], staff["rob.smith"], age=600))
    # The customers' own signings stand in for their operator's; they are not Swift's.
    CallRecord.objects.filter(pk__gt=before, direction="outgoing").delete()
    move_back(before, 0)


# --- The import, held half-way --------------------------------------------------------------


class HeldImport:
    """Stands in for the bulk worker: runs the import in a thread of this process and
    holds it after its first committed chunk, so the progress bar can be photographed
    half-way; ``release()`` lets it finish."""

    def __init__(self):
        self.held = threading.Event()
        self.released = threading.Event()
        self.done = threading.Event()

    def delay(self, job_id: int) -> None:
        threading.Thread(target=self.run, args=(job_id,), daemon=True).start()

    def run(self, job_id: int) -> None:
        from django.db import connection

        from telephony.bulk import services as bulk

        original = bulk.iter_rows

        def rows(csv_text, *, start=0):
            for index, row in enumerate(original(csv_text, start=start)):
                if start == 0 and index == bulk.CHUNK_SIZE:
                    # Between chunks: the first one is committed, no transaction is open.
                    self.held.set()
                    self.released.wait(120)
                yield row

        bulk.iter_rows = rows
        try:
            bulk.run_import_job(job_id)
        finally:
            bulk.iter_rows = original
            connection.close()
            self.done.set()

    def release(self) -> None:
        self.released.set()


def import_csv() -> bytes:
    lines = ["email,full_name,role,services"]
    names = [(f, la) for la in LAST_NAMES for f in FIRST_NAMES][:IMPORT_ROWS]
    for index, (first, last) in enumerate(names):
        services = "voice;video" if index % 3 else "voice"
        email = f"{first}.{last}@swift-delivery.example".lower()
        lines.append(f"{email},{first} {last},employee,{services}")
    return ("\n".join(lines) + "\n").encode()


def import_csv_to_correct() -> bytes:
    """Six new drivers, two of them with a problem to correct."""
    return (
        b"email,full_name,services,tn\n"
        b"mia.keller@swift-delivery.example,Mia Keller,voice;video,\n"
        b"jonas.wolf@swift-delivery,Jonas Wolf,voice,\n"
        b"lena.hoffmann@swift-delivery.example,Lena Hoffmann,voice,\n"
        b"tim.becker@swift-delivery.example,Tim Becker,voice;hologram,\n"
        b"sara.koch@swift-delivery.example,Sara Koch,voice;video,\n"
        b"ben.richter@swift-delivery.example,Ben Richter,voice,\n"
    )


# --- The browser ----------------------------------------------------------------------------


def totp_now(email: str) -> str:
    from django_otp.oath import TOTP
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.get(user__email=email, confirmed=True)
    return f"{TOTP(device.bin_key, device.step, device.t0, device.digits).token():06d}"


# A phone: its CSS pixels, drawn at twice the density.
PHONE = {"width": 390, "height": 844}


def signed_in(browser, base_url: str, email: str, *, scale: float = 1):
    """A new browser session signed in as ``email``. With ``scale`` below 1 the page is
    laid out wider than the 1280-pixel picture (Django admin needs the room)."""
    from portal.management.commands.seed_demo import DEMO_PASSWORD

    context = browser.new_context(
        base_url=base_url,
        viewport={"width": round(WIDTH / scale), "height": round(HEIGHT / scale)},
        device_scale_factor=scale,
    )
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the "are you sure?" confirmations
    page.goto("/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("textbox", name="Code").fill(totp_now(email))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(lambda url: "/login" not in url and "/account/2fa" not in url)
    return page


def on_a_phone(page, base_url: str):
    """The same session on a phone's screen: its cookies in a new phone-sized browser
    context (signing in again within the half-minute would reuse a spent code)."""
    context = page.context.browser.new_context(
        base_url=base_url,
        viewport=PHONE,
        device_scale_factor=2,
        storage_state=page.context.storage_state(),
    )
    context.set_default_timeout(20_000)
    return context.new_page()


def shoot(page, name: str, max_height: int = MAX_HEIGHT) -> None:
    """A PNG of the page's top, 1280 pixels wide and at most ``max_height`` high."""
    page.wait_for_load_state("load")
    page.mouse.move(0, 0)  # no hover effect on whatever lay under the last click
    width = page.viewport_size["width"]
    scale = WIDTH / width
    height = min(page.evaluate("document.documentElement.scrollHeight"), max_height / scale)
    path = OUT / f"{name}.png"
    page.screenshot(
        path=path, full_page=True, clip={"x": 0, "y": 0, "width": width, "height": height}
    )
    print(f"  {path.relative_to(ROOT)}  {path.stat().st_size // 1024} KiB")


def shoot_screen(page, name: str) -> None:
    """A PNG of what the screen shows (a phone's first screenful)."""
    page.wait_for_load_state("load")
    path = OUT / f"{name}.png"
    page.screenshot(path=path)
    print(f"  {path.relative_to(ROOT)}  {path.stat().st_size // 1024} KiB")


def take_screenshots(browser, base_url: str) -> None:
    from accounts.models import ServiceContract, User
    from telephony import tasks

    rob = User.objects.get(email="rob.smith@swift-delivery.example")
    maria = User.objects.get(email="maria.garcia@swift-delivery.example")

    admin = signed_in(browser, base_url, "admin@swift-delivery.example")
    shoot(admin, "home")
    admin.get_by_role("link", name="Employees", exact=True).click()
    shoot(admin, "employees")
    admin.goto(f"/employees/{rob.pk}/")
    shoot(admin, "employee")
    admin.get_by_role("link", name=rob.identities.get().tn).first.click()
    admin.locator("#sync-panel").get_by_text("In step with the HSS").wait_for()
    admin.get_by_text("Last calls").click()
    shoot(admin, "identity")
    admin.get_by_role("link", name="Devices", exact=True).click()
    admin.get_by_text("IMEI …1481").wait_for()
    shoot(admin, "devices")
    admin.get_by_role("link", name="Calls", exact=True).click()
    shoot(admin, "calls")
    admin.goto("/enterprise/identity-provider/")
    shoot(admin, "identity-provider")

    employee = signed_in(browser, base_url, rob.email)
    employee.get_by_role("link", name="My devices").click()
    shoot(employee, "my-devices")
    phone = on_a_phone(employee, base_url)
    phone.goto("/my/devices/")
    shoot_screen(phone, "phone-my-devices")
    phone.context.close()
    employee.context.close()

    # The README's main pages at phone size: the first screenful of each.
    phone = on_a_phone(admin, base_url)
    phone.goto("/")
    shoot_screen(phone, "phone-home")
    phone.goto("/employees/")
    shoot_screen(phone, "phone-employees")
    phone.goto(f"/employees/{rob.pk}/")
    shoot_screen(phone, "phone-employee")
    phone.goto(f"/identities/{rob.identities.get().pk}/")
    phone.locator("#sync-panel").get_by_text("In step with the HSS").wait_for()
    shoot_screen(phone, "phone-identity")
    phone.goto("/devices/")
    phone.get_by_text("IMEI …1481").wait_for()
    shoot_screen(phone, "phone-devices")
    phone.goto("/calls/")
    shoot_screen(phone, "phone-calls")
    phone.context.close()

    # The operator raised the quota for the new drivers (operator staff do it in Django admin).
    ServiceContract.objects.filter(enterprise__slug="swift-delivery").update(identity_quota=250)
    # A file with two rows to correct: the check shows them and what the others create.
    admin.goto("/import/")
    admin.get_by_label("CSV file").set_input_files(
        {"name": "more-drivers.csv", "mimeType": "text/csv", "buffer": import_csv_to_correct()}
    )
    admin.get_by_role("button", name="Check the file").click()
    admin.get_by_text("What the import creates").wait_for()
    shoot(admin, "import-check")
    phone = on_a_phone(admin, base_url)
    phone.goto(admin.url)
    # Its second screenful: the rows to correct, then what the valid ones create.
    phone.get_by_role("heading", name="Problems").evaluate("heading => heading.scrollIntoView()")
    shoot_screen(phone, "phone-import-check")
    phone.context.close()

    held = HeldImport()
    tasks.run_import.delay = held.delay
    admin.goto("/import/")
    admin.get_by_label("CSV file").set_input_files(
        {"name": "new-drivers.csv", "mimeType": "text/csv", "buffer": import_csv()}
    )
    admin.get_by_role("button", name="Check the file").click()
    admin.get_by_role("button", name="Start the import").click()
    if not held.held.wait(60):
        raise RuntimeError("the import did not reach its second chunk")
    admin.get_by_text(f"100 of {IMPORT_ROWS} rows done").wait_for()
    shoot(admin, "import-progress")
    held.release()
    admin.get_by_text("The import is done").wait_for(timeout=60_000)
    held.done.wait(60)

    admin.goto(f"/employees/{maria.pk}/offboard/")
    admin.get_by_role("button", name=f"Offboard {maria.full_name}").click()
    admin.get_by_text("All steps are finished").wait_for()
    shoot(admin, "offboarding-receipt")
    admin.context.close()

    staff = signed_in(browser, base_url, "staff@ica.example", scale=0.8)
    staff.goto("/admin/telephony/identitysync/")
    staff.locator("#toggle-nav-sidebar").click()  # the table needs the width
    staff.get_by_role("link", name="Show counts").click()
    shoot(staff, "admin-sync-queue", max_height=1000)
    staff.context.close()


def main() -> int:
    port = free_port()
    configure()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    call_command("seed_demo", json=True, stdout=open(os.devnull, "w"))  # noqa: SIM115
    server = start_server(port)
    base_url = f"http://127.0.0.1:{port}"
    try:
        provision_from_idp(base_url)
        register_phones(base_url)
        sign_calls(base_url)
        from playwright.sync_api import sync_playwright

        OUT.mkdir(parents=True, exist_ok=True)
        executable = shutil.which("chromium") or "/usr/bin/chromium"
        args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--hide-scrollbars"]  # fmt: skip
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=executable, headless=True, args=args
            )
            try:
                take_screenshots(browser, base_url)
            finally:
                browser.close()
    finally:
        server.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
