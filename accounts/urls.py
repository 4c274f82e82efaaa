from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/", views.profile, name="profile"),
    path("account/time-zone/", views.time_zone, name="time_zone"),
    path("account/password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("account/2fa/", views.two_factor, name="two_factor"),
    path("account/2fa/setup/", views.two_factor_setup, name="two_factor_setup"),
    path("account/2fa/backup-codes/", views.backup_codes, name="backup_codes"),
    path("account/2fa/backup-codes/new/", views.backup_codes_new, name="backup_codes_new"),
    path("password-reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password-reset/sent/",
        auth_views.PasswordResetDoneView.as_view(template_name="accounts/password_reset_done.html"),
        name="password_reset_done",
    ),
    # The emailed link: its token is in the fragment, posted by the page's script.
    path("password-reset/link/", views.password_reset_link, name="password_reset_link"),
    # Only Django's token-less form URL: a token in the path would land in access logs.
    path(
        "password-reset/<uidb64>/set-password/",
        views.PasswordResetConfirmView.as_view(),
        {"token": auth_views.PasswordResetConfirmView.reset_url_token},
        name="password_reset_confirm",
    ),
    path(
        "password-reset/complete/",
        auth_views.PasswordResetCompleteView.as_view(
            template_name="accounts/password_reset_complete.html"
        ),
        name="password_reset_complete",
    ),
    path("invitation/", views.invitation, name="invitation"),
    path("invitation/accept/", views.invitation_accept, name="invitation_accept"),
    # Links mailed before the secret moved to the fragment; they expire on their own.
    path("invitation/<str:secret>/", views.invitation_open, name="invitation_open"),
    path("users/invite/", views.user_invite, name="user_invite"),
    path("users/<int:pk>/edit/", views.user_edit, name="user_edit"),
    path("users/<int:pk>/<slug:action>/", views.user_action, name="user_action"),
    path("api-tokens/", views.api_token_list, name="api_tokens"),
    path("api-tokens/<int:pk>/revoke/", views.api_token_revoke, name="api_token_revoke"),
    path("audit/", views.audit_list, name="audit"),
    path("audit/export.csv", views.audit_export, name="audit_export"),
    path("enterprise/", views.enterprise_detail, name="enterprise"),
    path("enterprise/identity-provider/", views.identity_provider, name="identity_provider"),
    path(
        "enterprise/oidc-clients/<int:pk>/remove/",
        views.oidc_client_remove,
        name="oidc_client_remove",
    ),
    path("account/apps/", views.connected_apps, name="connected_apps"),
    path("notifications/", views.notification_list, name="notifications"),
    path("notifications/read/", views.notifications_read, name="notifications_read"),
    path("notifications/badge/", views.notification_badge, name="notification_badge"),
]
