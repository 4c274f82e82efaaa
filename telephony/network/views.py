"""The network API for the IMS core: registration reports in, as RFC 3680 reginfo
documents or as JSON events, and the SIP edge's third-party REGISTERs and INVITEs.
Authenticated per network client; bodies are untrusted."""

import uuid

from django.urls import reverse
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, parsers, serializers
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.authentication import NetworkClientAuthentication
from accounts.api.permissions import IsNetworkClient
from accounts.audit import Actor
from kernel.api import parsers as strict_json
from kernel.api.schema import ApiErrorSerializer
from kernel.ratelimit import NetworkRateThrottle
from telephony.models import RegistrationReport
from telephony.registrations import inbox, ingest, third_party
from telephony.registrations.reginfo import (
    ReginfoDocument,
    ReginfoError,
    parse_reginfo_xml,
    parse_registration_events,
)
from telephony.registrations.sipmessage import (
    Invite,
    SipMessageError,
    ThirdPartyRegister,
    parse_invite,
    parse_third_party_register,
)

from . import sipcall
from .callpath import CallPathView, json_answer, read_capped


class ReginfoXmlParser(parsers.BaseParser):
    media_type = "application/reginfo+xml"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return parse_reginfo_xml(read_capped(stream))
        except ReginfoError as exc:
            raise exceptions.ParseError(f"Not a valid reginfo document: {exc}") from exc


