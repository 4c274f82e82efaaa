"""CSV imports of employees with identities."""

from django.conf import settings
from django.db import models

from accounts.models import Enterprise
from kernel.tenancy import TenantQuerySet


class ImportJob(models.Model):
    """A CSV import of employees with identities: previewed first (every row's problem
    listed), then run by a worker in small transactions, resumable from ``next_row``."""

    class State(models.TextChoices):
        PREVIEWED = "previewed", "Previewed"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    enterprise = models.ForeignKey(Enterprise, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    filename = models.CharField(max_length=255)
    # Kept in the database, not on a local disk, so that any worker machine can run it.
    csv_text = models.TextField()
    send_invitations = models.BooleanField(default=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PREVIEWED)
    total_rows = models.PositiveIntegerField(default=0)
    next_row = models.PositiveIntegerField(default=0, help_text="First data row not yet applied.")
    created_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    problems = models.JSONField(default=list, blank=True, help_text="[{row, message}], capped.")
    problem_rows = models.JSONField(
        default=list,
        blank=True,
        help_text="Every row the check found a problem in (not capped): an import that "
        "goes ahead with the valid rows leaves these out.",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Moves with every committed chunk: a running job that stops moving lost its worker.
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Import {self.filename} ({self.state})"

    @property
    def percent(self) -> int:
        return int(100 * self.next_row / self.total_rows) if self.total_rows else 100
