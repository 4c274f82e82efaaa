"""What an operator sees of a running portal: a request id in every log line (carried
into the Celery tasks a request queues), structured log lines, and the request and task
metrics that /metrics exposes (portal/metrics.py adds the domain gauges).

Imports no app: the Celery app connects its signals here before Django is set up."""

import contextvars
import functools
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from celery import signals
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, start_http_server

log = logging.getLogger("portal.request")

# The id of the request (or of the request that queued the running task); None outside.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# A caller's id is kept only if it cannot forge a log line or blow up its size.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,64}")
# The task header that carries the id from the web process to the worker.
TASK_HEADER = "portal_request_id"

REQUEST_LATENCY = Histogram(
    "portal_request_duration_seconds",
    "Time to answer a request, by route (the URL pattern), method and status class.",
    ["route", "method", "status"],
)
TASK_LATENCY = Histogram(
    "portal_task_duration_seconds",
    "Time a Celery task ran, by task.",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, float("inf")),
)
TASK_OUTCOMES = Counter(
    "portal_task_outcomes",
    "Celery tasks run, by task and outcome (success, failure, retry, ignored, rejected).",
    ["task", "outcome"],
)


def accepted_request_id(given: str | None) -> str:
    """The caller's X-Request-ID if it is sane, else a new one."""
    if given and _SANE_REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


class RequestObservabilityMiddleware:
    """First in the chain: gives the request its id (answered in X-Request-ID) and
    measures how long the whole answer took, by route. A streaming answer (the CSV
    export) is measured until the server closes it, not until the view returns it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        rid = accepted_request_id(request.headers.get("X-Request-ID"))
        token = request_id.set(rid)
        started = time.perf_counter()
        response = None
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = rid
            return response
        finally:
            if response is not None and response.streaming and not response.is_async:
                done = functools.partial(_observe_as, rid, request, response.status_code, started)
                response.streaming_content = _StreamClosing(response.streaming_content, done)
            else:
                _observe(request, response.status_code if response is not None else 500, started)
            request_id.reset(token)


class _StreamClosing:
    """A streaming response's content that calls ``done`` once when it is closed. The
    response registers the close of the content it is given and calls it when the server
    closes the response: after the last chunk, or when the client went away before it."""

    def __init__(self, chunks: Iterable[bytes], done: Callable[[], None]):
        self._chunks = iter(chunks)
        self._done: Callable[[], None] | None = done

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        done, self._done = self._done, None
        if done is not None:
            done()


def _observe_as(rid: str, request, status: int, started: float) -> None:
    """``_observe`` after the request's context is gone, with its id on the log line."""
    token = request_id.set(rid)
    try:
        _observe(request, status, started)
    finally:
        request_id.reset(token)


def _observe(request, status: int, started: float) -> None:
    """The answer's latency by route, and its access log line."""
    seconds = time.perf_counter() - started
    match = getattr(request, "resolver_match", None)
    # The URL pattern, not the path: bounded labels, and no token of a path
    # (password reset, invitation links) in a log line.
    route = (match.route or match.view_name) if match else "<unmatched>"
    method = request.method if request.method in _METHODS else "other"
    REQUEST_LATENCY.labels(route=route, method=method, status=f"{status // 100}xx").observe(seconds)
    log.info("%s %s %s %.1fms", method, route, status, seconds * 1000)


_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (``-`` outside a request or task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what a log shipper indexes without parsing prose."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


# --- Calls to the outside world ------------------------------------------------------

external_log = logging.getLogger("portal.external")


def logs_failed_calls(peer: str):
    """Decorates one call to an outside system (the HSS, the notice webhook, a
    certificate repository, the SMTP server): a failure writes one WARNING line naming the peer and the
    error, then propagates unchanged. The adapters' error messages carry no secrets."""

    def decorate(call):
        @functools.wraps(call)
        def logged(*args, **kwargs):
            try:
                return call(*args, **kwargs)
            except Exception as exc:
                external_log.warning(
                    "external call failed: %s %s: %s", peer, type(exc).__name__, exc
                )
                raise

        return logged

    return decorate


# --- Celery: the id travels in a task header; task latency and outcomes ---------------


@signals.before_task_publish.connect
def _send_request_id(headers=None, **kwargs):
    rid = request_id.get()
    if rid and headers is not None:
        headers[TASK_HEADER] = rid


_running: dict[str, tuple[float, contextvars.Token]] = {}


@signals.task_prerun.connect
def _task_started(task_id=None, task=None, **kwargs):
    # A worker restores the id its message carries; an eager task (tests) keeps the
    # id of the request it runs in.
    sent = getattr(task.request, TASK_HEADER, None) or (task.request.headers or {}).get(TASK_HEADER)
    token = request_id.set(sent or request_id.get())
    _running[task_id] = (time.perf_counter(), token)


@signals.task_postrun.connect
def _task_finished(task_id=None, task=None, state=None, **kwargs):
    started, token = _running.pop(task_id, (None, None))
    if started is not None:
        TASK_LATENCY.labels(task=task.name).observe(time.perf_counter() - started)
    TASK_OUTCOMES.labels(task=task.name, outcome=(state or "unknown").lower()).inc()
    if token is not None:
        request_id.reset(token)


@signals.worker_ready.connect
def _serve_worker_metrics(**kwargs):
    """With METRICS_WORKER_PORT, the worker's main process answers a scrape with the
    task metrics its pool's processes write to PROMETHEUS_MULTIPROC_DIR."""
    from django.conf import settings

    if settings.METRICS_WORKER_PORT:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(
            settings.METRICS_WORKER_PORT, addr=settings.METRICS_WORKER_ADDRESS, registry=registry
        )
