from django.db import models


class WorkerHeartbeat(models.Model):
    """When each Celery worker last ran the periodic heartbeat: shows beat and workers live."""

    hostname = models.CharField(max_length=255, primary_key=True)
    last_seen = models.DateTimeField()

    def __str__(self):
        return self.hostname


class HssCheck(models.Model):
    """What the last check of the HSS found, per backend: whether it would take our writes
    (PyHSS: the Provisioning-Key). Written by the workers, at start and periodically;
    read by /readyz, which must never call the HSS itself."""

    backend = models.CharField(max_length=32, primary_key=True)
    problem = models.TextField(blank=True)  # "" when none is known
    checked_at = models.DateTimeField()

    def __str__(self):
        return f"{self.backend}: {self.problem or 'ok'}"
