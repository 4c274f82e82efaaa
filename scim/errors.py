"""SCIM error responses (RFC 7644 §3.12): every failure, from a bad token to a bug,
answers with the SCIM Error body, so that an identity provider can always read why."""

from __future__ import annotations

import logging
import math

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection, transaction
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response

from kernel.errors import NotAllowed, RuleViolation
from scim.schema import ERROR

logger = logging.getLogger(__name__)

# RuleViolation codes that mean "this value is taken" (RFC 7644 §3.12 "uniqueness").
DUPLICATE_CODES = {"duplicate", "offboarded"}


class ScimError(Exception):
    """A failure with its HTTP status and, where RFC 7644 §3.12 has one, its scimType."""

    def __init__(self, status: int, detail: str, scim_type: str | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type


def bad_request(detail: str, scim_type: str = "invalidValue") -> ScimError:
    return ScimError(400, detail, scim_type)


def not_found(detail: str = "No such resource.") -> ScimError:
    return ScimError(404, detail)


def error_response(error: ScimError, headers: dict | None = None) -> Response:
    body = {"schemas": [ERROR], "status": str(error.status), "detail": error.detail}
    if error.scim_type:
        body["scimType"] = error.scim_type
    return Response(body, status=error.status, headers=headers)


def _as_scim_error(exc: Exception) -> ScimError:
    if isinstance(exc, ScimError):
        return exc
    if isinstance(exc, NotAllowed):
        return ScimError(403, exc.message)
    if isinstance(exc, RuleViolation):
        if exc.code in DUPLICATE_CODES:
            return ScimError(409, exc.message, "uniqueness")
        return bad_request(exc.message)
    if isinstance(exc, DjangoValidationError):
        return bad_request("; ".join(exc.messages))
    if isinstance(exc, Http404):
        return not_found()
    if isinstance(exc, PermissionDenied):
        return ScimError(403, str(exc) or "Not allowed.")
    if isinstance(exc, exceptions.ParseError):
        return bad_request(str(exc.detail), "invalidSyntax")
    if isinstance(exc, exceptions.APIException):
        return ScimError(exc.status_code, str(exc.detail))
    logger.exception("SCIM request failed", exc_info=exc)
    return ScimError(500, "The service provider failed to process the request.")


def exception_handler(exc: Exception, context: dict) -> Response:
    """DRF's exception handler for the SCIM views. Whatever failed, the request's
    transaction is rolled back: an error changes nothing."""
    if connection.in_atomic_block:
        transaction.set_rollback(True)
    headers = {}
    if auth_header := getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = auth_header
    # The stubs do not list Throttled's wait (seconds, or None when unknown).
    if isinstance(exc, exceptions.Throttled) and (wait := getattr(exc, "wait", None)):
        headers["Retry-After"] = str(math.ceil(wait))
    if isinstance(exc, exceptions.MethodNotAllowed) and context.get("view") is not None:
        headers["Allow"] = ", ".join(context["view"].allowed_methods)
    return error_response(_as_scim_error(exc), headers)
