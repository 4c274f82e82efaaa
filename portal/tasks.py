from celery import shared_task
from django.utils import timezone

from . import celery
from .models import WorkerHeartbeat


@shared_task(bind=True, ignore_result=True)
def heartbeat(self):
    """Record that a worker is consuming and beat is scheduling; shown by /readyz."""
    WorkerHeartbeat.objects.update_or_create(
        hostname=self.request.hostname or "eager", defaults={"last_seen": timezone.now()}
    )


@shared_task(ignore_result=True)
def check_hss() -> str:
    """Periodic: check the HSS again for /readyz (which reads only what this found)."""
    return celery.check_hss()
