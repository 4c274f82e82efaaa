"""The everyday tasks of issue 20, each done as a new user does it and timed: "onboard ten
people from a CSV with two bad rows, give a colleague a number temporarily, find who is on
more than one device, sign out a lost phone, offboard a leaver — each in under a minute".

Each walk starts on the home page after sign-in and goes by the words on the pages only:
the menu, links, buttons and labelled fields (no URL typed, no selector a user cannot see).
Where a task could not be done that way, the page was mended, not the walk. Each action
is recorded as the operators of the Keystroke-Level Model, with the time the browser
waited for the portal, and the estimate must stay under the issue's minute, at laptop and
at phone size. docs/usability.md explains the model and holds the figures
(``pytest -s`` prints them).

The other walks in the browser (the onboarding of one employee to a synced identity, the
import followed on its progress bar, the employee's own sign-out of a phone, offboarding
that ends the leaver's sessions) are in test_browser.py."""

import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pytest
from django.utils import timezone

from accounts.models import AuditEvent, Notification, User
from accounts.tests.factories import UserFactory
from portal.testing import sign_in_browser
from telephony import selectors
from telephony.models import Grant, OffboardingReceipt, Registration
from telephony.tests.factories import make_identity
from telephony.tests.test_browser import (
    PASSWORD,
    ROB_TN,
    admin_of,
    driver_email,
    in_hss,
    register_robs_phones,
    swift_delivery,
)

if TYPE_CHECKING:
    from playwright.sync_api import FilePayload, Page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

Clickable = Literal["link", "button"]
PHONE = {"width": 390, "height": 844}
MINUTE = 60.0

# Keystroke-Level Model operators in seconds (Card, Moran & Newell, CACM 23(7), 1980, and
# The Psychology of Human-Computer Interaction, 1983; B as Kieras writes the button press).
SECONDS = {
    "K": 0.28,  # a keystroke, average non-secretary typist (40 wpm)
    "P": 1.10,  # point with the mouse at a target on the display
    "B": 0.10,  # press or release the mouse button: a click is BB
    "H": 0.40,  # move a hand between mouse and keyboard
    "M": 1.35,  # mentally prepare: find the next thing to do on the page and decide
}


@dataclass
class Step:
    action: str  # what the user did, in the page's words
    operators: str  # e.g. "MPBB": think, point, press, release
    response: float  # seconds the browser waited for the portal (R), measured

    @property
    def seconds(self) -> float:
        return sum(SECONDS[op] for op in self.operators) + self.response


