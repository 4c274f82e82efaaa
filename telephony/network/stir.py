"""STI-AS and STI-VS for the IMS core, speaking the JSON of the ATIS-1000082 REST
interface (signingRequest/signingResponse, verificationRequest/verificationResponse,
OMA-style requestError bodies, the X-RequestID header), so that an SBC or IMS element
configured for an ATIS STI server works unchanged."""

import json
import uuid

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import parsers
from rest_framework.response import Response

from telephony import calls

from .views import CappedBody, NetworkView


class RawJsonParser(CappedBody, parsers.BaseParser):
    """The body as parsed JSON, or None when it is not JSON (answered as SVC4000)."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return json.loads(self.read_capped(stream).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None


def request_error(exc: calls.CallAuthError, request_id: str) -> Response:
    kind = "policyException" if exc.message_id.startswith("POL") else "serviceException"
    body = {
        "requestError": {
            kind: {"messageId": exc.message_id, "text": exc.text, "variables": exc.variables}
        }
    }
    return Response(body, status=exc.status, headers={"X-RequestID": request_id})


def _field(data, key, kind, *, required=True, path=""):
    name = f"{path}{key}"
    if not isinstance(data, dict) or key not in data:
        if required:
            raise calls.CallAuthError("SVC4001", "Missing mandatory parameter %1", [name])
        return None
    value = data[key]
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise calls.CallAuthError("SVC4002", "Invalid value for %1", [name])
    return value


def _tn_list(value, name):
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(t, str) for t in value)
        or len(value) > 50
    ):
        raise calls.CallAuthError("SVC4002", "Invalid value for %1", [name])
    return value


class StirView(NetworkView):
    parser_classes = [RawJsonParser]
    root = ""

    def post(self, request):
        request_id = request.headers.get("X-RequestID", "")[:64] or str(uuid.uuid4())
        try:
            if not isinstance(request.data, dict) or not isinstance(
                request.data.get(self.root), dict
            ):
                raise calls.CallAuthError("SVC4000", "Missing or malformed %1", [self.root])
            body = self.serve(request, request.data[self.root], request_id)
        except calls.CallAuthError as exc:
            return request_error(exc, request_id)
        return Response(body, headers={"X-RequestID": request_id})


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
        responses={200: {"type": "object"}},
        examples=[OpenApiExample("Rob Smith calls", value=SIGNING_EXAMPLE, request_only=True)],
        tags=["network"],
    )
    def post(self, request):
        return super().post(request)

    def serve(self, request, data, request_id):
        orig = _field(data, "orig", dict)
        dest = _field(data, "dest", dict)
        attest = _field(data, "attest", str, required=False)
        if attest is not None and attest not in ("A", "B", "C"):
            raise calls.CallAuthError("SVC4002", "Invalid value for %1", ["attest"])
        signed = calls.sign_call(
            client=request.auth,
            orig_tn=_field(orig, "tn", str, path="orig."),
            dest_tns=_tn_list(_field(dest, "tn", list, path="dest."), "dest.tn"),
            iat=_field(data, "iat", int),
            origid=_field(data, "origid", str, required=False) or "",
            attest=attest or "",
            originator_impu=_field(data, "origImpu", str, required=False) or "",
            request_id=request_id,
        )
        response = {"identity": signed.identities[0]}
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
        responses={200: {"type": "object"}},
        tags=["network"],
    )
    def post(self, request):
        return super().post(request)

    def serve(self, request, data, request_id):
        origin = _field(data, "from", dict)
        to = _field(data, "to", dict)
        verified = calls.verify_call(
            client=request.auth,
            from_tn=_field(origin, "tn", str, path="from."),
            to_tns=_tn_list(_field(to, "tn", list, path="to."), "to.tn"),
            identity=_field(data, "identity", str),
            time=_field(data, "time", int, required=False),
            request_id=request_id,
        )
        response = {"verstat": verified.verstat}
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
