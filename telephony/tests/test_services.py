from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from accounts import services as account_services
from accounts.audit import Actor
from accounts.models import ApiToken, AuditEvent, Enterprise, Role, User
from accounts.tests.factories import EnterpriseFactory, UserFactory, api_token
from kernel.errors import NotAllowed, RuleViolation
from telephony.identities import services
from telephony.inventory import services as inventory
from telephony.models import (
    Grant,
    Identity,
    IdentitySync,
    NumberBlock,
    SimulatedSubscription,
    TelephoneNumber,
)
from telephony.tests.factories import give_line, give_numbers, iccid_for, make_identity

pytestmark = pytest.mark.django_db


@pytest.fixture
def numbers(enterprise):
    return give_numbers(enterprise)


@pytest.fixture
def admin_actor(admin):
    return Actor(user=admin, ip="198.51.100.7")


def hss(tn) -> SimulatedSubscription | None:
    return SimulatedSubscription.objects.filter(msisdn=tn).first()


def counts():
    return (
        User.objects.count(),
        Identity.objects.count(),
        AuditEvent.objects.count(),
        TelephoneNumber.objects.exclude(status="free").count(),
    )


# --- Onboarding and identities --------------------------------------------------------


def test_onboarding_creates_account_identity_and_invitation_and_syncs_to_the_hss(
    admin_actor, enterprise, numbers, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        identity = services.employee_onboard(
            actor=admin_actor,
            enterprise=enterprise,
            email="rob.smith@swift.example",
            full_name="Rob Smith",
            services=["voice", "video"],
            alias="rob.smith",
        )
    assert identity.owner.status == User.Status.INVITED
    assert identity.tn == "+4930123400"
    assert identity.impus == [
        "tel:+4930123400",
        "sip:+4930123400@swift.example;user=phone",
        "sip:rob.smith@swift.example",
    ]
    assert identity.impi == "4930123400@swift.example"
    assert len(mail.outbox) == 1
    identity.sync.refresh_from_db()
    assert identity.sync.state == IdentitySync.State.SYNCED
    stored = hss("+4930123400")
    assert stored.display_name == "Rob Smith"
    assert stored.services == ["video", "voice"]
    assert stored.impus == identity.impus
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"user.invited", "identity.created"} <= actions


def test_numbers_are_taken_next_free_or_as_chosen(admin_actor, employee, numbers):
    first = make_identity(employee, actor=admin_actor)
    chosen = make_identity(employee, actor=admin_actor, tn="+49 30 1234 42")
    third = make_identity(employee, actor=admin_actor)
    assert (first.tn, chosen.tn, third.tn) == ("+4930123400", "+4930123442", "+4930123401")
    assert employee.identities.count() == 3  # multi-identity


def test_a_sim_line_gives_an_imsi_derived_impi_and_cannot_be_used_twice(
    admin_actor, employee, enterprise, numbers
):
    line = give_line(enterprise, 7)
    identity = make_identity(employee, actor=admin_actor, imsi=line.imsi)
    assert identity.impi == f"{line.imsi}@ims.mnc001.mcc262.3gppnetwork.org"
    with pytest.raises(RuleViolation, match="already in use") as exc:
        make_identity(employee, actor=admin_actor, imsi=line.imsi)
    assert exc.value.field == "imsi"


@pytest.mark.parametrize(
    ("kwargs", "message", "code"),
    [
        ({"tn": "+4930999999"}, "not in Swift Delivery's number blocks", "number_not_ours"),
        ({"tn": "0301234"}, "international form", "rule_violation"),
        ({"services_": ["xr"]}, "does not include XR", "service_not_in_contract"),
        ({"services_": []}, "at least one service", "rule_violation"),
        ({"display_name": "A name far too long for CNAM"}, "at most 15", "rule_violation"),
        ({"alias": "Not Valid!"}, "SIP user name", "rule_violation"),
        ({"imsi": "262019999999999"}, "not in Swift Delivery's line pool", "rule_violation"),
    ],
)
def test_bad_identity_input_is_refused_and_changes_nothing(
    admin_actor, employee, numbers, kwargs, message, code
):
    before = counts()
    with pytest.raises(RuleViolation, match=message) as exc:
        make_identity(employee, actor=admin_actor, **kwargs)
    assert exc.value.code == code
    assert counts() == before


