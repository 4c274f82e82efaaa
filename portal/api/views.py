from functools import cached_property

from rest_framework import viewsets

from accounts.audit import Actor
from portal.tenancy import enterprise_of


class EnterpriseAPIMixin:
    """Resolves the caller's enterprise once and scopes every queryset to it, so that
    another enterprise's object answers 404."""

    @cached_property
    def enterprise(self):
        return enterprise_of(self.request.user)

    @property
    def actor(self) -> Actor:
        return Actor.from_request(self.request)

    def get_queryset(self):
        return super().get_queryset().for_enterprise(self.enterprise)


class EnterpriseViewSet(EnterpriseAPIMixin, viewsets.GenericViewSet):
    pass
