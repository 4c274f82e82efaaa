"""The CSV import of employees with identities, and the CSV export.

An import is previewed first: the whole file is checked against the enterprise's
contract and inventory in a fixed handful of set-based queries, and every row's problem
is listed, without writing a domain row. Once an admin starts it, a worker applies it
chunk by chunk: each chunk is one short transaction that onboards its rows together
(``telephony.identities.onboarding``: a row a rule refuses is recorded and skipped) and
advances the job's ``next_row``. The site never waits on one giant transaction, and a redelivered task
resumes exactly where the last committed chunk ended.

The export writes the same column names, so an exported file can be edited and
imported again; the columns it adds for reading are accepted and ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import islice
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import FilteredRelation, Q, QuerySet
from django.utils import timezone

from accounts import audit
from accounts import services as account_services
from accounts.audit import Actor
from accounts.models import Enterprise, Role, Service, ServiceContract, User
from kernel import csvfile, enqueue
from kernel.errors import RuleViolation
from telephony.identities import onboarding, rules
from telephony.identities.hss import backend as hss_backend
from telephony.inventory import numbers
from telephony.inventory import services as inventory
from telephony.models import Identity, ImportJob, SimLine, TelephoneNumber

_T = TypeVar("_T")

MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 20_000
# No field of an employee or identity is longer; the csv module's own limit (128 KiB a
# field) stays as it is, since it is process-wide, and the file cap bounds it anyway.
MAX_CELL = 254
# Rows applied per transaction: small enough that the contract and number locks an
# onboarding takes are released often, large enough that a 10,000-row file is quick.
CHUNK_SIZE = 100
# Problems kept on the job; beyond this only their number is told.
MAX_PROBLEMS = 1000
# Far more than the import and export columns: a longer header is refused unread.
MAX_COLUMNS = 100
# Values per ``IN (...)`` list: within every database's parameter limit.
LOOKUP_BATCH = 2000
EXPORT_CHUNK = 500

REQUIRED_COLUMNS = ("email", "full_name")
OPTIONAL_COLUMNS = ("role", "services", "display_name", "tn", "imsi", "alias")
IMPORT_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
# What the export adds for reading: accepted and ignored by the import (round trip).
EXPORT_ONLY_COLUMNS = ("account_status", "identity_status", "sync_state", "synced_at")
# The column the file of rows not imported adds (``problem_rows_csv``): ignored too.
PROBLEM_COLUMN = "problem"
EXPORT_COLUMNS = (
    "email",
    "full_name",
    "role",
    "account_status",
    "tn",
    "imsi",
    "services",
    "display_name",
    "alias",
    "identity_status",
    "sync_state",
    "synced_at",
)
COLUMN_HELP = (
    ("email", True, "The employee's email address: their sign-in name. Must be new."),
    ("full_name", True, "The employee's full name."),
    ("role", False, "employee (the default), helpdesk or admin."),
    (
        "services",
        False,
        "MMTEL services separated by ; or | (e.g. voice;video). Empty: voice.",
    ),
    (
        "display_name",
        False,
        f"The caller name the callee sees, at most {Identity.DISPLAY_NAME_MAX} characters. "
        "Empty: the start of the full name.",
    ),
    ("tn", False, "A number of your blocks in international form. Empty: the next free one."),
    ("imsi", False, "The IMSI of a free SIM line of your pool. Empty: no SIM line."),
    ("alias", False, "Optional SIP user name for sip:alias@your domain, e.g. rob.smith."),
)
SERVICE_SEPARATORS = re.compile(r"[;|,]")
DEFAULT_SERVICES = (Service.VOICE.value,)


# --- Reading a file -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One data row of the file, its cells trimmed. ``row`` is its number as a
    spreadsheet shows it (the header is row 1); ``problem`` a fault of its shape."""

    row: int
    email: str = ""
    full_name: str = ""
    role: str = ""
    services: str = ""
    display_name: str = ""
    tn: str = ""
    imsi: str = ""
    alias: str = ""
    problem: str = ""

    @property
    def normalised_email(self) -> str:
        return account_services.normalised_email(self.email)

    @property
    def role_value(self) -> str:
        return self.role.strip().lower() or Role.EMPLOYEE

    @property
    def service_list(self) -> list[str]:
        named = [s.strip().lower() for s in SERVICE_SEPARATORS.split(self.services)]
        return [s for s in named if s] or list(DEFAULT_SERVICES)


