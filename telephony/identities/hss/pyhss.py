"""The PyHSS backend: keeps PyHSS (the open-source HSS, REST API of its release 2.0) in
step with the portal.

What the portal writes there, per identity:

- one ``ims_subscriber`` row, found by MSISDN, with ``msisdn``, ``msisdn_list`` (the
  identity's own MSISDN, then the MSISDNs shared with its owner), ``imsi``,
  ``ifc_path`` and ``sh_template_path``. PyHSS derives the IMPI from the IMSI and the
  IMPUs from the MSISDN, so every identity needs a SIM line and none can carry an
  alias IMPU. The ``scscf*``/``pcscf*`` fields are PyHSS's own registration state and
  are never written;
- the ``enabled`` flag of the operator's EPC ``subscriber`` row of that IMSI. Those
  rows and their AUC keys belong to the operator: the portal never creates or deletes
  them.

A suspended identity has no ``ims_subscriber`` row: PyHSS checks ``enabled`` for LTE
attach (S6a) but never in its Cx answers, so only a missing row makes it refuse an IMS
registration. Suspending deregisters the UEs (while the row still names the IMSI: PyHSS
finds what to deregister through it), then deletes the row and disables the line;
resuming writes the row again.

Facts about PyHSS 2.0 this module is built on (each checked against the real one in
``telephony/tests/test_pyhss_peer.py``):

- PyHSS strips a leading ``+`` from MSISDNs on writes but matches lookups on the path as
  given, so MSISDNs travel without ``+`` everywhere and get it back when read;
- it answers ``null`` for any failure it does not classify: a missing row, but also
  several rows where one was expected. ``null`` means "not found" only for lookups by
  a unique key (``ims_subscriber.msisdn``, ``subscriber.imsi``); ``ims_subscriber.imsi``
  is not unique, and ``/oam/deregister/<imsi>`` answers ``null`` when the IMSI has no
  row, or several, or no EPC subscriber;
- a failure of its own database answers 400 (an ``OperationalError`` even when it labels
  it an "integrity error"; on some routes wrapped as ``[{...}, 400]``): transient;
- row ids are looked up on each call, never kept: SQLite reuses them after deletes;
- list routes page with LIMIT/OFFSET and no ORDER BY, so a row can move between pages
  while they are read: rows are keyed by MSISDN or IMSI, and every conclusion drawn
  from a listing is checked again by key before anything is deleted.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import urllib3
from django.conf import settings
from urllib3.exceptions import HTTPError, LocationValueError, NewConnectionError

from kernel.observability import logs_failed_calls
from telephony.identities.hss.base import (
    Change,
    HssBackend,
    HssPermanentError,
    HssTransientError,
    SharedAccess,
    Subscription,
)

log = logging.getLogger(__name__)

# Far above any answer we ask for (a list page of 100 rows is tens of kilobytes); a
# larger one is not PyHSS talking and reading it whole would only cost memory.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
# How much of a refusal's text goes into an error message (shown to operator staff).
MAX_REASON_CHARS = 300
# What PyHSS's 400 says when its own database failed for a while (SQLite locked, a
# MySQL/PostgreSQL connection lost, its pool exhausted): worth trying again.
DATABASE_FAULTS = ("OperationalError", "InterfaceError", "QueuePool limit", "database is locked")
# What an HTTP header value may hold (RFC 9110, field-value, as http.client checks it).
HEADER_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?")
# The fields the portal writes on an ``ims_subscriber`` row.
WRITTEN_FIELDS = ("msisdn", "msisdn_list", "imsi", "ifc_path", "sh_template_path")


class _NotJson:
    """Marks an answer body that is not JSON (or too large to read)."""


NOT_JSON = _NotJson()


@dataclass(frozen=True)
class PyHssSubscription(Subscription):
    """A subscription as PyHSS holds it, with the templates its row names."""

    ifc_path: str = ""
    sh_template_path: str = ""


class PyHss(HssBackend):
    """PyHSS 2.0 over its REST API, keyed by MSISDN (``ims_subscriber``) and IMSI
    (EPC ``subscriber``); never by PyHSS's row ids, which are looked up on each call."""

    name = "pyhss"
    supports_aliases = False
    requires_line = True
    holds_device_settings = False
    # Rows per page when listing; PyHSS's own default.
    page_size = 100

    def __init__(self, *, page_size: int | None = None) -> None:
        self.url = settings.HSS_PYHSS_URL.rstrip("/")
        self.timeout = settings.HSS_TIMEOUT_SECONDS
        self.ifc_path = settings.HSS_PYHSS_IFC_PATH
        self.sh_template_path = settings.HSS_PYHSS_SH_TEMPLATE_PATH
        if page_size is not None:
            if page_size < 1:  # PyHSS reads 0 as "everything at once"; paging needs 1+
                raise ValueError("page_size must be at least 1")
            self.page_size = page_size
        self._provisioning_key = settings.HSS_PYHSS_PROVISIONING_KEY
        self.headers = {"Accept": "application/json"}
        if self._provisioning_key:
            self.headers["Provisioning-Key"] = self._provisioning_key
        # The lines' `enabled` flags as the last `list_all` read them (for `differences`).
        self._enabled_by_imsi: dict[str, bool] | None = None
        # Round trips made so far (for the bench and the tests that count them).
        self.calls = 0

    # --- The backend contract ---------------------------------------------------------

    def apply(self, change: Change, *, operation_id: str) -> None:
        """One identity's push, in an order that leaves at most one row per IMSI at
        every moment and deregisters while the row that names the IMSI is there.
        Every check that can refuse the subscription runs before the first write."""
        desired = change.desired
        if desired is not None:
            _check_representable(desired)
        if desired is not None and desired.enabled:
            self._activate(desired, change, operation_id)
        else:
            for msisdn in dict.fromkeys(
                m for m in (desired and desired.msisdn, change.stale_msisdn) if m
            ):
                self._withdraw(msisdn, operation_id)
            if desired is not None:  # suspended: the line stops attaching too
                self.release_line(desired.imsi, operation_id=operation_id)
        if change.released_line:
            self.release_line(change.released_line, operation_id=operation_id)

    def upsert(self, subscription: Subscription, *, operation_id: str) -> None:
        """The desired state of one identity, with no number or line left behind."""
        self.apply(Change(desired=subscription), operation_id=operation_id)

    def remove(self, msisdn: str, *, operation_id: str, keep_imsi: str = "") -> None:
        """Deregister and delete the ``ims_subscriber`` of the MSISDN; a missing row is
        not an error."""
        self._withdraw(msisdn, operation_id, keep_imsi=keep_imsi)

    def release_line(self, imsi: str, *, operation_id: str) -> None:
        """Disable (never delete: it is the operator's) the EPC subscriber of the line."""
        epc = self._epc_subscriber(imsi)
        if epc is not None and epc.get("enabled"):
            self._set_enabled(epc, False, operation_id)

    def get(self, msisdn: str) -> PyHssSubscription | None:
        row = self._ims_subscriber(msisdn)
        if row is None:
            return None
        imsi = _imsi_of(row)
        epc = self._epc_subscriber(imsi) if imsi else None
        # Without an enabled EPC subscriber the line cannot attach: not enabled.
        return _subscription(msisdn, row, enabled=bool(epc and epc.get("enabled")))

    def list_all(self) -> Iterator[PyHssSubscription]:
        """Every ``ims_subscriber``, with ``enabled`` joined from the EPC subscribers
        by IMSI. Both lists are read whole and keyed first: a row that PyHSS's
        unordered paging shows twice counts once (one it skipped is looked up again
        by the reconcile before it is called missing)."""
        enabled_by_imsi = {
            _imsi_of(row): bool(row.get("enabled")) for row in self._pages("/subscriber/list")
        }
        self._enabled_by_imsi = enabled_by_imsi
        rows = {str(row["msisdn"]): row for row in self._pages("/ims_subscriber/list")
                if row.get("msisdn")}  # fmt: skip
        for msisdn, row in rows.items():
            enabled = enabled_by_imsi.get(_imsi_of(row), False)
            yield _subscription(msisdn, row, enabled=enabled)

    def deregister(self, msisdn: str, *, imsi: str = "", contact: str = "") -> None:
        """Ask PyHSS to deregister the subscriber from the network. PyHSS works per
        IMSI, through the ``ims_subscriber`` row that names it, and has no per-contact
        deregistration: asked for one ``contact``, it deregisters all the subscriber's
        UEs, and the others have to register again."""
        row = self._ims_subscriber(msisdn)
        if row is not None and _imsi_of(row):
            self._deregister(_imsi_of(row))
        # No row: PyHSS cannot reach the S-CSCF for it, and refuses its registrations.

    def check(self) -> str:
        """Whether PyHSS takes our Provisioning-Key, without writing anything: a PATCH
        of no fields to a row id that never exists (ids count from 1) answers 401 for
        a refused key and `null` otherwise. GETs need no key, so only a write shows.
        The answer is short and names no address (``/readyz`` shows it to anyone); the
        details go to the log."""
        try:
            self._send("PATCH", "/ims_subscriber/0", body={}, operation_id="portal-key-check")
        except HssPermanentError as exc:
            if "Provisioning-Key refused" in str(exc):
                return "PyHSS key refused (HTTP 401): check HSS_PYHSS_PROVISIONING_KEY."
            log.warning("PyHSS check: %s", exc)
            return "PyHSS answered the key check unexpectedly (see the log)."
        except HssTransientError as exc:
            log.warning("PyHSS check: %s", exc)
            return "PyHSS not reachable: the key is not checked yet."
        return ""

    def comparable(self, subscription: Subscription) -> dict:
        """Only what PyHSS holds. It derives IMPI and IMPUs itself, has no fields for
        services or display name (the iFC and Sh templates are the same for everyone),
        and ``msisdn_list`` lets the subscriber both make and receive calls on every
        MSISDN in it: the make/receive rights of a grant are not representable, so
        only which MSISDNs are shared is compared."""
        return {
            "imsi": subscription.imsi,
            "enabled": subscription.enabled,
            "shared": sorted({s.msisdn for s in subscription.shared}),
            "ifc_path": getattr(subscription, "ifc_path", self.ifc_path),
            "sh_template_path": getattr(subscription, "sh_template_path", self.sh_template_path),
        }

    def differences(self, desired: Subscription, actual: Subscription | None) -> dict:
        """A suspended identity must have no ``ims_subscriber`` row and a disabled line;
        an active one the row and an enabled line."""
        if desired.enabled:
            return super().differences(desired, actual)
        found: dict[str, list[object]] = {}
        if actual is not None:
            found["subscription"] = ["absent while suspended", "present"]
        if self._line_enabled(desired.imsi):
            found["enabled"] = [False, True]
        return found

    # --- The order of writes ----------------------------------------------------------

    def _activate(self, desired: Subscription, change: Change, operation_id: str) -> None:
        epc = self._epc_subscriber(desired.imsi)
        if epc is None:
            raise HssPermanentError(
                f"The operator has not provisioned IMSI {desired.imsi} in the HSS "
                "(PyHSS holds no subscriber for it); the SIM line cannot be used yet."
            )
        fields = self._fields(desired)
        if not change.pushed_msisdn and not change.stale_msisdn:
            # Never pushed: create straight away, one round trip fewer (a row that is
            # there anyway answers an integrity error and is updated instead).
            self._create(fields, operation_id)
        else:
            self._update(desired, fields, change, operation_id)
        if not epc.get("enabled"):
            self._set_enabled(epc, True, operation_id)

    def _update(self, desired: Subscription, fields: dict, change: Change, operation_id: str):
        row = self._ims_subscriber(desired.msisdn)
        moved = None
        if row is None and change.stale_msisdn:
            # A new number: the old row becomes the new one (one PATCH), so that the
            # IMSI is never held by two rows, not even for a moment.
            moved = row = self._ims_subscriber(change.stale_msisdn)
        if row is None:
            self._create(fields, operation_id)
        else:
            held = _imsi_of(row)
            if held and held != desired.imsi and held == change.pushed_imsi:
                # The old SIM leaves this row: deregister it while the row names it.
                self._deregister(held)
            if any(_text(row.get(name)) != value for name, value in fields.items()):
                self._patch(f"/ims_subscriber/{row['ims_subscriber_id']}", fields, operation_id)
        if change.stale_msisdn and moved is None:
            self._withdraw(change.stale_msisdn, operation_id, keep_imsi=desired.imsi)
        if change.stale_msisdn and desired.imsi == change.pushed_imsi:
            # Same line, new number: its UEs register again and learn the new IMPUs
            # (also when a retry finds the row moved already).
            self._deregister(desired.imsi)

    def _withdraw(self, msisdn: str, operation_id: str, *, keep_imsi: str = "") -> None:
        """Deregister the row's IMSI, then delete the row: in this order, because PyHSS
        finds what to deregister through the row. ``keep_imsi``: a line another row of
        the identity holds now (its UEs are not to be deregistered)."""
        row = self._ims_subscriber(msisdn)
        if row is None:
            return
        held = _imsi_of(row)
        if held and held != keep_imsi:
            self._deregister(held)
        # A `null` answer means a concurrent remove got there first: fine too.
        self._write("DELETE", f"/ims_subscriber/{row['ims_subscriber_id']}", None, operation_id)

    def _deregister(self, imsi: str) -> None:
        """Deregister an IMSI that an ``ims_subscriber`` row names. PyHSS answers the
        rows it touched, or `null` when it could not: then the cause is looked up, as
        `null` never means success here."""
        path = f"/oam/deregister/{_segment(imsi)}"
        status, answer = self._send("GET", path)
        if status == 200 and isinstance(answer, dict):
            return
        if answer is None and self._epc_subscriber(imsi) is None:
            # No EPC subscriber: PyHSS cannot deregister (nor authenticate) the line.
            log.warning("PyHSS holds no EPC subscriber for IMSI %s: nothing to deregister", imsi)
            return
        if answer is None:
            raise HssPermanentError(
                f"PyHSS could not deregister IMSI {imsi}: several ims_subscriber rows name "
                "it (PyHSS needs exactly one). Remove the rows the portal did not write."
            )
        raise self._refused("GET", path, status, answer)

    def _set_enabled(self, epc: dict, enabled: bool, operation_id: str) -> None:
        """Set ``enabled`` on an EPC subscriber. PyHSS commits the change, then tells
        the 2G side of an enabled line, and answers `null` when that fails (a line
        without an MSISDN, say): so `null` is read back, never taken either way."""
        path = f"/subscriber/{epc['subscriber_id']}"
        if self._write("PATCH", path, {"enabled": enabled}, operation_id) is not None:
            return
        now = self._epc_subscriber(epc["imsi"])
        if now is None:
            raise HssTransientError(
                f"PyHSS's subscriber of IMSI {epc['imsi']} went away while the portal "
                "updated it; the next try looks it up again."
            )
        if bool(now.get("enabled")) != enabled:
            raise HssPermanentError(
                f"PyHSS did not set enabled={enabled} on the subscriber of IMSI {epc['imsi']}."
            )

    def _line_enabled(self, imsi: str) -> bool:
        if not imsi:
            return False
        if self._enabled_by_imsi is not None:
            return self._enabled_by_imsi.get(imsi, False)
        epc = self._epc_subscriber(imsi)
        return bool(epc and epc.get("enabled"))

    # --- Rows -------------------------------------------------------------------------

    def _fields(self, subscription: Subscription) -> dict:
        own = bare(subscription.msisdn)
        shared = sorted({bare(s.msisdn) for s in subscription.shared} - {own})
        return {
            "msisdn": own,
            "msisdn_list": ",".join([own, *shared]),
            "imsi": subscription.imsi,
            "ifc_path": self.ifc_path,
            "sh_template_path": self.sh_template_path,
        }

    def _ims_subscriber(self, msisdn: str) -> dict | None:
        path = f"/ims_subscriber/ims_subscriber_msisdn/{_segment(bare(msisdn))}"
        return self._fetch(path, row_id="ims_subscriber_id")

    def _epc_subscriber(self, imsi: str) -> dict | None:
        return self._fetch(f"/subscriber/imsi/{_segment(imsi)}", row_id="subscriber_id")

    def _create(self, fields: dict, operation_id: str) -> None:
        status, answer = self._send(
            "PUT", "/ims_subscriber/", body=fields, operation_id=operation_id
        )
        if status == 200:
            return
        # A row for the MSISDN is there already (a concurrent push, or a push whose
        # record was lost; msisdn is unique): update it, as if we had found it.
        existing = None
        if status == 400 and "integrity error" in _reason(answer).lower():
            existing = self._ims_subscriber(fields["msisdn"])
        if existing is None:
            raise self._refused("PUT", "/ims_subscriber/", status, answer)
        self._patch(f"/ims_subscriber/{existing['ims_subscriber_id']}", fields, operation_id)

    def _pages(self, path: str) -> Iterator[dict]:
        """The rows of a ``/list`` route, page by page (pages count from 0; a short
        page is the last)."""
        page = 0
        while True:
            status, rows = self._send(
                "GET", path, params={"page": page, "page_size": self.page_size}
            )
            if status != 200 or not isinstance(rows, list):
                raise self._refused("GET", path, status, rows)
            for row in rows:
                if not isinstance(row, dict):
                    raise self._refused("GET", path, status, rows)
                yield row
            if len(rows) < self.page_size:
                return
            page += 1

    # --- HTTP -------------------------------------------------------------------------

    def _fetch(self, path: str, *, row_id: str = "") -> dict | None:
        """A row by a unique key (``ims_subscriber.msisdn``, ``subscriber.imsi``; only
        there does `null` mean "none": 400 by MSISDN, 200 by IMSI), which must carry
        an integer ``row_id``."""
        status, answer = self._send("GET", path)
        if answer is None and status in (200, 400):
            return None
        if (
            status == 200
            and isinstance(answer, dict)
            and (not row_id or isinstance(answer.get(row_id), int))
        ):
            return answer
        raise self._refused("GET", path, status, answer)

    def _patch(self, path: str, fields: dict, operation_id: str) -> None:
        if self._write("PATCH", path, fields, operation_id) is None:
            raise HssTransientError(
                f"PyHSS row {path} went away while the portal updated it; the next try "
                "looks it up again."
            )

    def _write(self, method: str, path: str, body: dict | None, operation_id: str) -> Any:
        status, answer = self._send(method, path, body=body, operation_id=operation_id)
        if status != 200:
            raise self._refused(method, path, status, answer)
        return answer

    @logs_failed_calls("pyhss")
    def _send(
        self,
        method: str,
        path: str,
        *,
        body: dict | None = None,
        params: dict | None = None,
        operation_id: str | None = None,
    ) -> tuple[int, Any]:
        """One exchange with PyHSS: the status and decoded JSON of an answer the caller
        may interpret (2xx, 4xx); raises for everything no caller can use."""
        if operation_id is not None:
            params = {**(params or {}), "operation_id": operation_id}
        request = f"{method} {path}"
        if self._provisioning_key and not HEADER_VALUE.fullmatch(self._provisioning_key):
            # Say only which setting: the value is the key.
            raise HssPermanentError("HSS_PYHSS_PROVISIONING_KEY is not a valid HTTP header value.")
        headers = self.headers
        if body is not None:
            headers = {**headers, "Content-Type": "application/json"}
        self.calls += 1
        try:
            pool = _pool(self.url, os.getpid())
            # The target in origin form (RFC 9112 §3.2.1: the path below the URL's own),
            # not the whole URL: the absolute form is for proxies.
            target = urlsplit(self.url).path + path
            if params:
                target += f"?{urlencode(params)}"
            # Redirects are not followed: they would carry the Provisioning-Key along to
            # wherever they point.
            response = pool.urlopen(
                method,
                target,
                body=None if body is None else json.dumps(body).encode(),
                headers=headers,
                timeout=self.timeout,
                redirect=False,
                preload_content=False,
            )
            try:
                status, raw = response.status, _read_capped(response)
            finally:
                response.release_conn()
        except LocationValueError as exc:
            raise HssPermanentError(f"HSS_PYHSS_URL is unusable: {exc}") from None
        except urllib3.exceptions.TimeoutError as exc:
            if isinstance(exc, NewConnectionError):  # refused: urllib3 files it as a timeout
                raise self._unreachable(request, exc) from None
            raise HssTransientError(
                f"PyHSS did not answer {request} within {self.timeout:g} s."
            ) from None
        except HTTPError as exc:
            raise self._unreachable(request, exc) from None
        answer = _decode(raw)
        if status == 401:
            raise HssPermanentError(
                f"PyHSS refused {request}: Provisioning-Key refused (HTTP 401); check "
                "HSS_PYHSS_PROVISIONING_KEY."
            )
        if status == 429 or status >= 500:
            reason = self._scrub(_reason(answer, raw))
            if status == 500 and "invalid keyword argument" in reason:
                # A field PyHSS does not know: the portal's bug, retrying will not help.
                raise HssPermanentError(f"PyHSS does not know a field of {request}: {reason}")
            raise HssTransientError(f"PyHSS answered {request} with HTTP {status}: {reason}")
        if status == 400 and any(fault in _reason(answer) for fault in DATABASE_FAULTS):
            # Its own database failed for a while (whatever PyHSS calls it): try again.
            raise HssTransientError(
                self._scrub(f"PyHSS's database failed on {request}: {_reason(answer)}")
            )
        if answer is NOT_JSON:
            what = "an oversized answer" if raw is None else "an answer that is not JSON"
            raise HssPermanentError(
                f"PyHSS answered {request} with HTTP {status} and {what}; is HSS_PYHSS_URL "
                "the PyHSS API?"
            )
        if not (200 <= status < 300 or 400 <= status < 500):  # a redirect, say
            raise HssPermanentError(
                f"PyHSS answered {request} with HTTP {status}, which the portal does not "
                "follow; HSS_PYHSS_URL must point at the API itself."
            )
        return status, answer

    def _unreachable(self, request: str, exc: Exception) -> HssTransientError:
        # Raised `from None`: the cause may quote request headers, i.e. the key.
        return HssTransientError(
            self._scrub(f"PyHSS at {self.url} unreachable for {request}: {exc}")
        )

    def _refused(self, method: str, path: str, status: int, answer: Any) -> HssPermanentError:
        return HssPermanentError(
            self._scrub(f"PyHSS refused {method} {path} (HTTP {status}): {_reason(answer)}")
        )

    def _scrub(self, text: str) -> str:
        """Text with the Provisioning-Key blanked out (as is and as quoted by repr),
        should anything have echoed it."""
        key = self._provisioning_key
        for form in (key, repr(key)[1:-1]) if key else ():
            text = text.replace(form, "[Provisioning-Key]")
        return text