@dataclass
class Walk:
    """A new user's walk through the pages: every action is done in the browser by its
    visible label and recorded as KLM operators, with the measured response time R (the
    time from the action to the page being ready for the next one, which Playwright
    waits for). On a phone the same operators stand for taps, with no homing H."""

    task: str
    page: "Page"
    phone: bool = False
    steps: list[Step] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    wall: float = 0.0
    typing: bool = False  # the hand is on the keyboard (after typing), not on the mouse

    def _do(self, action: str, operators: str, act=lambda: None):
        start = time.perf_counter()
        result = act()
        self.steps.append(Step(action, operators, time.perf_counter() - start))
        return result

    def _pointing(self) -> str:
        """The operators of a click: back to the mouse first if the hand is typing."""
        homing = "H" if self.typing and not self.phone else ""
        self.typing = False
        return homing + "PBB"

    def menu(self, name: str) -> None:
        """An item of the main menu; a phone shows it behind ☰ (named "Menu")."""
        link = self.page.get_by_role("navigation", name="Main").get_by_role(
            "link", name=name, exact=True
        )
        if not link.is_visible():
            menu = self.page.get_by_role("checkbox", name="Menu")
            self._do("open the ☰ menu", "M" + self._pointing(), menu.check)
        self._do(f"menu: {name}", "M" + self._pointing(), link.click)

    def click(self, role: "Clickable", name: str, *, confirm: bool = False) -> None:
        """A link or button; ``confirm``: the browser asks "are you sure?" and the user
        says OK."""
        target = self.page.get_by_role(role, name=name, exact=True)
        if confirm:
            self.page.once("dialog", lambda dialog: dialog.accept())
        self._do(f"{role}: {name}", "M" + self._pointing(), target.click)
        if confirm:
            self._do("OK to the question", "M" + self._pointing())

    def fill(self, label: str, text: str, *, keys: int | None = None) -> None:
        """Click into a field and type ``keys`` keystrokes (default: one per character)."""
        operators = "M" + self._pointing() + ("" if self.phone else "H") + "K" * (keys or len(text))
        self.typing = True
        self._do(f"type into {label}", operators, lambda: self.page.get_by_label(label).fill(text))

    def choose(self, label: str, option: str) -> None:
        """Open a select and pick an option: one decision, two clicks."""
        operators = "M" + self._pointing() + "PBB"
        self._do(
            f"choose {label}: {option}",
            operators,
            lambda: self.page.get_by_role("combobox", name=label, exact=True).select_option(
                label=option
            ),
        )

    def pick(self, label: str, typed: str, option: str) -> None:
        """A searchable field: click in, type a few characters, then find ``option``
        among the suggestions that match them and take it (arrow keys to it and Enter;
        on a phone, a tap). The browser's list of suggestions cannot be driven, so the
        walk checks that ``option`` is offered and matches what was typed, and enters
        its value as the list would."""
        field = self.page.get_by_role("combobox", name=label, exact=True)
        offered = field.evaluate("f => [...f.list.options].map(o => [o.value, o.label])")
        matching = [(v, shown) for v, shown in offered if typed.lower() in f"{v} {shown}".lower()]
        labels = [shown for _, shown in matching]
        assert option in labels, f"{option!r} is not offered for {typed!r}: {labels}"
        taking = "PBB" if self.phone else "K" * (labels.index(option) + 1) + "K"
        keys = "M" + self._pointing() + ("" if self.phone else "H") + "K" * len(typed)
        self.typing = not self.phone

        def act() -> None:
            field.press_sequentially(typed)
            field.fill(matching[labels.index(option)][0])

        self._do(f"pick {label}: {typed}… {option}", keys + "M" + taking, act)

    def untick(self, label: str) -> None:
        self._do(f"untick {label}", "M" + self._pointing(), self.page.get_by_label(label).uncheck)

    def upload(self, button: str, file: "FilePayload") -> None:
        """The file field's button opens the system's file dialog; the file is picked
        there by a double-click (it is in the folder the dialog opens)."""
        with self.page.expect_file_chooser() as chooser:
            self._do(f"button: {button}", "M" + self._pointing(),
                     self.page.get_by_role("button", name=button, exact=True).click)  # fmt: skip
        self._do(f"double-click {file['name']}", "MPBBBB", lambda: chooser.value.set_files(file))

    def download(self, role: "Clickable", name: str):
        with self.page.expect_download() as download:
            self.click(role, name)
        return download.value

    def read(self, text: str) -> None:
        """The user finds ``text`` on the page (the answer, or the next thing to do)."""
        self._do(f"read “{text}”", "M", self.page.get_by_text(text).first.wait_for)

    def wait(self, text: str, timeout: float = 30) -> None:
        """The user waits for the portal to show ``text``: response time only."""
        self._do(
            f"wait for “{text}”",
            "",
            lambda: self.page.get_by_text(text).first.wait_for(timeout=timeout * 1000),
        )

    def done(self) -> float:
        """Stops the clock; the KLM estimate in seconds."""
        self.wall = time.perf_counter() - self.started
        print(self.report())
        return self.estimate

    @property
    def estimate(self) -> float:
        return sum(step.seconds for step in self.steps)

    def report(self) -> str:
        operators = "".join(step.operators for step in self.steps)
        counts = " ".join(f"{op}×{operators.count(op)}" for op in "MPBHK" if op in operators)
        response = sum(step.response for step in self.steps)
        actions = sum("P" in step.operators for step in self.steps)  # not the reads, waits
        slower = self.estimate + operators.count("M") * SECONDS["M"]  # every M twice as long
        lines = [
            f"| {self.task} | {'phone' if self.phone else 'laptop'} | {actions} | {counts} "
            f"| {self.estimate:.1f} s | {slower:.1f} s | {response:.1f} s | {self.wall:.1f} s |"
        ]
        lines += [f"    {s.action}: {s.operators or '-'} R {s.response:.2f} s" for s in self.steps]
        return "\n".join(lines)


