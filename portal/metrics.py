"""Prometheus metrics: the outbox and the queues (what an operator alerts on), read from
the database at each scrape, beside the request and task metrics of
kernel/observability.py."""

import os
from datetime import timedelta

import redis
from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from telephony.callauth import records
from telephony.models import IdentitySync, ImportJob, NetworkNotice, Registration, SyncAttempt

from .celery import app as celery_app
from .models import WorkerHeartbeat

QUEUES = settings.TASK_QUEUES


def _queue_depths() -> dict[str, int | None]:
    depths = {}
    try:
        with celery_app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            channel = conn.default_channel
            for queue in QUEUES:
                try:
                    depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
                except Exception:  # noqa: BLE001 - a queue that does not exist yet is empty
                    depths[queue] = 0
    except Exception:  # noqa: BLE001 - the broker being down is itself a reading
        return dict.fromkeys(QUEUES)
    return depths


def readings() -> list[tuple[str, str, dict, float]]:
    """(name, help, labels, value) of every domain gauge."""
    now = timezone.now()
    samples = []

    def gauge(name: str, help_text: str, value: float | None, **labels: str) -> None:
        # None is a reading that could not be taken (the broker down, no worker yet).
        samples.append((name, help_text, labels, float("nan") if value is None else value))

    states = dict(IdentitySync.objects.values_list("state").annotate(n=Count("pk")))
    for state in IdentitySync.State.values:
        gauge(
            "portal_identity_sync",
            "Identities by HSS sync state.",
            states.get(state, 0),
            state=state,
        )
    oldest = IdentitySync.objects.filter(state=IdentitySync.State.PENDING).aggregate(
        at=Min("requested_at")
    )["at"]
    gauge(
        "portal_sync_lag_seconds",
        "Age of the oldest change not yet in the HSS.",
        (now - oldest).total_seconds() if oldest else 0,
    )
    failures = SyncAttempt.objects.filter(
        created_at__gte=now - timedelta(hours=1), outcome__in=["retrying", "failed"]
    )
    gauge("portal_sync_failures_last_hour", "Failed HSS pushes in the last hour.", failures.count())
    for queue, depth in _queue_depths().items():
        gauge(
            "portal_queue_depth",
            "Messages waiting in a broker queue (NaN: broker down).",
            depth,
            queue=queue,
        )
    try:
        waiting = records.backlog()
    except redis.RedisError:
        waiting = None
    if settings.CALL_RECORD_STREAM_URL:
        gauge(
            "portal_call_records_waiting",
            "Call records in their stream, not yet in the table (NaN: Redis down).",
            waiting,
        )
    gauge(
        "portal_registrations_active",
        "UEs registered now.",
        Registration.objects.active(now).count(),
    )
    pending = NetworkNotice.objects.filter(state=NetworkNotice.State.PENDING)
    gauge("portal_network_notices_pending", "Notices to UEs not yet sent.", pending.count())
    running = ImportJob.objects.filter(state__in=[ImportJob.State.QUEUED, ImportJob.State.RUNNING])
    gauge("portal_imports_running", "CSV imports queued or running.", running.count())
    beat = (
        WorkerHeartbeat.objects.order_by("-last_seen").values_list("last_seen", flat=True).first()
    )
    gauge(
        "portal_worker_heartbeat_age_seconds",
        "Seconds since a worker last ran the heartbeat.",
        (now - beat).total_seconds() if beat else None,
    )
    return samples


class DomainGauges:
    """A prometheus-client collector of the readings above, taken at each scrape."""

    def collect(self):
        families: dict[str, GaugeMetricFamily] = {}
        for name, help_text, labels, value in readings():
            if name not in families:
                families[name] = GaugeMetricFamily(name, help_text, labels=list(labels))
            families[name].add_metric(list(labels.values()), value)
        yield from families.values()


def exposition() -> bytes:
    """The Prometheus text format: the domain gauges and the request and task metrics.
    With PROMETHEUS_MULTIPROC_DIR set (several gunicorn and Celery worker processes on
    one machine), those of every process that writes there."""
    registry = CollectorRegistry()
    registry.register(DomainGauges())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY) + generate_latest(registry)