def bare(msisdn: str) -> str:
    """The MSISDN as PyHSS keeps it: digits without ``+``."""
    return msisdn.removeprefix("+")


def plus(msisdn: str) -> str:
    """The portal's E.164 form of an MSISDN PyHSS returned."""
    return f"+{bare(msisdn)}"


def alias_impus(subscription: Subscription) -> list[str]:
    """The IMPUs that PyHSS could not derive from the MSISDN: anything beyond
    ``tel:+MSISDN`` and ``sip:+MSISDN@domain;user=phone``."""
    tn = plus(subscription.msisdn)
    return [
        impu
        for impu in subscription.impus
        if impu != f"tel:{tn}"
        and not (impu.startswith(f"sip:{tn}@") and impu.endswith(";user=phone"))
    ]


def _check_representable(subscription: Subscription) -> None:
    """Refuse what PyHSS cannot hold, before anything is written."""
    if not subscription.imsi:
        raise HssPermanentError(
            f"{subscription.msisdn} has no SIM line: PyHSS derives the IMPI from the "
            "IMSI, so every identity needs one."
        )
    aliases = alias_impus(subscription)
    if aliases:
        raise HssPermanentError(
            f"PyHSS cannot hold alias IMPUs ({', '.join(aliases)}): it derives the "
            f"IMPUs of {subscription.msisdn} from the MSISDN. Remove the alias."
        )


