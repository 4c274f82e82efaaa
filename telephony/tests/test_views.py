import re

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import AuditEvent, User
from accounts.tests.factories import UserFactory
from portal.testing import sign_in_verified
from telephony.identities import services, sync
from telephony.inventory.numbers import lab_ki
from telephony.models import Grant, Identity, IdentitySync, SimulatedSubscription
from telephony.tests.factories import give_line, give_numbers, make_identity

pytestmark = pytest.mark.django_db


@pytest.fixture
def numbers(enterprise):
    return give_numbers(enterprise)


def page(client, url, **params):
    response = client.get(url, params)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def test_onboarding_from_the_form_creates_and_syncs_the_identity(
    admin_client, numbers, django_capture_on_commit_callbacks
):
    form = page(admin_client, reverse("telephony:employee_onboard"))
    assert 'value="xr"' not in form  # only the contract's services are offered
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("telephony:employee_onboard"),
            {
                "full_name": "Rob Smith",
                "email": "rob.smith@swift.example",
                "role": "employee",
                "services": ["voice", "video"],
                "tn": "",
            },
        )
    identity = Identity.objects.get(owner__email="rob.smith@swift.example")
    assert response.url == reverse("telephony:identity_detail", args=[identity.pk])
    detail = page(admin_client, response.url)
    assert "+4930123400" in detail and "in step" in detail
    assert SimulatedSubscription.objects.filter(msisdn="+4930123400").exists()


def test_a_policy_violation_shows_on_the_form_and_creates_nothing(
    admin_client, enterprise, numbers
):
    enterprise.contract.identity_quota = 0
    enterprise.contract.save()
    response = admin_client.post(
        reverse("telephony:employee_onboard"),
        {"full_name": "X", "email": "x@swift.example", "role": "employee", "services": ["voice"]},
    )
    assert response.status_code == 200
    assert "its quota is 0" in response.content.decode()
    assert not User.objects.filter(email="x@swift.example").exists()


def test_the_employee_list_filters_and_keeps_a_fixed_query_count(
    admin_client, enterprise, numbers, django_assert_max_num_queries
):
    for person in UserFactory.create_batch(30, enterprise=enterprise):
        make_identity(person)
    lonely = UserFactory(enterprise=enterprise, full_name="Nora Nophone")
    with django_assert_max_num_queries(12):
        listing = page(admin_client, reverse("telephony:employees"))
    assert "Page 1 of 2" in listing and len(re.findall(r"\+49301234\d\d<", listing)) >= 20
    listing = page(admin_client, reverse("telephony:employees"), identity="none")
    assert lonely.full_name in listing and "+4930123400" not in listing
    listing = page(admin_client, reverse("telephony:employees"), q="+4930123405")
    assert "1 in all" in listing


def test_the_employee_list_leaves_leavers_out_unless_asked(admin_client, enterprise):
    UserFactory(enterprise=enterprise, full_name="Stella Staying")
    UserFactory(enterprise=enterprise, full_name="Lenny Leaver", status=User.Status.OFFBOARDED)
    default = page(admin_client, reverse("telephony:employees"))
    assert "Stella Staying" in default and "Lenny Leaver" not in default
    leavers = page(admin_client, reverse("telephony:employees"), status="offboarded")
    assert "Lenny Leaver" in leavers and "Stella Staying" not in leavers
    everyone = page(admin_client, reverse("telephony:employees"), status="any")
    assert "Lenny Leaver" in everyone and "Stella Staying" in everyone


def test_the_identity_list_shows_sync_state_and_filters_failures(
    admin_client, employee, numbers, django_assert_max_num_queries
):
    good, bad = make_identity(employee), make_identity(employee)
    sync.push_identity(good.pk)
    IdentitySync.objects.filter(pk=bad.pk).update(state="failed", last_error="HSS refused the IMSI")
    with django_assert_max_num_queries(12):
        listing = page(admin_client, reverse("telephony:identities"))
    assert "sync failed" in listing and "in step" in listing
    failed = page(admin_client, reverse("telephony:identities"), sync="failed")
    assert bad.tn in failed and good.tn not in failed and "HSS refused the IMSI" in failed


