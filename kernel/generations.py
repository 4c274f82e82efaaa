"""Generations of the facts the call path keeps in the shared cache (docs/callpath.md).

Every entry records the generations it was read under: one per enterprise whose rows it
was read from, and the operator's (operator staff's and the system's changes, and what
belongs to no enterprise). A transaction that changes such rows bumps the generations
it touched once it commits (``bump_after_commit``: the audit writer and the HSS sync's
state record call it), and an entry read under an older generation is never used again.
A generation is a random token, not a counter: setting it is atomic in every backend.

The ``callpath`` cache is Redis when CACHE_URL is set; in the embedded default it is a
dummy, so that the web process and the worker (each with its own memory) never disagree:
every call then reads the database.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.dummy import DummyCache
from django.db import transaction

log = logging.getLogger(__name__)

CACHE = "callpath"
OPERATOR = "operator"  # the scope of what belongs to no enterprise

Scope = int | str  # an enterprise id, or OPERATOR


def _cache():
    return caches[CACHE]


def enabled() -> bool:
    return not isinstance(_cache(), DummyCache)


def _key(scope: Scope) -> str:
    return f"generation:{scope}"


# The scope of what names nobody: an address (IMPU) no live identity holds now may be a
# new identity's, in any enterprise, after an onboarding, a relocation or a new alias.
ADDRESSES = "addresses"


def bump_addresses_after_commit() -> None:
    """``bump_after_commit`` for a change that may give an identity a new address."""
    _bump_after_commit({ADDRESSES})


def devices(enterprise_id: int) -> str:
    """The scope of an enterprise's devices (its registrations), apart from its other
    rows: what only the pages that show devices read (kernel/fragments.py)."""
    return f"devices:{enterprise_id}"


def bump_after_commit(*, enterprise_id: int | None, operator: bool = False) -> None:
    """Make every entry that was read from the enterprise's rows (and, with ``operator``
    or no enterprise, every entry) stale: now, for reads inside this transaction, and
    once it commits, for entries that others read meanwhile from the old rows."""
    scopes: set[Scope] = {OPERATOR} if operator or enterprise_id is None else set()
    if enterprise_id is not None:
        scopes |= {enterprise_id, devices(enterprise_id)}
    _bump_after_commit(scopes)


def bump_devices_after_commit(enterprise_id: int) -> None:
    """``bump_after_commit`` for a change of the enterprise's devices only."""
    _bump_after_commit({devices(enterprise_id)})


def _bump_after_commit(scopes: set[Scope]) -> None:
    if transaction.get_connection().in_atomic_block:
        _bump(scopes)
    transaction.on_commit(lambda: _bump(scopes))  # at once outside a transaction


def _bump(scopes: set[Scope]) -> None:
    if not enabled():
        return
    tokens = {s: uuid.uuid4().hex for s in scopes}
    try:
        _cache().set_many({_key(s): token for s, token in tokens.items()}, timeout=None)
    except Exception:  # the change is committed; cached entries lapse by their timeout
        log.exception("the call path's cache could not be told of a change (%s)", scopes)
        _near.forget(scopes)
    else:
        _near.read(tokens)


# Per process, and only a hint: the scopes each entry was last read under, so that a
# request fetches an entry's generations (and what a caller reads under them, e.g. an
# enterprise's signers: ``scopes_seen``) in the same round trip as the entry itself.
# Nothing is decided by it: a hint that no longer holds costs the round trip it would
# have saved. Forgotten whole when it holds SCOPES_SEEN_KEPT entries.
_scopes_seen: dict[str, tuple[Scope, ...]] = {}
SCOPES_SEEN_KEPT = 100_000


def scopes_seen(key: str) -> tuple[Scope, ...]:
    """The scopes the entry at ``key`` was last read under in this process (a hint)."""
    return _scopes_seen.get(key, ())