def decode(data: bytes) -> str:
    """The text of an uploaded file: UTF-8, with or without a byte order mark."""
    return csvfile.decode(data, max_bytes=MAX_BYTES)


def parse(csv_text: str) -> list[Row]:
    """Every data row of the file, or a RuleViolation for a file that cannot be read:
    too large, too many rows, not CSV, a header without the required columns or with
    unknown ones. A row's own faults are for the preview to report."""
    rows = list(iter_rows(csv_text))
    if not rows:
        raise RuleViolation(
            "The file has a header row but no employees.", code="no_rows", field="file"
        )
    return rows


def iter_rows(csv_text: str, *, start: int = 0) -> Iterator[Row]:
    """The data rows one by one, from the ``start``-th (0-based, blank lines not
    counted), reading the text as a stream."""
    records = csvfile.records(csv_text, max_bytes=MAX_BYTES, max_rows=MAX_ROWS)
    header = next(records, None)
    if header is None:
        raise RuleViolation(
            "The file is empty. Its first row names the columns, e.g. email,full_name.",
            code="no_rows",
            field="file",
        )
    columns = _columns(header[1])
    for seen, (number, record) in enumerate(records, start=1):
        if seen > start:
            yield _row(number, columns, record)


def _column_name(cell: str) -> str:
    return re.sub(r"[\s-]+", "_", csvfile.unguard(cell).strip().lower())


