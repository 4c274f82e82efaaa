from django.db import models


class WorkerHeartbeat(models.Model):
    """When each Celery worker last ran the periodic heartbeat: shows beat and workers live."""

    hostname = models.CharField(max_length=255, primary_key=True)
    last_seen = models.DateTimeField()

    def __str__(self):
        return self.hostname