def _seen(key: str, scopes: Iterable[Scope]) -> None:
    if len(_scopes_seen) >= SCOPES_SEEN_KEPT:
        _scopes_seen.clear()
    _scopes_seen[key] = tuple(scopes)


class _Near:
    """The call path's copy of the shared cache in this process (``Reader(near=True)``),
    which spares a call the round trip to it and the unpickling of what it reads there.

    A generation read from the shared cache is taken as current for
    CALL_FACTS_NEAR_SECONDS (at once the new one, for a change this process made), and
    an entry is used while the generations it was read under are: another process's
    change reaches this one's calls within that time, well inside the call path's
    second (docs/callpath.md). The values are shared by the calls that use them, so
    nothing may change one but a hint ``Reader.keep`` stores (when a credential was
    last used)."""

    def __init__(self):
        self.generations: dict[Scope, tuple[str, float]] = {}
        self.entries: dict[str, tuple] = {}
        # Keys the shared cache did not hold (what a call fetches in case it needs it,
        # such as the operator's signers): apart, so that guessed credentials cannot
        # push the entries out.
        self.absent: set[str] = set()

    def generation(self, scope: Scope) -> str | None:
        token, read_at = self.generations.get(scope, (None, 0.0))
        fresh = time.monotonic() - read_at < settings.CALL_FACTS_NEAR_SECONDS
        return token if fresh else None

    def read(self, tokens: dict[Scope, str]) -> None:
        now = time.monotonic()
        self.generations.update((s, (token, now)) for s, token in tokens.items())

    def forget(self, scopes: Iterable[Scope]) -> None:
        for scope in scopes:
            self.generations.pop(scope, None)

    def keep(self, key: str, entry: tuple | None) -> None:
        """An entry as the shared cache holds it; None: it holds none."""
        if entry is None:
            if len(self.absent) >= NEAR_KEPT:
                self.absent.clear()
            self.absent.add(key)
            return
        if len(self.entries) >= NEAR_KEPT:
            self.entries.clear()
        self.entries[key] = entry
        self.absent.discard(key)

    def drop(self, key: str) -> None:
        self.entries.pop(key, None)
        self.absent.discard(key)


_near = _Near()


def forget_near() -> None:
    """Empties this process's near copy (for a cache emptied under it, as in tests)."""
    global _near
    _near = _Near()


_STALE = object()  # no entry, or one read under an old generation
# Entries the near copy holds at most: emptied whole when full, as the hints are.
NEAR_KEPT = 20_000


