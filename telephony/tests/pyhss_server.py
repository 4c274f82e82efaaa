"""A fake PyHSS 2.0 REST API for tests: the routes, answers and quirks of PyHSS's
``services/apiService.py`` and ``lib/database.py`` that the PyHSS backend relies on,
over real HTTP on 127.0.0.1, with in-memory tables.

Quirks reproduced on purpose, because the backend must cope with each:
- a missing row answers 200 ``null`` by id and on the EPC lookup by IMSI, but 400
  ``null`` on the IMS lookups by MSISDN and IMSI (which also answer 400 ``null`` when
  several rows match: SQLAlchemy ``.one()``); ``/oam/deregister/<imsi>`` answers 200
  ``null`` unless exactly one IMS row and an EPC row hold the IMSI;
- enabling an EPC subscriber that has no ``msisdn`` commits, then answers 200 ``null``
  (its 2G update after the commit fails);
- row ids are SQLite's: a deleted last id is given out again;
- a unique or NOT NULL violation answers 400 ``{"result": "Failed", "reason": "A
  database integrity error occurred: ..."}``; an unknown field answers 500 on create
  and is silently ignored on update;
- ``+`` is stripped from ``msisdn``/``msisdn_list`` on writes, never on lookups;
- with provisioning locked, writes without the right ``Provisioning-Key`` answer 401.

``test_pyhss_peer.py`` asks this fake and the real PyHSS the same questions and
compares the answers. Not reproduced: failures of PyHSS's own database (``inject`` their answers; the peer
tests lock the real one's SQLite file).

Tests inspect ``requests`` (every request, with its answer's status) and
``operation_ids``, seed operator-owned rows with ``add_subscriber``, and disturb the
server with ``inject`` (one canned answer) or ``race_next_create``. The server is
bounded: it answers 503 once its request budget is spent, reads at most
``MAX_BODY_BYTES`` per request, and stops by itself after ``lifetime`` seconds should a
test forget to stop it.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

MAX_BODY_BYTES = 256 * 1024

IMS_SUBSCRIBER_COLUMNS = (
    "ims_subscriber_id",
    "msisdn",
    "msisdn_list",
    "imsi",
    "ifc_path",
    "pcscf",
    "pcscf_realm",
    "pcscf_active_session",
    "pcscf_timestamp",
    "pcscf_peer",
    "xcap_profile",
    "sh_profile",
    "scscf",
    "scscf_timestamp",
    "scscf_realm",
    "scscf_peer",
    "sh_template_path",
    "last_modified",
)
SUBSCRIBER_COLUMNS = (
    "subscriber_id",
    "imsi",
    "enabled",
    "auc_id",
    "default_apn",
    "apn_list",
    "msisdn",
    "ue_ambr_dl",
    "ue_ambr_ul",
    "nam",
    "roaming_enabled",
    "roaming_rule_list",
    "subscribed_rau_tau_timer",
    "serving_mme",
    "serving_mme_timestamp",
    "serving_mme_realm",
    "serving_mme_peer",
    "last_modified",
)
WRITE_METHODS = {"PUT", "PATCH", "DELETE", "POST"}
NOT_FOUND = {"Result": "Not Found"}
UNAUTHORIZED = {"Result": "Unauthorized - Provisioning-Key Invalid"}


@dataclass
class LoggedRequest:
    """One request as the fake PyHSS received it (header names in lower case), and
    the status it answered."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    target: str = ""  # the request target as sent (origin form: "/path?query")
    status: int = 0


