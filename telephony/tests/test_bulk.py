"""The CSV import of employees with identities (preview, start, the chunked worker)
and the CSV export, through the services and through the pages."""

import csv
import io
from datetime import timedelta

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from accounts import services as account_services
from accounts.audit import Actor
from accounts.models import AuditEvent, Enterprise, Role, User
from accounts.tests.factories import EnterpriseFactory, UserFactory
from kernel import csvfile
from kernel.errors import RuleViolation
from portal.testing import assert_other_enterprise_gets_404, sign_in_verified, wait_for
from telephony.bulk import services as bulk
from telephony.identities import onboarding, services
from telephony.models import (
    Identity,
    IdentitySync,
    ImportJob,
    SimulatedSubscription,
    TelephoneNumber,
)
from telephony.tests.factories import give_line, give_numbers, make_identity

pytestmark = pytest.mark.django_db

HEADER = "email,full_name,role,services,display_name,tn,imsi,alias"


@pytest.fixture
def numbers(enterprise):
    return give_numbers(enterprise)  # +4930123400 … +4930123499


@pytest.fixture
def admin_actor(admin):
    return Actor(user=admin, ip="198.51.100.7")


def csv_text(*rows, header=HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def preview(actor, enterprise, text, *, send_invitations=True) -> ImportJob:
    return bulk.import_preview(
        actor=actor,
        enterprise=enterprise,
        filename="people.csv",
        csv_text=text,
        send_invitations=send_invitations,
    )


def problems_by_row(job) -> dict:
    return {p["row"]: p["message"] for p in job.problems}


def run(actor, job, capture):
    """Start the job; its task runs eagerly once the start commits."""
    with capture(execute=True):
        bulk.import_start(actor=actor, job=job)
    job.refresh_from_db()
    return job


def domain_counts():
    return (
        User.objects.count(),
        Identity.objects.count(),
        TelephoneNumber.objects.exclude(status="free").count(),
    )


def five_rows():
    return csv_text(*(f"p{n}@swift.example,Person {n},,,,,," for n in range(1, 6)))


# --- Reading the file -----------------------------------------------------------------


def test_a_header_with_an_unknown_column_is_refused_with_the_columns_named():
    with pytest.raises(RuleViolation) as exc:
        bulk.parse(csv_text("rob@swift.example,Rob,,,,,,,x", header=HEADER + ",department"))
    assert exc.value.code == "unknown_column"
    assert "Unknown column department" in exc.value.message
    assert "email, full_name, role" in exc.value.message


def test_a_header_without_a_required_column_is_refused():
    with pytest.raises(RuleViolation, match="lacks the column full_name") as exc:
        bulk.parse("email,role\nrob@swift.example,employee\n")
    assert exc.value.code == "missing_column"


def test_a_file_with_more_rows_than_the_cap_is_refused():
    rows = [f"p{n}@swift.example,P {n}" for n in range(bulk.MAX_ROWS + 1)]
    with pytest.raises(RuleViolation, match="more than 20,000 rows") as exc:
        bulk.parse(csv_text(*rows, header="email,full_name"))
    assert exc.value.code == "too_many_rows"
    assert len(bulk.parse(csv_text(*rows[:-1], header="email,full_name"))) == bulk.MAX_ROWS


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("email,full_name\nm@swift.example,Jürgen Müller\n".encode("latin-1"), "not UTF-8"),
        ("email,full_name\n".encode("utf-16"), "UTF-16"),
        (b"email,full_name\n\x00\x01\x02", "binary"),
        (b"x" * (bulk.MAX_BYTES + 1), "larger than 5 MB"),
    ],
)
def test_a_file_that_is_not_utf8_csv_text_is_refused(data, message):
    with pytest.raises(RuleViolation, match=message):
        bulk.decode(data)


def test_utf8_with_bom_semicolons_blank_lines_and_quoted_newlines_are_read():
    data = (
        "\ufeffEmail;Full name;Services\r\n"
        "\r\n"
        "jurgen@swift.example;Jürgen Müller;voice|video\r\n"
        ";;\r\n"
        'ann@swift.example;"Ann\nLee";\r\n'
        "bo@swift.example;Bo;\r\n"
    ).encode()
    rows = bulk.parse(bulk.decode(data))
    # As a spreadsheet numbers them: header 1, blank 2 and 4, the quoted newline stays in row 5.
    assert [(r.row, r.email) for r in rows] == [
        (3, "jurgen@swift.example"),
        (5, "ann@swift.example"),
        (6, "bo@swift.example"),
    ]
    assert rows[0].full_name == "Jürgen Müller"
    assert rows[0].service_list == ["voice", "video"]
    assert rows[1].service_list == ["voice"]  # the default
    assert rows[1].role_value == Role.EMPLOYEE


def test_a_file_without_data_rows_is_refused():
    with pytest.raises(RuleViolation, match="no employees"):
        bulk.parse("email,full_name\n\n")
    with pytest.raises(RuleViolation, match="empty"):
        bulk.parse("\n\n")


# Any text a cell can hold: no NUL (the upload refuses binary), no lone surrogates.
cells = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30)


@given(st.text(max_size=300))
def test_any_text_is_read_or_refused_with_a_rule_violation(text):
    try:
        rows = bulk.parse(text)
    except RuleViolation as exc:
        assert exc.field == "file" and exc.message
    else:
        assert rows and all(row.row >= 2 for row in rows)


