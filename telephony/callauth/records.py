"""The record of every signing and verification, kept off the request path.

A request appends its record to a Redis stream (CALL_RECORD_STREAM_URL, the broker's
Redis by default); a call path request does so once it is answered (``answer_first``),
so that the SBC never waits on the append's round trip. A periodic task
(``store_pending``) writes the stream in batches with one bulk insert and acknowledges
only what is committed. A writer that dies mid-batch leaves its entries pending, and the
next one claims them once they have been idle for CALL_RECORD_CLAIM_IDLE_SECONDS; a
record's id, made at request time and unique in the table, makes a second delivery write
nothing. Without a stream (the embedded default, no Redis) and when Redis refuses the
append, the request writes its record itself. docs/callpath.md has the picture.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from accounts.models import Enterprise, NetworkClient
from telephony.models import CallRecord, Identity

log = logging.getLogger(__name__)

STREAM = "call-records"
GROUP = "writers"
BATCH = 500

# What a record carries through the stream: every column but the table's own id.
FIELDS = tuple(
    f.attname
    for f in CallRecord._meta.concrete_fields
    if f.attname not in ("id", "record_id", "created_at")
)


@functools.lru_cache(maxsize=4)
def _connect(url: str, pid: int) -> redis.Redis:
    """A client per URL and process, with one connection of its own (kernel/cache.py
    says why)."""
    return redis.Redis.from_url(
        url, socket_timeout=2, socket_connect_timeout=2, single_connection_client=True
    )


def _stream() -> redis.Redis | None:
    url = settings.CALL_RECORD_STREAM_URL
    return _connect(url, os.getpid()) if url else None


# The records of this thread's request, held until it is answered (``answer_first``).
_held = threading.local()


def answer_first() -> None:
    """Hold the records this thread's request keeps until its answer has been sent
    (``append_held``, on Django's request_finished). What a request before left held
    (its answer never closed) is appended first."""
    append_held()
    _held.records = []


def append_held(**_signal) -> None:
    """Append the records held for the request just answered."""
    held, _held.records = getattr(_held, "records", None), None
    for record in held or ():
        try:
            _append(record)
        except Exception:  # the answer is sent: say which record is lost, keep the others
            log.exception("call record %s lost: not taken by stream or database", record.record_id)


def keep(record: CallRecord) -> CallRecord:
    """Record a call: appended to the stream (written to the table by the periodic
    writer) or, without one, written now; after the answer, if the request asked for it
    (``answer_first``). Returns the record, with its id."""
    record.record_id = record.record_id or uuid.uuid4()
    held = getattr(_held, "records", None)
    if held is not None:
        held.append(record)
    else:
        _append(record)
    return record


def _append(record: CallRecord) -> None:
    stream = _stream()
    if stream is None:
        record.save()
        return
    try:
        stream.xadd(STREAM, {"r": _encode(record)})
    except redis.RedisError as exc:
        log.warning("call record written directly, the record stream refused it: %s", exc)
        record.save()


def _encode(record: CallRecord) -> str:
    values = {name: getattr(record, name) for name in FIELDS}
    values["record_id"] = str(record.record_id)
    values["created_at"] = record.created_at.isoformat()
    return json.dumps(values, separators=(",", ":"))


def _decode(raw: str | bytes) -> CallRecord:
    values = json.loads(raw)
    values["record_id"] = uuid.UUID(values["record_id"])
    values["created_at"] = datetime.fromisoformat(values["created_at"])
    return CallRecord(**values)


def _consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _ensure_group(stream: redis.Redis) -> None:
    try:
        stream.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def store_batch(stream: redis.Redis, consumer: str, count: int = BATCH) -> int:
    """Write one batch: entries a dead writer left unacknowledged first, else new ones.
    Returns how many entries it took (0: nothing to do)."""
    idle_ms = int(settings.CALL_RECORD_CLAIM_IDLE_SECONDS * 1000)
    claimed = stream.xautoclaim(STREAM, GROUP, consumer, idle_ms, "0-0", count=count)
    entries = [(i, f) for i, f in claimed[1] if f]  # entries deleted meanwhile come as None
    if not entries:
        read: Any = stream.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=count)
        entries = read[0][1] if read else []
    if not entries:
        return 0
    rows = []
    for entry_id, fields in entries:
        try:
            rows.append(_checked(fields[b"r"]))
        except (KeyError, ValueError, TypeError) as exc:  # not ours: dropped, said once
            log.error("call record stream entry %s is malformed: %s", entry_id, exc)
    _store(rows)
    ids = [entry_id for entry_id, _ in entries]
    stream.xack(STREAM, GROUP, *ids)  # only what is committed
    stream.xdel(STREAM, *ids)
    return len(entries)


# What an entry may carry: the record's columns (a stream entry is a record's JSON).
_KEYS = frozenset((*FIELDS, "record_id", "created_at"))


def _checked(raw: bytes) -> str:
    """An entry's JSON, once it is seen to be a record's; else ValueError or TypeError."""
    values = json.loads(raw)
    if not isinstance(values, dict) or not _KEYS.issuperset(values):
        raise ValueError("not a call record")
    uuid.UUID(values["record_id"])
    datetime.fromisoformat(values["created_at"])
    return raw.decode()


def _store(rows: list[str]) -> None:
    """Write a batch in one statement. Should the database refuse it, the records go
    again as model rows: those of a network client or identity deleted since their calls
    without the reference, and, for a value it cannot hold (which the APIs refuse at the
    door), one at a time, each it refuses dropped and said, so that it never holds up
    the others (a batch refused whole would be claimed again, and fail, for ever)."""
    try:
        _insert(rows)
        return
    except (DatabaseError, ValueError):
        pass
    records = [_decode(row) for row in rows]
    _forget_vanished(records)
    try:
        _write(records)
        return
    except (DatabaseError, ValueError):
        pass
    for record in records:
        try:
            _write([record])
        except (DatabaseError, ValueError) as exc:
            log.error("call record %s refused by the database, dropped: %s", record.record_id, exc)


def _insert(rows: list[str]) -> None:
    """The rows, as the stream carries them, in one statement: on PostgreSQL its JSON
    functions map each onto the table's columns, with no model instance per record (a
    third of the writer's CPU per record); elsewhere Django's bulk insert."""
    if connection.vendor != "postgresql":
        _write([_decode(row) for row in rows])
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_insert_sql(), ["[" + ",".join(rows) + "]"])


@functools.cache
def _insert_sql() -> str:
    table = connection.ops.quote_name(CallRecord._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(k) for k in _KEYS)
    # The unique record id: an entry delivered twice is written once.
    return (
        f"INSERT INTO {table} ({columns}) SELECT {columns} "  # noqa: S608 - the model's names
        f"FROM jsonb_populate_recordset(NULL::{table}, %s::jsonb) ON CONFLICT DO NOTHING"
    )


def _write(records: list[CallRecord]) -> None:
    with transaction.atomic():
        # The unique record id: an entry delivered twice is written once.
        CallRecord.objects.bulk_create(records, ignore_conflicts=True)


def _forget_vanished(records: list[CallRecord]) -> None:
    """Keep the records, without references to rows deleted since their calls."""
    for field, model in (
        ("network_client_id", NetworkClient),
        ("identity_id", Identity),
        ("enterprise_id", Enterprise),
    ):
        wanted = {getattr(r, field) for r in records} - {None}
        there = set(model.objects.filter(pk__in=wanted).values_list("pk", flat=True))
        for record in records:
            if getattr(record, field) not in there:
                setattr(record, field, None)


# A writer (a worker process) that has taken nothing for this long and holds nothing
# unacknowledged is gone: its name leaves the group, which would otherwise list every
# worker process that ever ran.
FORGET_IDLE_WRITERS_SECONDS = 3600


def _forget_idle_writers(stream: redis.Redis, consumer: str) -> None:
    for writer in stream.xinfo_consumers(STREAM, GROUP):
        name = writer["name"].decode() if isinstance(writer["name"], bytes) else writer["name"]
        idle_ms = FORGET_IDLE_WRITERS_SECONDS * 1000
        if name != consumer and writer["pending"] == 0 and writer["idle"] >= idle_ms:
            stream.xgroup_delconsumer(STREAM, GROUP, name)


def store_pending(budget_seconds: float = 5.0) -> int:
    """Periodic: write batches until the stream is empty or the budget is spent."""
    stream = _stream()
    if stream is None:
        return 0
    _ensure_group(stream)
    consumer = _consumer()
    _forget_idle_writers(stream, consumer)
    stored = 0
    deadline = time.monotonic() + budget_seconds
    while time.monotonic() < deadline:
        taken = store_batch(stream, consumer)
        stored += taken
        if taken == 0:
            break
    return stored


def backlog() -> int | None:
    """Entries not yet written (appended or pending), for /metrics and the bench; None
    without a stream."""
    stream = _stream()
    return None if stream is None else int(stream.xlen(STREAM))