def test_a_failed_sync_shows_its_reason_and_the_admin_retries_it(
    admin_client, employee, numbers, django_capture_on_commit_callbacks
):
    identity = make_identity(employee)
    IdentitySync.objects.filter(pk=identity.pk).update(
        state="failed", last_error="HSS refused the IMSI"
    )
    detail = page(admin_client, reverse("telephony:identity_detail", args=[identity.pk]))
    assert "HSS refused the IMSI" in detail and "Retry now" in detail
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse("telephony:identity_action", args=[identity.pk, "retry-sync"]))
    assert IdentitySync.objects.get(pk=identity.pk).state == IdentitySync.State.SYNCED


def test_the_sync_panel_polls_only_while_a_push_is_under_way_or_will_be_tried_again(
    admin_client, employee, numbers
):
    identity = make_identity(employee)
    url = reverse("telephony:identity_sync", args=[identity.pk])
    assert 'hx-trigger="every 2s"' in page(admin_client, url)
    sync.push_identity(identity.pk)
    assert "hx-trigger" not in page(admin_client, url)
    rows = IdentitySync.objects.filter(pk=identity.pk)
    rows.update(state="failed", last_error="the HSS did not answer", next_attempt_at=timezone.now())
    panel = page(admin_client, url)
    assert "The portal tries again by itself" in panel and 'hx-trigger="every 2s"' in panel
    rows.update(next_attempt_at=None)  # failed for good: an admin retries
    assert "hx-trigger" not in page(admin_client, url)


def test_relocate_names_countries_and_asks_before_it_moves_the_number(
    admin_client, employee, enterprise, numbers
):
    give_numbers(enterprise, "+14155550100", "+14155550199")
    identity = make_identity(employee)
    form = page(admin_client, reverse("telephony:identity_relocate", args=[identity.pk]))
    assert '<option value="DE">Germany (DE)</option>' in form
    assert '<option value="US">United States (US)</option>' in form
    assert f"People calling {identity.tn} will no longer reach them" in form


def datalist(html: str, field: str) -> list[tuple[str, str]]:
    """The (value, label) a field's picker offers."""
    found = re.search(rf'<datalist id="id_{field}-choices">(.*?)</datalist>', html, re.S)
    assert found, f"no picker for {field}"
    return re.findall(r'<option value="([^"]*)">([^<]*)</option>', found.group(1))


def test_the_number_and_line_fields_offer_the_free_ones_as_one_types(
    admin_client, employee, enterprise, numbers
):
    used = make_identity(employee, imsi=give_line(enterprise, 1).imsi)  # takes +4930123400
    free_line = give_line(enterprise, 2)
    give_numbers(enterprise, "+14155550100", "+14155550101")
    onboarding = page(admin_client, reverse("telephony:employee_onboard"))
    assert 'list="id_tn-choices"' in onboarding and 'list="id_imsi-choices"' in onboarding
    offered = datalist(onboarding, "tn")
    assert offered[0] == ("+4930123401", "next free · Germany, block +4930123400–+4930123499")
    assert "+4930123400" not in dict(offered)  # in use
    assert ("+14155550100", "United States, block +14155550100–+14155550101") in offered
    assert datalist(onboarding, "imsi") == [(free_line.imsi, f"ICCID {free_line.iccid}")]

    relocating = page(admin_client, reverse("telephony:identity_relocate", args=[used.pk]))
    assert datalist(relocating, "tn")[0][0] == "+4930123401"
    assert datalist(relocating, "imsi") == [(free_line.imsi, f"ICCID {free_line.iccid}")]


