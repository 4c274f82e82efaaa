"""What the operator gives an enterprise: number blocks (every number a row) and SIM lines."""

from django.db import models

from accounts.models import Enterprise
from kernel.tenancy import TenantQuerySet


class NumberBlock(models.Model):
    """A range of E.164 numbers the operator assigns to an enterprise. Every number of
    the block has its own ``TelephoneNumber`` row, so that allocation and quarantine
    are row states and no number can belong to two enterprises (it is unique)."""

    MAX_SIZE = 100_000

    enterprise = models.ForeignKey(
        Enterprise, on_delete=models.PROTECT, related_name="number_blocks"
    )
    country = models.CharField(max_length=2, help_text="ISO 3166 country of the numbers.")
    first_number = models.CharField(max_length=16)
    last_number = models.CharField(max_length=16)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["first_number"]

    def __str__(self):
        return f"{self.first_number}–{self.last_number}"

    @property
    def size(self) -> int:
        return int(self.last_number[1:]) - int(self.first_number[1:]) + 1


class TelephoneNumber(models.Model):
    """One TN of a block: free, assigned to an identity, or in quarantine after its
    identity left it (it is not reused before ``quarantined_until``)."""

    class Status(models.TextChoices):
        FREE = "free", "Free"
        ASSIGNED = "assigned", "Assigned"
        QUARANTINED = "quarantined", "Quarantined"

    enterprise = models.ForeignKey(Enterprise, on_delete=models.PROTECT, related_name="+")
    block = models.ForeignKey(NumberBlock, on_delete=models.CASCADE, related_name="numbers")
    e164 = models.CharField("TN", max_length=16, unique=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.FREE)
    quarantined_until = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["e164"]
        indexes = [models.Index(fields=["enterprise", "status", "e164"])]

    def __str__(self):
        return self.e164


class SimLine(models.Model):
    """A SIM from the enterprise's line pool, loaded by the operator."""

    enterprise = models.ForeignKey(Enterprise, on_delete=models.PROTECT, related_name="sim_lines")
    imsi = models.CharField("IMSI", max_length=15, unique=True)
    iccid = models.CharField("ICCID", max_length=20, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["imsi"]
        verbose_name = "SIM line"

    def __str__(self):
        return self.imsi