def test_a_contract_without_identity_creation_refuses_onboarding_whole(
    admin_actor, enterprise, numbers
):
    enterprise.contract.may_create_identities = False
    enterprise.contract.save()
    before = counts()
    with pytest.raises(RuleViolation, match="does not allow") as exc:
        services.employee_onboard(
            actor=admin_actor,
            enterprise=enterprise,
            email="new@swift.example",
            full_name="New",
            services=["voice"],
        )
    assert exc.value.code == "contract_forbids_identities"
    assert counts() == before  # not even the account was created


def test_the_identity_quota_is_enforced(admin_actor, employee, enterprise, numbers):
    enterprise.contract.identity_quota = 2
    enterprise.contract.save()
    make_identity(employee, actor=admin_actor)
    make_identity(employee, actor=admin_actor)
    before = counts()
    with pytest.raises(RuleViolation, match="quota is 2") as exc:
        make_identity(employee, actor=admin_actor)
    assert exc.value.code == "quota_reached"
    assert counts() == before


def test_a_suspended_enterprise_cannot_provision_but_operator_staff_still_can_offboard(
    admin_actor, employee, enterprise, numbers, staff
):
    identity = make_identity(employee)
    account_services.enterprise_set_status(
        actor=Actor.system(), enterprise=enterprise, status=Enterprise.Status.SUSPENDED
    )
    with pytest.raises(RuleViolation, match="suspended") as exc:
        make_identity(employee, actor=admin_actor)
    assert exc.value.code == "enterprise_suspended"
    with pytest.raises(RuleViolation, match="suspended"):
        services.identity_suspend(actor=admin_actor, identity=identity)
    services.employee_offboard(actor=Actor(user=staff), user=employee)
    identity.refresh_from_db()
    assert identity.status == Identity.Status.REMOVED


def test_changing_services_and_caller_name_is_audited_and_synced(
    admin_actor, employee, numbers, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        identity = make_identity(employee, actor=admin_actor)
    with django_capture_on_commit_callbacks(execute=True):
        services.identity_update(
            actor=admin_actor,
            identity=identity,
            services=["voice", "messaging"],
            display_name="Rob S",
        )
    event = AuditEvent.objects.get(action="identity.updated")
    assert event.changes == {
        "display_name": [identity.display_name, "Rob S"],
        "services": [["voice"], ["messaging", "voice"]],
    }
    assert hss(identity.tn).display_name == "Rob S"
    assert hss(identity.tn).services == ["messaging", "voice"]


def test_suspend_and_resume_toggle_the_subscription(
    admin_actor, employee, numbers, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        identity = make_identity(employee, actor=admin_actor)
    with django_capture_on_commit_callbacks(execute=True):
        services.identity_suspend(actor=admin_actor, identity=identity)
    assert hss(identity.tn).enabled is False
    with django_capture_on_commit_callbacks(execute=True):
        services.identity_resume(actor=admin_actor, identity=identity)
    assert hss(identity.tn).enabled is True
    with pytest.raises(RuleViolation, match="already active"):
        services.identity_resume(actor=admin_actor, identity=identity)


def test_relocation_moves_to_a_number_in_the_new_country_and_quarantines_the_old(
    admin_actor, employee, enterprise, numbers, django_capture_on_commit_callbacks
):
    give_numbers(enterprise, "+14155550100", "+14155550199")
    with django_capture_on_commit_callbacks(execute=True):
        identity = make_identity(employee, actor=admin_actor)
    old_tn = identity.tn
    with django_capture_on_commit_callbacks(execute=True):
        services.identity_relocate(actor=admin_actor, identity=identity, country="US")
    identity.refresh_from_db()
    assert identity.tn == "+14155550100"
    old = TelephoneNumber.objects.get(e164=old_tn)
    assert old.status == TelephoneNumber.Status.QUARANTINED
    assert old.quarantined_until > timezone.now() + timedelta(days=89)
    assert hss(old_tn) is None and hss(identity.tn) is not None
    # The quarantined number is not handed out again ...
    with pytest.raises(RuleViolation, match="in quarantine until"):
        make_identity(employee, actor=admin_actor, tn=old_tn)
    assert make_identity(employee, actor=admin_actor).tn == "+4930123401"
    # ... until its quarantine is over.
    TelephoneNumber.objects.filter(e164=old_tn).update(quarantined_until=timezone.now())
    assert make_identity(employee, actor=admin_actor, tn=old_tn).tn == old_tn


def test_number_blocks_cannot_overlap_between_enterprises(enterprise, other_enterprise, numbers):
    with pytest.raises(RuleViolation, match="another enterprise") as exc:
        give_numbers(other_enterprise, "+4930123490", "+4930123509")
    assert exc.value.code == "overlap"
    assert NumberBlock.objects.filter(enterprise=other_enterprise).count() == 0
    # Different lengths are different numbers: no overlap.
    give_numbers(other_enterprise, "+493012345000", "+493012345009")


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("+4930123400", "+14155550100", "same length|two countries"),
        ("+4930123499", "+4930123400", "comes before"),
        ("4930123400", "4930123499", "international form"),
        ("+4930123400", "+4930999999", "at most"),
    ],
)
def test_bad_number_blocks_are_refused(enterprise, first, last, message):
    with pytest.raises(RuleViolation, match=message):
        give_numbers(enterprise, first, last)
    assert not TelephoneNumber.objects.exists()


