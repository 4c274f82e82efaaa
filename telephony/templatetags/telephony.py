from django import template
from django.utils.dateformat import format as date_format
from django.utils.html import format_html
from django.utils.timezone import localtime

register = template.Library()


@register.simple_tag
def sync_badge(sync):
    """An identity's HSS sync state as a badge. A tag, not an include: the lists show one
    on every row, and an include costs more than the rest of the row."""
    state = getattr(sync, "state", "")
    if state == "synced":
        at = localtime(sync.synced_at) if sync.synced_at else None
        return format_html(
            '<span class="badge badge-synced" title="In step with the HSS since {}">in step {}</span>',
            date_format(at, "Y-m-d H:i:s") if at else "",
            date_format(at, "H:i") if at else "",
        )
    if state == "failed":
        return format_html(
            '<span class="badge badge-failed" title="{}">sync failed</span>', sync.last_error
        )
    if state == "drift":
        return format_html(
            '<span class="badge badge-drift" title="{}">drift found</span>',
            "The HSS differed; repair queued",
        )
    if getattr(sync, "attempts", 0):
        return format_html(
            '<span class="badge badge-pending" title="Try {} failed: {}">retrying</span>',
            sync.attempts,
            sync.last_error,
        )
    return format_html('<span class="badge badge-pending" title="{}">pending</span>', "Queued")
