from datetime import timedelta
from typing import Any

from django.db.models import Q
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from accounts.api.base import EnterpriseViewSet
from accounts.models import ApiToken, Role, User
from kernel.tenancy import get_for_enterprise_or_404
from telephony import selectors
from telephony.identities import services
from telephony.models import (
    CallRecord,
    Grant,
    Identity,
    NumberBlock,
    OffboardingReceipt,
    Registration,
    SimLine,
    TelephoneNumber,
)
from telephony.registrations import device_settings, signout

from . import serializers as s

EVERY_ROLE = (Role.ADMIN, Role.HELPDESK, Role.EMPLOYEE)


def _valid(serializer_class, data) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _employee(request) -> User | None:
    """The signed-in employee whose own records an answer is limited to; None for admins,
    helpdesk and API tokens (a token acts as admin or helpdesk, never as an employee)."""
    user = request.user
    if isinstance(user, User) and user.role == Role.EMPLOYEE:
        return user
    return None


@extend_schema_view(
    list=extend_schema(parameters=[s.IdentityFilterSerializer]),
    create=extend_schema(request=s.IdentityCreateSerializer, responses={201: s.IdentitySerializer}),
    partial_update=extend_schema(
        request=s.IdentityUpdateSerializer, responses=s.IdentitySerializer
    ),
    destroy=extend_schema(
        description="Removes the identity: disabled and removed in the HSS (its UEs "
        "deregistered), number into quarantine, SIM line freed, grants ended. The resource "
        "stays readable with status `removed`.",
        responses={204: None},
    ),
)
class IdentityViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, EnterpriseViewSet
):
    """The enterprise's MMTEL identities with their HSS sync state. Employees see their
    own; admins change them; every change reaches the HSS asynchronously."""

    serializer_class = s.IdentitySerializer
    queryset = Identity.objects.all()
    read_roles = EVERY_ROLE
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        # A list shows live identities unless asked otherwise; one is found whatever its state.
        criteria: dict[str, Any] = {"status": "all"}
        if self.action == "list":
            criteria = _valid(s.IdentityFilterSerializer, self.request.query_params)
        found = selectors.identities(self.enterprise, **criteria)
        employee = _employee(self.request)
        if employee is not None:
            found = found.filter(owner=employee)
        return found

    def _read(self, identity):
        return self.get_serializer(self.get_queryset().get(pk=identity.pk)).data

    def create(self, request):
        data = _valid(s.IdentityCreateSerializer, request.data)
        owner = get_for_enterprise_or_404(User, self.enterprise, pk=data.pop("owner"))
        identity = services.identity_create(actor=self.actor, owner=owner, **data)
        return Response(self._read(identity), status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        data = _valid(s.IdentityUpdateSerializer, request.data)
        identity = services.identity_update(actor=self.actor, identity=self.get_object(), **data)
        return Response(self._read(identity))

    def perform_destroy(self, instance):
        services.identity_remove(actor=self.actor, identity=instance)

    def _act(self, service, **kwargs):
        identity = service(actor=self.actor, identity=self.get_object(), **kwargs)
        return Response(self._read(identity))

    @extend_schema(request=None, responses=s.IdentitySerializer)
    @action(detail=True, methods=["post"])
    def suspend(self, request, pk=None):
        return self._act(services.identity_suspend)

    @extend_schema(request=None, responses=s.IdentitySerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._act(services.identity_resume)

    @extend_schema(request=s.RelocateSerializer, responses=s.IdentitySerializer)
    @action(detail=True, methods=["post"])
    def relocate(self, request, pk=None):
        return self._act(services.identity_relocate, **_valid(s.RelocateSerializer, request.data))

    @extend_schema(request=None, responses=s.IdentitySerializer)
    @action(detail=True, methods=["post"], url_path="retry-sync")
    def retry_sync(self, request, pk=None):
        return self._act(services.sync_retry)


class OnboardingViewSet(EnterpriseViewSet):
    """A joiner in one step: account, invitation and a first identity."""

    queryset = Identity.objects.all()
    serializer_class = s.IdentitySerializer

    @extend_schema(request=s.OnboardSerializer, responses={201: s.IdentitySerializer})
    def create(self, request):
        data = _valid(s.OnboardSerializer, request.data)
        identity = services.employee_onboard(actor=self.actor, enterprise=self.enterprise, **data)
        read = selectors.identities(self.enterprise, status="all").get(pk=identity.pk)
        return Response(self.get_serializer(read).data, status=status.HTTP_201_CREATED)


class OffboardingViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, EnterpriseViewSet):
    """The leaver's kill-switch, and its receipts: each step and its outcome now."""

    queryset = OffboardingReceipt.objects.all()
    serializer_class = s.ReceiptSerializer

    def get_queryset(self):
        return selectors.receipts(self.enterprise)

    def list(self, request, *args, **kwargs):
        # The API always paginates (DEFAULT_PAGINATION_CLASS): None is not an answer here.
        page = self.paginate_queryset(self.get_queryset()) or []
        context = {**self.get_serializer_context(), "receipt_syncs": selectors.receipt_syncs(page)}
        data = s.ReceiptSerializer(page, many=True, context=context).data
        return self.get_paginated_response(data)

    @extend_schema(request=s.OffboardSerializer, responses={201: s.ReceiptSerializer})
    def create(self, request):
        data = _valid(s.OffboardSerializer, request.data)
        user = get_for_enterprise_or_404(User, self.enterprise, pk=data["user"])
        receipt = services.employee_offboard(
            actor=self.actor, user=user, revoke_api_tokens=data["revoke_api_tokens"]
        )
        return Response(self.get_serializer(receipt).data, status=status.HTTP_201_CREATED)


class DeactivationViewSet(EnterpriseViewSet):
    """Deactivate a user at once and reversibly (sign-in, app tokens, identities
    suspended, grants paused); offboarding follows after the contract's grace period
    unless they are reactivated. Answers the receipt."""

    queryset = OffboardingReceipt.objects.all()
    serializer_class = s.ReceiptSerializer
    service = staticmethod(services.employee_deactivate)

    def get_queryset(self):
        return selectors.receipts(self.enterprise)

    @extend_schema(request=s.DeactivateSerializer, responses={201: s.ReceiptSerializer})
    def create(self, request):
        data = _valid(s.DeactivateSerializer, request.data)
        user = get_for_enterprise_or_404(User, self.enterprise, pk=data["user"])
        receipt = self.service(actor=self.actor, user=user)
        return Response(self.get_serializer(receipt).data, status=status.HTTP_201_CREATED)


class ReactivationViewSet(DeactivationViewSet):
    """Undo a deactivation within the grace period: exactly what it did, undone."""

    service = staticmethod(services.employee_reactivate)


class NumberBlockViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, EnterpriseViewSet):
    """The operator's number blocks for this enterprise, with their use."""

    queryset = NumberBlock.objects.all()
    serializer_class = s.NumberBlockSerializer

    def get_queryset(self):
        return selectors.number_blocks(self.enterprise).order_by("first_number")


