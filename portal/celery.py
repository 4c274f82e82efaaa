"""The Celery application. Tasks live in each app's tasks.py."""

import logging
import os

from celery import Celery, signals

from kernel import observability  # noqa: F401 - its signals carry the request id into tasks

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


@signals.task_prerun.connect
@signals.task_postrun.connect
def _close_old_connections(task=None, **kwargs):
    """Around each task what Django does around each request: drop a connection that is
    broken or older than CONN_MAX_AGE, keep the others (settings.CELERY_DB_REUSE_MAX).
    Not for an eager task: it runs inside its caller's transaction (the tests)."""
    if task is not None and not task.request.is_eager:
        from django.db import close_old_connections

        close_old_connections()


@signals.worker_ready.connect
def _check_hss_at_start(**kwargs):
    # Beside the worker, not in its way: an HSS that does not answer must not hold up
    # the tasks that do not need it.
    import threading

    threading.Thread(target=_check_hss_in_background, name="hss-check", daemon=True).start()


def _check_hss_in_background() -> None:
    from django.db import connection

    try:
        check_hss()
    finally:
        connection.close()  # this thread's own


def check_hss() -> str:
    """Say at start-up, not at the first change, when the HSS would refuse our writes
    (PyHSS: a wrong Provisioning-Key), and keep the answer for /readyz. Also run by beat
    (portal.tasks.check_hss), so that the answer follows a key that is fixed."""
    from django.conf import settings
    from django.utils import timezone

    from telephony.identities.hss import backend

    from .models import HssCheck

    problem = backend().check()
    if problem:
        log.error("HSS check failed: %s", problem)
    else:
        log.info("HSS check passed")
    HssCheck.objects.update_or_create(
        backend=settings.HSS_BACKEND, defaults={"problem": problem, "checked_at": timezone.now()}
    )
    return problem
