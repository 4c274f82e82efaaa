"""The colleague picker of a big enterprise in a real browser (Debian's Chromium): the
Sharing page carries no suggestions, and what the admin types fetches them from the
server; the one taken is the grant's colleague."""

import pytest

from accounts.tests.factories import PASSWORD, UserFactory, people
from kernel.forms import SUGGESTIONS_IN_PAGE
from portal.testing import sign_in_browser
from telephony.models import Grant
from telephony.tests.factories import make_identity
from telephony.tests.test_browser import ROB_TN, admin_of, swift_delivery

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_of_a_big_enterprise_picks_a_colleague_the_server_suggested(page):
    enterprise = swift_delivery()
    admin = admin_of(enterprise)
    rob = UserFactory(enterprise=enterprise, full_name="Rob Smith")
    make_identity(rob, tn=ROB_TN)
    people(enterprise, SUGGESTIONS_IN_PAGE)
    jane = UserFactory(enterprise=enterprise, full_name="Jane Doe", email="jane@swift.example")
    sign_in_browser(page, admin, PASSWORD)

    page.get_by_role("link", name="Sharing", exact=True).click()
    page.get_by_label("Identity to share").fill(ROB_TN)  # few identities: in the page
    share_with = page.get_by_role("combobox", name="Share with", exact=True)
    suggestions = page.locator("#id_grantee-choices option")
    assert suggestions.count() == 0  # the page does not carry 200 colleagues

    with page.expect_response(lambda r: "/grants/suggestions/grantee/?q=Jan" in r.url) as asked:
        share_with.press_sequentially("Jan", delay=50)
    assert asked.value.ok
    offered = page.locator('#id_grantee-choices option[value="jane@swift.example"]')
    offered.wait_for(state="attached")
    assert offered.text_content() == "Jane Doe"
    # The browser's own list of suggestions cannot be driven (in headless Chromium,
    # Enter submits the form): take the suggestion as the list would, by its value.
    share_with.fill(offered.get_attribute("value"))
    page.get_by_role("button", name="Share", exact=True).click()

    page.get_by_text("Shared on Rob Smith's behalf; they have been told.").wait_for()
    grant = Grant.objects.get()
    assert (grant.identity.tn, grant.grantee) == (ROB_TN, jane)
