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