@dataclass
class Answer:
    status: int
    body: Any  # JSON-encoded unless bytes
    delay: float = 0.0
    location: str = ""  # a redirect's target

    def encoded(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode() + b"\n"


@dataclass
class Injected:
    """A canned answer for the next request with ``method`` and ``path`` (each: any,
    when None)."""

    answer: Answer
    method: str | None
    path: str | None = None


class Failed(Exception):
    """PyHSS's ``handle_exception``: a ``{"result": "Failed", "reason": ...}`` answer."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.answer = Answer(status, {"result": "Failed", "reason": reason})


@dataclass
class Table:
    """One PyHSS table: its SQL name, model class name, key and constraints."""

    name: str
    model: str
    key: str
    columns: tuple[str, ...]
    unique: tuple[str, ...]
    required: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)
    rows: dict[int, dict] = field(default_factory=dict)
    next_id: int = 1

    def create(self, body: dict) -> dict:
        for name in body:
            if name not in self.columns:
                raise Failed(
                    500,
                    f"An internal server error occurred: '{name}' is an invalid keyword "
                    f"argument for {self.model}",
                )
        row = dict.fromkeys(self.columns) | self.defaults | _strip_plus(body)
        # SQLite's rowid: one past the largest in use, so a deleted last id comes back.
        self.next_id = max(self.rows, default=0) + 1
        row[self.key] = self.next_id
        for column in self.required:
            if row[column] is None:
                self._integrity_error(f"NOT NULL constraint failed: {self.name}.{column}")
        self._check_unique(row)
        self.next_id += 1
        return self._store(row)

    def update(self, row_id: int, body: dict) -> dict | None:
        if row_id not in self.rows:
            return None
        # Unknown fields (and the key) are skipped, as PyHSS's UpdateObj does.
        known = {k: v for k, v in _strip_plus(body).items() if k in self.columns and k != self.key}
        row = self.rows[row_id] | known
        self._check_unique(row)
        return self._store(row)

    def first(self, column: str, value: str) -> dict | None:
        """The only row with ``column == value``; None for none or several (``.one()``)."""
        found = [row for row in self.rows.values() if str(row[column]) == value]
        return dict(found[0]) if len(found) == 1 else None

    def page(self, page: int, page_size: int) -> list[dict]:
        rows = [dict(self.rows[i]) for i in sorted(self.rows)]
        return rows if page_size == 0 else rows[page * page_size : (page + 1) * page_size]

    def _check_unique(self, row: dict) -> None:
        for column in self.unique:
            for other in self.rows.values():
                if other[self.key] != row[self.key] and other[column] == row[column]:
                    self._integrity_error(f"UNIQUE constraint failed: {self.name}.{column}")

    def _store(self, row: dict) -> dict:
        row["last_modified"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.rows[row[self.key]] = row
        return dict(row)

    @staticmethod
    def _integrity_error(detail: str) -> None:
        raise Failed(400, f"A database integrity error occurred: (sqlite3.IntegrityError) {detail}")


def _strip_plus(body: dict) -> dict:
    """PyHSS drops every ``+`` from the MSISDN fields it is given."""
    return {
        k: v.replace("+", "") if k in ("msisdn", "msisdn_list") and isinstance(v, str) else v
        for k, v in body.items()
    }


class FakePyHss:
    """The fake PyHSS server; ``start()`` it (or use it as a context manager) and point
    ``HSS_PYHSS_URL`` at ``url``."""

    def __init__(
        self,
        *,
        provisioning_key: str = "",
        max_requests: int = 500,
        lifetime: float = 30.0,
        tls: ssl.SSLContext | None = None,
    ):
        self.provisioning_key = provisioning_key  # locks provisioning when set
        self.tls = tls  # serves HTTPS at https://localhost:<port> when given
        self.max_requests = max_requests
        self.lifetime = lifetime
        self.ims_subscribers = Table(
            "ims_subscriber",
            "IMS_SUBSCRIBER",
            "ims_subscriber_id",
            IMS_SUBSCRIBER_COLUMNS,
            unique=("msisdn",),
        )
        self.subscribers = Table(
            "subscriber",
            "SUBSCRIBER",
            "subscriber_id",
            SUBSCRIBER_COLUMNS,
            unique=("imsi",),
            required=("imsi", "auc_id", "default_apn", "apn_list"),
            defaults={"enabled": True},
        )
        self.requests: list[LoggedRequest] = []
        self.operation_ids: list[str] = []
        self.deregistered: list[str] = []
        self.url = ""
        self._injected: deque[Injected] = deque()
        self._race_next_create = False
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Timer | None = None

    # --- Life cycle -------------------------------------------------------------------

    def start(self) -> FakePyHss:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        if self.tls is not None:
            self._httpd.socket = self.tls.wrap_socket(self._httpd.socket, server_side=True)
            self.url = f"https://localhost:{port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._watchdog = threading.Timer(self.lifetime, self.stop)
        self._watchdog.daemon = True
        self._watchdog.start()
        return self

    def stop(self) -> None:
        """Stop serving and wait for requests in flight; safe to call twice."""
        with self._lock:
            httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        if self._watchdog is not None:
            self._watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakePyHss:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- What tests use ---------------------------------------------------------------

    def add_subscriber(self, imsi: str, *, enabled: bool = True) -> dict:
        """An EPC subscriber as the operator provisions it (with its AUC and APNs)."""
        with self._lock:
            auc_id = self.subscribers.next_id
            return self.subscribers.create(
                {
                    "imsi": imsi,
                    "enabled": enabled,
                    "auc_id": auc_id,
                    "default_apn": 1,
                    "apn_list": "1,2",
                }
            )

    def add_ims_subscriber(self, msisdn: str, **fields: Any) -> dict:
        """An IMS subscriber written straight into the table (e.g. one with runtime
        ``scscf*`` state, as a registered subscriber has)."""
        with self._lock:
            return self.ims_subscribers.create({"msisdn": msisdn, **fields})

    def ims_subscriber(self, msisdn: str) -> dict | None:
        with self._lock:
            return self.ims_subscribers.first("msisdn", msisdn)

    def subscriber(self, imsi: str) -> dict | None:
        with self._lock:
            return self.subscribers.first("imsi", imsi)

    def writes(self) -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method in WRITE_METHODS]

    def inject(
        self,
        status: int,
        body: Any,
        *,
        method: str | None = None,
        path: str | None = None,
        delay: float = 0.0,
        location: str = "",
    ) -> None:
        """Answer the next matching request with ``body`` (bytes as they are, anything
        else as JSON) after ``delay`` seconds, instead of serving it; ``location`` makes
        it a redirect."""
        with self._lock:
            self._injected.append(Injected(Answer(status, body, delay, location), method, path))

    def race_next_create(self) -> None:
        """The next ``PUT /ims_subscriber/`` loses a race: a concurrent writer creates
        the same row just before it, so it meets the unique constraint on msisdn."""
        with self._lock:
            self._race_next_create = True

    # --- Serving ----------------------------------------------------------------------

    def answer(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Answer:
        """The answer to one request (called from the HTTP handler's threads)."""
        split = urlsplit(target)
        path, query = unquote(split.path), dict(parse_qsl(split.query))
        headers = {name.lower(): value for name, value in headers.items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        with self._lock:
            logged = LoggedRequest(method, path, query, headers, body, target)
            self.requests.append(logged)
            answer = self._answer(method, path, query, headers, body)
            logged.status = answer.status
            return answer

    def _answer(
        self, method: str, path: str, query: dict, headers: dict[str, str], body: Any
    ) -> Answer:
        if len(self.requests) > self.max_requests:
            return Answer(503, {"Result": f"fake PyHSS: request budget {self.max_requests} spent"})
        for injected in self._injected:
            if injected.method in (None, method) and injected.path in (None, path):
                self._injected.remove(injected)
                return injected.answer
        if method in WRITE_METHODS:
            if self.provisioning_key and headers.get("provisioning-key") != self.provisioning_key:
                return Answer(401, UNAUTHORIZED)
            if "operation_id" in query:
                self.operation_ids.append(query["operation_id"])
        try:
            return self._route(method, path, query, body)
        except Failed as failed:
            return failed.answer

    def _route(self, method: str, path: str, query: dict, body: Any) -> Answer:
        parts = path.strip("/").split("/")
        ims, epc = self.ims_subscribers, self.subscribers
        match method, parts:
            case "PUT", ["ims_subscriber"]:
                if self._race_next_create and isinstance(body, dict):
                    self._race_next_create = False
                    ims.create(body)
                return self._create(ims, body)
            case "PUT", ["subscriber"]:
                return self._create(epc, body)
            case "GET", ["ims_subscriber" | "subscriber", "list"]:
                return self._list(ims if parts[0] == "ims_subscriber" else epc, query)
            case "GET", ["ims_subscriber", "ims_subscriber_msisdn", msisdn]:
                return _found_or_400(ims.first("msisdn", msisdn))
            case "GET", ["ims_subscriber", "ims_subscriber_imsi", imsi]:
                return _found_or_400(ims.first("imsi", imsi))
            case "GET", ["subscriber", "imsi", imsi]:
                row = epc.first("imsi", imsi)  # `null` with 200 here, unlike the IMS lookups
                return Answer(200, row and row | {"attributes": []})
            case "GET", ["oam", "deregister", imsi]:
                return self._deregister(imsi)
            case "GET" | "PATCH" | "DELETE", ["ims_subscriber" | "subscriber", row_id]:
                table = ims if parts[0] == "ims_subscriber" else epc
                return self._by_id(table, method, row_id, body)
        return Answer(404, NOT_FOUND)

    @staticmethod
    def _create(table: Table, body: Any) -> Answer:
        if not isinstance(body, dict):
            raise Failed(500, "An internal server error occurred: JSON body expected")
        return Answer(200, table.create(body))

    @staticmethod
    def _by_id(table: Table, method: str, row_id: str, body: Any) -> Answer:
        key = int(row_id) if row_id.isdigit() else -1
        if method == "GET":
            row = table.rows.get(key)
            return Answer(200, dict(row) if row else None)
        if method == "PATCH":
            row = table.update(key, body if isinstance(body, dict) else {})
            if row and table.name == "subscriber" and row["enabled"] and not row["msisdn"]:
                # Committed, then its 2G update fails on a line without an MSISDN.
                return Answer(200, None)
            return Answer(200, row)
        if table.rows.pop(key, None) is None:
            return Answer(200, None)
        return Answer(200, {"Result": "OK"})

    @staticmethod
    def _list(table: Table, query: dict) -> Answer:
        try:
            page, page_size = int(query.get("page", 0)), int(query.get("page_size", 100))
        except ValueError:
            return Answer(400, {"message": "Input payload validation failed"})
        return Answer(200, table.page(page, page_size))

    def _deregister(self, imsi: str) -> Answer:
        """PyHSS needs both an EPC and an IMS subscriber for the IMSI; without them its
        handler falls through to a 200 ``null``."""
        subscriber = self.subscribers.first("imsi", imsi)
        ims_subscriber = self.ims_subscribers.first("imsi", imsi)
        if subscriber is None or ims_subscriber is None:
            return Answer(200, None)
        self.deregistered.append(imsi)
        return Answer(200, {"subscriber": subscriber, "ims_subscriber": ims_subscriber, "pcrf": {}})


def _found_or_400(row: dict | None) -> Answer:
    return Answer(200, row) if row else Answer(400, None)


class _Server(ThreadingHTTPServer):
    # Non-daemon handler threads are the ones server_close() joins: stop() returns
    # with no request in flight (each bounded by the handler's timeout).
    daemon_threads = False
    fake: FakePyHss


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # A client that stalls mid-request holds its thread no longer than this.
    timeout = 2

    def _serve(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self._send(Answer(413, {"Result": "Request body refused"}))
            return
        raw = self.rfile.read(length)
        answer = self.server.fake.answer(self.command, self.path, dict(self.headers), raw)
        if answer.delay:
            time.sleep(answer.delay)
        self._send(answer)

    def _send(self, answer: Answer) -> None:
        payload = answer.encoded()
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if answer.location:
                self.send_header("Location", answer.location)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass  # the client gave up (a timeout test); nobody is left to answer

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is ``FakePyHss.requests``."""