@given(st.lists(st.tuples(cells, cells), min_size=1, max_size=6))
def test_what_the_export_writes_the_import_reads_back(rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["email", "full_name"])
    writer.writerows([csvfile.safe_cell(c) for c in row] for row in rows)
    kept = [row for row in rows if any(csvfile.safe_cell(c).strip() for c in row)]
    try:
        read = bulk.parse(buffer.getvalue())
    except RuleViolation as exc:
        assert not kept and exc.code == "no_rows"
        return
    assert [(r.email, r.full_name) for r in read] == [(a.strip(), b.strip()) for a, b in kept]
    assert all(r.problem == "" for r in read)


@given(cells)
def test_no_exported_cell_starts_a_formula(text):
    cell = csvfile.safe_cell(text)
    assert not cell.startswith(("=", "-", "@", "\t", "\r"))
    assert not cell.startswith("+") or csvfile.E164_CELL.match(cell)


# --- The preview ----------------------------------------------------------------------


def test_the_preview_lists_each_rows_problem_with_its_row_number_and_creates_nothing(
    admin_actor, admin, enterprise, numbers, employee
):
    make_identity(employee, tn="+4930123410")
    elsewhere = EnterpriseFactory()
    give_numbers(elsewhere, "+4930555000", "+4930555009")
    UserFactory(enterprise=elsewhere, email="elsewhere@other.example")
    text = csv_text(
        "new.one@swift.example,New One,,voice,,+4930123420,,new.one",  # row 2: fine
        "elsewhere@other.example,Elsewhere,,,,,,",  # 3: an account in another enterprise
        "twice@swift.example,Twice,,,,,,",  # 4: fine
        "TWICE@swift.example,Twice Again,,,,,,",  # 5: repeats row 4
        "far@swift.example,Far,,,,+4930999999,,",  # 6: outside the blocks
        "taken@swift.example,Taken,,,,+4930123410,,",  # 7: in use
        "sim@swift.example,Sim,,,,,262019999999999,",  # 8: not in the pool
        "xr@swift.example,Xr,,voice;xr,,,,",  # 9: not in the contract
        "theirs@swift.example,Theirs,,,,+4930555001,,",  # 10: another enterprise's
        "bad,Bad,boss,,A name far too long,0301234,,Not Valid!",  # 11: five faults
    )
    before = domain_counts()
    job = preview(admin_actor, enterprise, text)

    problems = problems_by_row(job)
    assert sorted(problems) == [3, 5, 6, 7, 8, 9, 10, 11]
    assert (
        problems[3]
        == "elsewhere@other.example cannot be used for an account here; use another address."
    )
    assert problems[5] == "twice@swift.example is also on row 4."
    assert problems[6] == "+4930999999 is not in Swift Delivery's number blocks."
    assert problems[7] == "+4930123410 is already in use."
    assert problems[8] == "IMSI 262019999999999 is not in Swift Delivery's line pool."
    assert problems[9] == "The contract does not include XR (AR/VR calls)."
    assert problems[10] == "+4930555001 is not in Swift Delivery's number blocks."
    for expected in (
        "not an email address",
        "Unknown role 'boss'",
        "at most 15",
        "international form",
        "SIP user name",
    ):
        assert expected in problems[11]
    assert (job.state, job.total_rows, job.created_by) == (ImportJob.State.PREVIEWED, 10, admin)
    assert domain_counts() == before
    event = AuditEvent.objects.get(action="import.previewed")
    assert (event.actor_user, event.changes["rows_with_problems"]) == (admin, [None, 8])


def test_the_preview_reports_where_the_quota_and_the_free_numbers_run_out(admin_actor, enterprise):
    give_numbers(enterprise, "+4930123400", "+4930123402")
    enterprise.contract.identity_quota = 3
    enterprise.contract.save()
    text = csv_text(*(f"p{n}@swift.example,P {n},,,,,," for n in range(1, 5)))
    problems = problems_by_row(preview(admin_actor, enterprise, text))
    assert list(problems) == [5]
    assert "quota runs out from this row on" in problems[5]
    assert "its quota is 3, and the file adds 4" in problems[5]
    assert "No free number is left for this row and the 0 rows below it" in problems[5]


def test_the_preview_foresees_that_an_earlier_row_without_a_tn_takes_a_chosen_number(
    admin_actor, enterprise, numbers
):
    text = csv_text(
        "first@swift.example,First,,,,,,",  # takes +4930123400, the next free number
        "second@swift.example,Second,,,,+4930123400,,",
        "third@swift.example,Third,,,,+4930123401,,",  # fine: row 2 skips it
    )
    problems = problems_by_row(preview(admin_actor, enterprise, text))
    assert list(problems) == [3]
    assert "row 2 above, which names no TN, takes it" in problems[3]


def test_the_preview_checks_sim_lines_and_aliases_against_the_enterprise(
    admin_actor, enterprise, numbers, employee
):
    used, free = give_line(enterprise, 1), give_line(enterprise, 2)
    theirs = give_line(EnterpriseFactory(), 3)
    make_identity(employee, imsi=used.imsi, alias="rob")
    text = csv_text(
        f"a@swift.example,A,,,,,{used.imsi},",
        f"b@swift.example,B,,,,,{free.imsi},rob",
        f"c@swift.example,C,,,,,{free.imsi},c",
        f"d@swift.example,D,,,,,{theirs.imsi},c",
    )
    problems = problems_by_row(preview(admin_actor, enterprise, text))
    assert problems == {
        2: f"The SIM line {used.imsi} is already in use.",
        3: "sip:rob@swift.example is taken.",
        4: f"The IMSI {free.imsi} is also on row 3.",
        5: f"IMSI {theirs.imsi} is not in Swift Delivery's line pool. The alias c is also on row 4.",
    }