def _subscription(msisdn: str, row: dict, *, enabled: bool) -> PyHssSubscription:
    """A Subscription from the ``ims_subscriber`` row of ``msisdn``. IMPI and IMPUs
    stay empty: PyHSS derives them with its own realm and domain, which the portal
    does not know, and ``PyHss.comparable`` leaves them out."""
    own = bare(msisdn)
    listed = {m.strip() for m in str(row.get("msisdn_list") or "").split(",")}
    return PyHssSubscription(
        msisdn=plus(own),
        impi="",
        imsi=_imsi_of(row),
        enabled=enabled,
        shared=tuple(SharedAccess(plus(m), True, True) for m in sorted(listed - {own, ""})),
        ifc_path=_text(row.get("ifc_path")),
        sh_template_path=_text(row.get("sh_template_path")),
    )


def _text(value: Any) -> str:
    """A column's value as the portal writes it ("" for NULL)."""
    return "" if value is None else str(value)


def _imsi_of(row: dict | None) -> str:
    return str((row or {}).get("imsi") or "")


@functools.lru_cache(maxsize=4)
def _pool(url: str, pid: int) -> urllib3.HTTPConnectionPool:
    """The process's connections to PyHSS (``pid``: a forked worker process opens its
    own). HTTPS verifies PyHSS's certificate with the system's CAs (``SSL_CERT_FILE``
    adds one), as the x5u fetch does; no proxy: PyHSS sits in the operator's core
    network. urllib3 itself, not requests: a request costs a third of the CPU."""
    return urllib3.connection_from_url(url, retries=False)


