"""Tasks by their registered name, for the services that queue them.

Tasks sit above services (a task loads by id and calls a service), so a service that
queues a task must not import the tasks module: it asks Celery for the task by the name
it is registered under, which is also the name queued messages carry.
"""

from celery import current_app
from celery.app.task import Task


def task(name: str) -> Task:
    """The task registered as ``name`` (e.g. "telephony.tasks.sync_identity")."""
    app = current_app
    if name not in app.tasks:
        # A web process has not imported the apps' tasks modules yet: autodiscovery does.
        app.loader.import_default_modules()
    return app.tasks[name]