@pytest.fixture
def on_a_phone(page, live_server):
    """Opens the session signed in on ``page`` on a phone's screen, at the home page (its
    cookies in a new phone-sized context: a second sign-in would wait for a new code)."""
    contexts = []

    def open_home():
        context = page.context.browser.new_context(
            base_url=live_server.url, viewport=PHONE, storage_state=page.context.storage_state()
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        phone = context.new_page()
        phone.goto("/")
        return phone

    yield open_home
    for context in contexts:
        context.close()


def walks(page, on_a_phone, task):
    """The task's walk at laptop size (``page``, signed in and on the home page), then
    at phone size."""
    yield Walk(task, page)
    yield Walk(task, on_a_phone(), phone=True)


# --- Onboard ten people from a CSV with two bad rows --------------------------------------


def ten_drivers(first: int) -> "FilePayload":
    """Ten new drivers; the fourth and the eighth rows have a problem to correct."""
    rows = ["email,full_name,services"] + [
        f"{driver_email(n)},Driver {n},voice" for n in range(first, first + 10)
    ]
    rows[4] = f"driver{first + 3:03d}-at-swift,Driver {first + 3},voice"  # not an address
    rows[8] = f"{driver_email(first + 7)},Driver {first + 7},hologram"  # no such service
    return {"name": "drivers.csv", "mimeType": "text/csv", "buffer": "\n".join(rows).encode()}


@pytest.mark.worker
def test_a_new_admin_onboards_ten_people_from_a_csv_with_two_bad_rows_in_under_a_minute(
    page, on_a_phone, celery_worker
):
    enterprise = swift_delivery(identity_quota=300)
    sign_in_browser(page, admin_of(enterprise), PASSWORD)

    for first, walk in zip((1, 11), walks(page, on_a_phone, "Onboard ten from a CSV"), strict=True):
        walk.menu("Employees")
        walk.click("link", "Import CSV")
        walk.upload("CSV file", ten_drivers(first))
        walk.click("button", "Check the file")
        walk.read("2 of 10 rows have problems")
        plan = walk.page.locator(
            "section", has=walk.page.get_by_role("heading", name="What the import creates")
        )
        assert plan.get_by_text(driver_email(first)).is_visible()
        assert plan.get_by_text(f"driver{first + 3:03d}-at-swift").count() == 0
        to_correct = walk.download("link", "Download the rows with problems")
        walk.click("button", "Import the 8 valid rows", confirm=True)
        walk.wait("The import is done")
        assert walk.done() < MINUTE, walk.report()

        lines = Path(to_correct.path()).read_text(encoding="utf-8-sig").splitlines()
        assert [line.split(",")[0] for line in lines] == [
            "email", f"driver{first + 3:03d}-at-swift", driver_email(first + 7)
        ]  # fmt: skip
        assert walk.page.get_by_text("8 employees with an identity").is_visible()
        assert walk.page.get_by_text("2 rows with problems found in the check").is_visible()
        onboarded = User.objects.filter(
            email__in=[driver_email(n) for n in range(first, first + 10)],
            identities__status="active",
        )
        assert onboarded.count() == 8


# --- Give a colleague a number temporarily --------------------------------------------------


def friday():
    """An end four days ahead, at 18:00 local time; and how the Until field takes it."""
    end = (timezone.localtime() + timedelta(days=4)).replace(hour=18, minute=0)
    return end, end.strftime("%Y-%m-%dT%H:%M")


# Typed into a date-and-time field: day, month, year, a key to the time, hour, minute.
DATE_AND_TIME_KEYS = 13


def test_a_new_admin_lends_a_colleague_a_number_until_friday_in_under_a_minute(page, on_a_phone):
    enterprise = swift_delivery()
    admin = admin_of(enterprise)
    lenders = [
        UserFactory(enterprise=enterprise, full_name=n) for n in ("Rob Smith", "Maria Garcia")
    ]
    numbers = [make_identity(lenders[0], tn=ROB_TN), make_identity(lenders[1])]
    borrowers = [UserFactory(enterprise=enterprise, full_name=n) for n in ("Jane Doe", "Chen Wei")]
    end, until = friday()
    sign_in_browser(page, admin, PASSWORD)

    lent = zip(lenders, numbers, borrowers, walks(page, on_a_phone, "Lend a number"), strict=True)
    for lender, identity, borrower, walk in lent:
        walk.menu("Sharing")
        walk.pick("Identity to share", lender.full_name[:3], f"{lender.full_name} · {identity.tn}")
        walk.pick("Share with", borrower.full_name[:3], borrower.full_name)
        walk.fill("Until", until, keys=DATE_AND_TIME_KEYS)
        walk.click("button", "Share")
        walk.read(f"Shared on {lender.full_name}'s behalf; they have been told.")
        assert walk.done() < MINUTE, walk.report()

        grant = Grant.objects.active().get(identity=identity)
        assert grant.grantee == borrower
        assert timezone.localtime(grant.valid_until).strftime("%Y-%m-%dT%H:%M") == until
        row = walk.page.get_by_role("row").filter(has_text=borrower.full_name)
        assert row.get_by_text(end.strftime("%Y-%m-%d %H:%M")).first.is_visible()
        audit = AuditEvent.objects.get(action="grant.created", target_id=str(grant.pk))
        assert audit.actor_user == admin
        assert audit.changes["on_behalf_of"] == [None, str(lender)]
        assert Notification.objects.filter(user=lender).exists()


def test_an_employee_lends_a_colleague_his_number_until_friday_in_under_a_minute(page):
    enterprise = swift_delivery()
    rob = UserFactory(enterprise=enterprise, full_name="Rob Smith")
    make_identity(rob, tn=ROB_TN)
    UserFactory(enterprise=enterprise, full_name="Jane Doe")
    end, until = friday()
    sign_in_browser(page, rob, PASSWORD)

    walk = Walk("Lend a number (its owner)", page)
    walk.menu("Sharing")
    # His only identity is chosen already.
    assert ROB_TN in page.get_by_label("Identity to share").locator("option:checked").inner_text()
    walk.pick("Share with", "Jan", "Jane Doe")
    walk.untick("May make calls with it")
    walk.fill("Until", until, keys=DATE_AND_TIME_KEYS)
    walk.click("button", "Share")
    walk.read("Shared. Their devices can use it in a moment.")
    assert walk.done() < MINUTE, walk.report()

    row = page.get_by_role("row").filter(has_text="Jane Doe")
    assert row.get_by_text(end.strftime("%Y-%m-%d %H:%M")).is_visible()
    assert row.get_by_text("active").is_visible()
    grant = Grant.objects.get(identity__owner=rob)
    assert (grant.grantee.full_name, grant.can_make_calls, grant.can_receive_calls) == (
        "Jane Doe",
        False,
        True,
    )
    assert timezone.localtime(grant.valid_until).strftime("%Y-%m-%dT%H:%M") == until


# --- Find who is on more than one device ----------------------------------------------------


def test_a_new_admin_finds_who_is_on_more_than_one_device_in_under_a_minute(
    page, on_a_phone, live_server
):
    enterprise = swift_delivery()
    admin = admin_of(enterprise)
    make_identity(UserFactory(enterprise=enterprise, full_name="Rob Smith"), tn=ROB_TN)
    make_identity(UserFactory(enterprise=enterprise, full_name="Jane Doe"))
    register_robs_phones(live_server, enterprise)
    sign_in_browser(page, admin, PASSWORD)

    for walk in walks(page, on_a_phone, "Find who is on more than one device"):
        walk.menu("Devices")
        walk.choose("Devices", "On more than one device")
        walk.click("button", "Filter")
        walk.read("Rob Smith")
        assert walk.done() < MINUTE, walk.report()

        people = walk.page.get_by_role("row").filter(has=walk.page.get_by_role("link"))
        assert people.count() == 1  # Jane Doe (no device) and Ada Admin are left out
        assert people.get_by_role("link", name="Rob Smith").is_visible()
        for phone in ("Android phone (IMEI …1481)", "iPhone (IMEI …3119)"):
            assert people.get_by_text(phone).is_visible()


# --- Sign out a lost phone --------------------------------------------------------------------


def test_a_new_admin_signs_out_a_lost_phone_in_under_a_minute(page, on_a_phone, live_server):
    enterprise = swift_delivery()
    admin = admin_of(enterprise)
    rob = UserFactory(enterprise=enterprise, full_name="Rob Smith")
    make_identity(rob, tn=ROB_TN)
    register_robs_phones(live_server, enterprise)
    sign_in_browser(page, admin, PASSWORD)

    lost = zip(
        ("iPhone (IMEI …3119)", "Android phone (IMEI …1481)"),
        walks(page, on_a_phone, "Sign out a lost phone"),
        strict=True,
    )
    for phone, walk in lost:
        walk.menu("Employees")
        walk.click("link", "Rob Smith")
        walk.click("button", f"Sign out {phone}", confirm=True)
        walk.read(f"Sign-out of {phone} requested.")
        assert walk.done() < MINUTE, walk.report()

        device = next(r for r in Registration.objects.filter(user=rob) if r.label == phone)
        assert (device.state, device.end_reason) == ("ended", "signed_out")
        assert AuditEvent.objects.filter(
            action="registration.sign_out_requested", actor_user=admin, target_id=str(device.pk)
        ).exists()
    assert not Registration.objects.active().filter(user=rob).exists()


# --- Offboard a leaver ----------------------------------------------------------------------


@pytest.mark.worker
def test_a_new_admin_offboards_a_leaver_in_under_a_minute(page, on_a_phone, celery_worker):
    enterprise = swift_delivery()
    admin = admin_of(enterprise)
    leavers = [
        UserFactory(enterprise=enterprise, full_name=n) for n in ("Rob Smith", "Maria Garcia")
    ]
    numbers = [make_identity(leavers[0], tn=ROB_TN), make_identity(leavers[1])]
    sign_in_browser(page, admin, PASSWORD)

    gone = zip(leavers, numbers, walks(page, on_a_phone, "Offboard a leaver"), strict=True)
    for leaver, identity, walk in gone:
        walk.menu("Employees")
        walk.click("link", leaver.full_name)
        walk.click("link", "Offboard…")
        walk.click("button", f"Offboard {leaver.full_name}")
        walk.wait("All steps are finished")
        assert walk.done() < MINUTE, walk.report()

        leaver.refresh_from_db()
        assert leaver.status == User.Status.OFFBOARDED
        receipt = OffboardingReceipt.objects.get(user=leaver)
        assert {step["outcome"] for step in selectors.receipt_steps(receipt)} == {"done"}
        assert in_hss(identity.tn) is None
