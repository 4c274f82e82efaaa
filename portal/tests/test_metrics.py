import pytest

from telephony.tests.factories import give_numbers, make_identity

pytestmark = pytest.mark.django_db


def test_metrics_show_the_outbox_and_the_queues(client, employee, enterprise, settings):
    settings.METRICS_TOKEN = "s3cret-metrics"
    give_numbers(enterprise)
    make_identity(employee)  # pending: its push never ran in this transaction
    assert client.get("/metrics").status_code == 401
    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics").content.decode()
    assert 'portal_identity_sync{state="pending"} 1' in body
    assert "portal_sync_lag_seconds " in body
    assert 'portal_queue_depth{queue="sync"}' in body
    assert "# TYPE portal_identity_sync gauge" in body


def test_metrics_are_off_in_production_without_a_token(client, settings):
    settings.METRICS_TOKEN = ""
    settings.DEBUG = False
    assert client.get("/metrics").status_code == 404
