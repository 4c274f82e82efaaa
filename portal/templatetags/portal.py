from django import template

from accounts import trail

register = template.Library()


@register.simple_tag(takes_context=True)
def with_page(context, number):
    """The current query string with ``page`` set to ``number``: keeps filters on paging."""
    query = context["request"].GET.copy()
    query["page"] = number
    return f"?{query.urlencode()}"


@register.filter
def status_badge_class(value):
    return f"badge badge-{value}"


@register.filter
def get_item(mapping, key):
    """``mapping[key]`` in a template, or None."""
    return mapping.get(key) if mapping else None


@register.filter
def audit_sentence(event):
    """The audit event as a sentence (accounts.trail)."""
    return trail.sentence(event)


@register.filter
def audit_changes(event):
    return trail.changes(event)