@extend_schema_view(list=extend_schema(parameters=[s.NumberFilterSerializer]))
class TelephoneNumberViewSet(mixins.ListModelMixin, EnterpriseViewSet):
    """Every number of the enterprise's blocks and its state (free, assigned, quarantined)."""

    queryset = TelephoneNumber.objects.all()
    serializer_class = s.TelephoneNumberSerializer

    def get_queryset(self):
        criteria = _valid(s.NumberFilterSerializer, self.request.query_params)
        found = super().get_queryset().order_by("e164")
        if criteria["status"]:
            found = found.filter(status=criteria["status"])
        if criteria["country"]:
            found = found.filter(block__country=criteria["country"].upper())
        return found


class SimLineViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, EnterpriseViewSet):
    """The enterprise's SIM line pool."""

    queryset = SimLine.objects.all()
    serializer_class = s.SimLineSerializer

    def get_queryset(self):
        return selectors.sim_lines(self.enterprise)


@extend_schema_view(
    create=extend_schema(request=s.GrantCreateSerializer, responses={201: s.GrantSerializer})
)
class GrantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, EnterpriseViewSet):
    """Sharing grants (TS 22.173 4.6). Admins and helpdesk see all; employees those they
    gave or received. Only an identity's owner can share it (with a session)."""

    queryset = Grant.objects.all()
    serializer_class = s.GrantSerializer
    read_roles = EVERY_ROLE
    # A read-only token (the helpdesk role) changes nothing.
    write_roles = (Role.ADMIN, Role.EMPLOYEE)

    def get_queryset(self):
        found = selectors.grants(self.enterprise, active="all")
        employee = _employee(self.request)
        if employee is not None:
            found = found.filter(Q(identity__owner=employee) | Q(grantee=employee))
        return found

    def create(self, request):
        data = _valid(s.GrantCreateSerializer, request.data)
        identity = get_for_enterprise_or_404(Identity, self.enterprise, pk=data.pop("identity"))
        grantee = get_for_enterprise_or_404(User, self.enterprise, pk=data.pop("grantee"))
        grant = services.grant_create(actor=self.actor, identity=identity, grantee=grantee, **data)
        return Response(self.get_serializer(grant).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=s.GrantSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        grant = services.grant_revoke(actor=self.actor, grant=self.get_object())
        return Response(self.get_serializer(grant).data)


@extend_schema_view(list=extend_schema(parameters=[s.RegistrationFilterSerializer]))
class RegistrationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, EnterpriseViewSet):
    """UEs registered with the enterprise's identities (several per person, each with
    its own settings). Employees see and change their own; admins and helpdesk see all
    and sign devices out."""

    queryset = Registration.objects.all()
    serializer_class = s.RegistrationSerializer
    read_roles = EVERY_ROLE
    write_roles = EVERY_ROLE

    def get_queryset(self):
        criteria: dict[str, Any] = {"active": "all"}
        if self.action == "list":
            criteria = _valid(s.RegistrationFilterSerializer, self.request.query_params)
        user: User | None = None
        if criteria.pop("user", None):
            user = get_for_enterprise_or_404(
                User, self.enterprise, pk=self.request.query_params["user"]
            )
        employee = _employee(self.request)
        if employee is not None:
            user = employee
        return selectors.registrations(self.enterprise, user=user, **criteria)

    def _read(self, registration):
        return self.get_serializer(self.get_queryset().get(pk=registration.pk)).data

    @extend_schema(request=None, responses=s.RegistrationSerializer)
    @action(detail=True, methods=["post"], url_path="sign-out")
    def sign_out(self, request, pk=None):
        if isinstance(request.auth, ApiToken) and request.auth.role != Role.ADMIN:
            raise PermissionDenied
        registration = signout.registration_sign_out(
            actor=self.actor, registration=self.get_object()
        )
        return Response(self._read(registration))

    @extend_schema(request=s.RegistrationSettingsSerializer, responses=s.RegistrationSerializer)
    @action(detail=True, methods=["patch"], url_path="settings")
    def device_settings(self, request, pk=None):
        # Not "settings": APIView keeps its DRF settings under that name.
        data = _valid(s.RegistrationSettingsSerializer, request.data)
        registration = device_settings.registration_update_settings(
            actor=self.actor, registration=self.get_object(), **data
        )
        return Response(self._read(registration))

    @extend_schema(request=s.SignOutAllSerializer, responses=s.SignOutAllResultSerializer)
    @action(detail=False, methods=["post"], url_path="sign-out-all")
    def sign_out_all(self, request):
        if isinstance(request.auth, ApiToken) and request.auth.role != Role.ADMIN:
            raise PermissionDenied
        data = _valid(s.SignOutAllSerializer, request.data)
        person = get_for_enterprise_or_404(User, self.enterprise, pk=data["user"])
        employee = _employee(request)
        if employee is not None and person != employee:
            raise PermissionDenied
        count = signout.registrations_sign_out_all(actor=self.actor, user=person)
        return Response({"requested": count})


