from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts import selectors, services
from accounts.api.base import EnterpriseAPIMixin, EnterpriseViewSet
from accounts.models import AuditEvent, Role, User

from . import serializers as s

EVERY_ROLE = (Role.ADMIN, Role.HELPDESK, Role.EMPLOYEE)


class EnterpriseView(EnterpriseAPIMixin, generics.GenericAPIView):
    """The caller's enterprise and the operator's contract with it."""

    serializer_class = s.EnterpriseSerializer
    read_roles = EVERY_ROLE

    def get(self, request):
        return Response(self.get_serializer(self.enterprise).data)


@extend_schema_view(
    list=extend_schema(parameters=[s.UserFilterSerializer]),
    create=extend_schema(request=s.UserInviteSerializer, responses={201: s.UserSerializer}),
    partial_update=extend_schema(request=s.UserUpdateSerializer, responses=s.UserSerializer),
)
class UserViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, EnterpriseViewSet):
    """Users of the enterprise. Creating one sends an invitation by email; a joiner with
    an identity is onboarded at /api/v1/onboarding/, a leaver offboarded at
    /api/v1/offboarding/."""

    serializer_class = s.UserSerializer
    queryset = User.objects.all()
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        criteria = {}
        if self.action == "list":
            filters = s.UserFilterSerializer(data=self.request.query_params)
            filters.is_valid(raise_exception=True)
            criteria = filters.validated_data
        return selectors.users_for_enterprise(self.enterprise, **criteria)

    def create(self, request):
        data = s.UserInviteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_invite(
            actor=self.actor, enterprise=self.enterprise, **data.validated_data
        )
        return Response(self._read(user), status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        data = s.UserUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_update(actor=self.actor, user=self.get_object(), **data.validated_data)
        return Response(self._read(user))

    def _read(self, user):
        return self.get_serializer(self.get_queryset().get(pk=user.pk)).data

    def _act(self, service):
        user = service(actor=self.actor, user=self.get_object())
        return Response(self._read(user))

    @extend_schema(request=None, responses=s.UserSerializer)
    @action(detail=True, methods=["post"])
    def suspend(self, request, pk=None):
        return self._act(services.user_suspend)

    @extend_schema(request=None, responses=s.UserSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._act(services.user_resume)

    @extend_schema(request=None, responses=s.UserSerializer)
    @action(detail=True, methods=["post"], url_path="resend-invitation")
    def resend_invitation(self, request, pk=None):
        services.invitation_resend(actor=self.actor, user=self.get_object())
        return Response(self._read(self.get_object()))

    @extend_schema(request=None, responses=s.UserSerializer)
    @action(detail=True, methods=["post"], url_path="reset-2fa")
    def reset_2fa(self, request, pk=None):
        return self._act(services.two_factor_reset)

    action_roles = {"resend_invitation": (Role.ADMIN, Role.HELPDESK)}


@extend_schema_view(list=extend_schema(parameters=[s.AuditFilterSerializer]))
class AuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, EnterpriseViewSet):
    """The enterprise's audit trail, newest first. Read-only: the log is append-only."""

    serializer_class = s.AuditEventSerializer
    queryset = AuditEvent.objects.all()

    def get_queryset(self):
        criteria = {}
        if self.action == "list":
            filters = s.AuditFilterSerializer(data=self.request.query_params)
            filters.is_valid(raise_exception=True)
            criteria = filters.validated_data
        return selectors.audit_events(self.enterprise, **criteria)
