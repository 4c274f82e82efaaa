import pytest
from django.conf import settings

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


@pytest.mark.django_db
def test_readyz_reports_the_workers_hss_check_and_never_calls_the_hss(client, monkeypatch):
    from portal.celery import check_hss
    from portal.tasks import check_hss as periodic_check_hss
    from telephony.identities.hss.builtin import BuiltinHss

    refused = "PyHSS key refused (HTTP 401): check HSS_PYHSS_PROVISIONING_KEY."
    answers = iter([refused, ""])
    calls = []

    def check(self):
        calls.append(self)
        return next(answers)

    monkeypatch.setattr(BuiltinHss, "check", check)
    hss = client.get("/readyz").json()["checks"]["hss"]
    assert hss["ok"] is False and hss["error"].startswith("Not checked yet")

    check_hss()  # what a worker does at its start
    for _ in range(3):
        hss = client.get("/readyz").json()["checks"]["hss"]
        assert (hss["ok"], hss["error"]) == (False, refused)
    assert len(calls) == 1  # the probes only read it

    periodic_check_hss.delay()  # beat, every minute
    assert client.get("/readyz").json()["checks"]["hss"]["ok"] is True
    assert len(calls) == 2
    assert settings.CELERY_BEAT_SCHEDULE["hss-check"]["task"] == periodic_check_hss.name
