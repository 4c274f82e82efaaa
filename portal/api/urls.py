"""Every API resource under /api/v1/, one router."""

from django.urls import path, re_path
from rest_framework.routers import DefaultRouter

from accounts.api import views as accounts_views
from accounts.api.base import not_found
from telephony.api import views as telephony_views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("users", accounts_views.UserViewSet, basename="user")
router.register("audit", accounts_views.AuditEventViewSet, basename="audit")
router.register("identities", telephony_views.IdentityViewSet, basename="identity")
router.register("onboarding", telephony_views.OnboardingViewSet, basename="onboarding")
router.register("offboarding", telephony_views.OffboardingViewSet, basename="offboarding")
router.register("deactivations", telephony_views.DeactivationViewSet, basename="deactivation")
router.register("reactivations", telephony_views.ReactivationViewSet, basename="reactivation")
router.register("number-blocks", telephony_views.NumberBlockViewSet, basename="number-block")
router.register("numbers", telephony_views.TelephoneNumberViewSet, basename="number")
router.register("lines", telephony_views.SimLineViewSet, basename="line")
router.register("grants", telephony_views.GrantViewSet, basename="grant")
router.register("registrations", telephony_views.RegistrationViewSet, basename="registration")
router.register("call-records", telephony_views.CallRecordViewSet, basename="call-record")

urlpatterns = [
    path("enterprise/", accounts_views.EnterpriseView.as_view(), name="api-enterprise"),
    *router.urls,
    # Last: whatever else is asked for under /api/v1/ answers the API's 404.
    re_path(r"", not_found),
]
