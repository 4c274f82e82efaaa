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
def test_readyz_answers_503_when_the_broker_is_unreachable(client, monkeypatch):
    from celery import Celery

    # Celery gives the CELERY_BROKER_URL variable precedence over its argument.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.setattr(
        "portal.views.celery_app", Celery(broker="redis://127.0.0.1:1/0", set_as_current=False)
    )
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == {"ok": False, "error": "OperationalError"}