def test_a_number_in_quarantine_is_a_problem_until_its_quarantine_is_over(
    admin_actor, enterprise, numbers
):
    TelephoneNumber.objects.filter(e164="+4930123405").update(
        status="quarantined", quarantined_until=timezone.now() + timedelta(days=3)
    )
    TelephoneNumber.objects.filter(e164="+4930123406").update(
        status="quarantined", quarantined_until=timezone.now() - timedelta(days=1)
    )
    text = csv_text("a@swift.example,A,,,,+4930123405,,", "b@swift.example,B,,,,+4930123406,,")
    assert list(problems_by_row(preview(admin_actor, enterprise, text))) == [2]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: Enterprise.objects.filter(pk=e.pk).update(status="suspended"), "suspended"),
        (
            lambda e: (
                type(e.contract)
                .objects.filter(pk=e.contract.pk)
                .update(may_create_identities=False)
            ),
            "does not allow",
        ),
    ],
)
def test_no_preview_is_kept_when_the_enterprise_may_not_create_identities(
    admin_actor, admin, numbers, change, message
):
    change(admin.enterprise)
    enterprise = Enterprise.objects.get(pk=admin.enterprise.pk)
    with pytest.raises(RuleViolation, match=message):
        preview(Actor(user=User.objects.get(pk=admin.pk)), enterprise, five_rows())
    assert not ImportJob.objects.exists()


def test_the_preview_takes_the_same_number_of_queries_for_many_rows(
    admin_actor, enterprise, numbers
):
    def queries(rows):
        text = csv_text(
            *(f"p{n}@swift.example,P {n},,,,+49301234{n:02d},,p{n}" for n in range(rows)),
            *(f"q{n}@swift.example,Q {n},,,,,," for n in range(rows)),
        )
        with CaptureQueriesContext(connection) as captured:
            preview(admin_actor, enterprise, text)
        return len(captured)

    assert queries(2) == queries(40)


def test_the_stored_problem_list_is_capped_and_tells_how_many_were_left_out(
    admin_actor, enterprise, numbers, monkeypatch
):
    monkeypatch.setattr(bulk, "MAX_PROBLEMS", 3)
    text = csv_text(*(f"bad{n},B,,,,,," for n in range(5)))
    job = preview(admin_actor, enterprise, text)
    assert [p["row"] for p in job.problems] == [2, 3, 4, None]
    assert "2 more rows with problems" in job.problems[-1]["message"]
    assert bulk.problem_count(job) == 5


# --- Starting and running -------------------------------------------------------------


def test_an_import_with_problems_cannot_start(
    admin_actor, enterprise, numbers, django_capture_on_commit_callbacks
):
    job = preview(
        admin_actor, enterprise, csv_text("ada@swift.example,Ada,,xr,,,,")
    )  # XR: not allowed
    with (
        django_capture_on_commit_callbacks() as callbacks,
        pytest.raises(RuleViolation, match="problems"),
    ):
        bulk.import_start(actor=admin_actor, job=job)
    job.refresh_from_db()
    assert job.state == ImportJob.State.PREVIEWED
    assert callbacks == []


def test_an_import_starts_once_only(
    admin_actor, enterprise, numbers, django_capture_on_commit_callbacks
):
    job = run(
        admin_actor,
        preview(admin_actor, enterprise, five_rows()),
        django_capture_on_commit_callbacks,
    )
    with pytest.raises(RuleViolation, match="done already"):
        bulk.import_start(actor=admin_actor, job=job)
    assert AuditEvent.objects.filter(action="import.started").count() == 1


def test_a_clean_import_creates_every_employee_with_an_identity_and_syncs_them(
    admin_actor, enterprise, numbers, django_capture_on_commit_callbacks
):
    line = give_line(enterprise, 4)
    text = csv_text(
        "rob.smith@swift.example,Rob Smith,,voice;video,Rob (Ops),+4930123442,,rob.smith",
        f"Jane.Doe@Swift.example,Jane Doe,helpdesk,,,,{line.imsi},",
        "ali@swift.example,Ali Khan-Al-Rashid the Third,admin,messaging|voice,,,,",
    )
    job = preview(admin_actor, enterprise, text)
    assert job.problems == []
    job = run(admin_actor, job, django_capture_on_commit_callbacks)

    assert (job.state, job.next_row, job.created_count, job.failed_count) == ("done", 3, 3, 0)
    assert job.started_at and job.finished_at
    rob, jane, ali = (
        Identity.objects.select_related("owner", "number", "line", "sync").get(owner__email=e)
        for e in ("rob.smith@swift.example", "jane.doe@swift.example", "ali@swift.example")
    )
    assert (rob.tn, rob.alias, rob.display_name, rob.services) == (
        "+4930123442",
        "rob.smith",
        "Rob (Ops)",
        ["video", "voice"],
    )
    assert (jane.owner.role, jane.line, jane.services) == (Role.HELPDESK, line, ["voice"])
    assert (jane.tn, ali.tn, ali.services) == ("+4930123400", "+4930123401", ["messaging", "voice"])
    assert (ali.owner.role, ali.display_name) == (Role.ADMIN, "Ali Khan-Al-Ras")
    for identity in (rob, jane, ali):
        assert identity.owner.status == User.Status.INVITED
        assert identity.sync.state == IdentitySync.State.SYNCED
        assert SimulatedSubscription.objects.filter(msisdn=identity.tn).exists()
    assert sorted(m.to[0] for m in mail.outbox) == sorted(i.owner.email for i in (rob, jane, ali))
    # The rows' audit names the admin who uploaded the file.
    invited = AuditEvent.objects.filter(action="user.invited")
    assert set(invited.values_list("actor_user", flat=True)) == {job.created_by_id}
    finished = AuditEvent.objects.get(action="import.finished")
    assert finished.changes["created"] == [None, 3]


