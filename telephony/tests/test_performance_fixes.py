"""Behaviour kept by the changes the benchmarks led to (docs/benchmarks.md), and the
shape of the queries that made them fast. Speed itself is measured in bench/, not here."""

import pytest
from django.db import connection, transaction
from django.urls import reverse

from accounts.audit import Actor
from accounts.models import User
from accounts.services import network_client_create
from accounts.tests.factories import UserFactory
from kernel import generations
from telephony import selectors
from telephony.models import Registration
from telephony.registrations import ingest
from telephony.registrations.reginfo import parse_registration_events
from telephony.tests.factories import give_numbers, make_identity

pytestmark = pytest.mark.django_db


@pytest.fixture
def network(enterprise):
    client, _ = network_client_create(actor=Actor.system(), name="S-CSCF", enterprises=[enterprise])
    return client


def report(client, identities_and_instances, version=1):
    document = parse_registration_events(
        {
            "version": version,
            "registrations": [
                {
                    "aor": f"tel:{identity.tn}",
                    "contacts": [
                        {
                            "uri": f"sip:{identity.tn}@198.51.100.{n + 10}",
                            "state": "active",
                            "event": "registered",
                            "expires": 3600,
                            "instance": instance,
                        }
                        for n, instance in enumerate(instances)
                    ],
                }
                for identity, instances in identities_and_instances
            ],
        }
    )
    return ingest.apply_report(actor=Actor(network_client=client), client=client, document=document)


PHONE = "urn:gsma:imei:35209900-176148-1"
LAPTOP = "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
TABLET = "urn:uuid:0b7e7c2a-6a51-4d0e-9d51-3f5f5b0d7a10"


def test_the_device_dashboard_counts_each_device_once_and_only_while_registered(
    enterprise, network
):
    give_numbers(enterprise)
    rob, ada = UserFactory(enterprise=enterprise), UserFactory(enterprise=enterprise)
    work, private = make_identity(rob), make_identity(rob)
    # The phone is registered for both of Rob's identities: one device, not two.
    report(network, [(work, [PHONE, LAPTOP]), (private, [PHONE])])
    report(network, [(make_identity(ada), [TABLET])])
    Registration.objects.filter(instance_id=TABLET).update(state=Registration.State.ENDED)

    people = {p.pk: p for p in selectors.device_dashboard(enterprise)}
    assert people[rob.pk].active_devices == 2
    assert people[ada.pk].active_devices == 0
    assert people[ada.pk].last_seen is not None  # an ended device was still seen
    assert list(selectors.device_dashboard(enterprise, devices="many")) == [people[rob.pk]]
    assert people[ada.pk] in selectors.device_dashboard(enterprise, devices="none")
    # Most devices first.
    assert next(iter(selectors.device_dashboard(enterprise))).pk == rob.pk


def test_the_device_dashboard_works_out_call_figures_for_the_shown_page_only(enterprise):
    """Per-person figures are subqueries, not aggregates over a join: an aggregate makes
    the query group by every other column, so the database would compute the call
    figures of every employee (seconds for 10,000) to show a page of 25."""
    outer = str(selectors.device_dashboard(enterprise).query).upper()
    while "(SELECT" in outer:  # drop the subqueries; what is left is the outer query
        start = outer.index("(SELECT")
        depth, end = 0, start
        for end in range(start, len(outer)):
            depth += {"(": 1, ")": -1}.get(outer[end], 0)
            if depth == 0:
                break
        outer = outer[:start] + "X" + outer[end + 1 :]
    assert "GROUP BY" not in outer