def _columns(header: list[str]) -> list[str]:
    end = len(header)
    while end and not header[end - 1].strip():
        end -= 1
    # Checked before any per-column work: a header of a million cells is an attack on
    # the checks below, not a spreadsheet.
    if end > MAX_COLUMNS:
        raise RuleViolation(
            f"The header row has more than {MAX_COLUMNS} columns. "
            f"The columns are {', '.join(IMPORT_COLUMNS)}.",
            code="bad_header",
            field="file",
        )
    names = [_column_name(cell) for cell in header[:end]]
    while names and not names[-1]:
        names.pop()  # spreadsheets often leave empty cells at the end of a row
    if "" in names:
        raise RuleViolation(
            f"Column {names.index('') + 1} has no name in the header row.",
            code="bad_header",
            field="file",
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise RuleViolation(
            f"The header names {', '.join(repeated)} more than once.",
            code="bad_header",
            field="file",
        )
    known = (*IMPORT_COLUMNS, *EXPORT_ONLY_COLUMNS, PROBLEM_COLUMN)
    unknown = [name[:40] for name in names if name not in known]
    if unknown:
        raise RuleViolation(
            f"Unknown column{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}. "
            f"The columns are {', '.join(IMPORT_COLUMNS)}.",
            code="unknown_column",
            field="file",
        )
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise RuleViolation(
            f"The header row lacks the column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}. The first row names the columns, e.g. email,full_name.",
            code="missing_column",
            field="file",
        )
    return names


def _row(number: int, columns: list[str], record: list[str]) -> Row:
    problems = []
    if any(cell.strip() for cell in record[len(columns) :]):
        problems.append(
            f"The row has {len(record)} cells but the header names {len(columns)} columns."
        )
    values = {
        name: csvfile.unguard(cell).strip()
        for name, cell in zip(columns, record, strict=False)
        if name in IMPORT_COLUMNS
    }
    problems += [
        f"The {name} is longer than {MAX_CELL} characters."
        for name, value in values.items()
        if len(value) > MAX_CELL
    ]
    return Row(row=number, problem=" ".join(problems), **values)


# --- The preview ----------------------------------------------------------------------


class _Preview:
    """The checks of a whole file: first what each row says on its own, then, in a few
    set-based queries, uniqueness, inventory and quota. Problems are kept by
    spreadsheet row, one entry per row with its messages joined."""

    def __init__(self, enterprise: Enterprise, contract: ServiceContract, rows: list[Row]):
        self.enterprise = enterprise
        self.contract = contract
        self.rows = rows
        self.now = timezone.now()
        self.problems: dict[int, list[str]] = {}
        self.tns: dict[int, str] = {}  # row -> E.164 of a readable TN
        self.imsis: dict[int, str] = {}
        self.chosen: dict[str, int] = {}  # E.164 -> the first row naming it
        self.hss = hss_backend()

    def run(self) -> _Preview:
        for row in self.rows:
            self.check_cells(row)
        self.check_accounts()
        self.check_numbers()
        self.check_free_numbers()
        self.check_lines()
        self.check_aliases()
        self.check_quota()
        return self

    def add(self, row: int, message: str) -> None:
        self.problems.setdefault(row, []).append(message)

    def as_list(self) -> list[dict[str, Any]]:
        listed = [
            {"row": row, "message": " ".join(self.problems[row])}
            for row in sorted(self.problems)[:MAX_PROBLEMS]
        ]
        left_out = len(self.problems) - len(listed)
        if left_out:
            listed.append(
                {
                    "row": None,
                    "message": f"… and {left_out:,} more rows with problems, not listed.",
                    "left_out": left_out,
                }
            )
        return listed

    def check_cells(self, row: Row) -> None:
        """What a row says on its own, mirroring the services' rules."""
        say = partial(self.add, row.row)
        if row.problem:
            say(row.problem)
        email = row.normalised_email
        if not email:
            say("The email is missing.")
        else:
            try:
                validate_email(email)
            except ValidationError:
                say(f"{email} is not an email address.")
        if not row.full_name:
            say("The full name is missing.")
        elif len(row.full_name) > 150:
            say("The full name is longer than 150 characters.")
        if row.role_value not in Role.values:
            say(f"Unknown role {row.role!r}: write employee, helpdesk or admin.")
        if not row.services.strip() and not all(map(self.contract.allows, DEFAULT_SERVICES)):
            say("Name the services: the contract does not include the default, Voice.")
        else:
            self._try(say, rules.clean_services, self.contract, row.service_list)
        if row.full_name or row.display_name:
            display_name = row.display_name or rules.default_display_name(row.full_name)
            self._try(say, rules.clean_display_name, display_name)
        if row.tn:
            parsed = self._try(say, numbers.parse_tn, row.tn)
            if parsed:
                self.tns[row.row] = parsed[0]
        if row.imsi:
            imsi = self._try(say, numbers.clean_imsi, row.imsi)
            if imsi:
                self.imsis[row.row] = imsi
        elif self.hss.requires_line:
            say("The operator's HSS needs a SIM line for every identity: give an IMSI.")
        alias = self._try(say, rules.clean_alias_syntax, row.alias)
        if alias and not self.hss.supports_aliases:
            say("The operator's HSS cannot hold alias identities; leave the alias empty.")

    @staticmethod
    def _try(say: Callable[[str], object], check: Callable[..., _T], *args: Any) -> _T | None:
        try:
            return check(*args)
        except RuleViolation as exc:
            say(exc.message)
            return None

    def first_rows(self, values: dict[int, str], what: str) -> dict[str, int]:
        """{value: the first row naming it}, reporting the rows that repeat it."""
        first: dict[str, int] = {}
        for row, value in values.items():
            if not value:
                continue
            if value in first:
                self.add(row, f"{what.format(value)} is also on row {first[value]}.")
            else:
                first[value] = row
        return first

    def check_accounts(self) -> None:
        """An existing member of the enterprise gets the identity (as onboarding does);
        an account elsewhere or an offboarded one is a problem."""
        emails = self.first_rows({r.row: r.normalised_email for r in self.rows}, "{}")
        for batch in _batches(emails):
            existing = User.objects.filter(email__in=batch).values_list(
                "email", "enterprise_id", "status"
            )
            for email, enterprise_id, status in existing:
                if enterprise_id != self.enterprise.pk:
                    self.add(emails[email], account_services.address_unavailable(email))
                elif status == User.Status.OFFBOARDED:
                    self.add(
                        emails[email],
                        f"{email} belongs to an offboarded account; use another address.",
                    )

    def check_numbers(self) -> None:
        self.chosen = tns = self.first_rows(self.tns, "The number {}")
        name = self.enterprise.name
        for batch in _batches(tns):
            found = TelephoneNumber.objects.filter(
                e164__in=batch, enterprise=self.enterprise
            ).values_list("e164", "status", "quarantined_until")
            ours = set()
            for e164, status, until in found:
                ours.add(e164)
                if status == TelephoneNumber.Status.ASSIGNED:
                    self.add(tns[e164], f"{e164} is already in use.")
                elif status == TelephoneNumber.Status.QUARANTINED and not (
                    until and until <= self.now
                ):
                    end = f" until {until:%Y-%m-%d}" if until else ""
                    self.add(tns[e164], f"{e164} is in quarantine{end}.")
            for e164 in sorted(set(batch) - ours):
                self.add(tns[e164], f"{e164} is not in {name}'s number blocks.")

    def check_free_numbers(self) -> None:
        """Play the allocation the worker will do, in file order: a row without a TN
        takes the enterprise's next free number, which a row further down may name."""
        needing = sum(1 for row in self.rows if not row.tn)
        if not needing:
            return
        free = iter(
            inventory.free_numbers(self.enterprise, self.now, lock=False).values_list(
                "e164", flat=True
            )[: needing + len(self.chosen)]
        )
        taken_by: dict[str, int] = {}
        for position, row in enumerate(self.rows):
            if row.tn:
                tn = self.tns.get(row.row)
                if tn and self.chosen.get(tn) == row.row and tn in taken_by:
                    self.add(
                        row.row,
                        f"{tn} will be gone by then: it is the next free number, so row "
                        f"{taken_by[tn]} above, which names no TN, takes it. Move this row "
                        "up, or give that row a number.",
                    )
                if tn:
                    taken_by.setdefault(tn, row.row)
                continue
            number = next((tn for tn in free if tn not in taken_by), None)
            if number is None:
                below = sum(1 for later in self.rows[position + 1 :] if not later.tn)
                self.add(
                    row.row,
                    f"No free number is left for this row and the {below:,} rows below it "
                    f"that name no TN. Ask the operator for another block.",
                )
                return
            taken_by[number] = row.row

    def check_lines(self) -> None:
        imsis = self.first_rows(self.imsis, "The IMSI {}")
        for batch in _batches(imsis):
            found = SimLine.objects.filter(imsi__in=batch, enterprise=self.enterprise)
            ours = set()
            for imsi, identity_id in found.values_list("imsi", "identity"):
                ours.add(imsi)
                if identity_id is not None:
                    self.add(imsis[imsi], f"The SIM line {imsi} is already in use.")
            for imsi in sorted(set(batch) - ours):
                self.add(imsis[imsi], f"IMSI {imsi} is not in {self.enterprise.name}'s line pool.")

    def check_aliases(self) -> None:
        aliases = self.first_rows({r.row: r.alias.lower() for r in self.rows}, "The alias {}")
        live = Identity.objects.for_enterprise(self.enterprise).live()
        for batch in _batches(aliases):
            for alias in live.filter(alias__in=batch).values_list("alias", flat=True):
                self.add(aliases[alias], f"sip:{alias}@{self.enterprise.sip_domain} is taken.")

    def check_quota(self) -> None:
        live = Identity.objects.for_enterprise(self.enterprise).live().count()
        quota = self.contract.identity_quota
        room = max(quota - live, 0)
        if len(self.rows) > room:
            self.add(
                self.rows[room].row,
                f"The identity quota runs out from this row on: {self.enterprise.name} "
                f"holds {live} identities, its quota is {quota}, and the file adds "
                f"{len(self.rows):,}.",
            )


def problem_count(job: ImportJob) -> int:
    """Rows with a problem: those listed and those counted but left out."""
    return sum(p.get("left_out", 1) for p in job.problems)


def _batches(values: Iterable[str]) -> Iterator[list[str]]:
    values = iter(sorted(values))
    while batch := list(islice(values, LOOKUP_BATCH)):
        yield batch


@transaction.atomic
def import_preview(
    *, actor: Actor, enterprise: Enterprise, filename: str, csv_text: str, send_invitations: bool
) -> ImportJob:
    """Check every row of an uploaded file and keep the file with the problems found,
    creating no employee or identity. A file that cannot be read, or an enterprise
    that may not create identities now, raises RuleViolation and keeps nothing."""
    contract = rules.ensure_may_provision(actor, enterprise)
    rows = parse(csv_text)
    preview = _Preview(enterprise, contract, rows).run()
    job = ImportJob.objects.create(
        enterprise=enterprise,
        created_by=actor.user,
        filename=filename[:255],
        csv_text=csv_text,
        send_invitations=send_invitations,
        state=ImportJob.State.PREVIEWED,
        total_rows=len(rows),
        problems=preview.as_list(),
        problem_rows=sorted(preview.problems),
    )
    audit.record(
        actor=actor,
        action="import.previewed",
        enterprise=enterprise,
        target=job,
        changes=audit.created(
            file=job.filename, rows=job.total_rows, rows_with_problems=len(preview.problems)
        ),
    )
    return job


@transaction.atomic
def import_start(*, actor: Actor, job: ImportJob, leave_out_problems: bool = False) -> ImportJob:
    """Queue a previewed import for a worker: a file without problems, or, with
    ``leave_out_problems``, the valid rows of one (the rows with problems are left out
    and can be downloaded to correct, ``problem_rows_csv``)."""
    account_services.ensure_may_change(actor, job.enterprise)
    job = ImportJob.objects.select_for_update().defer("csv_text").get(pk=job.pk)
    if job.state != ImportJob.State.PREVIEWED:
        raise RuleViolation(
            f"This import is {job.get_state_display().lower()} already.", code="import_started"
        )
    if job.problems and not leave_out_problems:
        raise RuleViolation(
            "The file has problems: correct the rows listed and upload it again, or "
            "import the valid rows only.",
            code="import_has_problems",
        )
    if len(job.problem_rows) >= job.total_rows:
        raise RuleViolation(
            "Every row of the file has a problem: correct them and upload it again.",
            code="import_has_problems",
        )
    job.state = ImportJob.State.QUEUED
    job.save(update_fields=["state", "updated_at"])
    changes = audit.changed(state=(ImportJob.State.PREVIEWED, ImportJob.State.QUEUED))
    if job.problem_rows:
        changes |= audit.created(rows_left_out=len(job.problem_rows))
    audit.record(
        actor=actor,
        action="import.started",
        enterprise=job.enterprise,
        target=job,
        changes=changes,
    )
    run_import = enqueue.task("telephony.tasks.run_import")

    job_id = job.pk
    transaction.on_commit(lambda: run_import.delay(job_id), robust=True)
    return job


# What the preview shows row by row: the first valid rows (a file of thousands is read
# no further).
PLAN_ROWS = 50


@dataclass(frozen=True)
class PlannedRow:
    """What the import creates for one valid row of the file."""

    row: int
    full_name: str
    email: str
    role: str
    tn: str  # E.164
    next_free: bool  # the enterprise's next free number now, not one the file names
    imsi: str
    services: list[str]  # their names


def import_plan(job: ImportJob, *, limit: int = PLAN_ROWS) -> list[PlannedRow]:
    """The employee, number, SIM line and services the import creates for each of its
    first valid rows. A row without a number shows the next free one as of now; the
    import takes the next free one when it applies the row."""
    left_out = set(job.problem_rows)
    rows = list(islice((r for r in iter_rows(job.csv_text) if r.row not in left_out), limit))
    free = _next_free_numbers(job.enterprise, rows)
    return [
        PlannedRow(
            row=row.row,
            full_name=row.full_name,
            email=row.normalised_email,
            role=Role(row.role_value).label,
            tn=numbers.parse_tn(row.tn)[0] if row.tn else free.get(row.row, ""),
            next_free=not row.tn,
            imsi=numbers.clean_imsi(row.imsi) if row.imsi else "",
            services=[Service(s).label for s in row.service_list],
        )
        for row in rows
    ]


def problem_rows_csv(job: ImportJob) -> Iterator[str]:
    """The rows of the file that were not imported, as the file has them, with a last
    column that says why: the admin corrects them and uploads this file again (the
    import ignores that column)."""
    messages = {p["row"]: p["message"] for p in job.problems if p.get("row") is not None}
    wanted = set(job.problem_rows) | set(messages)
    records = csvfile.records(job.csv_text, max_bytes=MAX_BYTES, max_rows=MAX_ROWS)
    _, header = next(records)
    columns = _columns(header)

    def rows() -> Iterator[list[str]]:
        for number, record in records:
            if number in wanted:
                cells = [csvfile.unguard(cell) for cell in record[: len(columns)]]
                why = messages.get(number, "A problem found in the check, beyond those listed.")
                yield [*cells, *[""] * (len(columns) - len(cells)), why]

    return csvfile.lines([*columns, PROBLEM_COLUMN], rows())


# --- The worker -----------------------------------------------------------------------


def run_import_job(job_id: int) -> None:
    """Apply a started import from its ``next_row``, one transaction per chunk. A
    duplicate or late delivery continues after the last committed chunk, or does
    nothing when the job is over."""
    job = _begin(job_id)
    if job is None:
        return
    actor = Actor(user=job.created_by)
    left_out = set(job.problem_rows)
    position = job.next_row
    rows = iter_rows(job.csv_text, start=position)
    last_row = None
    try:
        while chunk := list(islice(rows, CHUNK_SIZE)):
            with transaction.atomic():
                locked = lock_job(job_id)
                if locked.state != ImportJob.State.RUNNING:
                    return
                if locked.next_row != position:
                    # Another delivery of this task applied rows meanwhile: go on after them.
                    position = locked.next_row
                    rows = iter_rows(job.csv_text, start=position)
                    continue
                if not _creator_may_import(job):
                    _stop(locked, f"{job.created_by} is no longer an active admin.", last_row)
                    return
                _apply(locked, [row for row in chunk if row.row not in left_out], actor)
                locked.next_row = position + len(chunk)
                locked.save(
                    update_fields=[
                        "next_row",
                        "created_count",
                        "failed_count",
                        "problems",
                        "updated_at",
                    ]
                )
            position += len(chunk)
            last_row = chunk[-1].row
    except Exception:
        with transaction.atomic():
            _stop(lock_job(job_id), "an unexpected error occurred.", last_row)
        raise
    _finish(job_id, actor)


def _begin(job_id: int) -> ImportJob | None:
    with transaction.atomic():
        job = (
            ImportJob.objects.select_for_update(of=("self",))
            .select_related("enterprise", "created_by")
            .filter(pk=job_id)
            .first()
        )
        if job is None or job.state not in (ImportJob.State.QUEUED, ImportJob.State.RUNNING):
            return None
        if job.state == ImportJob.State.QUEUED:
            job.state = ImportJob.State.RUNNING
            job.started_at = timezone.now()
            job.save(update_fields=["state", "started_at", "updated_at"])
        return job


def _locked(job_id: int) -> ImportJob:
    return (
        ImportJob.objects.select_for_update(of=("self",))
        .select_related("enterprise")
        .defer("csv_text")
        .get(pk=job_id)
    )


def _creator_may_import(job: ImportJob) -> bool:
    """A leaver's or a demoted admin's import goes no further."""
    if job.created_by_id is None:
        return True
    may: bool = User.objects.filter(
        pk=job.created_by_id,
        enterprise=job.enterprise_id,
        role=Role.ADMIN,
        status=User.Status.ACTIVE,
    ).exists()
    return may


def _next_free_numbers(enterprise: Enterprise, chunk: list[Row]) -> dict[int, str]:
    """{row: number} for the rows that name no TN: the enterprise's next free numbers
    (oldest block, lowest number) in file order as of now, read in one query."""
    needing = [row.row for row in chunk if not row.tn]
    if not needing:
        return {}
    free = inventory.free_numbers(enterprise, timezone.now(), lock=False).values_list(
        "e164", flat=True
    )[: len(needing)]
    return dict(zip(needing, free, strict=False))


# A named seam, a step of a delivery that a test stands in for: locking the job for a
# chunk (another delivery may have gone on meanwhile). Called through this name.
lock_job = _locked


def _apply(job: ImportJob, rows: list[Row], actor: Actor) -> None:
    """Onboard a chunk's rows together (``onboarding``); a row a rule refuses is
    recorded and skipped. Should a change committed meanwhile clash with the chunk in
    the database (an email, number, SIM line or alias taken after the checks read),
    the chunk is applied again row by row, so that only the row concerned fails."""
    try:
        with transaction.atomic():
            outcomes = _onboard(job, rows, actor)
    except IntegrityError:
        outcomes = []
        for row in rows:
            try:
                with transaction.atomic():
                    outcomes += _onboard(job, [row], actor)
            except IntegrityError:
                outcomes.append(
                    RuleViolation(
                        "A change made meanwhile took the same email, number, SIM line or alias."
                    )
                )
    for row, outcome in zip(rows, outcomes, strict=True):
        if isinstance(outcome, RuleViolation):
            _failed(job, row.row, outcome.message)
        else:
            job.created_count += 1


def _onboard(job: ImportJob, rows: list[Row], actor: Actor) -> list[onboarding.Outcome]:
    joiners = [
        onboarding.Joiner(
            email=row.email,
            full_name=row.full_name,
            role=row.role_value,
            services=row.service_list,
            display_name=row.display_name,
            tn=row.tn,
            imsi=row.imsi,
            alias=row.alias,
        )
        for row in rows
    ]
    return onboarding.onboard(
        actor=actor,
        enterprise=job.enterprise,
        joiners=joiners,
        send_invitations=job.send_invitations,
    )


def _failed(job: ImportJob, row: int | None, message: str) -> None:
    job.failed_count += 1
    if len(job.problems) < MAX_PROBLEMS:
        job.problems.append({"row": row, "message": message})


def _stop(job: ImportJob, reason: str, last_row: int | None) -> None:
    """Mark the job failed; the committed chunks stay applied."""
    where = f", up to row {last_row} of the file" if last_row else ""
    applied = f"{job.next_row} of {job.total_rows} rows were applied{where}."
    job.problems.append({"row": None, "message": f"The import stopped: {reason} {applied}"})
    job.state = ImportJob.State.FAILED
    job.finished_at = timezone.now()
    job.save(update_fields=["problems", "state", "finished_at"])
    audit.record(
        actor=Actor.system(),
        action="import.failed",
        enterprise=job.enterprise,
        target=job,
        changes=audit.changed(state=(ImportJob.State.RUNNING, ImportJob.State.FAILED)),
    )


def _finish(job_id: int, actor: Actor) -> None:
    with transaction.atomic():
        job = lock_job(job_id)
        if job.state != ImportJob.State.RUNNING:
            return
        job.state = ImportJob.State.DONE
        job.finished_at = timezone.now()
        job.save(update_fields=["state", "finished_at"])
        audit.record(
            actor=actor,
            action="import.finished",
            enterprise=job.enterprise,
            target=job,
            changes=audit.changed(
                state=(ImportJob.State.RUNNING, ImportJob.State.DONE),
                created=(None, job.created_count),
                failed=(None, job.failed_count),
            ),
            changes_enterprise=False,  # the job's books close even if the operator suspended
        )


# --- The export -----------------------------------------------------------------------


def _export_rows_query(enterprise: Enterprise) -> QuerySet[User, tuple[Any, ...]]:
    """One row per live identity, and one per member without any: a single query."""
    live = (Identity.Status.ACTIVE, Identity.Status.SUSPENDED)
    people: QuerySet[User] = User.objects.for_enterprise(enterprise)
    return (
        people.exclude(status=User.Status.OFFBOARDED)
        .annotate(live=FilteredRelation("identities", condition=Q(identities__status__in=live)))
        .order_by("email", "live__created_at", "live__id")
        .values_list(
            "email",
            "full_name",
            "role",
            "status",
            "live__number__e164",
            "live__line__imsi",
            "live__services",
            "live__display_name",
            "live__alias",
            "live__status",
            "live__sync__state",
            "live__sync__synced_at",
        )
    )


def _export_line(values: tuple[Any, ...]) -> list[str]:
    *head, services, display_name, alias, status, sync_state, synced_at = values
    return [
        *head,
        ";".join(sorted(services)) if services else "",
        display_name,
        alias,
        status,
        sync_state,
        _timestamp(synced_at),
    ]


def _timestamp(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def export_rows(enterprise: Enterprise, *, people: list[User] | None = None) -> Iterator[str]:
    """The enterprise's employees (or only ``people``) and their live identities as CSV
    lines, for a streamed response."""
    found = _export_rows_query(enterprise)
    if people is not None:
        found = found.filter(pk__in=[person.pk for person in people])
    rows = found.iterator(chunk_size=EXPORT_CHUNK)
    return csvfile.lines(EXPORT_COLUMNS, (_export_line(values) for values in rows))


@transaction.atomic
def export_recorded(*, actor: Actor, enterprise: Enterprise, selected: int | None = None) -> None:
    """Record in the audit trail that someone took the list of employees (or the
    ``selected`` of them) away."""
    actor.ensure_acts_for(enterprise)
    audit.record(
        actor=actor,
        action="employees.exported",
        enterprise=enterprise,
        changes=audit.created(people_ticked=selected) if selected is not None else None,
        changes_enterprise=False,
    )


# An import applies a chunk every second or so; ten minutes without one means its
# worker died or its message was lost.
STALLED_AFTER = timedelta(minutes=10)


def sweep_stalled_imports() -> int:
    """Queue again the started imports that stopped moving. Periodic."""
    run_import = enqueue.task("telephony.tasks.run_import")

    stalled = ImportJob.objects.filter(
        state__in=[ImportJob.State.QUEUED, ImportJob.State.RUNNING],
        updated_at__lt=timezone.now() - STALLED_AFTER,
    ).values_list("pk", flat=True)
    ids = list(stalled)
    for job_id in ids:
        ImportJob.objects.filter(pk=job_id).update(updated_at=timezone.now())
        run_import.delay(job_id)
    return len(ids)