def test_invitations_can_be_left_for_later(
    admin_actor, enterprise, numbers, django_capture_on_commit_callbacks
):
    job = preview(admin_actor, enterprise, five_rows(), send_invitations=False)
    job = run(admin_actor, job, django_capture_on_commit_callbacks)
    assert job.created_count == 5
    assert mail.outbox == []


def test_a_row_failing_at_run_time_is_recorded_and_the_others_land(
    admin_actor, enterprise, numbers, employee, django_capture_on_commit_callbacks
):
    text = csv_text(
        "a@swift.example,A,,,,+4930123450,,",
        "b@swift.example,B,,,,+4930123451,,",
        "c@swift.example,C,,,,+4930123452,,",
    )
    job = preview(admin_actor, enterprise, text)
    make_identity(employee, tn="+4930123451")  # someone takes it between preview and start
    job = run(admin_actor, job, django_capture_on_commit_callbacks)
    assert (job.state, job.created_count, job.failed_count) == ("done", 2, 1)
    assert job.problems == [{"row": 3, "message": "+4930123451 is already in use."}]
    emails = ["a@swift.example", "b@swift.example", "c@swift.example"]
    created = User.objects.filter(email__in=emails).values_list("email", flat=True)
    assert sorted(created) == ["a@swift.example", "c@swift.example"]


@pytest.fixture
def onboard_spy(monkeypatch):
    """Records, at each chunk, the job's committed progress and the chunk's emails;
    can fail a chosen call."""
    real = onboarding.onboard
    spy = {"seen": [], "emails": [], "fail_at": None, "error": None}

    def onboard(**kwargs):
        spy["seen"].append(ImportJob.objects.get().next_row)
        spy["emails"].append([joiner.email for joiner in kwargs["joiners"]])
        if len(spy["seen"]) == spy["fail_at"]:
            raise spy["error"]
        return real(**kwargs)

    monkeypatch.setattr(onboarding, "onboard", onboard)
    monkeypatch.setattr(bulk, "CHUNK_SIZE", 2)
    return spy


def started(actor, enterprise, text=None) -> ImportJob:
    job = preview(actor, enterprise, text or five_rows())
    bulk.import_start(actor=actor, job=job)  # its task never runs: nothing commits
    return job


def test_each_chunk_advances_the_progress_in_its_own_transaction(
    admin_actor, enterprise, numbers, onboard_spy
):
    job = started(admin_actor, enterprise)
    bulk.run_import_job(job.pk)
    assert onboard_spy["seen"] == [0, 2, 4]
    assert onboard_spy["emails"] == [
        ["p1@swift.example", "p2@swift.example"],
        ["p3@swift.example", "p4@swift.example"],
        ["p5@swift.example"],
    ]
    job.refresh_from_db()
    assert (job.state, job.next_row, job.created_count) == ("done", 5, 5)


def test_an_error_rolls_back_its_chunk_only_and_stops_the_job(
    admin_actor, enterprise, numbers, onboard_spy
):
    job = started(admin_actor, enterprise)
    onboard_spy.update(fail_at=2, error=RuntimeError("database went away"))
    with pytest.raises(RuntimeError):
        bulk.run_import_job(job.pk)
    job.refresh_from_db()
    # Rows 1–2 (the first chunk) stay; row 3 went back with its chunk.
    assert (job.state, job.next_row, job.created_count) == ("failed", 2, 2)
    assert list(User.objects.filter(email__startswith="p").values_list("email", flat=True)) == [
        "p1@swift.example",
        "p2@swift.example",
    ]
    assert (
        job.problems[-1]["message"]
        == "The import stopped: an unexpected error occurred. 2 of 5 rows were applied, up to row 3 of the file."
    )


class WorkerKilled(BaseException):
    """What a worker lost mid-task looks like to the code: nothing more runs."""


def test_a_redelivered_task_resumes_after_the_last_committed_chunk(
    admin_actor, enterprise, numbers, onboard_spy
):
    job = started(admin_actor, enterprise)
    onboard_spy.update(fail_at=2, error=WorkerKilled())
    with pytest.raises(WorkerKilled):
        bulk.run_import_job(job.pk)
    job.refresh_from_db()
    assert (job.state, job.next_row, job.created_count) == ("running", 2, 2)

    onboard_spy.update(fail_at=None)
    bulk.run_import_job(job.pk)  # the broker delivers the task again
    job.refresh_from_db()
    assert (job.state, job.next_row, job.created_count, job.failed_count) == ("done", 5, 5, 0)
    assert onboard_spy["seen"] == [0, 2, 2, 4]  # rows 3–5 once each after the loss
    assert User.objects.filter(email__startswith="p").count() == 5

    bulk.run_import_job(job.pk)  # and once more, late: nothing happens
    assert len(onboard_spy["seen"]) == 4
    assert AuditEvent.objects.filter(action="import.finished").count() == 1