class RegistrationEventsParser(parsers.BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = strict_json.loads(read_capped(stream))
        except strict_json.InvalidJson as exc:
            raise exceptions.ParseError(f"The body is not JSON: {exc}.") from exc
        try:
            return parse_registration_events(data)
        except ReginfoError as exc:
            raise exceptions.ParseError(f"Not valid registration events: {exc}") from exc


class SipMessageParser(parsers.BaseParser):
    """A ``message/sip`` body read by the strict parser of the message it must be."""

    media_type = "message/sip"
    what = ""  # the message, as a refusal names it

    @staticmethod
    def read(data: bytes):
        raise NotImplementedError

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return self.read(read_capped(stream))
        except SipMessageError as exc:
            raise exceptions.ParseError(f"Not a valid {self.what}: {exc}.") from exc


class SipRegisterParser(SipMessageParser):
    what = "third-party REGISTER"
    read = staticmethod(parse_third_party_register)


BODY_ERRORS = {
    400: OpenApiResponse(ApiErrorSerializer, description="Malformed or hostile document"),
    413: OpenApiResponse(ApiErrorSerializer, description="A body over NETWORK_MAX_BODY_BYTES"),
}


class ApplyReportSerializer(serializers.Serializer):
    applied = serializers.IntegerField(help_text="Contacts whose record changed or was refreshed.")
    new_devices = serializers.IntegerField()
    ended = serializers.IntegerField()
    stale_aors = serializers.ListField(
        child=serializers.CharField(),
        help_text="Skipped: a partial document not newer than the version already applied, "
        "or a replay of a document applied within the last minutes.",
    )
    unknown_aors = serializers.ListField(
        child=serializers.CharField(), help_text="AoRs that name no identity; nothing was guessed."
    )
    full_state_needed_aors = serializers.ListField(
        child=serializers.CharField(),
        help_text="AoRs whose reports may have been lost (a version gap, or only partial "
        "state so far; RFC 3680's version rule): re-subscribe to send their full state. Listed in "
        "every answer about them until a full document comes.",
    )


class ReportAcceptedSerializer(serializers.Serializer):
    report = serializers.IntegerField(help_text="The report's number.")
    state = serializers.CharField(help_text="`pending`: kept, to be applied.")
    location = serializers.CharField(help_text="Where its outcome is read (also `Location`).")


class ReportOutcomeSerializer(serializers.Serializer):
    report = serializers.IntegerField()
    state = serializers.ChoiceField(
        choices=RegistrationReport.State.values,
        help_text="`pending` (not applied yet), `applied`, or `refused` (nothing applied).",
    )
    received_at = serializers.DateTimeField()
    applied_at = serializers.DateTimeField(allow_null=True)
    outcome = serializers.JSONField(
        allow_null=True,
        help_text="Applied: what the synchronous answer says (`applied`, `new_devices`, "
        "`ended`, `stale_aors`, `unknown_aors`, `full_state_needed_aors`); refused: "
        "`reason`; pending: null.",
    )


class NetworkView(APIView):
    authentication_classes = [NetworkClientAuthentication]
    permission_classes = [IsNetworkClient]
    throttle_classes = [NetworkRateThrottle]

    def apply(self, request):
        document = request.data
        if not isinstance(document, ReginfoDocument):
            # DRF skips the parser for an empty body or one without a Content-Type.
            raise exceptions.ParseError("The body is empty or has no Content-Type.")
        subscriptions = request.query_params.getlist("subscription")
        if len(subscriptions) > 1:
            raise exceptions.ParseError("A document belongs to one subscription: name one.")
        subscription = subscriptions[0] if subscriptions else None
        actor = Actor.from_request(request)
        if prefers_async(request):
            kept = inbox.receive(
                actor=actor, client=request.auth, document=document, subscription=subscription
            )
            location = reverse("network-report", args=[kept.pk])
            return Response(
                {"report": kept.pk, "state": kept.state, "location": location},
                status=202,
                headers={"Location": location, "Preference-Applied": "respond-async"},
            )
        report = ingest.apply_report(
            actor=actor, client=request.auth, document=document, subscription=subscription
        )
        return Response(report.as_dict())


def prefers_async(request) -> bool:
    """Whether the request's ``Prefer`` header (RFC 7240) asks for ``respond-async``."""
    preferences = request.headers.get("Prefer", "").split(",")
    return any(p.split(";")[0].strip().lower() == "respond-async" for p in preferences)


PREFER = OpenApiParameter(
    "Prefer",
    str,
    location=OpenApiParameter.HEADER,
    description="`respond-async` (RFC 7240): answer 202 at once and apply the document "
    "with the others waiting, in the order received; its outcome is read at `Location` "
    "(`GET /network/v1/reports/{id}`) for a day. Without it, the document is applied "
    "before the answer, which says what happened.",
)
ASYNC_ANSWER = {
    202: OpenApiResponse(ReportAcceptedSerializer, description="Kept, with Prefer: respond-async")
}


SUBSCRIPTION = OpenApiParameter(
    "subscription",
    str,
    description="The reg-event subscription the document came in (the SIP edge passes its "
    "SUBSCRIBE dialog's Call-ID; 1 to 255 visible ASCII characters). With it, RFC 3680's "
    "version rule holds per AoR and subscription: a subscription's first document applies "
    "at whatever version it starts, later ones only if newer. Without it, versions are "
    "kept per AoR, and a full document that is not newer is taken for a new subscription's.",
)


REGINFO_EXAMPLE = """<?xml version="1.0"?>
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="7" state="full">
  <registration aor="sip:+4930555000@swift-delivery.example;user=phone" id="a1" state="active">
    <contact id="c1" state="active" event="registered" expires="3600">
      <uri>sip:+4930555000@198.51.100.20:5060;transport=tcp</uri>
      <unknown-param name="+sip.instance">"&lt;urn:gsma:imei:35209900-176148-1&gt;"</unknown-param>
    </contact>
  </registration>
</reginfo>"""


class ReginfoView(NetworkView):
    parser_classes = [ReginfoXmlParser]

    @extend_schema(
        operation_id="network_reginfo",
        summary="Report registrations as an RFC 3680 reginfo document",
        description="`Content-Type: application/reginfo+xml`. `full` and `partial` documents, "
        "several registrations per document (an implicit registration set reports each IMPU), "
        "RFC 5628 GRUUs. Applied whole or not at all. 400 for malformed or hostile XML, 413 "
        "for a body over the size limit, 403 when an AoR belongs to an enterprise this "
        "client does not serve.",
        request={"application/reginfo+xml": {"type": "string"}},
        parameters=[SUBSCRIPTION, PREFER],
        responses={200: ApplyReportSerializer, **ASYNC_ANSWER, **BODY_ERRORS},
        examples=[OpenApiExample("Rob's phone", value=REGINFO_EXAMPLE, request_only=True)],
        tags=["network"],
    )
    def post(self, request):
        return self.apply(request)


class RegistrationEventsView(NetworkView):
    parser_classes = [RegistrationEventsParser]

    @extend_schema(
        operation_id="network_registrations",
        summary="Report registrations as JSON events",
        description="The same information as a reginfo document: "
        '`{"version", "state": "full"|"partial", "registrations": [{"aor", "id", "state", '
        '"contacts": [{"id", "uri", "state", "event", "expires", "duration_registered", '
        '"retry_after", "callid", "cseq", "q", "instance", "display_name", "params", '
        '"pub_gruu", "temp_gruu", "user_agent", "access_network", "source_ip"}]}]}`.',
        request={"application/json": {"type": "object"}},
        parameters=[SUBSCRIPTION, PREFER],
        responses={200: ApplyReportSerializer, **ASYNC_ANSWER, **BODY_ERRORS},
        tags=["network"],
    )
    def post(self, request):
        return self.apply(request)


class ReportView(NetworkView):
    @extend_schema(
        operation_id="network_report",
        summary="The outcome of a report answered asynchronously",
        description="A report this client sent with `Prefer: respond-async`, for a day "
        "after it came: `pending` until applied, then `applied` with what the synchronous "
        "answer says, or `refused` (an AoR of an enterprise this client does not serve) with "
        "the reason and nothing applied. Another client's report is a 404.",
        responses={200: ReportOutcomeSerializer},
        tags=["network"],
    )
    def get(self, request, pk: str):
        # DRF's lookup: an id that is no number is not found either.
        report = get_object_or_404(RegistrationReport.objects.all(), pk=pk, client=request.auth)
        return Response(
            {
                "report": report.pk,
                "state": report.state,
                "received_at": report.received_at,
                "applied_at": report.applied_at,
                "outcome": report.outcome,
            }
        )


class RegisterAnswerSerializer(serializers.Serializer):
    aor = serializers.CharField(help_text="The IMPU registered: the REGISTER's To URI.")
    expires = serializers.IntegerField(help_text="Seconds; 0 for a de-registration.")
    known = serializers.BooleanField(
        help_text="Whether the IMPU names an identity; if not, nothing was stored."
    )
    subscribe = serializers.BooleanField(
        help_text="Subscribe to the IMPU's reg events: known and registered (expires > 0)."
    )


class LiveRegistrationSerializer(serializers.Serializer):
    aor = serializers.CharField()
    scscf = serializers.CharField(help_text="The S-CSCF's URI: the REGISTER's Contact.")
    expires = serializers.IntegerField(help_text="Seconds left, at least 1.")


class LiveRegistrationsSerializer(serializers.Serializer):
    registrations = LiveRegistrationSerializer(many=True)
    next_cursor = serializers.CharField(
        allow_null=True, help_text="Pass as `?cursor=` for the next page; null on the last."
    )


THIRD_PARTY_REGISTER_EXAMPLE = """REGISTER sip:portal-as.swift-delivery.example SIP/2.0
Via: SIP/2.0/UDP scscf1.ims.example;branch=z9hG4bK351g45.1
Max-Forwards: 70
From: <sip:scscf1.ims.example>;tag=4fa3
To: <sip:+4930555000@swift-delivery.example;user=phone>
Call-ID: apb03a0s09dkjdfglkj49111
CSeq: 87 REGISTER
Contact: <sip:scscf1.ims.example>
Expires: 600000
Content-Length: 0

"""


class ThirdPartyRegisterView(NetworkView):
    parser_classes = [SipRegisterParser]

    @extend_schema(
        operation_id="network_sip_register",
        summary="Hand over a third-party REGISTER (SIP edge)",
        description="`Content-Type: message/sip`: the whole REGISTER the S-CSCF sent the "
        "portal's SIP edge (TS 24.229 §5.4.1.7), CRLF line ends. The To URI is the IMPU, the "
        "Contact's `expires` or the Expires header how long (0: de-registration), the Contact "
        "the S-CSCF. When the iFC includes them, `message/sip` bodies (alone or in "
        "`multipart/mixed`) hold the UE's REGISTER and the 200 OK to it: its contact, "
        "`+sip.instance`, User-Agent and P-Access-Network-Info describe the device the next "
        "NOTIFY binds. An IMPU that names no identity is answered `known: false` and nothing "
        "is stored. 400 for a malformed message (with the reason), 413 over the size limit, "
        "403 for an enterprise this client does not serve.",
        request={"message/sip": {"type": "string"}},
        responses={200: RegisterAnswerSerializer, **BODY_ERRORS},
        examples=[
            OpenApiExample(
                "Rob's IMPU registered", value=THIRD_PARTY_REGISTER_EXAMPLE, request_only=True
            )
        ],
        tags=["network"],
    )
    def post(self, request):
        message = request.data
        if not isinstance(message, ThirdPartyRegister):
            raise exceptions.ParseError("The body is empty or has no Content-Type.")
        answer = third_party.register(
            actor=Actor.from_request(request), client=request.auth, message=message
        )
        return Response(answer.as_dict())

    @extend_schema(
        operation_id="network_sip_registrations",
        summary="The IMPUs registered at the SIP edge (for its restart)",
        description="The third-party registrations not yet expired of the enterprises this "
        f"client serves, {third_party.PAGE_SIZE:,} a page in a stable order, so that a "
        "restarted edge subscribes to each again.",
        parameters=[
            OpenApiParameter("cursor", str, description="`next_cursor` of the page before."),
            OpenApiParameter(
                "limit",
                int,
                description=f"Page size, 1 to {third_party.PAGE_SIZE:,} (the default).",
            ),
        ],
        responses={200: LiveRegistrationsSerializer},
        tags=["network"],
    )
    def get(self, request):
        after = third_party.parse_cursor(request.query_params.get("cursor"))
        limit = third_party.parse_limit(request.query_params.get("limit"))
        page, more = third_party.live_registrations(client=request.auth, after=after, limit=limit)
        return Response(
            {
                "registrations": [
                    {"aor": r.aor, "scscf": r.scscf, "expires": r.expires} for r in page
                ],
                "next_cursor": str(more) if more is not None else None,
            }
        )


class InviteAnswerSerializer(serializers.Serializer):
    originating = serializers.BooleanField(
        help_text="The edge serves the caller (sign) or, if false, the callee (verify)."
    )
    action = serializers.ChoiceField(choices=["relay", "reject"])
    code = serializers.IntegerField(
        required=False, help_text="With reject: the RFC 8224 code (428, 436, 437, 438, 403)."
    )
    reason = serializers.CharField(required=False, help_text="With reject: its reason phrase.")
    identity = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Originating: the Identity header values that replace the INVITE's "
        "(SHAKEN, then RCD); empty when the call goes unsigned.",
    )
    attest = serializers.CharField(required=False, help_text="The attestation (A, B or C).")
    verstat = serializers.CharField(required=False, help_text="Terminating: the verstat.")
    asserted_identity = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Terminating: the P-Asserted-Identity values that replace the INVITE's, "
        "with verstat on the URI and the verified caller name as the display name.",
    )
    from_display = serializers.CharField(
        required=False, help_text="Terminating, without P-Asserted-Identity: From's new name."
    )
    from_uri = serializers.CharField(
        required=False, help_text="Terminating, without P-Asserted-Identity: From's new URI."
    )
    note = serializers.CharField(required=False, help_text="Why unsigned or not verified.")


