"""The one reader of uploaded CSV files, and the one writer of CSV downloads: the
employee import and the operator's inventory upload both read through it, so both have
the same limits; the exports (employees, devices, the audit trail, an import's rows to
correct) are written by ``lines`` and sent by ``download``.

A file is refused whole, with a RuleViolation on the ``file`` field, before anything is
written: larger than its cap, not UTF-8 text (a byte order mark is fine), binary, more
data rows than its cap, or not CSV. What the columns mean is the caller's business;
formula-safety is the writer's (``safe_cell``), and ``unguard`` undoes it on import.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator

from django.http import StreamingHttpResponse

from kernel.errors import RuleViolation

# A cell starting so is run as a formula by spreadsheets (OWASP: CSV injection).
FORMULA_STARTS = ("=", "-", "@", "\t", "\r")
E164_CELL = re.compile(r"^\+\d{6,15}$")

SAVE_AS = "Save it as “CSV UTF-8 (comma delimited)” and upload it again."


def _refuse(message: str, code: str) -> RuleViolation:
    return RuleViolation(message, code=code, field="file")


def _too_large(max_bytes: int) -> RuleViolation:
    return _refuse(
        f"The file is larger than {max_bytes // (1024 * 1024)} MB; split it into smaller files.",
        "file_too_large",
    )


def read_upload(upload, *, max_bytes: int) -> str:
    """The text of an uploaded file, read no further than one byte past the cap."""
    if upload.size is not None and upload.size > max_bytes:
        raise _too_large(max_bytes)
    return decode(upload.read(max_bytes + 1), max_bytes=max_bytes)


def decode(data: bytes, *, max_bytes: int) -> str:
    """The text of a file: UTF-8, with or without a byte order mark."""
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _refuse(f"The file is UTF-16 text. {SAVE_AS}", "bad_encoding")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _refuse(
            f"The file is not UTF-8 text (byte {exc.start + 1} is not). {SAVE_AS}",
            "bad_encoding",
        ) from exc
    if "\x00" in text:
        raise _refuse("The file holds binary data, not CSV text.", "bad_encoding")
    return text


def records(text: str, *, max_bytes: int, max_rows: int) -> Iterator[tuple[int, list[str]]]:
    """``(row, cells)`` for the header and then each data row, as a stream; ``row`` is
    the number a spreadsheet shows (a quoted newline stays in its row). Blank rows are
    skipped and not counted; more than ``max_rows`` data rows refuse the file."""
    if len(text) > max_bytes:
        raise _too_large(max_bytes)
    text = text.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    number = 0  # the spreadsheet row of the record just read
    seen = -1  # data rows so far; the header is not one
    try:
        for record in reader:
            number += 1
            if not any(cell.strip() for cell in record):
                continue
            seen += 1
            if seen > max_rows:
                raise _refuse(
                    f"The file has more than {max_rows:,} rows; split it into smaller files.",
                    "too_many_rows",
                )
            yield number, record
    except csv.Error as exc:
        raise _refuse(f"Row {number + 1} is not valid CSV ({exc}).", "bad_csv") from exc


def _delimiter(text: str) -> str:
    """Comma; or semicolon, which spreadsheets in many locales write instead."""
    header = text[:4096].partition("\n")[0]
    return ";" if "," not in header and ";" in header else ","


# --- Writing ------------------------------------------------------------------------------


class _Echo:
    """A file that hands back what is written, for csv.writer in a streamed response."""

    def write(self, value: str) -> str:
        return value


def _needs_guard(text: str) -> bool:
    """A spreadsheet would run the text as a formula, or the import would take a quote
    off it (a text that looks guarded already is guarded once more)."""
    return (
        text.startswith(FORMULA_STARTS)
        or (text.startswith("+") and not E164_CELL.match(text))
        or (text.startswith("'") and _needs_guard(text[1:]))
    )


def safe_cell(value: object) -> str:
    """The cell as text that a spreadsheet will not run as a formula: such a cell gets a
    leading quote, which ``unguard`` takes off again. A leading + is kept on an E.164
    number."""
    text = "" if value is None else str(value)
    return "'" + text if _needs_guard(text) else text


def unguard(cell: str) -> str:
    """Undo ``safe_cell``, so that an exported file imports unchanged."""
    return cell[1:] if cell.startswith("'") and _needs_guard(cell[1:]) else cell


def download(lines: Iterable[str], filename: str) -> StreamingHttpResponse:
    """A streamed CSV attachment named ``filename``; never kept by a cache (the exports
    hold people's data)."""
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


def lines(header: Iterable[str], rows: Iterable[Iterable[object]]) -> Iterator[str]:
    """CSV lines for a streamed download: a byte order mark first (so that spreadsheets
    read UTF-8), every cell formula-safe."""
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow(header)
    for row in rows:
        yield writer.writerow([safe_cell(cell) for cell in row])
