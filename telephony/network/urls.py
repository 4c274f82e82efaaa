"""The network API, under /network/v1/."""

from django.urls import path

from . import stir, views

urlpatterns = [
    path("stir/signing", stir.SigningView.as_view(), name="network-stir-signing"),
    path("stir/verification", stir.VerificationView.as_view(), name="network-stir-verification"),
    path("reginfo", views.ReginfoView.as_view(), name="network-reginfo"),
    path("registrations", views.RegistrationEventsView.as_view(), name="network-registrations"),
    path("reports/<str:pk>", views.ReportView.as_view(), name="network-report"),
    path("sip/register", views.ThirdPartyRegisterView.as_view(), name="network-sip-register"),
    path("sip/invite", views.SipInviteView.as_view(), name="network-sip-invite"),
    path("ping", views.PingView.as_view(), name="network-ping"),
]
