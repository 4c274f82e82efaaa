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

PyHSS strips a leading ``+`` from MSISDNs on writes but matches lookups on the path as
given, so MSISDNs travel without ``+`` everywhere and get it back when read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import requests
from django.conf import settings
from requests.exceptions import InvalidHeader, InvalidSchema, InvalidURL, MissingSchema

from .base import (
    HssBackend,
    HssPermanentError,
    HssTransientError,
    SharedAccess,
    Subscription,
)

# Far above any answer we ask for (a list page of 100 rows is tens of kilobytes); a
# larger one is not PyHSS talking and reading it whole would only cost memory.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
# How much of a refusal's text goes into an error message (shown to operator staff).
MAX_REASON_CHARS = 300


class _NotJson:
    """Marks an answer body that is not JSON (or too large to read)."""


NOT_JSON = _NotJson()


class PyHss(HssBackend):
    """PyHSS 2.0 over its REST API, keyed by MSISDN (``ims_subscriber``) and IMSI
    (EPC ``subscriber``); never by PyHSS's row ids, which are looked up on each call."""

    name = "pyhss"
    supports_aliases = False
    requires_line = True
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
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        if self._provisioning_key:
            self.session.headers["Provisioning-Key"] = self._provisioning_key

    # --- The backend contract ---------------------------------------------------------

    def upsert(self, subscription: Subscription, *, operation_id: str) -> None:
        """Create or update the identity's ``ims_subscriber`` and set ``enabled`` on
        the EPC subscriber of its IMSI. Every check that can refuse the subscription
        runs before the first write, so a refusal leaves nothing half-written."""
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
        epc = self._epc_subscriber(subscription.imsi)
        if epc is None:
            raise HssPermanentError(
                f"The operator has not provisioned IMSI {subscription.imsi} in the HSS "
                "(PyHSS holds no subscriber for it); the SIM line cannot be used yet."
            )
        self._write_ims_subscriber(subscription, operation_id)
        if bool(epc.get("enabled")) != subscription.enabled:
            self._patch(
                f"/subscriber/{epc['subscriber_id']}",
                {"enabled": subscription.enabled},
                operation_id,
            )

    def remove(self, msisdn: str, *, operation_id: str) -> None:
        """Delete the ``ims_subscriber`` of the MSISDN; a missing row is not an error."""
        row = self._ims_subscriber(msisdn)
        if row is not None:
            # A `null` answer means a concurrent remove got there first: fine too.
            self._write("DELETE", f"/ims_subscriber/{row['ims_subscriber_id']}", None, operation_id)

    def release_line(self, imsi: str, *, operation_id: str) -> None:
        """Disable (never delete: it is the operator's) the EPC subscriber of the line."""
        epc = self._epc_subscriber(imsi)
        if epc is not None and epc.get("enabled"):
            self._patch(f"/subscriber/{epc['subscriber_id']}", {"enabled": False}, operation_id)

    def get(self, msisdn: str) -> Subscription | None:
        row = self._ims_subscriber(msisdn)
        if row is None:
            return None
        imsi = _imsi_of(row)
        epc = self._epc_subscriber(imsi) if imsi else None
        # Without an enabled EPC subscriber the line cannot attach: not enabled.
        return _subscription(msisdn, row, enabled=bool(epc and epc.get("enabled")))

    def list_all(self) -> Iterator[Subscription]:
        """Every ``ims_subscriber``, with ``enabled`` joined from the EPC subscribers
        by IMSI (both lists read page by page)."""
        enabled_by_imsi = {
            _imsi_of(row): bool(row.get("enabled")) for row in self._pages("/subscriber/list")
        }
        for row in self._pages("/ims_subscriber/list"):
            if row.get("msisdn"):  # a row without a number is nothing the portal keys on
                enabled = enabled_by_imsi.get(_imsi_of(row), False)
                yield _subscription(str(row["msisdn"]), row, enabled=enabled)

    def deregister(self, msisdn: str, *, imsi: str = "", contact: str = "") -> None:
        """Ask PyHSS to deregister the subscriber from the network. PyHSS works per
        IMSI and has no per-contact deregistration: asked for one ``contact``, it
        deregisters all the subscriber's UEs, and the others have to register again."""
        imsi = imsi or _imsi_of(self._ims_subscriber(msisdn))
        if imsi:
            # `null`: PyHSS holds no subscriber for the IMSI, so nothing is registered.
            self._fetch(f"/oam/deregister/{_segment(imsi)}")

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
        }

    # --- Rows -------------------------------------------------------------------------

    def _ims_subscriber(self, msisdn: str) -> dict | None:
        path = f"/ims_subscriber/ims_subscriber_msisdn/{_segment(bare(msisdn))}"
        return self._fetch(path, row_id="ims_subscriber_id")

    def _epc_subscriber(self, imsi: str) -> dict | None:
        return self._fetch(f"/subscriber/imsi/{_segment(imsi)}", row_id="subscriber_id")

    def _write_ims_subscriber(self, subscription: Subscription, operation_id: str) -> None:
        own = bare(subscription.msisdn)
        shared = sorted({bare(s.msisdn) for s in subscription.shared} - {own})
        fields = {
            "msisdn": own,
            "msisdn_list": ",".join([own, *shared]),
            "imsi": subscription.imsi,
            "ifc_path": self.ifc_path,
            "sh_template_path": self.sh_template_path,
        }
        existing = self._ims_subscriber(own)
        if existing is None:
            status, answer = self._send(
                "PUT", "/ims_subscriber/", body=fields, operation_id=operation_id
            )
            if status == 200:
                return
            # A concurrent push created the row between our lookup and our create
            # (msisdn is unique): update the row it made, as if we had found it.
            if status == 400 and "integrity error" in _reason(answer).lower():
                existing = self._ims_subscriber(own)
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
        """A row by key, which must carry an integer ``row_id`` when one is named;
        None when PyHSS has none (it answers `null`: with 200 by row id, with 400 by
        MSISDN or IMSI)."""
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
        try:
            # Redirects are not followed: requests would carry the Provisioning-Key
            # header along to wherever they point.
            with self.session.request(
                method,
                self.url + path,
                params=params,
                json=body,
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
            ) as response:
                status = response.status_code
                raw = _read_capped(response)
        except InvalidHeader:
            # Its message quotes the header value, i.e. the key: say only which setting.
            raise HssPermanentError(
                "HSS_PYHSS_PROVISIONING_KEY is not a valid HTTP header value."
            ) from None
        except (InvalidURL, MissingSchema, InvalidSchema) as exc:
            raise HssPermanentError(f"HSS_PYHSS_URL is unusable: {exc}") from None
        except requests.Timeout:
            raise HssTransientError(
                f"PyHSS did not answer {request} within {self.timeout:g} s."
            ) from None
        except requests.RequestException as exc:
            # `from None`: the cause may quote request headers, i.e. the key.
            raise HssTransientError(
                self._scrub(f"PyHSS at {self.url} unreachable for {request}: {exc}")
            ) from None
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
        if answer is NOT_JSON:
            what = "an oversized answer" if raw is None else "an answer that is not JSON"
            raise HssPermanentError(
                f"PyHSS answered {request} with HTTP {status} and {what}; is HSS_PYHSS_URL "
                "the PyHSS API?"
            )
        if not 200 <= status < 500:
            raise HssPermanentError(
                f"PyHSS answered {request} with HTTP {status}, which the portal does not "
                "follow; HSS_PYHSS_URL must point at the API itself."
            )
        return status, answer

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


