import pytest

from portal.models import WorkerHeartbeat
from portal.tasks import heartbeat


def test_healthz_answers_without_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_each_check(client):
    body = client.get("/readyz").json()
    assert body["status"] == "ready"
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["broker"]["ok"] is True
    assert body["checks"]["workers"] == {"ok": False, "last_heartbeat": None}

    heartbeat.delay()
    assert client.get("/readyz").json()["checks"]["workers"]["ok"] is True
    assert WorkerHeartbeat.objects.count() == 1


@pytest.mark.django_db
def test_readyz_answers_503_when_the_broker_is_unreachable(client, settings):
    from portal.celery import app

    original = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        response = client.get("/readyz")
    finally:
        app.conf.broker_url = original
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == {"ok": False, "error": "OperationalError"}
