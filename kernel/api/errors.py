"""One error body for the whole API:

    {"status": 400, "code": "quota_reached", "detail": "…", "errors": {"field": ["…"]}}

``errors`` appears when input fields are at fault. Business-rule failures
(RuleViolation) are 400s with the service's own message; NotAllowed ones are 403s.
"""

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from kernel.errors import NotAllowed, RuleViolation


class BodyTooLarge(exceptions.APIException):
    """A body refused for its size before it is read whole."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


def error_body(status_code: int, code: str, detail: str, errors: object = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status_code, "code": code, "detail": detail}
    if errors:
        body["errors"] = errors
    return body


def rule_violation_body(exc: RuleViolation) -> tuple[int, dict[str, Any]]:
    """A business rule's refusal: its status and error body."""
    status_code = 403 if isinstance(exc, NotAllowed) else 400
    field_errors = {exc.field: [exc.message]} if exc.field else None
    return status_code, error_body(status_code, exc.code, exc.message, field_errors)


def exception_handler(exc, context):
    if isinstance(exc, RuleViolation):
        status_code, body = rule_violation_body(exc)
        return Response(body, status=status_code)
    if isinstance(exc, RequestDataTooBig):
        # Django refuses a body over DATA_UPLOAD_MAX_MEMORY_SIZE before reading it.
        exc = BodyTooLarge()
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = error_body(
            response.status_code, "invalid", "The request has invalid fields.", errors
        )
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = detail.code if hasattr(detail, "code") else "error"
        response.data = error_body(response.status_code, str(code), str(detail))
    return response
