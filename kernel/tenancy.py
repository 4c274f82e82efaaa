"""Tenancy in one place.

Every tenant-owned model carries a non-null ``enterprise`` and a queryset built on
``TenantQuerySet``; selectors start from ``for_enterprise``; getters by id go through
``get_for_enterprise_or_404`` so that another enterprise's object is simply not found.
The request's enterprise is resolved once, by ``enterprise_of``, in the middleware for
pages and in the API base view for token-authenticated calls.
"""

from typing import Self, TypeVar

from django.db import models
from django.shortcuts import get_object_or_404

_M = TypeVar("_M", bound=models.Model)


class TenantQuerySet(models.QuerySet[_M]):
    # The kernel imports no app: the enterprise is any model instance here.
    def for_enterprise(self, enterprise: models.Model | None) -> Self:
        if enterprise is None:
            return self.none()
        return self.filter(enterprise=enterprise)


def get_for_enterprise_or_404(queryset, enterprise, **lookup):
    """The object matching ``lookup`` within ``enterprise``, else Http404."""
    if isinstance(queryset, type) and issubclass(queryset, models.Model):
        queryset = queryset._default_manager.all()
    return get_object_or_404(queryset.for_enterprise(enterprise), **lookup)


def enterprise_of(user):
    """The enterprise a signed-in principal acts for; None for operator staff and guests."""
    if user is None or not user.is_authenticated:
        return None
    return getattr(user, "enterprise", None)