def _segment(value: str) -> str:
    """A value as one URL path segment."""
    return quote(value, safe="")


def _read_capped(response: urllib3.BaseHTTPResponse) -> bytes | None:
    """The answer body, or None when it passes ``MAX_ANSWER_BYTES``."""
    raw = response.read(MAX_ANSWER_BYTES + 1)
    if len(raw) > MAX_ANSWER_BYTES:
        response.close()  # the rest is left unread: this connection is done
        return None
    return raw


def _decode(raw: bytes | None) -> Any:
    if raw is None:
        return NOT_JSON
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # also bad UTF-8; RecursionError: absurd nesting
        return NOT_JSON


def _reason(answer: Any, raw: bytes | None = None) -> str:
    """What PyHSS said, for an error message: its ``reason`` (``{"result": "Failed",
    "reason": ...}``) or ``Result`` (``{"Result": "Not Found"}``), else the body."""
    if (
        isinstance(answer, list)
        and len(answer) == 2
        and isinstance(answer[0], dict)
        and isinstance(answer[1], int)
    ):
        answer = answer[0]  # some routes wrap their error answer as `[{...}, 400]`
    if isinstance(answer, dict):
        said = answer.get("reason") or answer.get("Result") or answer.get("message")
        text = str(said) if said else json.dumps(answer)
    elif answer is NOT_JSON:
        text = raw.decode("utf-8", "replace") if raw else "(no readable body)"
    else:
        text = json.dumps(answer)
    return text[:MAX_REASON_CHARS]