def test_the_device_count_of_everyone_is_read_from_an_index_alone(
    transactional_db, enterprise, network
):
    """The device list orders every employee by their active devices: that count must
    not visit the registrations table for each of them (docs/benchmarks.md).

    The plan must not hang on what earlier tests left behind: their rolled-back rows
    bloat the table and indexes and autovacuum may have recorded statistics at any
    moment, and then the narrow ``user`` index looked cheaper. So the test gives each
    person the history a real one has (many ended registrations beside the active ones,
    which only the covering index can skip without the table), commits it, and rebuilds
    and vacuums the table before asking for the plan."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's plan")
    give_numbers(enterprise)
    people = [UserFactory(enterprise=enterprise) for _ in range(4)]
    for person in people:
        report(network, [(make_identity(person), [PHONE, LAPTOP])])
    active = list(Registration.objects.filter(user__in=people))
    Registration.objects.bulk_create(
        Registration(
            enterprise=enterprise,
            identity=registration.identity,
            user=registration.user,
            device_key=f"{registration.device_key}:{n}",
            label=registration.label,
            contact_uri=registration.contact_uri,
            state=Registration.State.ENDED,
            expires_at=registration.expires_at,
        )
        for registration in active
        for n in range(100)
    )
    # Committed, rebuilt and vacuumed, as a live table is: every page all-visible, the
    # indexes unbloated, statistics true. Then only an index-only scan reads no table page,
    # and the plan is certain whatever earlier tests left behind (in a transaction nothing
    # is all-visible, so other index scans would cost the same).
    with connection.cursor() as cursor:
        cursor.execute("REINDEX TABLE telephony_registration")
        cursor.execute("VACUUM (ANALYZE) telephony_registration")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a few rows: otherwise a scan is cheaper
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        plan = selectors.device_dashboard(enterprise)[:25].explain()
    count = plan[plan.index("SubPlan 1") : plan.index("SubPlan 2")]
    assert "Index Only Scan using registration_user_devices" in count, plan


def test_the_device_dashboard_page_still_renders_counts_and_call_status(
    admin_client, enterprise, network
):
    give_numbers(enterprise)
    rob = UserFactory(enterprise=enterprise, full_name="Rob Smith")
    report(network, [(make_identity(rob), [PHONE, LAPTOP])])
    page = admin_client.get(reverse("telephony:devices")).content.decode()
    assert 'class="device-count many">2<' in page
    assert "Rob Smith" in page


# --- Call signing and verification -----------------------------------------------------


@pytest.fixture
def signer(enterprise, employee):
    from telephony.callauth import credentials
    from telephony.identities import sync
    from telephony.models import CallerName

    credentials.lab_pki_create(actor=Actor.system(), operator_name="iCA", spc="1234")
    give_numbers(enterprise)
    credentials.delegate_certificate_issue(actor=Actor.system(), enterprise=enterprise)
    CallerName.objects.create(enterprise=enterprise, name="Swift Delivery", vetting="vetted")
    identity = make_identity(employee)
    sync.push_identity(identity.pk)
    client, _ = network_client_create(actor=Actor.system(), name="SBC", enterprises=[enterprise])
    return identity, client


def test_a_signing_reads_the_number_its_identity_and_business_name_in_one_query(
    signer, django_assert_num_queries
):
    import time

    from telephony.callauth import signing

    identity, client = signer
    # A cold cache (a warm one reads nothing: test_callpath.py): the identity with its
    # number and sync state, twice when it is kept (its enterprise's generation is read
    # in between, so that what is kept cannot predate a change); the client's
    # enterprises; the business name; the delegate certificates; the call record.
    with django_assert_num_queries(6 if generations.enabled() else 5):
        signed = signing.sign_call(
            client=client, orig_tn=identity.tn, dest_tns=["+4940123499"], iat=int(time.time())
        )
    assert signed.attestation == "A" and len(signed.identities) == 2  # SHAKEN and RCD
    assert signed.record.caller_name == "Swift Delivery"


def test_a_signing_of_a_number_nobody_holds_still_finds_its_block(enterprise, signer):
    import time

    from telephony.callauth import signing

    _, client = signer
    signed = signing.sign_call(
        client=client, orig_tn="+4930123477", dest_tns=["+4940123499"], iat=int(time.time())
    )
    assert signed.attestation == "C" and signed.record.enterprise == enterprise
    assert len(signed.identities) == 1  # no business name below A


def test_a_verification_reads_the_repository_once_for_both_passports(
    signer, django_assert_num_queries
):
    import time

    from telephony.callauth import signing, verification

    identity, client = signer
    signed = signing.sign_call(
        client=client, orig_tn=identity.tn, dest_tns=["+4930123499"], iat=int(time.time())
    )
    client = type(client).objects.get(pk=client.pk)  # as a new request has it
    # A cold cache (a warm one reads nothing: test_callpath.py): the callee (nobody
    # holds the called number, so also whose block it is in), twice when it is kept (the
    # generation of that enterprise is read in between); the chain the x5u names with
    # its issuers; the trust anchors; the call record: the RCD PASSporT names the same x5u.
    with django_assert_num_queries(7 if generations.enabled() else 5):
        verified = verification.verify_call(
            client=client,
            from_tn=identity.tn,
            to_tns=["+4930123499"],
            identity=",".join(signed.identities),
        )
    assert verified.verstat == "TN-Validation-Passed"
    assert verified.caller_name == "Swift Delivery"


# --- Registration reports ----------------------------------------------------------------


def refresh_document(identity, instances, version, user_agent=""):
    return parse_registration_events(
        {
            "version": version,
            "state": "full",
            "registrations": [
                {
                    "aor": aor,
                    "contacts": [
                        {
                            "uri": f"sip:{identity.tn}@198.51.100.{n + 10}",
                            "state": "active",
                            "event": "refreshed",
                            "expires": 1800,
                            "instance": instance,
                            "user_agent": user_agent,
                        }
                        for n, instance in enumerate(instances)
                    ],
                }
                for aor in identity.impus
            ],
        }
    )


def test_a_refresh_writes_only_what_changed_in_one_update_per_table(
    enterprise, network, employee, django_assert_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    give_numbers(enterprise)
    identity = make_identity(employee)
    instances = [PHONE, LAPTOP, TABLET]
    actor = Actor(network_client=network)
    ingest.apply_report(
        actor=actor, client=network, document=refresh_document(identity, instances, 1)
    )
    before = {r.device_key: r for r in Registration.objects.filter(identity=identity)}

    with CaptureQueriesContext(connection) as captured:
        report_ = ingest.apply_report(
            actor=actor, client=network, document=refresh_document(identity, instances, 2)
        )
    assert report_.applied == 3 * len(identity.impus)
    updates = [
        q["sql"] for q in captured.captured_queries if q["sql"].startswith('UPDATE "telephony_reg')
    ]
    registration_updates = [q for q in updates if 'telephony_registration" SET' in q]
    assert len(registration_updates) == 1
    assert '"last_refreshed_at"' in registration_updates[0]
    assert '"contact_uri"' not in registration_updates[0]
    assert '"label"' not in registration_updates[0]

    after = {r.device_key: r for r in Registration.objects.filter(identity=identity)}
    for key, reg in after.items():
        assert reg.last_refreshed_at > before[key].last_refreshed_at
        assert reg.contact_uri == before[key].contact_uri
        # One "registered" per AoR was folded into a refresh count per AoR reported again.
        assert reg.last_event.kind == "refreshed"
        assert reg.last_event.count == len(identity.impus)

    # The same number of queries for three devices as for thirty.
    more = [f"urn:uuid:00000000-0000-4000-8000-{n:012d}" for n in range(30)]
    ingest.apply_report(actor=actor, client=network, document=refresh_document(identity, more, 3))
    with CaptureQueriesContext(connection) as thirty:
        ingest.apply_report(
            actor=actor, client=network, document=refresh_document(identity, more, 4)
        )
    assert len(thirty.captured_queries) == len(captured.captured_queries)


def test_a_report_in_a_subscription_takes_as_many_queries_whatever_its_size(
    enterprise, network, employee
):
    from django.test.utils import CaptureQueriesContext

    from telephony.models import ThirdPartyRegistration

    give_numbers(enterprise)
    identity = make_identity(employee)
    actor = Actor(network_client=network)
    # A third-party REGISTER described one of the devices: the report reads it too.
    ThirdPartyRegistration.objects.create(
        enterprise=enterprise,
        identity=identity,
        aor=f"tel:{identity.tn}",
        scscf="sip:scscf1.ims.example",
        expires_at="2100-01-01T00:00:00Z",
        devices=[{"key": f"instance:{PHONE}", "user_agent": "Acme/1 (Android 14)"}],
    )

    def counted(instances, version, subscription):
        with CaptureQueriesContext(connection) as captured:
            ingest.apply_report(
                actor=actor,
                client=network,
                document=refresh_document(identity, instances, version),
                subscription=subscription,
            )
        return len(captured.captured_queries)

    three = [PHONE, LAPTOP, TABLET]
    more = [PHONE, *(f"urn:uuid:00000000-0000-4000-8000-{n:012d}" for n in range(30))]
    counted(three, 2, "A@edge")
    assert Registration.objects.get(instance_id=PHONE).label.startswith("Android phone")
    refresh_of_three = counted(three, 3, "A@edge")
    counted(more, 2, "B@edge")
    assert counted(more, 3, "B@edge") == refresh_of_three
    steady = counted(more, 4, "B@edge")  # refreshes fold into the events now
    # Without a subscription, the same queries.
    counted(more, 1, None)
    assert counted(more, 2, None) == steady


def test_a_refresh_that_changes_a_device_writes_the_change(enterprise, network, employee):
    give_numbers(enterprise)
    identity = make_identity(employee)
    actor = Actor(network_client=network)
    ingest.apply_report(
        actor=actor, client=network, document=refresh_document(identity, [PHONE, LAPTOP], 1)
    )
    ingest.apply_report(
        actor=actor,
        client=network,
        document=refresh_document(
            identity, [PHONE, LAPTOP], 2, user_agent="Samsung SM-S918B Android/14"
        ),
    )
    phone = Registration.objects.get(identity=identity, instance_id=PHONE)
    assert phone.user_agent == "Samsung SM-S918B Android/14"
    assert phone.label.startswith("Android phone")
    # A full document without the laptop ends it, and only it.
    ingest.apply_report(
        actor=actor, client=network, document=refresh_document(identity, [PHONE], 3)
    )
    states = dict(
        Registration.objects.filter(identity=identity).values_list("instance_id", "state")
    )
    assert states == {PHONE: "active", LAPTOP: "ended"}


def test_a_new_device_of_someone_on_very_many_devices_is_still_applied(
    enterprise, network, employee
):
    """The "also signed in on" notice lists the other devices; on dozens of them it is
    shortened to fit, instead of the whole report failing."""
    from telephony.models import NetworkNotice

    give_numbers(enterprise)
    identity = make_identity(employee)
    actor = Actor(network_client=network)
    many = [f"urn:uuid:00000000-0000-4000-8000-{n:012d}" for n in range(40)]
    ingest.apply_report(actor=actor, client=network, document=refresh_document(identity, many, 1))
    result = ingest.apply_report(
        actor=actor, client=network, document=refresh_document(identity, [*many, PHONE], 2)
    )
    assert result.new_devices == 1
    notice = NetworkNotice.objects.filter(kind="already_logged_on").latest("pk")
    assert len(notice.message) <= 500 and notice.message.endswith("…")


# --- The CSV import ------------------------------------------------------------------


def test_imported_rows_without_a_number_take_the_next_free_ones_in_file_order(
    admin, enterprise, django_capture_on_commit_callbacks
):
    """The chunk's free numbers are read in one query when it runs, in file order, past
    a number a row names and one taken after the preview."""
    from telephony.bulk import services as bulk
    from telephony.identities import services
    from telephony.models import Identity

    give_numbers(enterprise, "+4930123400", "+4930123409")
    actor = Actor(user=admin)
    text = "email,full_name,tn\n" + "".join(
        f"p{n}@swift.example,Person {n},{'+4930123405' if n == 3 else ''}\n" for n in range(5)
    )
    job = bulk.import_preview(
        actor=actor, enterprise=enterprise, filename="p.csv", csv_text=text, send_invitations=False
    )
    assert job.problems == []
    # Another admin onboards a colleague after the preview: the next free number.
    taken = services.identity_create(
        actor=actor, owner=UserFactory(enterprise=enterprise), services=["voice"]
    )
    with django_capture_on_commit_callbacks(execute=True):
        bulk.import_start(actor=actor, job=job)
    job.refresh_from_db()
    assert (job.state, job.created_count, job.failed_count) == ("done", 5, 0)
    assert taken.tn == "+4930123400"
    numbers = dict(
        Identity.objects.filter(owner__email__startswith="p").values_list(
            "owner__email", "number__e164"
        )
    )
    assert numbers == {
        "p0@swift.example": "+4930123401",
        "p1@swift.example": "+4930123402",
        "p2@swift.example": "+4930123403",
        "p3@swift.example": "+4930123405",  # named in the file
        "p4@swift.example": "+4930123404",
    }


def test_the_import_looks_for_free_numbers_once_per_chunk(
    admin, enterprise, django_capture_on_commit_callbacks
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from telephony.bulk import services as bulk

    give_numbers(enterprise)
    actor = Actor(user=admin)
    text = "email,full_name\n" + "".join(f"q{n}@swift.example,Q {n}\n" for n in range(30))
    job = bulk.import_preview(
        actor=actor, enterprise=enterprise, filename="q.csv", csv_text=text, send_invitations=False
    )
    with CaptureQueriesContext(connection) as captured:
        with django_capture_on_commit_callbacks(execute=False):
            bulk.import_start(actor=actor, job=job)
        bulk.run_import_job(job.pk)
    searches = [
        q["sql"]
        for q in captured.captured_queries
        if 'FROM "telephony_telephonenumber"' in q["sql"]
        and "ORDER BY" in q["sql"]
        and '"block_id"' in q["sql"].split("ORDER BY")[1]
    ]
    assert len(searches) == 1  # one chunk of 30 rows: one search, not thirty


# --- The audit trail ---------------------------------------------------------------------


def test_the_audit_list_counts_at_most_its_cap_and_says_there_are_more(
    admin_client, enterprise, monkeypatch, django_assert_max_num_queries
):
    from accounts import views
    from accounts.audit import record

    for n in range(12):
        record(actor=Actor.system(), action=f"test.event_{n}", enterprise=enterprise)
    monkeypatch.setattr(views, "AUDIT_COUNT_CAP", 5)
    with django_assert_max_num_queries(8):
        page = admin_client.get(reverse("accounts:audit")).content.decode()
    assert "more than 5 in all" in page
    assert "test.event_11" in page  # newest first
    monkeypatch.setattr(views, "AUDIT_COUNT_CAP", 10_000)
    page = admin_client.get(reverse("accounts:audit")).content.decode()
    assert "more than" not in page


def test_the_capped_count_reads_no_further_than_the_cap(enterprise):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from accounts import selectors
    from accounts.views import CappedPaginator

    paginator = CappedPaginator(selectors.audit_events(enterprise), 25, cap=100)
    with CaptureQueriesContext(connection) as captured:
        assert paginator.count <= 100
    assert "LIMIT 101" in captured.captured_queries[0]["sql"]


def test_a_case_insensitive_email_lookup_can_use_an_index(enterprise):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's plan")
    UserFactory.create_batch(3, enterprise=enterprise)
    lookup = User.objects.filter(email__iexact="Rob.Smith@Example.com")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a few rows: otherwise a scan is cheaper
        plan = lookup.explain()
    assert "user_email_upper" in plan, plan
