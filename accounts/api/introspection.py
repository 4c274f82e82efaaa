"""Token introspection (RFC 7662) for network elements, authenticated as network clients."""

from drf_spectacular.utils import extend_schema
from rest_framework import parsers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import oidc
from accounts.api.authentication import NetworkClientAuthentication
from accounts.api.permissions import IsNetworkClient
from kernel.ratelimit import NetworkRateThrottle


class IntrospectionView(APIView):
    authentication_classes = [NetworkClientAuthentication]
    permission_classes = [IsNetworkClient]
    throttle_classes = [NetworkRateThrottle]
    parser_classes = [parsers.FormParser]

    @extend_schema(
        operation_id="oidc_introspect",
        summary="Introspect an access token (RFC 7662)",
        description="`application/x-www-form-urlencoded` with `token`. Answers "
        '`{"active": false}` unless the token is live, its user may still authenticate, and '
        "the calling network client serves the user's enterprise; otherwise the claims, "
        "including `impus` and `enterprise`.",
        request={
            "application/x-www-form-urlencoded": {
                "type": "object",
                "properties": {"token": {"type": "string"}},
            }
        },
        responses={200: {"type": "object"}},
        tags=["network"],
    )
    def post(self, request):
        token = request.data.get("token", "")
        if not isinstance(token, str) or not token or len(token) > 8192:
            return Response({"active": False})
        return Response(oidc.introspect(request.auth, token), headers={"Cache-Control": "no-store"})
