import pytest

from portal.models import WorkerHeartbeat
from portal.tasks import heartbeat
from portal.testing import wait_for


@pytest.mark.worker
def test_a_real_worker_consumes_a_task_sent_through_the_broker(celery_worker, client):
    heartbeat.delay()
    beat = wait_for(lambda: WorkerHeartbeat.objects.filter(hostname=celery_worker.hostname).first())
    assert beat.last_seen is not None
    assert client.get("/readyz").json()["checks"]["workers"]["ok"] is True


def sessions_since(start) -> set[tuple[int, object]]:
    """The other client sessions on the test database opened since ``start`` (pid and
    start), as PostgreSQL sees them."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
            "AND backend_start > %s",
            [start],
        )
        return set(cursor.fetchall())


@pytest.mark.worker
def test_a_worker_keeps_its_database_connection_from_task_to_task(celery_worker):
    """Celery's Django fixup would close it after every task (a new PostgreSQL session per
    push); the worker leaves it to CONN_MAX_AGE, as the web does."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("reads PostgreSQL's sessions")

    with connection.cursor() as cursor:  # sessions of earlier tests are not the worker's
        cursor.execute("SELECT clock_timestamp()")
        (start,) = cursor.fetchone()
    beats = WorkerHeartbeat.objects.filter(hostname=celery_worker.hostname)

    def beat() -> None:
        seen = beats.values_list("last_seen", flat=True).first()
        heartbeat.delay()
        wait_for(lambda: beats.values_list("last_seen", flat=True).first() != seen)

    beat()
    # One session: the worker's (its start-up check of the HSS closes its own).
    first = wait_for(lambda: len(sessions_since(start)) == 1) and sessions_since(start)
    for _ in range(3):
        beat()
    assert sessions_since(start) == first


def test_every_task_goes_to_a_queue_that_make_run_and_the_readme_give_a_worker():
    """A task routed to a queue that no worker listens on waits for ever. An import has a
    queue of its own, so that it never takes a process from its identities' pushes."""
    import re
    from pathlib import Path

    from django.conf import settings

    from portal.celery import app

    def queue_of(task: str) -> str:
        return app.amqp.router.route({}, task)["queue"].name

    ours = [name for name in app.tasks if not name.startswith("celery.")]
    assert ours and {queue_of(name) for name in ours} <= set(settings.TASK_QUEUES)
    assert queue_of("telephony.tasks.run_import") == "imports"
    assert queue_of("telephony.tasks.sync_identities") == "sync"  # an import's go on "bulk"
    root = Path(settings.BASE_DIR)
    make_run = re.search(
        r"celery -A portal worker --beat -Q (\S+)", (root / "Makefile").read_text()
    )
    assert make_run and set(make_run.group(1).split(",")) == set(settings.TASK_QUEUES)
    readme = re.findall(r"celery -A portal worker -Q (\S+)", (root / "README.md").read_text())
    assert {queue for line in readme for queue in line.split(",")} == set(settings.TASK_QUEUES)