def test_a_delivery_running_alongside_another_goes_on_after_the_rows_the_other_applied(
    admin_actor, enterprise, numbers, onboard_spy, monkeypatch
):
    job = started(admin_actor, enterprise)
    real_locked, calls = bulk.lock_job, []

    def locked(job_id):
        calls.append(job_id)
        if len(calls) == 2:  # before our second chunk, the other delivery commits rows 3–4
            ImportJob.objects.filter(pk=job_id).update(next_row=4)
        return real_locked(job_id)

    monkeypatch.setattr(bulk, "lock_job", locked)
    bulk.run_import_job(job.pk)
    assert onboard_spy["seen"] == [0, 4]
    emails = set(User.objects.filter(email__startswith="p").values_list("email", flat=True))
    assert emails == {"p1@swift.example", "p2@swift.example", "p5@swift.example"}
    job.refresh_from_db()
    assert (job.state, job.next_row) == ("done", 5)


def test_a_job_resumes_from_its_next_row(admin_actor, enterprise, numbers):
    job = started(admin_actor, enterprise)
    ImportJob.objects.filter(pk=job.pk).update(state="running", next_row=3)
    bulk.run_import_job(job.pk)
    emails = set(User.objects.filter(email__startswith="p").values_list("email", flat=True))
    assert emails == {"p4@swift.example", "p5@swift.example"}


def test_an_import_goes_no_further_once_its_creator_has_left(admin_actor, enterprise, numbers):
    job = started(admin_actor, enterprise)
    other_admin = UserFactory(enterprise=enterprise, role=Role.ADMIN)
    account_services.user_offboard(actor=Actor(user=other_admin), user=admin_actor.user)
    bulk.run_import_job(job.pk)
    job.refresh_from_db()
    assert (job.state, job.created_count) == ("failed", 0)
    assert "no longer an active admin" in job.problems[-1]["message"]


# --- Pages ----------------------------------------------------------------------------


def upload(client, text, name="people.csv", **extra):
    file = SimpleUploadedFile(name, text.encode(), content_type="text/csv")
    return client.post(reverse("telephony:import"), {"file": file, **extra})


def test_upload_preview_start_and_progress_through_the_pages(
    admin_client, enterprise, numbers, django_capture_on_commit_callbacks
):
    page = admin_client.get(reverse("telephony:import")).content.decode()
    assert "full_name" in page and 'name="send_invitations"' in page and "checked" in page

    response = upload(admin_client, five_rows(), send_invitations="on")
    job = ImportJob.objects.get()
    assert response.url == reverse("telephony:import_preview", kwargs={"pk": job.pk})
    page = admin_client.get(response.url).content.decode()
    assert "Every row can be imported" in page
    assert reverse("telephony:import_start", kwargs={"pk": job.pk}) in page

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("telephony:import_start", kwargs={"pk": job.pk}))
    assert response.url == reverse("telephony:import_job", kwargs={"pk": job.pk})
    partial = admin_client.get(reverse("telephony:import_progress", kwargs={"pk": job.pk}))
    html = partial.content.decode()
    assert "<html" not in html
    assert "Done" in html and "5 of 5 rows" in html and 'value="5"' in html
    assert "hx-trigger" not in html  # polling stops
    assert User.objects.filter(email__startswith="p").count() == 5
    assert len(mail.outbox) == 5
    assert "5 of 5 rows" in admin_client.get(response.url).content.decode()


def test_the_progress_panel_polls_while_the_job_runs(
    admin_actor, admin_client, enterprise, numbers
):
    job = started(admin_actor, enterprise)
    ImportJob.objects.filter(pk=job.pk).update(state="running", next_row=2)
    url = reverse("telephony:import_progress", kwargs={"pk": job.pk})
    html = admin_client.get(url).content.decode()
    assert f'hx-get="{url}"' in html and 'hx-trigger="every 1s"' in html
    assert 'hx-swap="outerHTML"' in html
    assert '<progress max="5" value="2"' in html


def test_an_unreadable_file_is_shown_as_a_form_error_and_keeps_nothing(admin_client, numbers):
    response = upload(admin_client, "email,full_name,department\na@b.example,A,Sales\n")
    assert response.status_code == 200
    assert "Unknown column department" in response.content.decode()
    response = admin_client.post(
        reverse("telephony:import"),
        {"file": SimpleUploadedFile("x.csv", "email,full_name\nü,Ü\n".encode("latin-1"))},
    )
    assert "not UTF-8" in response.content.decode()
    assert not ImportJob.objects.exists()


def test_the_preview_page_lists_the_problems_and_offers_no_start(admin_client, numbers):
    UserFactory(enterprise=EnterpriseFactory(), email="elsewhere@other.example")
    upload(
        admin_client, csv_text("elsewhere@other.example,E,,,,,,", "new@swift.example,New,,xr,,,,")
    )
    job = ImportJob.objects.get()
    page = admin_client.get(reverse("telephony:import_preview", kwargs={"pk": job.pk}))
    html = page.content.decode()
    assert "elsewhere@other.example cannot be used for an account here" in html
    assert "<td>3</td><td>The contract does not include XR" in html
    assert reverse("telephony:import_start", kwargs={"pk": job.pk}) not in html
    response = admin_client.post(reverse("telephony:import_start", kwargs={"pk": job.pk}))
    assert response.url == reverse("telephony:import_preview", kwargs={"pk": job.pk})
    job.refresh_from_db()
    assert job.state == ImportJob.State.PREVIEWED


