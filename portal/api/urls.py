"""Every API resource under /api/v1/, one router."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from accounts.api import views as accounts_views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("users", accounts_views.UserViewSet, basename="user")
router.register("audit", accounts_views.AuditEventViewSet, basename="audit")

urlpatterns = [
    path("enterprise/", accounts_views.EnterpriseView.as_view(), name="api-enterprise"),
    *router.urls,
]
