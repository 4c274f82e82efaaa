"""STI-AS and STI-VS for the IMS core, speaking the JSON of the ATIS-1000082 REST
interface (signingRequest/signingResponse, verificationRequest/verificationResponse,
OMA-style requestError bodies, the X-RequestID header), so that an SBC or IMS element
configured for an ATIS STI server works unchanged."""

import uuid
from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import serializers

from kernel.api import parsers as strict_json
from kernel.api.schema import ApiErrorSerializer
from telephony.callauth import signing, verification
from telephony.callauth.errors import CallAuthError

from .callpath import CallPathView, json_answer

# An origid is a UUID (ATIS-1000074); call records keep up to 64 characters.
MAX_ORIGID = 64


class _ExceptionSerializer(serializers.Serializer):
    messageId = serializers.CharField()  # ATIS-1000082 names
    text = serializers.CharField()
    variables = serializers.ListField(child=serializers.CharField())


class _RequestErrorBodySerializer(serializers.Serializer):
    serviceException = _ExceptionSerializer(required=False)
    policyException = _ExceptionSerializer(required=False)


class RequestErrorSerializer(serializers.Serializer):
    """ATIS-1000082's (OMA-style) error body."""

    requestError = _RequestErrorBodySerializer()


# A refused request: ATIS's body for what the STI service refuses, the API's for a
# credential or a body that never reached it.
NETWORK_ERROR = PolymorphicProxySerializer(
    component_name="StirError",
    serializers=[RequestErrorSerializer, ApiErrorSerializer],
    resource_type_field_name=None,
)
STIR_RESPONSES = {
    200: {"type": "object"},
    400: NETWORK_ERROR,
    403: NETWORK_ERROR,
    413: OpenApiResponse(ApiErrorSerializer, description="A body over NETWORK_MAX_BODY_BYTES"),
    500: OpenApiResponse(
        RequestErrorSerializer,
        description="SVC4003: no signing certificate is configured, or its key cannot be read.",
    ),
}


def request_error(exc: CallAuthError, request_id: str) -> HttpResponse:
    kind = "policyException" if exc.message_id.startswith("POL") else "serviceException"
    body = {
        "requestError": {
            kind: {"messageId": exc.message_id, "text": exc.text, "variables": exc.variables}
        }
    }
    return json_answer(body, status=exc.status, headers={"X-RequestID": request_id})


def _field(data, key, kind, *, required=True, path=""):
    name = f"{path}{key}"
    if not isinstance(data, dict) or key not in data:
        if required:
            raise CallAuthError("SVC4001", "Missing mandatory parameter %1", [name])
        return None
    value = data[key]
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise CallAuthError("SVC4002", "Invalid value for %1", [name])
    return value


def _seconds(data, key, *, required=True):
    """Seconds since 1970 (iat, time): an integer the PASSporT and the clock can hold."""
    value = _field(data, key, int, required=required)
    if value is not None and not 0 <= value < 2**63:
        raise CallAuthError("SVC4002", "Invalid value for %1", [key])
    return value


def _tn_list(value, name):
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(t, str) for t in value)
        or len(value) > 50
    ):
        raise CallAuthError("SVC4002", "Invalid value for %1", [name])
    return value


class StirView(CallPathView):
    media_type = "application/json"
    root = ""

    def read(self, body):
        """The parsed JSON, or None when it is not JSON (answered as SVC4000)."""
        try:
            return strict_json.loads(body)
        except strict_json.InvalidJson:
            return None

    def empty(self):
        return {}

    def serve(self, request, data: dict[str, Any], request_id: str) -> dict[str, Any]:
        """The answer to the request's ``root`` object (each STIR view its own)."""
        raise NotImplementedError

    def cache_keys(self, data: dict[str, Any]) -> list[str]:
        """What the service reads of the call path's cache first (each view its own)."""
        raise NotImplementedError

    def call_keys(self, data):
        data = data.get(self.root) if isinstance(data, dict) else None
        return self.cache_keys(data) if isinstance(data, dict) else []

    def post(self, request, data):
        request_id = request.headers.get("X-RequestID", "")[:64] or str(uuid.uuid4())
        try:
            if not isinstance(data, dict) or not isinstance(data.get(self.root), dict):
                raise CallAuthError("SVC4000", "Missing or malformed %1", [self.root])
            body = self.serve(request, data[self.root], request_id)
        except CallAuthError as exc:
            return request_error(exc, request_id)
        return json_answer(body, headers={"X-RequestID": request_id})