def job_urls(job):
    return [
        reverse(f"telephony:{name}", kwargs={"pk": job.pk})
        for name in ("import_preview", "import_job", "import_progress")
    ]


def test_helpdesk_may_export_but_not_import(helpdesk_client, admin_actor, enterprise, numbers):
    job = started(admin_actor, enterprise)
    for url in [reverse("telephony:import"), *job_urls(job)]:
        assert helpdesk_client.get(url).status_code == 403
    start = reverse("telephony:import_start", kwargs={"pk": job.pk})
    assert helpdesk_client.post(start).status_code == 403
    assert helpdesk_client.get(reverse("telephony:export")).status_code == 200


def test_employees_may_neither_import_nor_export(employee_client, admin_actor, enterprise, numbers):
    job = started(admin_actor, enterprise)
    for url in [reverse("telephony:import"), reverse("telephony:export"), *job_urls(job)]:
        assert employee_client.get(url).status_code == 403


def test_another_enterprises_import_is_not_found(admin_client, other_enterprise):
    give_numbers(other_enterprise, "+4930777000", "+4930777009")
    other_admin = UserFactory(enterprise=other_enterprise, role=Role.ADMIN)
    job = preview(Actor(user=other_admin), other_enterprise, five_rows())
    for url in job_urls(job):
        assert_other_enterprise_gets_404(admin_client, url, methods=("get",))
    start = reverse("telephony:import_start", kwargs={"pk": job.pk})
    assert_other_enterprise_gets_404(admin_client, start)
    job.refresh_from_db()
    assert job.state == ImportJob.State.PREVIEWED
    listing = admin_client.get(reverse("telephony:import")).content.decode()
    assert "people.csv" not in listing


# --- The export -----------------------------------------------------------------------


def exported(client) -> list[list[str]]:
    response = client.get(reverse("telephony:export"))
    assert response.status_code == 200
    assert response.streaming
    body = b"".join(response.streaming_content).decode()
    assert body.startswith("\ufeff")
    return list(csv.reader(io.StringIO(body.removeprefix("\ufeff"))))


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("+1+cmd", "'+1+cmd"),
        ("+4930123400", "+4930123400"),
        ("Rob Smith", "Rob Smith"),
        (None, ""),
    ],
)
def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_quoted(value, cell):
    assert csvfile.safe_cell(value) == cell


def test_the_export_streams_one_line_per_live_identity_and_per_member_without_one(
    admin_client, admin, enterprise, numbers, employee
):
    identity = make_identity(employee, alias="rob", services_=("voice", "video"))
    removed = make_identity(employee)
    services.identity_remove(actor=Actor.system(), identity=removed)
    UserFactory(
        enterprise=enterprise, email="mallory@swift.example", full_name="=cmd|' /C calc'!A0"
    )
    gone = UserFactory(enterprise=enterprise, email="gone@swift.example")
    make_identity(gone)
    services.employee_offboard(actor=Actor(user=admin), user=gone)
    UserFactory(enterprise=EnterpriseFactory(), email="stranger@other.example")

    response = admin_client.get(reverse("telephony:export"))
    today = timezone.localdate().isoformat()
    assert response["Content-Disposition"] == f'attachment; filename="swift-employees-{today}.csv"'
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    header, *rows = exported(admin_client)
    assert header == list(bulk.EXPORT_COLUMNS)
    by_email = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert list(by_email) == ["ada@swift.example", "mallory@swift.example", "rob@swift.example"]
    assert by_email["rob@swift.example"] == {
        "email": "rob@swift.example",
        "full_name": "Rob Smith",
        "role": "employee",
        "account_status": "active",
        "tn": identity.tn,
        "imsi": "",
        "services": "video;voice",
        "display_name": "Rob Smith",
        "alias": "rob",
        "identity_status": "active",
        "sync_state": "pending",
        "synced_at": "",
    }
    assert by_email["mallory@swift.example"]["full_name"] == "'=cmd|' /C calc'!A0"
    assert by_email["ada@swift.example"]["tn"] == ""
    assert AuditEvent.objects.filter(action="employees.exported", actor_user=admin).count() == 2


def test_the_export_takes_the_same_number_of_queries_for_any_number_of_employees(
    admin_client, enterprise, numbers, django_assert_max_num_queries
):
    def queries():
        with CaptureQueriesContext(connection) as captured:
            exported(admin_client)
        return len(captured)

    few = queries()
    for _ in range(30):
        make_identity(UserFactory(enterprise=enterprise))
    with django_assert_max_num_queries(few):
        rows = exported(admin_client)
    assert len(rows) == 32  # header, the admin, 30 employees


