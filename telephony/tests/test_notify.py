"""The webhook notification backend posts signed notices to the operator's service."""

import hashlib
import hmac
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from telephony.models import NetworkNotice
from telephony.registrations import notices, notify
from telephony.tests.factories import give_numbers, make_device, make_identity

pytestmark = pytest.mark.django_db
SECRET = "webhook-test-secret"


@pytest.fixture
def webhook(settings):
    received, answers = [], []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            self.send_response(answers.pop(0) if answers else 204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.NETWORK_NOTIFY_BACKEND = "webhook"
    settings.NETWORK_NOTIFY_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/notices"
    settings.NETWORK_NOTIFY_WEBHOOK_SECRET = SECRET
    yield received, answers
    server.shutdown()
    server.server_close()


@pytest.fixture
def notice(employee, enterprise):
    give_numbers(enterprise)
    registration = make_device(make_identity(employee))
    return NetworkNotice.objects.create(
        enterprise=enterprise, registration=registration, kind="already_logged_on", message="Hello"
    )


def test_a_notice_is_posted_with_a_signature_the_receiver_can_check(webhook, notice):
    received, _ = webhook
    assert notify.send_notice(notice.pk) == "sent"
    headers, body = received[0]
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Portal-Signature"] == f"sha256={expected}"
    payload = json.loads(body)
    assert payload["kind"] == "already_logged_on"
    assert payload["to"]["contact"] == "sip:rob@198.51.100.9"
    notice.refresh_from_db()
    assert (notice.state, notice.channel, notice.delivery_code) == ("sent", "webhook", 204)
    assert notice.outcome == "Handed to the operator's notification service (204 No Content)"
    assert notify.send_notice(notice.pk) == "skipped"  # sent once


def test_a_server_error_is_retried_and_a_refusal_is_final(webhook, notice):
    from telephony.registrations.notify import NoticeError

    _, answers = webhook
    answers.extend([503, 400])
    with pytest.raises(NoticeError):
        notify.send_notice(notice.pk)
    notice.refresh_from_db()
    assert (notice.state, notice.delivery_code) == ("pending", 503)
    assert notify.send_notice(notice.pk) == "failed"
    notice.refresh_from_db()
    assert "refused" in notice.last_error
    assert notice.outcome == "Refused by the operator's notification service (400 Bad Request)"


def test_each_failed_post_is_one_log_line(webhook, notice, caplog):
    from telephony.registrations.notify import NoticeError

    _, answers = webhook
    answers.extend([503, 204])
    with caplog.at_level("INFO", logger="portal.external"), pytest.raises(NoticeError):
        notify.send_notice(notice.pk)
    assert notify.send_notice(notice.pk) == "sent"
    lines = [r.getMessage() for r in caplog.records if r.name == "portal.external"]
    assert lines == ["external call failed: notice webhook NoticeError: webhook answered 503"]
    assert SECRET not in lines[0]


def test_a_notice_another_task_is_sending_is_not_sent_twice(webhook, notice):
    received, _ = webhook
    # A redelivered task, or the sweep's, arrives while the first one waits for the answer.
    NetworkNotice.objects.filter(pk=notice.pk).update(
        claimed_until=timezone.now() + timedelta(seconds=30)
    )
    assert notify.send_notice(notice.pk) == "skipped"
    assert received == []
    # The holder's claim runs out (it died): the next task sends it, once.
    NetworkNotice.objects.filter(pk=notice.pk).update(claimed_until=timezone.now())
    assert notify.send_notice(notice.pk) == "sent"
    assert notify.send_notice(notice.pk) == "skipped"
    assert len(received) == 1


def test_the_sweep_leaves_a_notice_waiting_for_its_retry(notice, settings, monkeypatch):
    queued = []
    monkeypatch.setattr(
        "kernel.enqueue.task", lambda name: type("T", (), {"delay": staticmethod(queued.append)})
    )
    long_ago = timezone.now() - timedelta(hours=1)
    NetworkNotice.objects.filter(pk=notice.pk).update(
        created_at=long_ago, attempted_at=timezone.now() - timedelta(minutes=1)
    )
    notices.sweep()
    assert notice.pk not in queued  # tried a minute ago: its retry is due
    NetworkNotice.objects.filter(pk=notice.pk).update(attempted_at=long_ago)
    notices.sweep()
    assert queued.count(notice.pk) == 1  # untouched for longer than any retry waits