class Reader:
    """One request's reads of the callpath cache: entries and the generations they
    are checked against, each fetched in as few round trips as possible. With ``near``
    (the call path), from this process's copy first (``_Near``)."""

    def __init__(self, *, near: bool = False):
        self.generations: dict[Scope, str] = {}
        self.entries: dict[str, Any] = {}
        self.near = near and settings.CALL_FACTS_NEAR_SECONDS > 0
        self.from_near: set[str] = set()
        # Without the cache (none, or Redis did not answer) this request reads the
        # database, each entry once, and keeps nothing.
        self.offline = not enabled()
        self.read_offline: dict[str, Any] = {}

    def fetch(self, keys: Iterable[str], scopes: Iterable[Scope] = ()) -> None:
        """One round trip (none for what the near copy holds): these entries, and the
        generations of these scopes, of the operator and of the scopes the entries were
        last read under (``scopes_seen``) not read yet."""
        if self.offline:
            return
        names = [k for k in keys if k not in self.entries]
        hinted = {s for name in names for s in scopes_seen(name)}
        wanted = [s for s in {OPERATOR, *scopes, *hinted} if s not in self.generations]
        if self.near:
            names = self._from_near(names)
            wanted = self._from_near_generations(wanted)
        if not (wanted or names):
            return
        try:
            got = _cache().get_many([*names, *(_key(s) for s in wanted)])
            for scope in wanted:
                got[_key(scope)] = got.get(_key(scope)) or self._start(scope)
        except Exception as exc:  # noqa: BLE001 - any fault of the cache: the database answers
            log.warning("the call path reads the database: its cache does not answer (%s)", exc)
            self.offline = True
            return
        for name in names:
            entry = self.entries[name] = got.get(name)
            if entry is not None:
                _seen(name, entry[0])
            if self.near:
                _near.keep(name, entry)
        for scope in wanted:
            self.generations[scope] = got[_key(scope)]
        if self.near:
            _near.read({scope: self.generations[scope] for scope in wanted})

    def _from_near(self, names: list[str]) -> list[str]:
        """Takes what the near copy holds or knows to be absent; the names it does not."""
        missing = []
        for name in names:
            entry = _near.entries.get(name)
            if entry is None and name not in _near.absent:
                missing.append(name)
            else:
                self.entries[name] = entry
                self.from_near.add(name)
        return missing

    def _from_near_generations(self, scopes: list[Scope]) -> list[Scope]:
        """Takes the near copy's current generations; the scopes it has none for."""
        missing = []
        for scope in scopes:
            token = _near.generation(scope)
            if token is None:
                missing.append(scope)
            else:
                self.generations[scope] = token
        return missing

    def scopes_of(self, key: str) -> set[Scope]:
        """The scopes a fetched entry was read under (to fetch their generations, and
        what depends on them, in one further round trip)."""
        entry = self.entries.get(key)
        return set(entry[0]) if entry is not None else set()

    def keep(self, key: str) -> None:
        """Store an entry again after a change to its value that no generation covers
        (a hint such as when a credential was last used), under the generations it
        was read under."""
        entry = self.entries.get(key)
        if entry is not None and not self.offline:
            self._store(key, entry)

    def _store(self, key: str, entry: tuple) -> None:
        if self.near:
            _near.keep(key, entry)
        try:
            _cache().set(key, entry, timeout=settings.CALL_FACTS_CACHE_SECONDS)
        except Exception as exc:  # noqa: BLE001 - not kept; the next call reads again
            log.warning("the call path's cache keeps nothing now (%s)", exc)
            self.offline = True

    @staticmethod
    def _start(scope: Scope) -> str:
        """The scope's generation after an eviction or flush: a new one, which no entry has."""
        token = uuid.uuid4().hex
        _cache().add(_key(scope), token, timeout=None)
        return _cache().get(_key(scope)) or token

    def _current(self, key: str) -> Any:
        """The fetched entry's value if every generation it was read under is current."""
        entry = self.entries.get(key)
        if entry is None:
            return _STALE
        read_under, value = entry
        self.fetch((), read_under)  # a further round trip only for scopes not read yet
        if all(self.generations.get(s) == g for s, g in read_under.items()):
            return value
        return _STALE

    def value(self, key: str, load: Callable[[], tuple[Any, set[Scope] | None]]) -> Any:
        """The entry at ``key`` if every generation it was read under is current; else
        ``load()``: (value, the enterprises it was read from, or None when it must not
        be kept, e.g. it depends on what no scope covers)."""
        self.fetch([key])
        if self.offline:
            if key not in self.read_offline:
                self.read_offline[key] = load()[0]
            return self.read_offline[key]
        current = self._current(key)
        if current is _STALE and key in self.from_near:
            # The near copy's entry is older than a change, or was absent: another
            # process may have read it since, into the shared cache.
            self.from_near.discard(key)
            del self.entries[key]
            _near.drop(key)
            self.fetch([key])
            current = self._current(key)
        if current is not _STALE:
            return current
        value, scopes = load()
        if scopes is None or self.offline:
            return value
        if any(s not in self.generations for s in scopes):
            # Generations read after the load cannot vouch for it: read it again now.
            self.fetch((), scopes)
            value, again = load()
            if again is None or self.offline or any(s not in self.generations for s in again):
                return value
            scopes = again
        entry = ({s: self.generations[s] for s in {OPERATOR, *scopes}}, value)
        self.entries[key] = entry
        _seen(key, entry[0])
        self._store(key, entry)
        return value
