"""Tasks by their registered name, for the services that queue them.

Tasks sit above services (a task loads by id and calls a service), so a service that
queues a task must not import the tasks module: it asks Celery for the task by the name
it is registered under, which is also the name queued messages carry.
"""

import logging
from collections.abc import Sequence
from typing import Any

from celery import current_app
from celery.app.task import Task

log = logging.getLogger(__name__)


def task(name: str) -> Task:
    """The task registered as ``name`` (e.g. "telephony.tasks.sync_identity"). The apps
    import their tasks modules when Django starts (their AppConfig.ready), so every
    process has them; Celery's own autodiscovery is not asked here, as it would set
    Django up again (logging reconfigured, model checks run) inside a request."""
    return current_app.tasks[name]


def apply_together(task: Task, calls: Sequence[tuple[Any, ...]], **options: Any) -> None:
    """``task.apply_async(args, **options)`` for each ``args`` of ``calls``, in one round
    trip to a broker that takes them so (Redis: one pipeline), which costs about half the
    CPU of sending them one by one. Should that fail, they are sent one by one, with
    Celery's retries: none is lost, and one sent twice is harmless (tasks are idempotent)."""
    try:
        with task.app.producer_or_acquire() as producer, producer.batch():
            for args in calls:
                task.apply_async(args, producer=producer, **options)
    except Exception:  # sent again one by one, as before batches
        log.warning("%d %s messages sent one by one", len(calls), task.name, exc_info=True)
        for args in calls:
            task.apply_async(args, **options)
