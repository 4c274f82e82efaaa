"""Tasks by their registered name, for the services that queue them.

Tasks sit above services (a task loads by id and calls a service), so a service that
queues a task must not import the tasks module: it asks Celery for the task by the name
it is registered under, which is also the name queued messages carry.
"""

from celery import current_app
from celery.app.task import Task


def task(name: str) -> Task:
    """The task registered as ``name`` (e.g. "telephony.tasks.sync_identity"). The apps
    import their tasks modules when Django starts (their AppConfig.ready), so every
    process has them; Celery's own autodiscovery is not asked here, as it would set
    Django up again (logging reconfigured, model checks run) inside a request."""
    return current_app.tasks[name]
