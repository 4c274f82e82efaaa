from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import viewsets

from accounts.audit import Actor
from kernel.api.errors import error_body
from kernel.tenancy import enterprise_of

if TYPE_CHECKING:  # what the mixin is mixed into, for the type checker only
    _ViewBase = viewsets.GenericViewSet
else:
    _ViewBase = object


class EnterpriseAPIMixin(_ViewBase):
    """Resolves the caller's enterprise once and scopes every queryset to it, so that
    another enterprise's object answers 404."""

    @cached_property
    def enterprise(self):
        return enterprise_of(self.request.user)

    @property
    def actor(self) -> Actor:
        return Actor.from_request(self.request)

    def get_queryset(self) -> Any:
        # Every model of the API is tenant-owned: its queryset is a TenantQuerySet.
        queryset: Any = super().get_queryset()
        return queryset.for_enterprise(self.enterprise)


class EnterpriseViewSet(EnterpriseAPIMixin, viewsets.GenericViewSet):
    pass


@csrf_exempt
def not_found(request, *args, **kwargs):
    """Any other path under /api/v1/: the API's own 404 body rather than a page, so that
    a client sees one error shape whatever it gets wrong (an id that is not a number, a
    path without its trailing slash, an action that does not exist). Changes nothing."""
    detail = "There is no such API resource."
    if not request.path.endswith("/"):
        detail += " API paths end with a slash."
    return JsonResponse(error_body(404, "not_found", detail), status=404)
