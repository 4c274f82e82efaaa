"""Writes for the operator's inventory: number blocks and SIM lines given to an
enterprise, and the numbers and lines its identities take from them. Each service is one
transaction with an audit row."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Length
from django.utils import timezone

from accounts import audit
from accounts.audit import Actor
from accounts.models import Enterprise
from kernel import csvfile
from kernel.errors import RuleViolation
from telephony.inventory import numbers
from telephony.models import Identity, NumberBlock, SimLine, TelephoneNumber

# --- Inventory (operator staff) -------------------------------------------------------


@transaction.atomic
def number_block_create(
    *, actor: Actor, enterprise: Enterprise, first_number: str, last_number: str, note: str = ""
) -> NumberBlock:
    """Assign a block of numbers to an enterprise; no number may belong to two."""
    actor.ensure_acts_for(enterprise)
    first, last, country, tns = numbers.tn_range(
        first_number, last_number, max_size=NumberBlock.MAX_SIZE
    )
    clash = _first_taken_between(first, last)
    if clash is not None:
        owner = "another enterprise" if clash.enterprise_id != enterprise.pk else enterprise.name
        raise RuleViolation(
            f"The block overlaps numbers already assigned to {owner} (e.g. {clash.e164}).",
            code="overlap",
        )
    block = NumberBlock.objects.create(
        enterprise=enterprise, country=country, first_number=first, last_number=last, note=note
    )
    try:
        with transaction.atomic():
            TelephoneNumber.objects.bulk_create(
                (TelephoneNumber(enterprise=enterprise, block=block, e164=tn) for tn in tns),
                batch_size=2000,
            )
    except IntegrityError as exc:  # a concurrent block took some of these numbers
        raise RuleViolation(
            "The block overlaps numbers just assigned elsewhere.", code="overlap"
        ) from exc
    audit.record(
        actor=actor,
        action="number_block.created",
        enterprise=enterprise,
        target=block,
        changes=audit.created(range=str(block), country=country, size=len(tns)),
    )
    return block


def _first_taken_between(first: str, last: str) -> TelephoneNumber | None:
    # Same-length E.164 strings sort like the numbers they spell.
    return (
        TelephoneNumber.objects.annotate(digits=Length("e164"))
        .filter(digits=len(first), e164__gte=first, e164__lte=last)
        .select_related("enterprise")
        .first()
    )


@transaction.atomic
def sim_line_create(*, actor: Actor, enterprise: Enterprise, imsi: str, iccid: str) -> SimLine:
    actor.ensure_acts_for(enterprise)
    imsi, iccid = numbers.clean_imsi(imsi), numbers.clean_iccid(iccid)
    if SimLine.objects.filter(Q(imsi=imsi) | Q(iccid=iccid)).exists():
        raise RuleViolation(
            f"A SIM line with IMSI {imsi} or ICCID {iccid} already exists.", code="duplicate"
        )
    line = SimLine.objects.create(enterprise=enterprise, imsi=imsi, iccid=iccid)
    audit.record(
        actor=actor,
        action="sim_line.created",
        enterprise=enterprise,
        target=line,
        changes=audit.created(imsi=imsi, iccid=iccid),
    )
    return line


# The operator's inventory upload (Django admin): a block row creates up to a block's
# numbers, so both caps stay well below the employee import's.
INVENTORY_MAX_BYTES = 2 * 1024 * 1024
INVENTORY_MAX_ROWS = 5_000


def inventory_import(*, actor: Actor, enterprise: Enterprise, kind: str, csv_text: str) -> int:
    """Load number blocks (columns first_number, last_number[, note]) or SIM lines
    (imsi, iccid) from CSV, all or nothing: a file with any bad row changes nothing and
    the error names every bad row."""
    columns = {"blocks": ("first_number", "last_number"), "lines": ("imsi", "iccid")}[kind]
    # Read whole before the first write: a file refused for its size, rows or encoding
    # writes nothing.
    records = list(
        csvfile.records(csv_text, max_bytes=INVENTORY_MAX_BYTES, max_rows=INVENTORY_MAX_ROWS)
    )
    header = [cell.strip() for cell in records[0][1]] if records else []
    missing = [c for c in columns if c not in header]
    if missing:
        raise RuleViolation(
            f"The CSV needs the columns {', '.join(columns)}; missing: {', '.join(missing)}.",
            field="file",
        )
    reader = ((number, dict(zip(header, cells, strict=False))) for number, cells in records[1:])
    problems, created = [], 0
    with transaction.atomic():
        for row_number, row in reader:
            try:
                with transaction.atomic():
                    if kind == "blocks":
                        number_block_create(
                            actor=actor,
                            enterprise=enterprise,
                            first_number=row.get("first_number", ""),
                            last_number=row.get("last_number", ""),
                            note=row.get("note", "")[:200],
                        )
                    else:
                        sim_line_create(
                            actor=actor,
                            enterprise=enterprise,
                            imsi=row.get("imsi", ""),
                            iccid=row.get("iccid", ""),
                        )
            except RuleViolation as exc:
                problems.append(f"row {row_number}: {exc.message}")
            else:
                created += 1
        if problems:  # raised inside the transaction: it all rolls back
            raise RuleViolation("Nothing was loaded. " + " ".join(problems[:50]), code="bad_rows")
    return created


# --- Numbers and lines for identities ---------------------------------------------------


def available_numbers(now: datetime) -> Q:
    return Q(status=TelephoneNumber.Status.FREE) | Q(
        status=TelephoneNumber.Status.QUARANTINED, quarantined_until__lte=now
    )


def available_at(number: TelephoneNumber, now: datetime) -> bool:
    """``available_numbers`` for a number already read."""
    if number.status == TelephoneNumber.Status.QUARANTINED:
        return number.quarantined_until is not None and number.quarantined_until <= now
    return number.status == TelephoneNumber.Status.FREE


def ensure_number_available(
    enterprise: Enterprise, e164: str, number: TelephoneNumber | None, now: datetime
) -> TelephoneNumber:
    """The chosen number (``number``, read and locked, or None when the enterprise has
    no such number), if it may be given to an identity now."""
    if number is None:
        raise RuleViolation(
            f"{e164} is not in {enterprise.name}'s number blocks.",
            code="number_not_ours",
            field="tn",
        )
    if not available_at(number, now):
        detail = (
            f"in quarantine until {number.quarantined_until:%Y-%m-%d}"
            if number.status == TelephoneNumber.Status.QUARANTINED
            else "already in use"
        )
        raise RuleViolation(f"{e164} is {detail}.", code="number_unavailable", field="tn")
    return number


def no_free_number(enterprise: Enterprise, country: str = "") -> RuleViolation:
    where = f" in {country.upper()}" if country else ""
    return RuleViolation(
        f"{enterprise.name} has no free number{where}. Ask the operator for another block.",
        code="no_free_number",
        field="tn",
    )


def free_numbers(
    enterprise: Enterprise, now: datetime, *, country: str = "", lock: bool = True
) -> QuerySet[TelephoneNumber]:
    """The enterprise's free numbers in the order they are given out (oldest block,
    lowest number); with ``lock``, locked as read (inside a transaction), and those
    another transaction locks skipped: concurrent onboardings each take different
    numbers instead of queueing for the same rows. of=self: the country filter joins the
    block, whose row must not be locked too (a concurrent allocation would then skip
    every number of the block)."""
    free = TelephoneNumber.objects.for_enterprise(enterprise).filter(available_numbers(now))
    if country:
        free = free.filter(block__country=country.upper())
    if lock:
        free = free.select_for_update(skip_locked=True, of=("self",))
    return free.order_by("block_id", "e164")


def allocate_number(enterprise: Enterprise, *, tn: str = "", country: str = "") -> TelephoneNumber:
    """The chosen TN, or the next free one (in ``country`` if given), now assigned."""
    now = timezone.now()
    if tn:
        e164, _ = numbers.parse_tn(tn)
        chosen = TelephoneNumber.objects.for_enterprise(enterprise).select_for_update()
        number = ensure_number_available(enterprise, e164, chosen.filter(e164=e164).first(), now)
    else:
        found = free_numbers(enterprise, now, country=country).first()
        if found is None:
            raise no_free_number(enterprise, country)
        number = found
    number.status = TelephoneNumber.Status.ASSIGNED
    number.quarantined_until = None
    number.save(update_fields=["status", "quarantined_until"])
    return number


def quarantine_number(number: TelephoneNumber) -> None:
    number.status = TelephoneNumber.Status.QUARANTINED
    number.quarantined_until = timezone.now() + timedelta(days=settings.NUMBER_QUARANTINE_DAYS)
    number.save(update_fields=["status", "quarantined_until"])


def take_line(enterprise: Enterprise, imsi: str) -> SimLine:
    imsi = numbers.clean_imsi(imsi)
    line = SimLine.objects.for_enterprise(enterprise).select_for_update().filter(imsi=imsi).first()
    in_use = line is not None and Identity.objects.filter(line=line).exists()
    return ensure_line_free(enterprise, imsi, line, in_use=in_use)


def ensure_line_free(
    enterprise: Enterprise, imsi: str, line: SimLine | None, *, in_use: bool
) -> SimLine:
    """The SIM line (read and locked, or None when the pool has no such IMSI), if no
    identity holds it (``in_use``, which the caller looked up)."""
    if line is None:
        raise RuleViolation(f"IMSI {imsi} is not in {enterprise.name}'s line pool.", field="imsi")
    if in_use:
        raise RuleViolation(
            f"The SIM line {imsi} is already in use.", code="line_in_use", field="imsi"
        )
    return line