@extend_schema_view(list=extend_schema(parameters=[s.CallRecordFilterSerializer]))
class CallRecordViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, EnterpriseViewSet):
    """Every signing and verification for the enterprise's numbers, with the decision's
    checks; employees see those of their own identities."""

    queryset = CallRecord.objects.all()
    serializer_class = s.CallRecordSerializer
    read_roles = EVERY_ROLE
    # The enterprise's figures are for those who see its call authentication page;
    # employees are refused, as that page refuses them (pentest F-03).
    action_roles = {"summary": (Role.ADMIN, Role.HELPDESK)}

    def get_queryset(self):
        criteria: dict[str, Any] = {"direction": "", "identity": None}
        if self.action == "list":
            criteria = _valid(s.CallRecordFilterSerializer, self.request.query_params)
        identity = None
        if criteria["identity"]:
            identity = get_for_enterprise_or_404(Identity, self.enterprise, pk=criteria["identity"])
        found = selectors.call_records(
            self.enterprise, direction=criteria["direction"], identity=identity
        )
        employee = _employee(self.request)
        if employee is not None:
            found = found.filter(identity__owner=employee)
        return found

    @extend_schema(responses=s.CallSummarySerializer)
    @action(detail=False, methods=["get"])
    def summary(self, request):
        """Attestation levels of the last 24 hours, and per day for 14 days."""
        from django.utils import timezone

        summary = selectors.call_summary(self.enterprise, timezone.now() - timedelta(hours=24))
        summary["days"] = selectors.attestation_series(self.enterprise)
        return Response(s.CallSummarySerializer(summary).data)
