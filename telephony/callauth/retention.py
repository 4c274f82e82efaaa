"""How long call records are kept."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from telephony.models import (
    CallRecord,
)

# --- Retention ----------------------------------------------------------------------------


def purge_call_records() -> int:
    """Delete call records older than CALL_RECORD_RETENTION_DAYS. Periodic."""
    cutoff = timezone.now() - timedelta(days=settings.CALL_RECORD_RETENTION_DAYS)
    deleted, _ = CallRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
