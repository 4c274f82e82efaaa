"""A transient HSS fault is retried by a real Celery worker until SYNC_MAX_ATTEMPTS."""

import socket

import pytest
from django.db import transaction

from accounts.tests.factories import UserFactory
from portal.celery import app
from portal.testing import CeleryWorker, wait_for
from telephony.models import IdentitySync, SyncAttempt
from telephony.tests.factories import give_line, give_numbers, make_identity

ATTEMPTS = 6  # more than Celery's default of 3 retries (4 tries)


@pytest.mark.worker
def test_a_worker_tries_each_change_sync_max_attempts_times_then_fails_it(
    transactional_db, employee, enterprise
):
    with socket.socket() as probe:  # a port nobody listens on: PyHSS is down
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}"
    worker = CeleryWorker(
        {
            "HSS_BACKEND": "pyhss",
            "HSS_PYHSS_URL": down,
            "HSS_PYHSS_ALLOW_PLAIN_HTTP": "true",
            "HSS_TIMEOUT_SECONDS": "1",
            "SYNC_MAX_ATTEMPTS": str(ATTEMPTS),
            "SYNC_BACKOFF_BASE_SECONDS": "0.05",
            "SYNC_BACKOFF_CAP_SECONDS": "0.2",
        }
    ).start()
    app.conf.task_always_eager = False
    try:
        give_numbers(enterprise)
        # Changed together: one task pushes them all, then each retries on its own.
        with transaction.atomic():
            identities = [
                make_identity(owner, imsi=give_line(enterprise, n).imsi)
                for n, owner in enumerate((employee, UserFactory(enterprise=enterprise)), 1)
            ]
        failed = IdentitySync.objects.filter(
            pk__in=[i.pk for i in identities], state=IdentitySync.State.FAILED
        )
        wait_for(lambda: failed.count() == len(identities), timeout=60)
    finally:
        app.conf.task_always_eager = True
        worker.stop()

    for identity in identities:
        outcomes = list(
            SyncAttempt.objects.filter(identity=identity)
            .order_by("pk")
            .values_list("outcome", flat=True)
        )
        assert outcomes == ["retrying"] * (ATTEMPTS - 1) + ["failed"]
        row = IdentitySync.objects.get(pk=identity.pk)
        assert row.attempts == ATTEMPTS
        assert row.last_error.startswith(f"{ATTEMPTS} tries failed: PyHSS at {down} unreachable")
