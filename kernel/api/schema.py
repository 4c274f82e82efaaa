"""The OpenAPI schema documents every answer an operation can give, errors included.

drf-spectacular documents the success answer only. Clients (and the schemathesis run in
portal/tests/test_api_schema_conformance.py) need the failures too, and they all have one
body (kernel.api.errors). PortalAutoSchema adds them from what the operation has:

- 401 and 403 everywhere: every operation needs a credential and a role;
- 400 for writes (a rule the service enforces) and for operations with parameters;
- 404 for operations that address an object (a path id, an id in the body or a filter)
  and for paged lists (a page past the end);
- 413 and 415 for operations with a body (too large, or not of the declared type).

An operation that documents one of these codes itself keeps its own.
"""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
BODY_METHODS = {"POST", "PUT", "PATCH"}


class ApiErrorSerializer(serializers.Serializer):
    """Every error of the API."""

    status = serializers.IntegerField(help_text="The HTTP status code.")
    code = serializers.CharField(help_text="A stable code, e.g. `invalid` or `quota_reached`.")
    detail = serializers.CharField(help_text="What went wrong, for people.")
    # Named like Serializer.errors: this serializer only describes the schema, never runs.
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.JSONField(),
        required=False,
        help_text="Per field: its messages (nested for nested fields). Only when input "
        "fields are at fault.",
    )


ERROR = OpenApiResponse(ApiErrorSerializer)


class PortalAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, description in self._error_codes():
            if code not in responses:
                answer = self._get_response_for_code(ERROR, code, direction=direction)
                answer["description"] = description
                responses[code] = answer
        return responses

    def _error_codes(self) -> list[tuple[str, str]]:
        parameters = self._get_parameters()
        has_path_id = any(p["in"] == "path" for p in parameters)
        has_query = any(p["in"] == "query" for p in parameters)
        has_body = self.method in BODY_METHODS and self.get_request_serializer() is not None
        codes = []
        if self.method in WRITE_METHODS or has_query or has_body:
            codes.append(("400", "Invalid input, or a rule of the operator's policy refused it."))
        codes.append(("401", "No valid credential."))
        codes.append(("403", "The credential's role may not do this."))
        if has_path_id or has_body or has_query:
            codes.append(("404", "No such object in the caller's enterprise (or no such page)."))
        if has_body:
            codes.append(("413", "The body is too large."))
            codes.append(("415", "The body is not of a declared content type."))
        if self.view.throttle_classes:
            codes.append(("429", "Over the credential's request rate; see Retry-After."))
        return codes