def test_edit_relocate_suspend_and_remove_from_the_pages(
    admin_client, employee, enterprise, numbers, django_capture_on_commit_callbacks
):
    give_numbers(enterprise, "+14155550100", "+14155550199")
    identity = make_identity(employee)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("telephony:identity_edit", args=[identity.pk]),
            {"services": ["voice", "messaging"], "display_name": "Rob S", "alias": ""},
        )
        admin_client.post(
            reverse("telephony:identity_relocate", args=[identity.pk]), {"country": "US"}
        )
        admin_client.post(reverse("telephony:identity_action", args=[identity.pk, "suspend"]))
    identity.refresh_from_db()
    assert (identity.display_name, identity.tn, identity.status) == (
        "Rob S",
        "+14155550100",
        "suspended",
    )
    assert SimulatedSubscription.objects.get(msisdn="+14155550100").enabled is False
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse("telephony:identity_action", args=[identity.pk, "remove"]))
    assert not SimulatedSubscription.objects.exists()


def test_offboarding_confirms_then_shows_a_receipt_that_completes(
    admin_client, employee, numbers, django_capture_on_commit_callbacks
):
    identity = make_identity(employee)
    confirm = page(admin_client, reverse("telephony:employee_offboard", args=[employee.pk]))
    assert identity.tn in confirm and "cannot be undone" in confirm
    response = admin_client.post(reverse("telephony:employee_offboard", args=[employee.pk]))
    receipt_url = response.url
    receipt = page(admin_client, receipt_url)
    assert "in progress" in receipt or "requested" in receipt
    assert 'hx-trigger="every 2s"' in receipt
    sync.push_identity(identity.pk)  # the worker's part
    partial = admin_client.get(receipt_url, HTTP_HX_REQUEST="true").content.decode()
    assert "All steps are finished" in partial and "<html" not in partial
    employee.refresh_from_db()
    assert employee.status == User.Status.OFFBOARDED


def test_employees_see_only_their_own_identities(employee_client, employee, enterprise, numbers):
    mine = make_identity(employee)
    theirs = make_identity(UserFactory(enterprise=enterprise))
    home = page(employee_client, reverse("home"))
    assert mine.tn in home and theirs.tn not in home
    assert (
        employee_client.get(reverse("telephony:identity_detail", args=[mine.pk])).status_code == 200
    )
    assert (
        employee_client.get(reverse("telephony:identity_detail", args=[theirs.pk])).status_code
        == 403
    )
    assert employee_client.get(reverse("telephony:employees")).status_code == 403
    assert (
        employee_client.post(
            reverse("telephony:identity_action", args=[mine.pk, "suspend"])
        ).status_code
        == 403
    )


def test_an_employee_shares_an_identity_and_revokes_it(
    client, employee, enterprise, numbers, django_capture_on_commit_callbacks
):
    colleague = UserFactory(enterprise=enterprise, full_name="Cora Colleague")
    shared = make_identity(employee)
    sign_in_verified(client, employee)
    form = page(client, reverse("telephony:grants"))
    assert "Cora Colleague" in form and shared.tn in form
    response = client.post(
        reverse("telephony:grants"),
        {"identity": shared.pk, "grantee": colleague.email, "can_make_calls": "on"},
    )
    assert response.status_code == 302
    grant = Grant.objects.get()
    assert (grant.can_make_calls, grant.can_receive_calls) == (True, False)
    client.post(
        reverse("telephony:grant_revoke", args=[grant.pk]), {"next": "https://evil.example/"}
    )
    grant.refresh_from_db()
    assert not grant.is_active


def test_a_colleague_is_picked_by_their_email_from_the_suggestions(
    client, employee, enterprise, numbers
):
    colleague = UserFactory(enterprise=enterprise, full_name="Cora Colleague")
    shared = make_identity(employee)
    sign_in_verified(client, employee)
    form = page(client, reverse("telephony:grants"))
    assert f'<option value="{colleague.email}">Cora Colleague</option>' in form
    assert f'<option value="{employee.email}"' not in form  # not oneself
    typed = f" {colleague.email.upper()} "  # as typed: the case and spaces do not matter
    response = client.post(
        reverse("telephony:grants"),
        {"identity": shared.pk, "grantee": typed, "can_make_calls": "on"},
    )
    assert response.status_code == 302
    assert Grant.objects.get().grantee == colleague