def test_sim_lines_are_validated(enterprise):
    with pytest.raises(RuleViolation, match="not an ICCID"):
        inventory.sim_line_create(
            actor=Actor.system(),
            enterprise=enterprise,
            imsi="262010000000001",
            iccid="8949000000000000001",
        )
    give_line(enterprise, 1)
    with pytest.raises(RuleViolation, match="already exists"):
        give_line(enterprise, 1)


# --- Grants -------------------------------------------------------------------------


def test_the_owner_shares_an_identity_and_the_grantee_subscription_carries_it(
    employee, enterprise, numbers, django_capture_on_commit_callbacks
):
    colleague = UserFactory(enterprise=enterprise)
    with django_capture_on_commit_callbacks(execute=True):
        shared = make_identity(employee)
        own = make_identity(colleague)
    with django_capture_on_commit_callbacks(execute=True):
        grant = services.grant_create(
            actor=Actor(user=employee), identity=shared, grantee=colleague, can_receive_calls=False
        )
    assert hss(own.tn).shared_msisdns == [[shared.tn, True, False]]
    assert AuditEvent.objects.get(action="grant.created").changes["rights"] == [None, "make"]

    with django_capture_on_commit_callbacks(execute=True):
        services.grant_revoke(actor=Actor(user=employee), grant=grant)
    assert hss(own.tn).shared_msisdns == []
    grant.refresh_from_db()
    assert grant.end_reason == Grant.EndReason.REVOKED


def test_only_the_owner_or_an_admin_may_share_and_only_within_the_enterprise(
    helpdesk, employee, enterprise, other_enterprise, numbers
):
    identity = make_identity(employee)
    colleague = UserFactory(enterprise=enterprise)
    with pytest.raises(RuleViolation, match="Only the identity's owner or an admin"):
        services.grant_create(actor=Actor(user=helpdesk), identity=identity, grantee=colleague)
    with pytest.raises(RuleViolation, match="Only the identity's owner or an admin"):
        services.grant_create(actor=Actor(user=colleague), identity=identity, grantee=colleague)
    with pytest.raises(RuleViolation, match="your own enterprise"):
        services.grant_create(
            actor=Actor(user=employee),
            identity=identity,
            grantee=UserFactory(enterprise=other_enterprise),
        )
    with pytest.raises(RuleViolation, match="future"):
        services.grant_create(
            actor=Actor(user=employee),
            identity=identity,
            grantee=colleague,
            valid_until=timezone.now() - timedelta(minutes=1),
        )
    assert not Grant.objects.exists()


def test_grants_expire_on_time_and_the_hss_follows(
    employee, enterprise, numbers, django_capture_on_commit_callbacks
):
    colleague = UserFactory(enterprise=enterprise)
    with django_capture_on_commit_callbacks(execute=True):
        shared, own = make_identity(employee), make_identity(colleague)
        grant = services.grant_create(
            actor=Actor(user=employee),
            identity=shared,
            grantee=colleague,
            valid_until=timezone.now() + timedelta(hours=1),
        )
    assert hss(own.tn).shared_msisdns
    Grant.objects.filter(pk=grant.pk).update(valid_until=timezone.now() - timedelta(seconds=1))
    assert not Grant.objects.active().filter(pk=grant.pk).exists()  # inactive by time already
    with django_capture_on_commit_callbacks(execute=True):
        assert services.grants_expire() == 1
    grant.refresh_from_db()
    assert grant.end_reason == Grant.EndReason.EXPIRED
    assert hss(own.tn).shared_msisdns == []
    assert services.grants_expire() == 0


