"""A request id in every log line, also in the tasks a request queues; request and task
metrics in /metrics beside the domain gauges."""

import io
import json
import logging
import socket
import time
from types import SimpleNamespace

import pytest
from django.http import StreamingHttpResponse
from django.urls import reverse
from prometheus_client import REGISTRY

from kernel.observability import (
    JsonFormatter,
    RequestIdFilter,
    RequestObservabilityMiddleware,
    accepted_request_id,
)
from portal.tasks import heartbeat
from portal.testing import wait_for
from telephony.tests.factories import give_numbers

ONBOARDING = {
    "email": "rob.smith@swift.example",
    "full_name": "Rob Smith",
    "services": ["voice"],
    "send_invitation": False,
}


@pytest.fixture
def log_lines():
    """The lines the portal's console handler writes, parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)


def test_a_sane_request_id_is_kept_and_anything_else_replaced():
    assert accepted_request_id("edge-4f1c9a2b") == "edge-4f1c9a2b"
    for given in (None, "", "short", "x" * 65, "evil\nline=forged", 'a"b{c}d e f g'):
        replaced = accepted_request_id(given)
        assert replaced != given and len(replaced) == 32


@pytest.mark.django_db(transaction=True)
def test_the_request_id_is_in_the_log_lines_of_the_request_and_of_its_task(
    api, enterprise, log_lines
):
    give_numbers(enterprise)
    response = api.post(
        "/api/v1/onboarding/", ONBOARDING, format="json", HTTP_X_REQUEST_ID="edge-4f1c9a2b"
    )
    assert response.status_code == 201, response.json()
    assert response["X-Request-ID"] == "edge-4f1c9a2b"
    lines = log_lines()
    access = [line for line in lines if line["logger"] == "portal.request"]
    assert access == [
        {**access[0], "request_id": "edge-4f1c9a2b", "level": "INFO"},
    ]
    assert access[0]["message"].startswith("POST api/v1/onboarding/$ 201 ")  # the pattern
    pushed = [line for line in lines if line["logger"] == "telephony.identities.hss.builtin"]
    assert pushed, lines  # the sync task ran (eagerly, after commit)
    assert {line["request_id"] for line in pushed} == {"edge-4f1c9a2b"}


def test_a_request_without_an_id_gets_a_new_one(client, log_lines):
    first, second = client.get("/healthz"), client.get("/healthz")
    assert len(first["X-Request-ID"]) == 32
    assert first["X-Request-ID"] != second["X-Request-ID"]
    assert [line["request_id"] for line in log_lines()] == [
        first["X-Request-ID"],
        second["X-Request-ID"],
    ]


@pytest.fixture
def json_logging_worker(transactional_db):
    """A real worker writing JSON lines, whatever LOG_FORMAT this shell has."""
    from portal.celery import app
    from portal.testing import CeleryWorker

    worker = CeleryWorker({"LOG_FORMAT": "json"}).start()
    app.conf.task_always_eager = False
    try:
        yield worker
    finally:
        app.conf.task_always_eager = True
        worker.stop()


@pytest.mark.worker
def test_a_worker_logs_with_the_id_of_the_request_that_queued_its_task(
    json_logging_worker, api, enterprise
):
    give_numbers(enterprise)
    response = api.post(
        "/api/v1/onboarding/", ONBOARDING, format="json", HTTP_X_REQUEST_ID="edge-77aa33bb"
    )
    assert response.status_code == 201, response.json()

    def pushed():
        for text in json_logging_worker.output:
            if text.startswith("{") and '"telephony.identities.hss.builtin"' in text:
                return json.loads(text)
        return None

    assert wait_for(pushed)["request_id"] == "edge-77aa33bb"


@pytest.mark.django_db
def test_metrics_show_request_latency_by_route_and_task_outcomes(client, settings):
    settings.METRICS_TOKEN = "s3cret-metrics"
    client.get("/healthz")
    heartbeat.delay()
    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics").content.decode()
    assert "# TYPE portal_request_duration_seconds histogram" in body
    assert (
        'portal_request_duration_seconds_count{method="GET",route="healthz",status="2xx"}' in body
    )
    assert 'portal_task_duration_seconds_count{task="portal.tasks.heartbeat"}' in body
    assert 'portal_task_outcomes_total{outcome="success",task="portal.tasks.heartbeat"}' in body
    assert 'portal_identity_sync{state="pending"} 0.0' in body  # the domain gauges stay


def answered(route, sample="count"):
    """What the request latency histogram holds for GET answers of ``route`` so far."""
    labels = {"route": route, "method": "GET", "status": "2xx"}
    return REGISTRY.get_sample_value(f"portal_request_duration_seconds_{sample}", labels) or 0


@pytest.fixture
def slow_stream(rf):
    """A request to a stream whose last chunk comes 0.2 s after its first, through the
    middleware: the response as the view returned it, before any chunk was sent."""

    def chunks():
        yield b"first,"
        time.sleep(0.2)
        yield b"last"

    request = rf.get("/stream")
    request.resolver_match = SimpleNamespace(route="test/stream", view_name="stream")
    middleware = RequestObservabilityMiddleware(lambda request: StreamingHttpResponse(chunks()))
    return lambda: middleware(request)


def test_a_stream_is_measured_until_the_server_closes_it(slow_stream, log_lines):
    count, total = answered("test/stream"), answered("test/stream", "sum")
    response = slow_stream()
    assert answered("test/stream") == count  # returned by the view, not yet answered
    assert b"".join(response) == b"first,last"
    response.close()  # what the server does after the last chunk
    assert answered("test/stream") == count + 1
    assert answered("test/stream", "sum") - total >= 0.2
    response.close()
    assert answered("test/stream") == count + 1  # measured once
    [line] = [line for line in log_lines() if line["logger"] == "portal.request"]
    assert line["request_id"] == response["X-Request-ID"]
    assert line["message"].startswith("GET test/stream 200 ")


def test_a_stream_the_client_left_before_its_first_chunk_is_measured_too(slow_stream):
    count = answered("test/stream")
    slow_stream().close()
    assert answered("test/stream") == count + 1


@pytest.mark.django_db
def test_the_csv_export_is_measured_when_its_last_row_is_sent(admin_client):
    route = "import/export.csv"
    count = answered(route)
    response = admin_client.get(reverse("telephony:export"))
    assert response.streaming
    assert answered(route) == count
    b"".join(response.streaming_content)  # the test client closes the response at the end
    assert answered(route) == count + 1


@pytest.mark.worker
def test_with_a_shared_directory_metrics_count_the_tasks_of_worker_processes(
    transactional_db, client, settings, tmp_path, monkeypatch
):
    from portal.celery import app
    from portal.testing import CeleryWorker

    settings.METRICS_TOKEN = "s3cret-metrics"
    worker = CeleryWorker({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}).start()
    app.conf.task_always_eager = False
    try:
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        outcome = 'portal_task_outcomes_total{outcome="success",task="portal.tasks.heartbeat"} 1.0'

        def scraped():
            response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics")
            return outcome in response.content.decode()

        assert not scraped()  # not this process's own count of an eager run
        heartbeat.delay()
        assert wait_for(scraped)
    finally:
        app.conf.task_always_eager = True
        worker.stop()


def test_a_failed_email_delivery_is_one_log_line(settings, caplog):
    from django.core.mail import send_mail

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.EMAIL_BACKEND = "portal.mail.SmtpBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 5
    settings.EMAIL_USE_TLS = False
    with caplog.at_level("INFO", logger="portal.external"), pytest.raises(OSError):
        send_mail("Hello", "Body", None, ["rob@swift.example"])
    lines = [r.getMessage() for r in caplog.records if r.name == "portal.external"]
    assert len(lines) == 1
    assert lines[0].startswith("external call failed: smtp ConnectionRefusedError")


@pytest.mark.worker
def test_a_worker_without_a_web_process_serves_its_task_metrics(transactional_db, tmp_path):
    import requests

    from portal.celery import app
    from portal.testing import CeleryWorker

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "METRICS_WORKER_PORT": str(port)}
    worker = CeleryWorker(env).start()
    app.conf.task_always_eager = False
    try:
        heartbeat.delay()
        outcome = 'portal_task_outcomes_total{outcome="success",task="portal.tasks.heartbeat"} 1.0'

        def scraped():
            try:
                return outcome in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except requests.ConnectionError:
                return False

        assert wait_for(scraped)
    finally:
        app.conf.task_always_eager = True
        worker.stop()
