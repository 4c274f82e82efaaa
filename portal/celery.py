"""The Celery application. Tasks live in each app's tasks.py."""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_init.connect
def _send_through_the_broker(**kwargs):
    """A worker hands the tasks it queues (retries, pushes after an import's chunk, the
    sweep's re-queues) to the broker, whatever the settings say: the test settings run
    tasks eagerly in the test process, never inside a worker process of a test."""
    app.conf.task_always_eager = False