def _subscription(msisdn: str, row: dict, *, enabled: bool) -> Subscription:
    """A Subscription from the ``ims_subscriber`` row of ``msisdn``. IMPI and IMPUs
    stay empty: PyHSS derives them with its own realm and domain, which the portal
    does not know, and ``PyHss.comparable`` leaves them out."""
    own = bare(msisdn)
    listed = {m.strip() for m in str(row.get("msisdn_list") or "").split(",")}
    return Subscription(
        msisdn=plus(own),
        impi="",
        imsi=_imsi_of(row),
        enabled=enabled,
        shared=tuple(SharedAccess(plus(m), True, True) for m in sorted(listed - {own, ""})),
    )


def _imsi_of(row: dict | None) -> str:
    return str((row or {}).get("imsi") or "")


def _segment(value: str) -> str:
    """A value as one URL path segment."""
    return quote(value, safe="")


def _read_capped(response: requests.Response) -> bytes | None:
    """The answer body, or None when it passes ``MAX_ANSWER_BYTES``."""
    chunks, size = [], 0
    for chunk in response.iter_content(chunk_size=64 * 1024):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


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
    if isinstance(answer, dict):
        said = answer.get("reason") or answer.get("Result") or answer.get("message")
        text = str(said) if said else json.dumps(answer)
    elif answer is NOT_JSON:
        text = raw.decode("utf-8", "replace") if raw else "(no readable body)"
    else:
        text = json.dumps(answer)
    return text[:MAX_REASON_CHARS]
