"""The network API, under /network/v1/."""

from django.urls import path

from . import views

urlpatterns = [
    path("reginfo", views.ReginfoView.as_view(), name="network-reginfo"),
    path("registrations", views.RegistrationEventsView.as_view(), name="network-registrations"),
]
