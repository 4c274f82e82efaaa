"""How a page calls a service and tells the person what came of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.contrib import messages

from .errors import NotAllowed, RuleViolation
from .forms import PortalForm

T = TypeVar("T")


def call_service(
    request,
    action: Callable[[], T],
    *,
    success: str | Callable[[T], str] | None = None,
    form: PortalForm | None = None,
) -> T | None:
    """Run ``action`` (a service call) and return its result, flashing ``success``
    (text, or made from the result) when it is done.

    A RuleViolation changed nothing (the service raised it inside its transaction): its
    message lands on ``form`` when there is one, else it is flashed as an error, and
    None is returned. NotAllowed is not a message to show beside a form: it goes on to
    the 403 page (portal.middleware).
    """
    try:
        result = action()
    except NotAllowed:
        raise
    except RuleViolation as exc:
        if form is not None:
            form.add_rule_violation(exc)
        else:
            messages.error(request, exc.message)
        return None
    if success is not None:
        messages.success(request, success(result) if callable(success) else success)
    return result


def flash_form_errors(request, form: PortalForm) -> None:
    """Say a form's errors as messages, for a form posted from a page that is not its own
    (a list's bulk bar, a panel on a detail page), which the redirect back shows."""
    for error in [*form.non_field_errors(), *(e for field in form for e in field.errors)]:
        messages.error(request, error)