def test_an_exported_file_imports_into_a_fresh_enterprise(
    admin_client, enterprise, numbers, employee, django_capture_on_commit_callbacks
):
    line = give_line(enterprise, 1)
    with django_capture_on_commit_callbacks(execute=True):
        make_identity(
            employee, tn="+4930123420", imsi=line.imsi, alias="rob", display_name="Rob (Ops)"
        )
    UserFactory(
        enterprise=enterprise, email="-dash@swift.example", full_name="-Dash", role=Role.HELPDESK
    )
    zed = UserFactory(enterprise=enterprise, email="zed@swift.example", full_name="@Zed")
    make_identity(zed, tn="+4930123450", services_=("voice", "messaging"))
    response = admin_client.get(reverse("telephony:export"))
    exported_text = b"".join(response.streaming_content).decode()

    # The new enterprise has numbers, lines and addresses of its own: edit the file.
    fresh = EnterpriseFactory(name="Fresh", slug="fresh", sip_domain="fresh.example")
    fresh_admin = UserFactory(enterprise=fresh, role=Role.ADMIN, email="boss@fresh.example")
    give_numbers(fresh, "+4930124400", "+4930124499")
    give_line(fresh, 2)
    edited = (
        exported_text.replace("@swift.example", "@fresh.example")
        .replace("+49301234", "+49301244")
        .replace(line.imsi, "262010000000002")
    )
    actor = Actor(user=fresh_admin)
    job = preview(actor, fresh, bulk.decode(edited.encode()))
    assert job.problems == []
    job = run(actor, job, django_capture_on_commit_callbacks)
    assert (job.state, job.created_count) == ("done", 4)

    sign_in_verified(admin_client, fresh_admin)
    again = b"".join(admin_client.get(reverse("telephony:export")).streaming_content).decode()

    def importable(text):
        """{email: the importable columns} of an export, without the importing admin."""
        header, *rows = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
        return {
            row[0]: {k: v for k, v in zip(header, row, strict=True) if k in bulk.IMPORT_COLUMNS}
            for row in rows
            if row[0] != "boss@fresh.example"
        }

    before, after = importable(edited), importable(again)
    assert after == {
        **before,
        # Members exported without an identity come back with one: the import gives
        # every row an identity, with the next free number and the default service.
        "'-dash@fresh.example": {
            **before["'-dash@fresh.example"],
            "tn": "+4930124400",
            "services": "voice",
            "display_name": "'-Dash",
        },
        "ada@fresh.example": {
            **before["ada@fresh.example"],
            "tn": "+4930124401",
            "services": "voice",
            "display_name": "Ada Admin",
        },
    }
    assert after["zed@fresh.example"]["full_name"] == "'@Zed"  # still guarded
    assert after["rob@fresh.example"]["imsi"] == "262010000000002"
    assert User.objects.get(email="zed@fresh.example").full_name == "@Zed"
    dash = User.objects.get(email="-dash@fresh.example")
    assert (dash.full_name, dash.role) == ("-Dash", Role.HELPDESK)


@pytest.mark.worker
def test_a_real_worker_runs_a_started_import(celery_worker, admin_actor, enterprise, numbers):
    job = preview(admin_actor, enterprise, five_rows(), send_invitations=False)
    bulk.import_start(actor=admin_actor, job=job)  # commits: the task goes to the broker

    def finished():
        job.refresh_from_db()
        return job.state in ("done", "failed")

    wait_for(finished, timeout=60)
    assert (job.state, job.created_count, job.next_row) == ("done", 5, 5)
    assert IdentitySync.objects.filter(enterprise=enterprise).count() == 5


@pytest.mark.browser
def test_the_progress_bar_follows_a_running_import_in_the_browser(
    page, live_server, client, admin, admin_actor, enterprise, numbers, monkeypatch
):
    from django.conf import settings

    from telephony import tasks

    monkeypatch.setattr(tasks.run_import, "delay", lambda job_id: None)  # a worker that is late
    job = started(admin_actor, enterprise)
    sign_in_verified(client, admin)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}]
    )
    page.goto(reverse("telephony:import_job", kwargs={"pk": job.pk}))
    page.get_by_text("0 of 5 rows done").wait_for()
    assert page.get_by_text("waiting for a worker").is_visible()

    ImportJob.objects.filter(pk=job.pk).update(state="running", next_row=2)
    page.get_by_text("2 of 5 rows done (40%)").wait_for()
    assert page.locator("progress").get_attribute("value") == "2"

    bulk.run_import_job(job.pk)
    page.get_by_text("The import is done").wait_for()
    assert page.locator("#import-progress[hx-trigger]").count() == 0  # it stopped polling


def test_a_stalled_import_is_queued_again_by_the_sweep(enterprise, admin, monkeypatch):
    job = ImportJob.objects.create(
        enterprise=enterprise, created_by=admin, filename="x.csv", csv_text="email,full_name\n",
        state=ImportJob.State.RUNNING,
    )  # fmt: skip
    queued = []
    monkeypatch.setattr("telephony.tasks.run_import.delay", queued.append)
    assert bulk.sweep_stalled_imports() == 0  # it just moved
    ImportJob.objects.filter(pk=job.pk).update(updated_at=timezone.now() - timedelta(minutes=11))
    assert bulk.sweep_stalled_imports() == 1 and queued == [job.pk]
    assert bulk.sweep_stalled_imports() == 0  # not again at once


def test_an_existing_member_gets_an_identity_from_the_import(
    admin_actor, enterprise, numbers, employee
):
    job = preview(
        admin_actor, enterprise, csv_text(f"{employee.email},{employee.full_name},,voice,,,,")
    )
    assert job.problems == []
    bulk.import_start(actor=admin_actor, job=job)
    bulk.run_import_job(job.pk)
    assert employee.identities.count() == 1


# --- Going ahead with the valid rows ---------------------------------------------------


def two_bad_of_five(enterprise):
    line = give_line(enterprise, 7)
    return csv_text(
        "ada@swift.example,Ada Lovelace,,voice;video,,+4930123450,,",
        "not-an-address,Bad Email,,,,,,",
        f"grace@swift.example,Grace Hopper,admin,,,,{line.imsi},",
        "xr@swift.example,Wants XR,,xr,,,,",
        "alan@swift.example,Alan Turing,,,,,,",
    )


