from django.urls import include, path

from telephony import views
from telephony.bulk import views as bulk_views

app_name = "telephony"

urlpatterns = [
    path("employees/", views.employee_list, name="employees"),
    path("employees/bulk/", bulk_views.employees_bulk, name="employees_bulk"),
    path("employees/onboard/", views.employee_onboard, name="employee_onboard"),
    path("employees/<int:pk>/", views.employee_detail, name="employee_detail"),
    path("employees/<int:pk>/offboard/", views.employee_offboard, name="employee_offboard"),
    path(
        "employees/<int:pk>/deactivate/",
        views.employee_leaver_action,
        {"action": "deactivate"},
        name="employee_deactivate",
    ),
    path(
        "employees/<int:pk>/reactivate/",
        views.employee_leaver_action,
        {"action": "reactivate"},
        name="employee_reactivate",
    ),
    path("employees/<int:owner_pk>/identities/new/", views.identity_create, name="identity_create"),
    path("offboarding/<int:pk>/", views.receipt_detail, name="receipt"),
    path(
        "offboarding/<int:pk>/revoke-api-tokens/",
        views.receipt_revoke_api_tokens,
        name="receipt_revoke_api_tokens",
    ),
    path("identities/", views.identity_list, name="identities"),
    path("identities/bulk/", bulk_views.identities_bulk, name="identities_bulk"),
    path("identities/<int:pk>/", views.identity_detail, name="identity_detail"),
    path("identities/<int:pk>/sync/", views.identity_sync_panel, name="identity_sync"),
    path("identities/<int:pk>/edit/", views.identity_edit, name="identity_edit"),
    path("identities/<int:pk>/relocate/", views.identity_relocate, name="identity_relocate"),
    path("identities/<int:pk>/share/", views.identity_share, name="identity_share"),
    path(
        "identities/<int:pk>/share/suggestions/<slug:field>/",
        views.identity_share_suggestions,
        name="identity_share_suggestions",
    ),
    path("identities/<int:pk>/<slug:action>/", views.identity_action, name="identity_action"),
    path("numbers/", views.inventory, name="inventory"),
    path("grants/", views.grant_list, name="grants"),
    path("grants/suggestions/<slug:field>/", views.grant_suggestions, name="grant_suggestions"),
    path("grants/<int:pk>/revoke/", views.grant_revoke, name="grant_revoke"),
    path("devices/", views.device_dashboard, name="devices"),
    path("devices/bulk/", bulk_views.devices_bulk, name="devices_bulk"),
    path("devices/<int:pk>/sign-out/", views.device_sign_out, name="device_sign_out"),
    path(
        "employees/<int:user_pk>/sign-out-all/",
        views.devices_sign_out_all,
        name="devices_sign_out_all",
    ),
    path("my/devices/", views.my_devices, name="my_devices"),
    path("my/devices/<int:pk>/settings/", views.device_settings, name="device_settings"),
    path("import/", include(bulk_views.urlpatterns)),
    path("certs/<slug:slug>.pem", views.certificate, name="certificate"),
    path("calls/", views.call_authentication, name="calls"),
]
