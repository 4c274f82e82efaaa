"""Every page passes an automated accessibility check (axe-core, WCAG 2 A and AA rules)
with no serious or critical violation, for each role, at laptop and at phone size."""

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from accounts.audit import Actor
from accounts.models import User
from portal.testing import sign_in_browser
from telephony.bulk import services as bulk
from telephony.models import Identity

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SERIOUS = ("serious", "critical")


def violations(page) -> list[str]:
    """What axe finds on the page as it is drawn now: "rule: target" per serious node."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async () => {
          const result = await axe.run(document, {
            runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
          });
          return result.violations.map(v => ({
            id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(" ")),
          }));
        }"""
    )
    return [
        f"{v['id']} ({v['impact']}): {node}"
        for v in found
        if v["impact"] in SERIOUS
        for node in v["nodes"]
    ]


def check(page, paths: list[str], viewport: dict) -> dict[str, list[str]]:
    page.set_viewport_size(viewport)
    failures = {}
    for path in paths:
        page.goto(path)
        page.wait_for_load_state("networkidle")
        found = violations(page)
        if found:
            failures[f"{path} at {viewport['width']}px"] = found
    return failures


@pytest.fixture
def demo(settings):
    settings.DEBUG = True  # seed_demo runs only there; pages stay the same
    out = StringIO()
    call_command("seed_demo", "--json", stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture
def page(browser, live_server):
    """A tab whose CSP lets the test add axe's script (the pages' own policy forbids it)."""
    context = browser.new_context(base_url=live_server.url, bypass_csp=True)
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def test_every_page_of_each_role_has_no_serious_accessibility_violation(demo, page):
    password = demo["users"][0]["password"]
    admin = User.objects.filter(role="admin", enterprise__name="Swift Delivery").first()
    rob = User.objects.get(email="rob.smith@swift-delivery.example")
    identity = Identity.objects.live().filter(owner=rob).first()
    admin_pages = [
        "/",
        "/employees/",
        f"/employees/{rob.pk}/",
        "/employees/onboard/",
        "/identities/",
        f"/identities/{identity.pk}/",
        f"/identities/{identity.pk}/relocate/",
        "/devices/",
        "/grants/",
        "/calls/",
        "/audit/",
        "/import/",
        "/numbers/",
        "/enterprise/",
        "/enterprise/identity-provider/",
        "/api-tokens/",
        "/users/invite/",
        "/account/",
        "/account/apps/",
        "/account/password/",
        "/notifications/",
    ]
    checked = bulk.import_preview(
        actor=Actor(user=admin),
        enterprise=admin.enterprise,
        filename="people.csv",
        csv_text="email,full_name\nkim@swift-delivery.example,Kim\nno-address,Bad\n",
        send_invitations=False,
    )
    admin_pages += [
        f"/employees/{rob.pk}/offboard/",
        f"/identities/{identity.pk}/edit/",
        f"/import/{checked.pk}/preview/",  # a row to import, one with a problem
    ]
    employee_pages = ["/", "/my/devices/", "/grants/", "/account/", "/notifications/"]
    if identity is not None:
        employee_pages.append(f"/identities/{identity.pk}/")

    failures = check(page, ["/login/"], LAPTOP) | check(page, ["/login/"], PHONE)
    sign_in_browser(page, admin, password)
    failures |= check(page, admin_pages, LAPTOP) | check(page, admin_pages, PHONE)
    page.context.clear_cookies()
    sign_in_browser(page, rob, password)
    failures |= check(page, employee_pages, LAPTOP) | check(page, employee_pages, PHONE)
    assert not failures, json.dumps(failures, indent=2)