# --- Offboarding ----------------------------------------------------------------------


def test_offboarding_leaves_nothing_behind(
    admin_actor, admin, employee, enterprise, numbers, django_capture_on_commit_callbacks
):
    colleague = UserFactory(enterprise=enterprise)
    line = give_line(enterprise, 3)
    with django_capture_on_commit_callbacks(execute=True):
        first = make_identity(employee, imsi=line.imsi)
        second = make_identity(employee, alias="rob")
        colleague_identity = make_identity(colleague)
        services.grant_create(actor=Actor(user=employee), identity=first, grantee=colleague)
        services.grant_create(
            actor=Actor(user=colleague), identity=colleague_identity, grantee=employee
        )
    enterprise_token, _ = api_token(enterprise)
    ApiToken.objects.filter(pk=enterprise_token.pk).update(created_by=employee)
    tns = [first.tn, second.tn]
    assert all(hss(tn) for tn in tns)

    with django_capture_on_commit_callbacks(execute=True):
        receipt = services.employee_offboard(actor=admin_actor, user=employee)

    employee.refresh_from_db()
    assert employee.status == User.Status.OFFBOARDED and not employee.has_usable_password()
    assert [hss(tn) for tn in tns] == [None, None]
    for identity in (first, second):
        identity.refresh_from_db()
        assert identity.status == Identity.Status.REMOVED
        assert identity.number is None and identity.line is None
        assert identity.sync.state == IdentitySync.State.SYNCED
    assert set(TelephoneNumber.objects.filter(e164__in=tns).values_list("status", flat=True)) == {
        "quarantined"
    }
    assert not Grant.objects.active().filter(identity__owner=employee).exists()
    assert not Grant.objects.active().filter(grantee=employee).exists()
    assert hss(colleague_identity.tn).shared_msisdns == []
    # The enterprise's integrations keep running when the admin who set them up leaves.
    assert ApiToken.objects.get(pk=enterprise_token.pk).revoked_at is None
    steps = [s["step"] for s in receipt.steps]
    assert any(first.former_tn in s for s in steps) and any("Account closed" in s for s in steps)
    # The SIM line is free for the next joiner.
    assert make_identity(colleague, imsi=line.imsi).line == line


def test_offboarding_refuses_the_last_admin_and_changes_nothing(admin, enterprise, numbers):
    identity = make_identity(admin)
    with pytest.raises(RuleViolation, match="only active admin"):
        services.employee_offboard(actor=Actor.system(), user=admin)
    identity.refresh_from_db()
    assert identity.status == Identity.Status.ACTIVE


def test_an_admin_cannot_touch_another_enterprises_identity(admin_actor, other_enterprise):
    give_numbers(other_enterprise, "+4940123400", "+4940123409")
    outsider = make_identity(UserFactory(enterprise=other_enterprise, role=Role.EMPLOYEE))
    with pytest.raises(NotAllowed):
        services.identity_suspend(actor=admin_actor, identity=outsider)
    with pytest.raises(NotAllowed):
        services.employee_offboard(actor=admin_actor, user=outsider.owner)


def test_the_number_is_unique_across_the_operator(enterprise, numbers):
    other = EnterpriseFactory()
    assert TelephoneNumber.objects.filter(enterprise=other).count() == 0
    assert TelephoneNumber.objects.filter(enterprise=enterprise).count() == 100


def test_the_offboarding_receipt_counts_the_grants_given_and_received(
    employee, enterprise, numbers
):
    colleague = UserFactory(enterprise=enterprise)
    mine, theirs = make_identity(employee), make_identity(colleague)
    services.grant_create(actor=Actor(user=employee), identity=mine, grantee=colleague)
    services.grant_create(actor=Actor(user=colleague), identity=theirs, grantee=employee)
    receipt = services.employee_offboard(actor=Actor.system(), user=employee)
    assert any("1 given, 1 received" in s["step"] for s in receipt.steps)
    assert Grant.objects.get(identity=mine).end_reason == Grant.EndReason.OWNER_LEFT


def test_a_read_only_token_cannot_revoke_a_grant(employee, enterprise, numbers):
    from accounts.models import Role
    from accounts.tests.factories import api_token as make_token

    colleague = UserFactory(enterprise=enterprise)
    grant = services.grant_create(
        actor=Actor(user=employee), identity=make_identity(employee), grantee=colleague
    )
    token, _ = make_token(enterprise, role=Role.HELPDESK)
    with pytest.raises(RuleViolation, match="Only the owner"):
        services.grant_revoke(actor=Actor(api_token=token), grant=grant)
    assert Grant.objects.get(pk=grant.pk).is_active


