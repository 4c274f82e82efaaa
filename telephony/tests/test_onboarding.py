"""Onboarding many joiners at once (an import's chunk) writes exactly what onboarding
them one after the other writes, refuses the same rows for the same reasons, and costs
a fixed number of queries whatever the number of joiners."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import AuditEvent, Invitation, User
from accounts.tests.factories import UserFactory
from kernel.errors import RuleViolation
from telephony.identities import onboarding, services
from telephony.identities.onboarding import Joiner
from telephony.models import Identity, IdentitySync, TelephoneNumber
from telephony.tests.factories import give_line, give_numbers, make_identity

pytestmark = pytest.mark.django_db


def sorted_(rows) -> list:
    return sorted(rows, key=repr)  # rows hold None beside strings


def written(enterprise) -> dict:
    """Every row an onboarding writes for the enterprise, without keys and times."""
    return {
        "users": list(
            User.objects.filter(enterprise=enterprise)
            .order_by("email")
            .values_list("email", "full_name", "role", "status")
        ),
        "identities": sorted_(
            Identity.objects.filter(enterprise=enterprise).values_list(
                "owner__email",
                "number__e164",
                "line__imsi",
                "alias",
                "display_name",
                "services",
                "status",
                "former_tn",
            )
        ),
        "numbers": list(
            TelephoneNumber.objects.filter(enterprise=enterprise)
            .order_by("e164")
            .values_list("e164", "status", "quarantined_until")
        ),
        "syncs": sorted_(
            IdentitySync.objects.filter(enterprise=enterprise).values_list(
                "identity__number__e164", "state", "push_queue"
            )
        ),
        "invitations": sorted_(
            Invitation.objects.filter(enterprise=enterprise).values_list(
                "user__email", "created_by__email", "sent_at", "accepted_at", "revoked_at"
            )
        ),
        "audit": sorted_(
            AuditEvent.objects.filter(enterprise=enterprise).values_list(
                "action", "actor_user__email", "actor_label", "target_type", "target_label", "ip"
            )
        )
        + sorted_(
            (action, repr(changes))
            for action, changes in AuditEvent.objects.filter(enterprise=enterprise).values_list(
                "action", "changes"
            )
        ),
    }


def one_by_one(actor, enterprise, joiners) -> list[str]:
    """Each joiner onboarded alone, as the onboarding form or the API does."""
    outcomes = []
    for joiner in joiners:
        try:
            identity = services.employee_onboard(
                actor=actor,
                enterprise=enterprise,
                email=joiner.email,
                full_name=joiner.full_name,
                role=joiner.role,
                services=joiner.services,
                display_name=joiner.display_name,
                tn=joiner.tn,
                imsi=joiner.imsi,
                alias=joiner.alias,
            )
        except RuleViolation as exc:
            outcomes.append(exc.message)
        else:
            outcomes.append(identity.tn)
    return outcomes


def all_at_once(actor, enterprise, joiners) -> list[str]:
    outcomes = onboarding.onboard(actor=actor, enterprise=enterprise, joiners=joiners)
    return [o.message if isinstance(o, RuleViolation) else o.tn for o in outcomes]


def both_ways(actor, enterprise, joiners):
    """What each way answers and writes, from the same start (each rolled back)."""
    results = []
    for way in (one_by_one, all_at_once):
        with transaction.atomic():
            outcomes = way(actor, enterprise, joiners)
            results.append((outcomes, written(enterprise)))
            transaction.set_rollback(True)
    return results


def test_a_chunk_onboarded_at_once_writes_what_onboarding_each_alone_writes(
    admin, enterprise, employee, other_enterprise
):
    give_numbers(enterprise, "+4930123400", "+4930123419")
    line, spare = give_line(enterprise, 1), give_line(enterprise, 2)
    make_identity(employee, tn="+4930123410")  # live: counts against the quota
    TelephoneNumber.objects.filter(e164="+4930123411").update(
        status="quarantined", quarantined_until=timezone.now() + timedelta(days=30)
    )
    stranger = UserFactory(enterprise=other_enterprise, email="stranger@other.example")
    contract = enterprise.contract
    contract.identity_quota = 12
    contract.allowed_services = ["voice", "video"]
    contract.save()
    joiners = [
        Joiner(email="ann@swift.example", full_name="Ann Archer", services=["voice"]),
        Joiner(email="bo@swift.example", full_name="Bo", services=["video"], tn="+4930123405"),
        Joiner(email="ROB@swift.example", full_name="Rob again", services=["voice"]),
        Joiner(email="cy@swift.example", full_name="Cy", services=["voice"], imsi=line.imsi),
        Joiner(email="di@swift.example", full_name="Di", services=["voice"], imsi=line.imsi),
        Joiner(email="ed@swift.example", full_name="Ed", services=["voice"], tn="+4930123405"),
        Joiner(email="fay@swift.example", full_name="Fay", services=["voice"], alias="Fay.X"),
        Joiner(email="gus@swift.example", full_name="Gus", services=["voice"], alias="fay.x"),
        Joiner(email=stranger.email, full_name="Stranger", services=["voice"]),
        Joiner(email="ann@swift.example", full_name="Ann twice", services=["voice"]),
        Joiner(email="hal@swift.example", full_name="Hal", services=["fax"]),
        Joiner(
            email="ivy@swift.example", full_name="Ivy", services=["voice"], display_name="x" * 16
        ),
        Joiner(email="jo@swift.example", full_name="Jo", services=["voice"], role="boss"),
        Joiner(email="kim@swift.example", full_name="Kim", services=["voice"], tn="+4930123400"),
        Joiner(email="lu@swift.example", full_name="Lu", services=["voice"], tn="+4930123411"),
        Joiner(email="mo@swift.example", full_name="Mo", services=["voice"], tn="+4930999999"),
        Joiner(email="not-an-address", full_name="Ned", services=["voice"]),
        Joiner(email="ola@swift.example", full_name="Ola", services=["voice"], imsi=spare.imsi),
        Joiner(email="pat@swift.example", full_name="Pat Doe", services=["voice", "video"]),
        Joiner(email="quinn@swift.example", full_name="Quinn", services=["voice"]),
        Joiner(email="rae@swift.example", full_name="Rae", services=["voice"]),
        Joiner(email="sam@swift.example", full_name="Sam", services=["voice"]),
        Joiner(email="tia@swift.example", full_name="Tia", services=["voice"]),
    ]
    actor = Actor(user=admin, ip="198.51.100.7")

    (alone, alone_wrote), (together, together_wrote) = both_ways(actor, enterprise, joiners)

    assert together == alone
    assert together_wrote == alone_wrote
    # And the rules were met, not merely agreed on:
    assert together[:4] == ["+4930123400", "+4930123405", "+4930123401", "+4930123402"]
    assert together[4] == f"The SIM line {line.imsi} is already in use."
    assert together[5] == "+4930123405 is already in use."
    assert together[7] == "sip:fay.x@swift.example is taken."
    assert (
        together[8]
        == "stranger@other.example cannot be used for an account here; use another address."
    )
    assert together[6] == "+4930123403"
    assert together[9] == "+4930123404"  # the same address again: a second identity
    assert together[13] == "+4930123400 is already in use."
    assert together[14].startswith("+4930123411 is in quarantine until ")
    assert together[15] == "+4930999999 is not in Swift Delivery's number blocks."
    # Past the numbers in use (…410) and in quarantine (…411), up to the quota.
    assert together[-2:] == ["+4930123412", "Swift Delivery holds 12 identities, its quota is 12."]
    assert len(together_wrote["identities"]) == 12


def test_a_chunk_costs_the_same_queries_whatever_its_size(admin, enterprise):
    give_numbers(enterprise, "+4930123400", "+4930123499")
    for n in range(1, 41):
        give_line(enterprise, n)
    actor = Actor(user=admin)

    def queries(first, count):
        joiners = [
            Joiner(
                email=f"p{n}@swift.example",
                full_name=f"Person {n}",
                services=["voice"],
                imsi=f"26201{n:010d}" if n % 2 else "",
                alias=f"p{n}" if n % 3 == 0 else "",
                tn="" if n % 4 else f"+49301234{50 + n:02d}",
            )
            for n in range(first, first + count)
        ]
        with CaptureQueriesContext(connection) as captured:
            outcomes = onboarding.onboard(actor=actor, enterprise=enterprise, joiners=joiners)
        assert all(isinstance(o, Identity) for o in outcomes), outcomes
        return len(captured)

    assert queries(1, 4) == queries(5, 36)


def test_a_clash_in_the_database_sends_an_imports_chunk_again_row_by_row(
    admin, enterprise, other_enterprise, monkeypatch, django_capture_on_commit_callbacks
):
    """A change committed after a chunk's checks read (here: another account takes an
    address of the chunk just before its INSERT) makes the database refuse the chunk:
    it is applied again row by row, each row deciding anew."""
    from telephony.bulk import services as bulk

    give_numbers(enterprise)
    actor = Actor(user=admin)
    text = "email,full_name\n" + "".join(f"p{n}@swift.example,P {n}\n" for n in range(3))
    job = bulk.import_preview(
        actor=actor, enterprise=enterprise, filename="p.csv", csv_text=text, send_invitations=False
    )
    real_onboard, real_write, chunks = onboarding.onboard, onboarding._Book.write, []

    def onboard(**kwargs):
        chunks.append([joiner.email for joiner in kwargs["joiners"]])
        return real_onboard(**kwargs)

    def write(book, *args):
        if len(chunks) == 1:
            UserFactory(enterprise=other_enterprise, email="p1@swift.example")
        return real_write(book, *args)

    monkeypatch.setattr(onboarding, "onboard", onboard)
    monkeypatch.setattr(onboarding._Book, "write", write)
    with django_capture_on_commit_callbacks(execute=True):
        bulk.import_start(actor=actor, job=job)
    job.refresh_from_db()
    emails = ["p0@swift.example", "p1@swift.example", "p2@swift.example"]
    assert chunks == [emails, *([email] for email in emails)]
    # The clash went back with the chunk's savepoint: every row lands on its second try.
    assert (job.state, job.created_count, job.failed_count) == ("done", 3, 0)
    assert Identity.objects.filter(owner__email__in=emails).count() == 3
