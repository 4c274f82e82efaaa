"""Benchmark data: ``manage.py bench_data --employees 10000 --ues 25000 --calls 500000``.

Makes one big enterprise (employees with identities on numbers of its blocks, SIM
lines, active registrations spread over the identities — several UEs per user —, call
records over the last 30 days, and the audit trail all that left) plus a small second
enterprise, on PostgreSQL, in bulk: ``COPY`` in batches, not the services row by row.
The rows are those the services would have written (valid E.164 numbers from the
enterprise's blocks, Luhn-valid ICCIDs, identities synced to the builtin HSS with the
simulated subscriptions to match, audit rows in the services' shapes), and every table
constraint holds.

Re-runnable: it first deletes its own previous data — the enterprises whose slug starts
with ``bench-`` and everything that hangs off them, and its network clients — and
nothing else. The audit log is append-only (a PostgreSQL trigger refuses deletes), so
that delete lifts the trigger inside its own transaction; the command therefore runs
only on a database whose name contains "bench" unless told otherwise.

It prints one JSON object: what it made, how long it took, and the network client's
credential (``network_token``) for the benchmarks.
"""

from __future__ import annotations

import io
import json
import random
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.crypto import get_random_string
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import services as account_services
from accounts.audit import Actor
from accounts.models import (
    AuditEvent,
    Enterprise,
    Invitation,
    NetworkClient,
    Role,
    Service,
    User,
)
from kernel import generations
from kernel.credentials import new_secret
from kernel.errors import RuleViolation
from telephony.callauth import credentials
from telephony.callauth.errors import CallAuthError
from telephony.callauth.stir.attestation import CallFacts, attestation_for_call
from telephony.callauth.stir.passport import VERSTAT_FAILED, VERSTAT_NO_VALIDATION, VERSTAT_PASSED
from telephony.identities.hss import builtin
from telephony.inventory import services as inventory
from telephony.inventory.numbers import with_luhn_digit
from telephony.models import (
    CallerName,
    CallRecord,
    Grant,
    Identity,
    IdentitySync,
    ReginfoVersion,
    Registration,
    RegistrationEvent,
    SimLine,
    SimulatedSubscription,
    SyncAttempt,
    TelephoneNumber,
)
from telephony.registrations.ingest import device_label

SLUG_PREFIX = "bench-"
CLIENT_PREFIX = "Bench "
NETWORK_CLIENT_NAME = "Bench S-CSCF"
# Rows per COPY statement.
COPY_BATCH = 50_000

FIRST_NAMES = (  # noqa: SIM905 - a list of names reads better as a sentence
    "Ada Ben Chen Dana Eli Fatima Greta Hugo Ines Jonas Kai Lena Mateo Nora Omar Priya "
    "Quinn Rosa Sven Tara Umar Vera Wim Xenia Yusuf Zoe Anna Bruno Clara David Emma Felix "
    "Hana Ivan Jana Karl Lina Marco Nina Oskar Paula Rafael Sara Tom Ute Viktor Wanda Yara"
).split()
LAST_NAMES = (  # noqa: SIM905
    "Smith Garcia Wei Novak Schmidt Rossi Kowalski Jensen Silva Haddad Okafor Tanaka Berg "
    "Moreau Costa Petrov Fischer Nakamura Larsen Weber Meyer Wagner Becker Hoffmann Klein "
    "Wolf Neumann Braun Zimmer Kruger Hartmann Lange Werner Krause Lehmann Walter Maier"
).split()
USER_AGENTS = (
    ("Samsung SM-S918B Android/14 IMS-Client/3.2", "imei"),
    ("Google Pixel 8 Android/15 IMS-Client/3.4", "imei"),
    ("iPhone15,2 iOS/17.4 IMS/1.0", "imei"),
    ("Portal Softphone/2.1 (Windows 11)", "uuid"),
    ("Portal Softphone/2.1 (macOS 14.5)", "uuid"),
    ("Portal Softphone/2.1 (Linux x86_64)", "uuid"),
)
EXTERNAL_PREFIXES = ("+1415555", "+4420718", "+3314567", "+4940123")


@dataclass(frozen=True)
class Spec:
    """One enterprise to make."""

    name: str
    slug: str
    employees: int
    ues: int
    calls: int
    # Blocks as (first E.164 as an int, size, country, note); numbers go oldest block first.
    blocks: tuple[tuple[int, int, str], ...]

    @property
    def domain(self) -> str:
        return f"{self.slug}.example"


