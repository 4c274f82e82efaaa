"""The Celery application. Tasks live in each app's tasks.py."""

import logging
import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

log = logging.getLogger(__name__)

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_init.connect
def _send_through_the_broker(**kwargs):
    """A worker hands the tasks it queues (retries, pushes after an import's chunk, the
    sweep's re-queues) to the broker, whatever the settings say: the test settings run
    tasks eagerly in the test process, never inside a worker process of a test."""
    app.conf.task_always_eager = False


@signals.worker_ready.connect
def _check_hss_at_start(**kwargs):
    # Beside the worker, not in its way: an HSS that does not answer must not hold up
    # the tasks that do not need it.
    import threading

    threading.Thread(target=check_hss, name="hss-check", daemon=True).start()


def check_hss() -> str:
    """Say at start-up, not at the first change, when the HSS would refuse our writes
    (PyHSS: a wrong Provisioning-Key)."""
    from telephony.identities.hss import backend

    problem = backend().check()
    if problem:
        log.error("HSS check failed: %s", problem)
    else:
        log.info("HSS check passed")
    return problem