def test_an_import_can_go_ahead_with_its_valid_rows_and_leaves_out_the_others(
    admin_actor, enterprise, numbers, django_capture_on_commit_callbacks
):
    job = preview(admin_actor, enterprise, two_bad_of_five(enterprise))
    assert job.problem_rows == [3, 5]
    with pytest.raises(RuleViolation, match="import the valid rows only"):
        bulk.import_start(actor=admin_actor, job=job)

    with django_capture_on_commit_callbacks(execute=True):
        bulk.import_start(actor=admin_actor, job=job, leave_out_problems=True)
    job.refresh_from_db()
    assert (job.state, job.next_row, job.created_count, job.failed_count) == ("done", 5, 3, 0)
    emails = set(User.objects.filter(enterprise=enterprise).values_list("email", flat=True))
    assert {"ada@swift.example", "grace@swift.example", "alan@swift.example"} <= emails
    assert not User.objects.filter(email__in=["not-an-address", "xr@swift.example"]).exists()
    started_event = AuditEvent.objects.get(action="import.started")
    assert started_event.changes["rows_left_out"] == [None, 2]


def test_an_import_whose_every_row_has_a_problem_cannot_go_ahead(admin_actor, enterprise, numbers):
    job = preview(admin_actor, enterprise, csv_text("nope,No,,,,,,", "xr@swift.example,X,,xr,,,,"))
    with pytest.raises(RuleViolation, match="Every row"):
        bulk.import_start(actor=admin_actor, job=job, leave_out_problems=True)
    job.refresh_from_db()
    assert job.state == ImportJob.State.PREVIEWED


def test_the_rows_with_problems_download_as_a_file_to_correct_and_upload_again(
    admin_actor, enterprise, numbers
):
    job = preview(admin_actor, enterprise, two_bad_of_five(enterprise))
    rows = list(csv.reader(io.StringIO("".join(bulk.problem_rows_csv(job)).lstrip("\ufeff"))))
    assert rows[0] == [*HEADER.split(","), "problem"]
    assert [row[:2] for row in rows[1:]] == [
        ["not-an-address", "Bad Email"],
        ["xr@swift.example", "Wants XR"],
    ]
    assert "not an email address" in rows[1][-1] and "XR" in rows[2][-1]

    # Corrected in a spreadsheet and uploaded again: the problem column is ignored.
    rows[1][0], rows[2][3] = "bad.email@swift.example", "voice"
    corrected = "\n".join(",".join(row) for row in rows) + "\n"
    again = preview(admin_actor, enterprise, corrected)
    assert (again.total_rows, again.problems, again.problem_rows) == (2, [], [])


def test_rows_that_fail_while_the_import_runs_are_in_the_file_to_correct_too(
    admin_actor, enterprise, numbers, django_capture_on_commit_callbacks
):
    job = preview(admin_actor, enterprise, five_rows())
    UserFactory(enterprise=EnterpriseFactory(), email="p2@swift.example")  # made meanwhile
    run(admin_actor, job, django_capture_on_commit_callbacks)
    job.refresh_from_db()
    assert job.failed_count == 1
    rows = list(csv.reader(io.StringIO("".join(bulk.problem_rows_csv(job)).lstrip("\ufeff"))))
    assert [row[0] for row in rows[1:]] == ["p2@swift.example"]


def test_the_preview_shows_what_each_valid_row_creates(admin_actor, enterprise, numbers):
    job = preview(admin_actor, enterprise, two_bad_of_five(enterprise))
    plan = {planned.row: planned for planned in bulk.import_plan(job)}
    assert sorted(plan) == [2, 4, 6]
    ada, grace, alan = plan[2], plan[4], plan[6]
    assert (ada.tn, ada.next_free, ada.services) == ("+4930123450", False, ["Voice", "Video"])
    assert (grace.role, grace.imsi, grace.next_free) == (
        "Enterprise admin",
        "262010000000007",
        True,
    )
    assert grace.tn == "+4930123400" and alan.tn == "+4930123401"  # next free, in file order
    assert alan.imsi == "" and alan.services == ["Voice"]


def test_the_pages_offer_the_valid_rows_and_the_file_to_correct(
    admin_client, enterprise, numbers, django_capture_on_commit_callbacks
):
    upload(admin_client, two_bad_of_five(enterprise))
    job = ImportJob.objects.get()
    html = admin_client.get(
        reverse("telephony:import_preview", kwargs={"pk": job.pk})
    ).content.decode()
    download = reverse("telephony:import_problem_rows", kwargs={"pk": job.pk})
    assert "2 of 5 rows have problems" in html and download in html
    assert "Import the 3 valid rows" in html and 'name="leave_out_problems"' in html
    assert "What the import creates" in html and "+4930123450" in html and "next free" in html

    got = admin_client.get(download)
    assert got["Content-Disposition"] == 'attachment; filename="people-to-correct.csv"'
    assert b"not-an-address" in b"".join(got.streaming_content)

    start = reverse("telephony:import_start", kwargs={"pk": job.pk})
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(start, {"leave_out_problems": "yes"})
    assert response.url == reverse("telephony:import_job", kwargs={"pk": job.pk})
    html = admin_client.get(response.url).content.decode()
    assert "3 employees with an identity" in html and "2 rows with problems" in html
    assert download in html