def specs(employees: int, ues: int, calls_: int, small: int) -> list[Spec]:
    big_size = max(1000, int(employees * 1.25))
    return [
        Spec(
            name="Bench Logistics",
            slug=f"{SLUG_PREFIX}big",
            employees=employees,
            ues=ues,
            calls=calls_,
            blocks=(
                (4930120000000, big_size, "Berlin head office"),
                (4989200000000, max(100, employees // 10), "Munich branch"),
            ),
        ),
        Spec(
            name="Bench Bakery",
            slug=f"{SLUG_PREFIX}small",
            employees=small,
            ues=int(small * ues / max(employees, 1)),
            calls=int(small * calls_ / max(employees, 1)),
            blocks=((4940330000000, max(100, int(small * 1.5)), "Hamburg shop"),),
        ),
    ]


# --- Deleting earlier bench data ----------------------------------------------------------


def delete_bench_data(slug_prefix: str = SLUG_PREFIX, *, clients: bool = True) -> dict:
    """Delete the enterprises whose slug starts with ``slug_prefix`` and every row that
    refers to them, directly or through other rows (found by following every foreign
    key of every model to a fixed point), in one transaction. Also the bench's network
    clients, the simulated HSS subscriptions of its numbers and the reginfo versions of
    its AoRs. Foreign keys on PostgreSQL are checked at commit, so order does not matter
    within the transaction. Returns the rows deleted per table."""
    models = [m for m in apps.get_models(include_auto_created=True) if not m._meta.proxy]
    tables = {m._meta.db_table: m for m in models}
    deleted = {}
    with transaction.atomic(), connection.cursor() as cursor:
        doomed = {}  # table -> temp table of doomed primary keys
        grown: set[str] = set()  # tables whose doomed set grew in the last pass

        def temp_for(model) -> str:
            table = model._meta.db_table
            if table not in doomed:
                pk = model._meta.pk
                temp = f"doomed_{table}"[:63]
                # The type a foreign key to the table's key would have (no identity clause).
                kind = pk.db_type(connection) if pk.is_relation else pk.rel_db_type(connection)
                cursor.execute(f'CREATE TEMP TABLE "{temp}" (pk {kind} PRIMARY KEY) ON COMMIT DROP')
                doomed[table] = temp
            return doomed[table]

        def doom(model, where: str, params=()) -> None:
            table, pk = model._meta.db_table, model._meta.pk.column
            cursor.execute(
                f'INSERT INTO "{temp_for(model)}" SELECT "{pk}" FROM "{table}" WHERE {where} '  # noqa: S608 - names from the model registry
                "ON CONFLICT DO NOTHING",
                params,
            )
            if cursor.rowcount > 0:
                grown.add(table)

        doom(Enterprise, "slug LIKE %s", [slug_prefix + "%"])
        if clients:
            doom(NetworkClient, "name LIKE %s", [CLIENT_PREFIX + "%"])
        enterprises = doomed[Enterprise._meta.db_table]
        # Outside the foreign-key graph: keyed by MSISDN and by AoR.
        cursor.execute(
            f'DELETE FROM "{SimulatedSubscription._meta.db_table}" WHERE msisdn IN '  # noqa: S608
            f'(SELECT e164 FROM "{TelephoneNumber._meta.db_table}" WHERE enterprise_id IN '
            f'(SELECT pk FROM "{enterprises}"))'
        )
        deleted[SimulatedSubscription._meta.db_table] = cursor.rowcount
        cursor.execute(
            f'DELETE FROM "{ReginfoVersion._meta.db_table}" WHERE aor IN '  # noqa: S608
            f"(SELECT 'tel:' || e164 FROM \"{TelephoneNumber._meta.db_table}\" WHERE enterprise_id IN "
            f'(SELECT pk FROM "{enterprises}")) '
            "OR aor ~ %s",
            [r"^sips?:[^@]+@" + slug_prefix.replace("-", r"\-") + r"[a-z0-9-]*\.example(;|$)"],
        )
        deleted[ReginfoVersion._meta.db_table] = cursor.rowcount
        # Follow every foreign key to the doomed rows until nothing new is found.
        while grown:
            sources, grown = grown, set()
            for model in models:
                for field in model._meta.concrete_fields:
                    related = field.related_model
                    if related is None or not (field.many_to_one or field.one_to_one):
                        continue
                    target = related._meta.db_table
                    if target in sources:
                        where = f'"{field.column}" IN (SELECT pk FROM "{doomed[target]}")'  # noqa: S608
                        doom(model, where)
        audit_table = AuditEvent._meta.db_table
        cursor.execute(
            f'ALTER TABLE "{audit_table}" DISABLE TRIGGER accounts_auditevent_append_only'
        )
        for table, temp in doomed.items():
            pk = tables[table]._meta.pk.column
            cursor.execute(f'DELETE FROM "{table}" WHERE "{pk}" IN (SELECT pk FROM "{temp}")')  # noqa: S608
            if cursor.rowcount:
                deleted[table] = cursor.rowcount
        cursor.execute(
            f'ALTER TABLE "{audit_table}" ENABLE TRIGGER accounts_auditevent_append_only'
        )
    return deleted


# --- Bulk writing -------------------------------------------------------------------------


def _text(value) -> str:
    """One value in PostgreSQL's COPY text format."""
    if value is None:
        return r"\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list | tuple):
        value = json.dumps(value, separators=(",", ":"))
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = (
            text.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return text


# One table row for COPY, its values in the columns' order.
Row = tuple[object, ...]


def copy_rows(model, columns: list[str], rows: Iterable[Row]) -> int:
    """COPY ``rows`` (tuples in ``columns`` order) into ``model``'s table, in batches."""
    table = model._meta.db_table
    names = ", ".join(f'"{c}"' for c in columns)
    count = 0
    batch = io.StringIO()
    pending = 0

    def flush():
        batch.seek(0)
        with connection.cursor() as cursor:
            cursor.copy_expert(f'COPY "{table}" ({names}) FROM STDIN', batch)

    for row in rows:
        batch.write("\t".join(map(_text, row)))
        batch.write("\n")
        pending += 1
        count += 1
        if pending == COPY_BATCH:
            flush()
            batch, pending = io.StringIO(), 0
    if pending:
        flush()
    return count


def new_ids(model, n: int) -> list[int]:
    """``n`` primary keys from the table's own sequence, so rows can point at each other
    before they are written."""
    if n == 0:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [model._meta.db_table, n],
        )
        return [row[0] for row in cursor.fetchall()]


# --- Making one enterprise ----------------------------------------------------------------


@dataclass
class Person:
    id: int
    email: str
    full_name: str
    role: str
    status: str
    joined: datetime


@dataclass
class Made:
    """An identity as written, with what the rest of the data needs of it."""

    id: int
    owner: Person
    e164: str
    imsi: str
    alias: str
    display_name: str
    services: list[str]
    status: str
    created: datetime
    number_id: int | None = None
    sync_state: str = IdentitySync.State.SYNCED

    def impus(self, domain: str) -> list[str]:
        if not self.e164:
            return []
        uris = [f"tel:{self.e164}", f"sip:{self.e164}@{domain};user=phone"]
        if self.alias:
            uris.append(f"sip:{self.alias}@{domain}")
        return uris

    def impi(self, domain: str) -> str:
        if self.imsi:
            digits = settings.IMSI_MNC_DIGITS
            mcc, mnc = self.imsi[:3], self.imsi[3 : 3 + digits]
            return f"{self.imsi}@ims.mnc{mnc.zfill(3)}.mcc{mcc}.3gppnetwork.org"
        return f"{self.e164[1:]}@{domain}"


class EnterpriseMaker:
    """Writes one enterprise's data; ``rng`` makes it the same for the same seed."""

    def __init__(self, spec: Spec, *, rng: random.Random, client: NetworkClient, now: datetime):
        self.spec = spec
        self.rng = rng
        self.client = client
        self.now = now
        self.counts: dict[str, int] = {}
        # (created_at, actor kind, user id, network client id, actor label, action,
        #  target type, target id, target label, changes), written at the end in time order
        self.audit: list[tuple] = []

    def run(self) -> dict[str, int]:
        spec = self.spec
        actor = Actor.system()
        services_all = [s.value for s in Service]
        self.enterprise = account_services.enterprise_create(
            actor=actor,
            name=spec.name,
            slug=spec.slug,
            sip_domain=spec.domain,
            may_create_identities=True,
            may_authenticate_users=True,
            identity_quota=int(spec.employees * 1.2) + 20_000,
            allowed_services=services_all,
            max_ues_per_user=5,
        )
        self.client.enterprises.add(self.enterprise)
        for first, size, note in spec.blocks:
            inventory.number_block_create(
                actor=actor,
                enterprise=self.enterprise,
                first_number=f"+{first}",
                last_number=f"+{first + size - 1}",
                note=note,
            )
        self.people = self.make_people()
        self.lines = self.make_lines()
        self.identities = self.make_identities()
        self.grants = self.make_grants()
        self.make_sync_state()
        self.make_registrations()
        self.make_call_records()
        self.write_audit()
        self.make_call_authentication()
        return self.counts

    # People ---------------------------------------------------------------------------

    def make_people(self) -> list[Person]:
        spec, rng, now = self.spec, self.rng, self.now
        n = spec.employees
        ids = new_ids(User, n)
        seen: dict[str, int] = {}
        people = []
        for index, pk in enumerate(ids):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            local = f"{first}.{last}".lower()
            seen[local] = seen.get(local, 0) + 1
            if seen[local] > 1:
                local = f"{local}{seen[local]}"
            if index == 0:
                local, role, full = "admin", Role.ADMIN, f"{first} {last}"
            elif index <= max(1, n // 1000):
                role, full = (Role.ADMIN if index % 3 == 0 else Role.HELPDESK), f"{first} {last}"
            else:
                role, full = Role.EMPLOYEE, f"{first} {last}"
            draw = rng.random()
            status = (
                User.Status.ACTIVE
                if index == 0 or role != Role.EMPLOYEE or draw < 0.92
                else User.Status.INVITED
                if draw < 0.97
                else User.Status.SUSPENDED
                if draw < 0.99
                else User.Status.OFFBOARDED
            )
            joined = now - timedelta(days=720 * (n - index) / n + 30, minutes=rng.randrange(600))
            people.append(Person(pk, f"{local}@{spec.domain}", full, role, status, joined))
        enterprise_id = self.enterprise.pk
        self.counts["users"] = copy_rows(
            User,
            [
                "id",
                "password",
                "last_login",
                "is_superuser",
                "email",
                "full_name",
                "enterprise_id",
                "role",
                "status",
                "is_staff",
                "date_joined",
                "time_zone",
            ],
            (
                (
                    p.id,
                    "!" + get_random_string(40),
                    None,
                    False,
                    p.email,
                    p.full_name,
                    enterprise_id,
                    p.role,
                    p.status,
                    False,
                    p.joined,
                    "",
                )
                for p in people
            ),
        )
        # Each person was invited; those who joined accepted it.
        invitations = []
        for p in people:
            accepted = p.status != User.Status.INVITED
            invitations.append(
                (
                    enterprise_id,
                    p.id,
                    get_random_string(64, "0123456789abcdef"),
                    None,
                    p.joined,
                    p.joined + settings.INVITATION_VALIDITY,
                    p.joined,
                    p.joined + timedelta(hours=3) if accepted else None,
                    None,
                )
            )
            self.audit_row(
                p.joined,
                None,
                "user.invited",
                "accounts.user",
                p.id,
                p.full_name,
                {
                    "email": [None, p.email],
                    "full_name": [None, p.full_name],
                    "role": [None, p.role],
                    "status": [None, "invited"],
                },
            )
            if accepted:
                self.audit_row(
                    p.joined + timedelta(hours=3),
                    p,
                    "user.joined",
                    "accounts.user",
                    p.id,
                    p.full_name,
                    {"status": ["invited", "active"]},
                )
            if p.status == User.Status.ACTIVE:
                for _ in range(self.rng.randrange(3)):
                    at = now - timedelta(minutes=self.rng.randrange(60 * 24 * 30))
                    self.audit_row(at, p, "user.signed_in", "accounts.user", p.id, p.full_name, {})
        self.counts["invitations"] = copy_rows(
            Invitation,
            [
                "enterprise_id",
                "user_id",
                "token_hash",
                "created_by_id",
                "created_at",
                "expires_at",
                "sent_at",
                "accepted_at",
                "revoked_at",
            ],
            invitations,
        )
        # Admins and helpdesk always have a second factor.
        for p in people:
            if p.role != Role.EMPLOYEE:
                TOTPDevice.objects.create(user_id=p.id, name="Authenticator app", confirmed=True)
        return people

    # SIM lines ------------------------------------------------------------------------

    def make_lines(self) -> list[str]:
        n = int(self.spec.employees * 0.6)
        base = {"big": 1, "small": 2}.get(self.spec.slug.removeprefix(SLUG_PREFIX), 3)
        imsis = [f"26201{base}{i:09d}" for i in range(n)]
        enterprise_id, now = self.enterprise.pk, self.now
        loaded = now - timedelta(days=760)
        self.counts["sim_lines"] = copy_rows(
            SimLine,
            ["enterprise_id", "imsi", "iccid", "created_at"],
            (
                (enterprise_id, imsi, with_luhn_digit(f"894901{base}{i:011d}"), loaded)
                for i, imsi in enumerate(imsis)
            ),
        )
        for imsi in imsis[:: max(1, len(imsis) // 200)]:
            self.audit_row(
                loaded,
                None,
                "sim_line.created",
                "telephony.simline",
                imsi,
                imsi,
                {"imsi": [None, imsi]},
            )
        return imsis

    # Identities -------------------------------------------------------------------------

    def make_identities(self) -> list[Made]:
        rng, now = self.rng, self.now
        numbers = list(
            TelephoneNumber.objects.for_enterprise(self.enterprise)
            .order_by("block_id", "e164")
            .values_list("pk", "e164")
        )
        holders = [p for p in self.people if p.status != User.Status.OFFBOARDED]
        # A few hold a second identity (a soft client, no SIM line).
        second = [p for p in holders if p.role == Role.EMPLOYEE and rng.random() < 0.05]
        leavers = [p for p in self.people if p.status == User.Status.OFFBOARDED]
        plan = [(p, True) for p in holders] + [(p, False) for p in second]
        if len(plan) + len(leavers) > len(numbers):
            raise CommandError("The blocks are too small for the identities.")
        ids = new_ids(Identity, len(plan) + len(leavers))
        lines = iter(self.lines)
        aliases: set[str] = set()
        made: list[Made] = []
        number_rows = iter(numbers)
        assigned, quarantined = [], []
        for pk, (person, first) in zip(ids, plan, strict=False):
            number_id, e164 = next(number_rows)
            assigned.append(number_id)
            imsi = next(lines, "") if first and rng.random() < 0.62 else ""
            alias = ""
            if first and rng.random() < 0.3:
                candidate = person.email.partition("@")[0]
                if candidate not in aliases and candidate != "admin":
                    alias = candidate
                    aliases.add(alias)
            extra = rng.sample(["video", "messaging", "conference"], rng.randrange(3))
            services = ["voice", *sorted(extra)]
            created = person.joined + timedelta(
                minutes=1 if first else rng.randrange(1, 60 * 24 * 300)
            )
            created = min(created, now - timedelta(minutes=5))
            made.append(
                Made(
                    pk,
                    person,
                    e164,
                    imsi,
                    alias,
                    person.full_name[:15].strip(),
                    services,
                    Identity.Status.ACTIVE,
                    created,
                    number_id,
                )
            )
        # Leavers: their identity was removed, its number is in quarantine.
        for pk, person in zip(ids[len(plan) :], leavers, strict=True):
            number_id, e164 = next(number_rows)
            quarantined.append(number_id)
            made.append(
                Made(
                    pk,
                    person,
                    e164,
                    "",
                    "",
                    person.full_name[:15].strip(),
                    ["voice"],
                    Identity.Status.REMOVED,
                    person.joined + timedelta(minutes=1),
                )
            )
        TelephoneNumber.objects.filter(pk__in=assigned).update(
            status=TelephoneNumber.Status.ASSIGNED
        )
        TelephoneNumber.objects.filter(pk__in=quarantined).update(
            status=TelephoneNumber.Status.QUARANTINED,
            quarantined_until=now + timedelta(days=settings.NUMBER_QUARANTINE_DAYS - 10),
        )
        line_ids = dict(SimLine.objects.for_enterprise(self.enterprise).values_list("imsi", "pk"))
        enterprise_id = self.enterprise.pk
        self.counts["identities"] = copy_rows(
            Identity,
            [
                "id",
                "enterprise_id",
                "owner_id",
                "number_id",
                "line_id",
                "alias",
                "display_name",
                "services",
                "status",
                "former_tn",
                "created_at",
                "updated_at",
            ],
            (
                (
                    m.id,
                    enterprise_id,
                    m.owner.id,
                    m.number_id,
                    line_ids[m.imsi] if m.imsi else None,
                    m.alias,
                    m.display_name,
                    m.services,
                    m.status,
                    m.e164 if m.status == Identity.Status.REMOVED else "",
                    m.created,
                    m.created,
                )
                for m in made
            ),
        )
        for m in made:
            snapshot = {
                "tn": [None, m.e164],
                "display_name": [None, m.display_name],
                "services": [None, m.services],
                "status": [None, "active"],
            }
            if m.imsi:
                snapshot["imsi"] = [None, m.imsi]
            if m.alias:
                snapshot["alias"] = [None, m.alias]
            self.audit_row(
                m.created,
                None,
                "identity.created",
                "telephony.identity",
                m.id,
                f"{m.e164} ({m.display_name})",
                snapshot,
            )
            if m.status == Identity.Status.REMOVED:
                self.audit_row(
                    now - timedelta(days=10),
                    None,
                    "identity.removed",
                    "telephony.identity",
                    m.id,
                    f"{m.e164} ({m.display_name})",
                    {"status": ["active", "removed"]},
                )
        return made

    def make_grants(self) -> list[tuple[Made, Person, bool, bool]]:
        rng = self.rng
        live = [m for m in self.identities if m.status == Identity.Status.ACTIVE]
        colleagues = [p for p in self.people if p.status == User.Status.ACTIVE]
        grants = []
        for m in live:
            if rng.random() < 0.02 and m.owner.status == User.Status.ACTIVE:
                grantee = rng.choice(colleagues)
                if grantee.id != m.owner.id:
                    make = rng.random() < 0.8
                    grants.append((m, grantee, make, not make or rng.random() < 0.5))
        enterprise_id = self.enterprise.pk
        self.counts["grants"] = copy_rows(
            Grant,
            [
                "enterprise_id",
                "identity_id",
                "grantee_id",
                "can_make_calls",
                "can_receive_calls",
                "valid_until",
                "created_by_id",
                "created_at",
                "revoked_at",
                "end_reason",
            ],
            (
                (
                    enterprise_id,
                    m.id,
                    g.id,
                    make,
                    receive,
                    None,
                    m.owner.id,
                    m.created + timedelta(days=1),
                    None,
                    "",
                )
                for m, g, make, receive in grants
            ),
        )
        for m, g, _, _ in grants:
            self.audit_row(
                m.created + timedelta(days=1),
                m.owner,
                "grant.created",
                "telephony.grant",
                m.id,
                f"{m.e164} → {g.full_name}",
                {"grantee": [None, g.email]},
            )
        return grants

    # Sync state and the simulated HSS -------------------------------------------------

    def make_sync_state(self) -> None:
        rng, now, domain = self.rng, self.now, self.spec.domain
        shared: dict[int, list] = {}
        for m, grantee, make, receive in self.grants:
            shared.setdefault(grantee.id, []).append([m.e164, make, receive])
        syncs: list[Row] = []
        attempts: list[Row] = []
        subscriptions: list[Row] = []
        enterprise_id = self.enterprise.pk
        for m in self.identities:
            synced_at = m.created + timedelta(seconds=rng.uniform(0.05, 2))
            op = f"portal-{m.id}-1"
            if m.status == Identity.Status.REMOVED:
                syncs.append(
                    (
                        m.id,
                        enterprise_id,
                        "synced",
                        2,
                        2,
                        synced_at,
                        0,
                        None,
                        None,
                        "",
                        now - timedelta(days=10),
                        f"portal-{m.id}-2",
                        "",
                        "",
                        {},
                        None,
                    )
                )
                attempts.append(
                    (
                        enterprise_id,
                        m.id,
                        2,
                        "synced",
                        "removed from the HSS",
                        op,
                        22,
                        now - timedelta(days=10),
                    )
                )
                continue
            draw = rng.random()
            if draw < 0.985:
                m.sync_state = IdentitySync.State.SYNCED
                syncs.append(
                    (
                        m.id,
                        enterprise_id,
                        "synced",
                        1,
                        1,
                        m.created,
                        0,
                        None,
                        None,
                        "",
                        synced_at,
                        op,
                        m.e164,
                        m.imsi,
                        {},
                        None,
                    )
                )
                attempts.append((enterprise_id, m.id, 1, "synced", "", op, 21, synced_at))
                owner_shared = sorted(shared.get(m.owner.id, []))
                subscriptions.append(
                    (
                        m.e164,
                        m.imsi,
                        m.impi(domain),
                        m.impus(domain),
                        True,
                        sorted(m.services),
                        m.display_name,
                        owner_shared,
                        [],
                        op,
                        None,
                        synced_at,
                    )
                )
            else:
                m.sync_state = IdentitySync.State.FAILED
                error = f"The HSS refused the subscription of {m.e164}: IMSI not provisioned"
                syncs.append(
                    (
                        m.id,
                        enterprise_id,
                        "failed",
                        1,
                        0,
                        m.created,
                        1,
                        None,
                        None,
                        error,
                        None,
                        "",
                        "",
                        "",
                        {},
                        None,
                    )
                )
                attempts.append((enterprise_id, m.id, 1, "failed", error, "", 35, synced_at))
        self.counts["identity_syncs"] = copy_rows(
            IdentitySync,
            [
                "identity_id",
                "enterprise_id",
                "state",
                "desired_version",
                "synced_version",
                "requested_at",
                "attempts",
                "next_attempt_at",
                "claimed_until",
                "last_error",
                "synced_at",
                "remote_operation_id",
                "pushed_msisdn",
                "pushed_imsi",
                "drift",
                "drift_found_at",
                "push_queue",
            ],
            [(*row, "") for row in syncs],  # pushed by the portal, on the sync queue
        )
        self.counts["sync_attempts"] = copy_rows(
            SyncAttempt,
            [
                "enterprise_id",
                "identity_id",
                "version",
                "outcome",
                "detail",
                "operation_id",
                "duration_ms",
                "created_at",
            ],
            attempts,
        )
        self.counts["simulated_subscriptions"] = copy_rows(
            SimulatedSubscription,
            ["msisdn", *builtin.HELD, "deregistered_at", "updated_at"],
            subscriptions,
        )

    # Registrations ------------------------------------------------------------------------

    def make_registrations(self) -> None:
        rng, now, spec = self.rng, self.now, self.spec
        eligible = [
            m
            for m in self.identities
            if m.status == Identity.Status.ACTIVE and m.owner.status == User.Status.ACTIVE
        ]
        rng.shuffle(eligible)
        per_identity = {m.id: 0 for m in eligible}
        order = eligible[: spec.ues]
        for m in order:
            per_identity[m.id] = 1
        left = spec.ues - len(order)
        while left > 0 and eligible:
            m = rng.choice(eligible)
            if per_identity[m.id] < 4:
                per_identity[m.id] += 1
                left -= 1
        enterprise_id = self.enterprise.pk
        active = [(m, k) for m in eligible for k in range(per_identity[m.id])]
        ended = [
            (m, k + 10)
            for m in rng.sample(eligible, min(len(eligible), spec.ues // 6))
            for k in range(1)
        ]
        plans = [(m, k, True) for m, k in active] + [(m, k, False) for m, k in ended]
        reg_ids = new_ids(Registration, len(plans))
        event_ids = new_ids(RegistrationEvent, 2 * len(plans))
        regs: list[Row] = []
        events: list[Row] = []
        versions: dict[str, int] = {}
        for index, (pk, (m, k, is_active)) in enumerate(zip(reg_ids, plans, strict=True)):
            ua, kind = USER_AGENTS[(m.id + k) % len(USER_AGENTS)]
            if kind == "imei" or (m.imsi and k == 0):
                instance = f"urn:gsma:imei:{35000000 + m.id % 10_000_000:08d}-{k:06d}-0"
            else:
                instance = f"urn:uuid:{uuid.UUID(int=(m.id << 16) + k)}"
            host = f"198.51.100.{(m.id + k) % 250 + 1}"
            contact = f"sip:{m.e164}@{host}:5060;transport=tcp"
            impus = m.impus(spec.domain)
            first = max(m.created, now - timedelta(days=rng.uniform(0.1, 60)))
            refreshed = now - timedelta(seconds=rng.uniform(10, 3000))
            first = min(first, refreshed)
            registered_event, last_event = event_ids[2 * index], event_ids[2 * index + 1]
            if is_active:
                state, ended_at, reason = Registration.State.ACTIVE, None, ""
                expires = refreshed + timedelta(seconds=86_400)
                last_kind, last_count = RegistrationEvent.Kind.REFRESHED, rng.randrange(1, 400)
                reg_impus = impus
            else:
                ended_at = now - timedelta(days=rng.uniform(1, 25))
                first = min(first, ended_at - timedelta(hours=2))
                refreshed = ended_at - timedelta(minutes=30)
                expires = refreshed + timedelta(seconds=3600)
                state, reason = Registration.State.ENDED, Registration.EndReason.EXPIRED
                last_kind, last_count = RegistrationEvent.Kind.EXPIRED, 1
                reg_impus = []
            regs.append(
                (
                    pk,
                    enterprise_id,
                    m.id,
                    m.owner.id,
                    f"instance:{instance}",
                    instance,
                    device_label(user_agent=ua, instance=instance, contact_uri=contact),
                    reg_impus,
                    contact,
                    f"sip:{m.e164}@{spec.domain};gr={instance}",
                    "",
                    ua,
                    "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=2620100011234567"
                    if kind == "imei"
                    else "",
                    host,
                    f"{uuid.UUID(int=pk)}@{host}",
                    rng.randrange(1, 5000),
                    "",
                    state,
                    first,
                    refreshed,
                    expires,
                    ended_at,
                    reason,
                    [],
                    "",
                    False,
                    3,
                    None,
                    None,
                    "",
                    last_event,
                )
            )
            events.append(
                (
                    registered_event,
                    enterprise_id,
                    pk,
                    "registered",
                    1,
                    first,
                    first,
                    impus[0] if impus else "",
                )
            )
            events.append(
                (
                    last_event,
                    enterprise_id,
                    pk,
                    last_kind,
                    last_count,
                    refreshed,
                    ended_at or refreshed,
                    "Expired" if not is_active else "",
                )
            )
            if is_active:
                for aor in impus:
                    versions[aor] = 100
        self.counts["registrations"] = copy_rows(
            Registration,
            [
                "id",
                "enterprise_id",
                "identity_id",
                "user_id",
                "device_key",
                "instance_id",
                "label",
                "impus",
                "contact_uri",
                "pub_gruu",
                "display_name",
                "user_agent",
                "access_network",
                "ip",
                "callid",
                "cseq",
                "q",
                "state",
                "first_registered_at",
                "last_refreshed_at",
                "expires_at",
                "ended_at",
                "end_reason",
                "enabled_services",
                "default_impu",
                "do_not_disturb",
                "ring_priority",
                "sign_out_requested_at",
                "sign_out_sent_at",
                "sign_out_error",
                "last_event_id",
            ],
            regs,
        )
        self.counts["active_registrations"] = len(active)
        self.counts["registration_events"] = copy_rows(
            RegistrationEvent,
            [
                "id",
                "enterprise_id",
                "registration_id",
                "kind",
                "count",
                "first_at",
                "last_at",
                "detail",
            ],
            events,
        )
        copy_rows(
            ReginfoVersion,
            ["aor", "version", "updated_at"],
            ((aor, v, now) for aor, v in versions.items()),
        )
        # The S-CSCF's reports: one audit row each, as ingest.apply_report writes them.
        client_label = f"Network client “{self.client.name}”"
        for _, _, is_active in plans:
            at = now - timedelta(seconds=rng.uniform(10, 86_400 * 30))
            self.audit.append(
                (
                    at,
                    "network_client",
                    None,
                    self.client.pk,
                    client_label,
                    "registration.reported",
                    "",
                    "",
                    "",
                    {
                        "contacts": [None, 2],
                        "new_devices": [None, int(is_active)],
                        "ended": [None, 0],
                    },
                )
            )

    # Call records ------------------------------------------------------------------------

    def make_call_records(self) -> None:
        rng, now, spec = self.rng, self.now, self.spec
        callers = [m for m in self.identities if m.status == Identity.Status.ACTIVE]
        if not callers or not spec.calls:
            self.counts["call_records"] = 0
            return

        def checks(level: str) -> tuple[list[list[object]], str]:
            facts = CallFacts(
                caller_known=level != "C",
                caller_detail="the network vouches for the number's own subscriber",
                number_in_blocks=True,
                number_identity_active=level != "C",
                number_identity_synced=level == "A",
                caller_owns_number=level != "C",
                caller_has_grant=False,
            )
            decision = attestation_for_call(facts)
            rows = [
                [c.name, c.passed, c.detail if c.passed else c.failure] for c in decision.checks
            ]
            rows.append(["Signing certificate covers the number", True, "delegate"])
            rows.append(["Verified business name (RCD)", level == "A", spec.name])
            return rows, decision.reason

        templates = {level: checks(level) for level in "ABC"}
        enterprise_id, client_id = self.enterprise.pk, self.client.pk
        span = 30 * 86_400

        def rows():
            for i in range(spec.calls):
                m = callers[rng.randrange(len(callers))]
                at = now - timedelta(seconds=span * (i / spec.calls) + rng.uniform(0, 30))
                outside = f"{rng.choice(EXTERNAL_PREFIXES)}{rng.randrange(10_000):04d}"
                if rng.random() < 0.7:
                    draw = rng.random()
                    level = "A" if draw < 0.86 else "B" if draw < 0.96 else "C"
                    checks_, reason = templates[level]
                    yield (
                        at,
                        enterprise_id,
                        m.id,
                        client_id,
                        "outgoing",
                        m.e164,
                        [outside],
                        level,
                        "",
                        reason,
                        checks_,
                        str(uuid.UUID(int=rng.getrandbits(128))),
                        spec.name if level == "A" else "",
                        "",
                    )
                else:
                    draw = rng.random()
                    verstat = (
                        VERSTAT_PASSED
                        if draw < 0.9
                        else VERSTAT_FAILED
                        if draw < 0.97
                        else VERSTAT_NO_VALIDATION
                    )
                    reason = (
                        "verified" if verstat == VERSTAT_PASSED else "438 Invalid Identity Header"
                    )
                    yield (
                        at,
                        enterprise_id,
                        m.id,
                        client_id,
                        "incoming",
                        outside,
                        [m.e164],
                        "A" if verstat == VERSTAT_PASSED else "",
                        verstat,
                        reason,
                        [],
                        "",
                        "",
                        "",
                    )

        self.counts["call_records"] = copy_rows(
            CallRecord,
            [
                "created_at",
                "enterprise_id",
                "identity_id",
                "network_client_id",
                "direction",
                "orig_tn",
                "dest_tns",
                "attestation",
                "verstat",
                "reason",
                "checks",
                "origid",
                "caller_name",
                "request_id",
            ],
            rows(),
        )

    # Audit and call authentication -------------------------------------------------------

    def audit_row(self, at, person: Person | None, action, target_type, target_id, label, changes):
        if person is None:
            self.audit.append(
                (
                    at,
                    "system",
                    None,
                    None,
                    "system",
                    action,
                    target_type,
                    str(target_id),
                    label[:254],
                    changes,
                )
            )
        else:
            self.audit.append(
                (
                    at,
                    "user",
                    person.id,
                    None,
                    person.email,
                    action,
                    target_type,
                    str(target_id),
                    label[:254],
                    changes,
                )
            )

    def write_audit(self) -> None:
        enterprise_id = self.enterprise.pk
        self.audit.sort(key=lambda row: row[0])
        self.counts["audit_events"] = copy_rows(
            AuditEvent,
            [
                "created_at",
                "enterprise_id",
                "actor_kind",
                "actor_user_id",
                "actor_token_id",
                "actor_network_client_id",
                "actor_label",
                "action",
                "target_type",
                "target_id",
                "target_label",
                "changes",
                "ip",
            ],
            (
                (
                    at,
                    enterprise_id,
                    kind,
                    user_id,
                    None,
                    client_id,
                    label,
                    action,
                    ttype,
                    tid,
                    tlabel,
                    changes,
                    "192.0.2.10" if kind == "user" else None,
                )
                for at, kind, user_id, client_id, label, action, ttype, tid, tlabel, changes in (
                    self.audit
                )
            ),
        )

    def make_call_authentication(self) -> None:
        """The enterprise's delegate certificate (under the operator's issuing CA; a lab PKI
        is made when there is none this process can sign with) and its vetted business
        name."""
        actor = Actor.system()
        try:
            credentials.delegate_certificate_issue(actor=actor, enterprise=self.enterprise)
        except (RuleViolation, CallAuthError):
            # No operator issuing CA (a database from before it), or one sealed with
            # another key.
            credentials.lab_pki_create(
                actor=actor, operator_name=settings.OPERATOR_NAME, spc="1234"
            )
            credentials.delegate_certificate_issue(actor=actor, enterprise=self.enterprise)
        CallerName.objects.create(
            enterprise=self.enterprise,
            name=self.spec.name,
            call_reason="About your delivery",
            vetting=CallerName.Vetting.VETTED,
            vetted_at=self.now,
        )


class Command(BaseCommand):
    help = "Bulk benchmark data: a big enterprise and a small one (replaces earlier bench data)."

    def add_arguments(self, parser):
        parser.add_argument("--employees", type=int, default=10_000)
        parser.add_argument("--ues", type=int, default=25_000, help="Active registrations.")
        parser.add_argument("--calls", type=int, default=500_000, help="Call records (30 days).")
        parser.add_argument(
            "--small-employees", type=int, default=50, help="Employees of the second enterprise."
        )
        parser.add_argument("--seed", type=int, default=2026)
        parser.add_argument(
            "--delete-only", action="store_true", help="Only delete earlier bench data."
        )
        parser.add_argument(
            "--any-database",
            action="store_true",
            help="Run even if the database name does not contain 'bench'.",
        )

    def handle(self, *args, **options):
        if connection.vendor != "postgresql":
            raise CommandError("bench_data needs PostgreSQL (it writes with COPY).")
        name = connection.settings_dict["NAME"]
        if "bench" not in name and not options["any_database"]:
            raise CommandError(
                f"The database {name!r} does not look like a benchmark database; bench_data "
                "deletes bench tenants' audit rows. Use --any-database to run anyway."
            )
        started = time.monotonic()
        deleted = delete_bench_data()
        report = {"deleted": sum(deleted.values()), "delete_seconds": _since(started)}
        if options["delete_only"]:
            self.stdout.write(json.dumps(report))
            return
        rng = random.Random(options["seed"])  # data, not secrets
        now = timezone.now()
        raw, key_hash = new_secret(NetworkClient.TOKEN_PREFIX)
        with transaction.atomic():
            client = NetworkClient.objects.create(
                name=NETWORK_CLIENT_NAME, key_hash=key_hash, hint=raw[-4:]
            )
            made = {}
            for spec in specs(
                options["employees"], options["ues"], options["calls"], options["small_employees"]
            ):
                made[spec.slug] = EnterpriseMaker(spec, rng=rng, client=client, now=now).run()
        # Written around the services, so no change told the call path's cache: what it
        # holds of the earlier bench data must not be taken for this data.
        generations.bump_after_commit(enterprise_id=None)
        with connection.cursor() as cursor:
            # Vacuumed as well as analysed: else autovacuum visits the tables just
            # written (500,000 call records) during the first benchmark, and its figures
            # vary with when it does.
            cursor.execute("VACUUM (ANALYZE)")
        report.update(
            enterprises=made,
            network_token=raw,
            admin_emails={slug: f"admin@{slug}.example" for slug in made},
            seconds=_since(started),
        )
        self.stdout.write(json.dumps(report))


def _since(started: float) -> float:
    return round(time.monotonic() - started, 2)