def test_onboarding_an_existing_member_gives_them_an_identity(
    admin_actor, employee, enterprise, numbers
):
    identity = services.employee_onboard(
        actor=admin_actor, enterprise=enterprise, email=employee.email.upper(), full_name="Ignored",
        services=["voice"],
    )  # fmt: skip
    assert identity.owner == employee and employee.full_name != "Ignored"
    assert User.objects.filter(email=employee.email).count() == 1


def test_onboarding_refuses_an_offboarded_or_foreign_account(
    admin_actor, enterprise, other_enterprise, numbers
):
    gone = UserFactory(enterprise=enterprise, status=User.Status.OFFBOARDED)
    foreign = UserFactory(enterprise=other_enterprise)
    for email, message in (
        (gone.email, "offboarded account"),
        (foreign.email, "cannot be used for an account here"),
    ):
        with pytest.raises(RuleViolation, match=message):
            services.employee_onboard(
                actor=admin_actor,
                enterprise=enterprise,
                email=email,
                full_name="X",
                services=["voice"],
            )
    assert not Identity.objects.exists()


def test_a_block_and_a_sim_line_are_audited_with_what_they_were_made_with(admin_actor, enterprise):
    block = inventory.number_block_create(
        actor=admin_actor,
        enterprise=enterprise,
        first_number="+4930777000",
        last_number="+4930777004",
    )
    event = AuditEvent.objects.get(action="number_block.created", target_id=str(block.pk))
    assert event.changes == {
        "range": [None, str(block)],
        "country": [None, "DE"],
        "size": [None, 5],
    }
    line = inventory.sim_line_create(
        actor=admin_actor, enterprise=enterprise, imsi="262010000000077", iccid=iccid_for(77)
    )
    event = AuditEvent.objects.get(action="sim_line.created", target_id=str(line.pk))
    assert event.changes == {"imsi": [None, "262010000000077"], "iccid": [None, iccid_for(77)]}


def test_a_relocation_reads_in_the_audit_trail_as_a_sentence_with_both_numbers(
    admin_actor, employee, enterprise, numbers, django_capture_on_commit_callbacks
):
    from accounts import trail

    give_numbers(enterprise, "+14155550100", "+14155550199")
    with django_capture_on_commit_callbacks(execute=True):
        identity = make_identity(employee, actor=admin_actor)
        services.identity_relocate(actor=admin_actor, identity=identity, country="US")
    event = AuditEvent.objects.select_related("actor_user").get(action="identity.relocated")
    assert trail.sentence(event) == (
        "Ada Admin relocated Rob Smith from +49 30 123400 to +1 415-555-0100"
    )


def test_an_admin_shares_on_the_owners_behalf_and_the_owner_is_told(
    admin, employee, enterprise, numbers, django_capture_on_commit_callbacks, mailoutbox
):
    from accounts import trail
    from accounts.models import Notification

    colleague = UserFactory(enterprise=enterprise, full_name="Chen Li")
    identity = make_identity(employee)
    with pytest.raises(RuleViolation, match="Rob Smith owns this identity"):
        services.grant_create(actor=Actor(user=admin), identity=identity, grantee=employee)
    with django_capture_on_commit_callbacks(execute=True):
        grant = services.grant_create(
            actor=Actor(user=admin), identity=identity, grantee=colleague, can_make_calls=False
        )
    assert grant.created_by == admin
    event = AuditEvent.objects.select_related("actor_user").get(action="grant.created")
    assert event.changes["on_behalf_of"] == [None, "Rob Smith"]
    assert trail.sentence(event) == (
        f"Ada Admin shared {trail.number(identity.tn)} → Chen Li on behalf of Rob Smith"
    )
    told = Notification.objects.get(user=employee)
    assert told.title == f"Ada Admin shared your number {identity.tn} with Chen Li"
    assert "Chen Li may receive calls with it." in told.body
    assert [m.to for m in mailoutbox] == [[employee.email]]
    # The owner sharing their own tells nobody.
    services.grant_revoke(actor=Actor(user=admin), grant=grant)
    services.grant_create(actor=Actor(user=employee), identity=identity, grantee=colleague)
    assert Notification.objects.filter(user=employee).count() == 1