INVITE_EXAMPLE = """INVITE sip:+4940123499@ims.example;user=phone SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK77ef4c2312983.1
Max-Forwards: 69
Route: <sip:portal-as@192.0.2.20:5070;lr>, <sip:iscmark@192.0.2.10:5060;lr;s=1;h=0;d=0>
From: "Rob Smith" <sip:+4930555000@swift-delivery.example;user=phone>;tag=9fxced76sl
To: <sip:+4940123499@ims.example;user=phone>
Call-ID: 3848276298220188511@198.51.100.20
CSeq: 1 INVITE
P-Asserted-Identity: <sip:+4930555000@swift-delivery.example;user=phone>
P-Served-User: <sip:+4930555000@swift-delivery.example;user=phone>;sescase=orig;regstate=reg
Contact: <sip:+4930555000@198.51.100.20:5060>
Content-Length: 0

"""


class SipInviteView(CallPathView):
    media_type = "message/sip"

    def read(self, body):
        try:
            return parse_invite(body)
        except SipMessageError as exc:
            raise exceptions.ParseError(f"Not a valid INVITE: {exc}.") from exc

    def empty(self):
        # DRF's words for it, as at the other network views
        raise exceptions.ParseError("The body is empty or has no Content-Type.")

    @extend_schema(
        operation_id="network_sip_invite",
        summary="Sign or verify an INVITE (SIP edge)",
        description="`Content-Type: message/sip`: the INVITE the edge received, as it came "
        "(CRLF line ends). The side of the call: `P-Served-User`'s `sescase` (RFC 5502), "
        "else the S-CSCF's ISC mark (a Route `sip:iscmark@…;d=0|1|2`), else an Identity "
        "header means terminating and none originating. Originating calls are signed by the "
        "STI-AS (answer `identity`), terminating ones verified by the STI-VS (answer "
        "`verstat` and the rewritten P-Asserted-Identity or From; `reject` with the RFC 8224 "
        "code under STIR_SIP_VERIFICATION_POLICY). A request the STI service cannot serve "
        "is answered `relay` with a `note`: the call goes on unsigned or unverified. 400 "
        "for a malformed INVITE (with the reason), 413 over the size limit.",
        request={"message/sip": {"type": "string"}},
        responses={200: InviteAnswerSerializer, **BODY_ERRORS},
        examples=[OpenApiExample("Rob calls", value=INVITE_EXAMPLE, request_only=True)],
        tags=["network"],
    )
    def post(self, request, invite):
        request_id = request.headers.get("X-RequestID", "")[:64] or str(uuid.uuid4())
        answer = sipcall.answer_invite(
            client=request.auth, invite=invite, request_id=request_id, reader=request.callpath
        )
        return json_answer(answer, headers={"X-RequestID": request_id})

    def call_keys(self, invite):
        return sipcall.cache_keys(invite) if isinstance(invite, Invite) else []


class PingSerializer(serializers.Serializer):
    client = serializers.CharField(help_text="The network client the credential belongs to.")


class PingView(NetworkView):
    """The smallest authenticated endpoint of the network API: it checks the credential
    and answers, nothing else. An IMS element can use it to test its credential; the
    benchmarks use it as the network API's baseline (authentication, DRF and JSON)."""

    @extend_schema(
        operation_id="network_ping",
        summary="Check a network client's credential",
        responses={200: PingSerializer},
        tags=["network"],
    )
    def get(self, request):
        return Response({"client": request.auth.name})