@pytest.mark.parametrize("who", ["another enterprise's", "unknown", "a user id", "oneself"])
def test_anyone_but_a_colleague_is_refused_with_a_form_error(
    client, employee, enterprise, other_enterprise, numbers, who
):
    stranger = UserFactory(enterprise=other_enterprise, full_name="Sam Stranger")
    colleague = UserFactory(enterprise=enterprise)
    typed = {
        "another enterprise's": stranger.email,
        "unknown": "nobody@swift.example",
        "a user id": str(colleague.pk),
        "oneself": employee.email,
    }[who]
    shared = make_identity(employee)
    sign_in_verified(client, employee)
    form = page(client, reverse("telephony:grants"))
    assert stranger.email not in form
    response = client.post(
        reverse("telephony:grants"),
        {"identity": shared.pk, "grantee": typed, "can_make_calls": "on"},
    )
    assert response.status_code == 200
    assert "No colleague you may share with has that email" in response.content.decode()
    assert not Grant.objects.exists()


def test_sharing_needs_at_least_one_right(client, employee, enterprise, numbers):
    colleague = UserFactory(enterprise=enterprise)
    shared = make_identity(employee)
    sign_in_verified(client, employee)
    response = client.post(
        reverse("telephony:grants"), {"identity": shared.pk, "grantee": colleague.email}
    )
    assert "Allow making calls, receiving calls, or both." in response.content.decode()
    assert not Grant.objects.exists()


def test_an_admin_shares_an_employees_identity_from_the_sharing_page_on_their_behalf(
    admin_client, admin, employee, enterprise, other_enterprise, numbers
):
    colleague = UserFactory(enterprise=enterprise, full_name="Cora Colleague")
    shared = make_identity(employee)
    give_numbers(other_enterprise, "+4940123400", "+4940123499")
    theirs = make_identity(UserFactory(enterprise=other_enterprise))
    form = page(admin_client, reverse("telephony:grants"))
    assert f'<option value="{shared.tn}">Rob Smith · {shared.tn}</option>' in form
    assert theirs.tn not in form

    suspended = make_identity(UserFactory(enterprise=enterprise))
    services.identity_suspend(actor=Actor(user=admin), identity=suspended)
    for number in (theirs.tn, suspended.tn, "+4930999999", str(shared.pk)):
        refused = admin_client.post(
            reverse("telephony:grants"),
            {"identity": number, "grantee": colleague.email, "can_receive_calls": "on"},
        )
        assert refused.status_code == 200  # the form, with its error
        assert "No identity you may share has that number" in refused.content.decode()
    assert not Grant.objects.exists()
    response = admin_client.post(
        reverse("telephony:grants"),
        {"identity": shared.tn, "grantee": colleague.email, "can_receive_calls": "on"},
    )
    assert response.status_code == 302
    grant = Grant.objects.get()
    assert (grant.identity, grant.grantee, grant.created_by) == (shared, colleague, admin)
    audit = AuditEvent.objects.get(action="grant.created")
    assert audit.changes["on_behalf_of"] == [None, str(employee)]
    assert employee.notifications.exists()  # the owner is told
    assert "on Rob Smith&#x27;s behalf" in page(admin_client, reverse("telephony:grants"))


def test_helpdesk_shares_only_its_own_identities(helpdesk_client, employee, numbers):
    shared = make_identity(employee)
    assert shared.tn not in page(helpdesk_client, reverse("telephony:grants"))
    response = helpdesk_client.post(
        reverse("telephony:grants"), {"identity": shared.pk, "grantee": employee.email}
    )
    assert response.status_code == 200 and not Grant.objects.exists()


def test_admins_see_every_grant_and_may_revoke(admin_client, employee, enterprise, numbers):
    colleague = UserFactory(enterprise=enterprise)
    grant = services.grant_create(
        actor=Actor(user=employee), identity=make_identity(employee), grantee=colleague
    )
    listing = page(admin_client, reverse("telephony:grants"))
    assert str(colleague) in listing
    admin_client.post(reverse("telephony:grant_revoke", args=[grant.pk]))
    grant.refresh_from_db()
    assert grant.end_reason == Grant.EndReason.REVOKED
    assert AuditEvent.objects.filter(action="grant.revoked").exists()


