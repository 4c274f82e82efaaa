"""The HTTP side of SCIM (RFC 7644 §3.1, §3.4.2, §3.8): bodies in SCIM or plain JSON up
to a size cap, SCIM JSON answers, token roles, and the query parameters of a list or
search request."""

from __future__ import annotations

from rest_framework import parsers, renderers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.models import Role
from kernel.api import parsers as strict_json
from scim import filters, schema
from scim.errors import ScimError, bad_request
from scim.selectors import ListQuery

MAX_BODY = 1024 * 1024
DEFAULT_COUNT = 100
# Past any real directory; keeps OFFSET within what databases take.
MAX_START_INDEX = 10**9
MEDIA_TYPES = ("application/scim+json", "application/json")


class ScimParser(parsers.BaseParser):
    """JSON bodies of at most ``MAX_BODY`` bytes, sent as SCIM or plain JSON."""

    media_type = "application/scim+json"

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read(MAX_BODY + 1) if stream is not None else b""
        if len(raw) > MAX_BODY:
            raise ScimError(413, f"The request body is larger than {MAX_BODY} bytes.")
        try:
            return strict_json.loads(raw)
        except strict_json.InvalidJson as exc:
            raise bad_request(
                f"The request body is not valid JSON: {exc}", "invalidSyntax"
            ) from exc


class ScimRenderer(renderers.JSONRenderer):
    media_type = "application/scim+json"
    charset = None


class ScimNegotiation(BaseContentNegotiation):
    """Always answer SCIM JSON; read SCIM or plain JSON bodies."""

    def select_parser(self, request, parsers):
        media_type = request.content_type.split(";")[0].strip().lower()
        return parsers[0] if media_type in MEDIA_TYPES else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ScimAccess(BasePermission):
    """A SCIM token of an enterprise; writing needs a read-and-write one."""

    message = "This SCIM token is read-only."

    def has_permission(self, request, view):
        user = request.user
        if not getattr(user, "enterprise_id", None):
            return False
        if request.method in SAFE_METHODS or getattr(view, "reads_only", False):
            return True
        return user.role == Role.ADMIN


def _integer(value, name: str, default: int) -> int:
    if value in (None, ""):
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise bad_request(f"{name} must be an integer.")
    try:
        return int(value)
    except ValueError as exc:
        raise bad_request(f"{name} must be an integer.") from exc


def _names(value, name: str) -> list[str] | None:
    """``attributes`` / ``excludedAttributes``: comma-separated, or a list in a search."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"{name} must be a list of attribute names.")
    return [v.strip() for v in value if v.strip()]


def ensure_body_size(request) -> None:
    """Refuse an announced body over the cap before reading it (the parser also stops
    reading there, for bodies without a length)."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isascii() and length.isdigit() and int(length) > MAX_BODY:
        raise ScimError(413, f"The request body is larger than {MAX_BODY} bytes.")


def selection(source) -> tuple[list[str] | None, list[str] | None]:
    """``attributes`` and ``excludedAttributes`` (RFC 7644 §3.9)."""
    return (
        _names(source.get("attributes"), "attributes"),
        _names(source.get("excludedAttributes"), "excludedAttributes"),
    )


def list_query(source) -> ListQuery:
    """Filter, sort and page from query parameters or a SearchRequest body."""
    text = source.get("filter")
    if text is not None and not isinstance(text, str):
        raise bad_request("filter must be a string.", "invalidFilter")
    order = source.get("sortOrder") or "ascending"
    if not isinstance(order, str) or order.lower() not in ("ascending", "descending"):
        raise bad_request("sortOrder is ascending or descending.")
    sort_by = source.get("sortBy") or None
    if sort_by is not None and not isinstance(sort_by, str):
        raise bad_request("sortBy must be an attribute name.")
    start_index = max(1, _integer(source.get("startIndex"), "startIndex", 1))
    count = max(0, _integer(source.get("count"), "count", DEFAULT_COUNT))
    return ListQuery(
        filter=filters.parse(text) if text is not None else None,
        sort_by=sort_by,
        descending=order.lower() == "descending",
        start_index=min(MAX_START_INDEX, start_index),
        count=min(schema.MAX_RESULTS, count),
    )