SIGNING_EXAMPLE = {
    "signingRequest": {
        "attest": "A",
        "orig": {"tn": "4930555000"},
        "dest": {"tn": ["4940123499"]},
        "iat": 1763712000,
        "origid": "9b3f2c1e-5a7d-4e8b-9f00-1c2d3e4f5a6b",
        "origImpu": "sip:+4930555000@swift-delivery.example;user=phone",
    }
}


class SigningView(StirView):
    root = "signingRequest"

    @extend_schema(
        operation_id="stir_signing",
        summary="Sign an outgoing call (STI-AS)",
        description="ATIS-1000082 signing. The portal decides the attestation; `attest` in the "
        "request is a ceiling. Portal extension: `origImpu`, the authenticated originator's "
        "IMPU (without it, the identity that owns the calling number decides). Answers "
        "`signingResponse.identity` (the SHAKEN Identity header value) and, when the "
        "enterprise's business name is vetted and the call is attested A, "
        "`signingResponse.identities` with the RCD PASSporT as well.",
        request={"application/json": {"type": "object"}},
        responses=STIR_RESPONSES,
        examples=[OpenApiExample("Rob Smith calls", value=SIGNING_EXAMPLE, request_only=True)],
        tags=["network"],
    )
    def post(self, request, data):
        return super().post(request, data)

    def cache_keys(self, data):
        orig, impu = data.get("orig"), data.get("origImpu", "")
        tn = orig.get("tn") if isinstance(orig, dict) else None
        if not isinstance(tn, str) or not isinstance(impu, str):
            return []  # refused by serve, with the reason
        return signing.cache_keys(tn, impu)

    def serve(self, request, data, request_id):
        orig = _field(data, "orig", dict)
        dest = _field(data, "dest", dict)
        attest = _field(data, "attest", str, required=False)
        if attest is not None and attest not in ("A", "B", "C"):
            raise CallAuthError("SVC4002", "Invalid value for %1", ["attest"])
        origid = _field(data, "origid", str, required=False) or ""
        if len(origid) > MAX_ORIGID:
            raise CallAuthError("SVC4002", "Invalid value for %1", ["origid"])
        signed = signing.sign_call(
            client=request.auth,
            orig_tn=_field(orig, "tn", str, path="orig."),
            dest_tns=_tn_list(_field(dest, "tn", list, path="dest."), "dest.tn"),
            iat=_seconds(data, "iat"),
            origid=origid,
            attest=attest or "",
            originator_impu=_field(data, "origImpu", str, required=False) or "",
            request_id=request_id,
            reader=request.callpath,
        )
        response: dict[str, Any] = {"identity": signed.identities[0]}
        if len(signed.identities) > 1:
            response["identities"] = signed.identities
        return {"signingResponse": response}


class VerificationView(StirView):
    root = "verificationRequest"

    @extend_schema(
        operation_id="stir_verification",
        summary="Verify an incoming call (STI-VS)",
        description="ATIS-1000082 verification: checks the PASSporT's signature, the "
        "certificate chain to the trust anchors, TNAuthList coverage and iat freshness, and "
        "answers `verstat` (TN-Validation-Passed, TN-Validation-Failed, No-TN-Validation), "
        "with `reasonCode`/`reasonString` (RFC 8224 codes) on failure and, from a verified "
        "RCD PASSporT, the caller name to display (portal extension `caller`).",
        request={"application/json": {"type": "object"}},
        responses=STIR_RESPONSES,
        tags=["network"],
    )
    def post(self, request, data):
        return super().post(request, data)

    def cache_keys(self, data):
        to, identity = data.get("to"), data.get("identity")
        tns = to.get("tn") if isinstance(to, dict) else None
        if not isinstance(identity, str):
            return []
        try:
            return verification.cache_keys(_tn_list(tns, "to.tn"), identity)
        except CallAuthError:
            return []  # refused by serve, with the reason

    def serve(self, request, data, request_id):
        origin = _field(data, "from", dict)
        to = _field(data, "to", dict)
        verified = verification.verify_call(
            client=request.auth,
            from_tn=_field(origin, "tn", str, path="from."),
            to_tns=_tn_list(_field(to, "tn", list, path="to."), "to.tn"),
            identity=_field(data, "identity", str),
            time=_seconds(data, "time", required=False),
            request_id=request_id,
            reader=request.callpath,
        )
        response: dict[str, Any] = {"verstat": verified.verstat}
        if verified.attestation:
            response["attest"] = verified.attestation
        if verified.reason_code:
            response["reasonCode"] = verified.reason_code
            response["reasonString"] = verified.reason_text
        if verified.caller_name:
            response["caller"] = {
                "name": verified.caller_name,
                "logo": verified.logo_url,
                "reason": verified.call_reason,
            }
        return {"verificationResponse": response}