def test_the_inventory_shows_blocks_with_their_use_and_lines(
    admin_client, employee, enterprise, numbers
):
    line = give_line(enterprise, 5)
    make_identity(employee, imsi=line.imsi)
    listing = page(admin_client, reverse("telephony:inventory"))
    assert re.search(r"<td>100</td><td>1</td><td>0</td><td>99</td>", listing.replace("\n", ""))
    assert line.imsi in listing and employee.full_name in listing


def test_the_admin_home_counts_identities_by_sync_state(admin_client, employee, numbers):
    make_identity(employee)
    home = page(admin_client, reverse("home"))
    assert "changes on their way" in home


def test_a_lab_sim_identity_shows_its_softphone_settings_only_while_the_lab_runs(
    admin_client, employee, numbers, settings
):
    line = give_line(employee.enterprise)
    identity = make_identity(employee, imsi=line.imsi)
    url = reverse("telephony:identity_detail", args=[identity.pk])
    password = lab_ki(line.imsi)
    settings.DEBUG, settings.LAB_MODE, settings.LAB_REGISTRAR = True, True, "127.0.0.1:5060"
    detail = page(admin_client, url)
    assert "Softphone settings" in detail and password in detail
    assert f"sip:{identity.tn}@{identity.domain}" in detail and identity.impi in detail
    assert "sip:127.0.0.1:5060;transport=udp" in detail
    assert "also authenticates the SIM over LTE" in detail
    settings.LAB_MODE = False
    detail = page(admin_client, url)
    assert "Softphone settings" not in detail and password not in detail
    settings.DEBUG, settings.LAB_MODE = False, True  # refused at start; never shown anyway
    assert password not in page(admin_client, url)


def test_an_admin_shares_from_the_identity_page_and_mistakes_are_said(
    admin_client, employee, enterprise, numbers, helpdesk
):
    colleague = UserFactory(enterprise=enterprise, full_name="Chen Li")
    identity = make_identity(employee)
    detail = reverse("telephony:identity_detail", args=[identity.pk])
    assert "Share on Rob Smith's behalf" in page(admin_client, detail)
    url = reverse("telephony:identity_share", args=[identity.pk])
    answer = admin_client.post(
        url,
        {"identity": identity.pk, "grantee": employee.email, "can_make_calls": "on"},
        follow=True,
    )
    assert "No colleague you may share with has that email" in answer.content.decode()  # owner
    answer = admin_client.post(
        url,
        {
            "identity": identity.pk,
            "grantee": colleague.email,
            "can_make_calls": "on",
            "valid_until": "2001-01-01T10:00",
        },
        follow=True,
    )
    assert "The end of the sharing must lie in the future." in answer.content.decode()
    assert not Grant.objects.exists()
    answer = admin_client.post(
        url,
        {"identity": identity.pk, "grantee": colleague.email, "can_make_calls": "on"},
        follow=True,
    )
    assert "Shared on Rob Smith&#x27;s behalf; they have been told." in answer.content.decode()
    grant = Grant.objects.get()
    assert (grant.identity, grant.grantee, grant.rights) == (identity, colleague, "make")


def test_helpdesk_may_not_share_on_anyones_behalf(client, helpdesk, employee, enterprise, numbers):
    colleague = UserFactory(enterprise=enterprise)
    identity = make_identity(employee)
    helpdesk_client = sign_in_verified(client, helpdesk)
    assert "behalf" not in page(
        helpdesk_client, reverse("telephony:identity_detail", args=[identity.pk])
    )
    answer = helpdesk_client.post(
        reverse("telephony:identity_share", args=[identity.pk]),
        {"identity": identity.pk, "grantee": colleague.email, "can_make_calls": "on"},
    )
    assert answer.status_code == 403
    assert not Grant.objects.exists()
