import os

import axes.apps
import oauth2_provider.apps
from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django_otp.plugins.otp_static import apps as otp_static
from django_otp.plugins.otp_totp import apps as otp_totp


class PortalConfig(AppConfig):
    # The app's own config, among the others this module holds.
    default = True
    name = "portal"
    verbose_name = "Portal health"

    def ready(self):
        # The embedded run keeps its files under var/; the file-system broker needs its
        # folders before the first message.
        from django.conf import settings

        from kernel.ratelimit import parse_rate

        for name in ("API_RATE_LIMIT", "NETWORK_RATE_LIMIT", "TOKEN_RATE_LIMIT"):
            parse_rate(getattr(settings, name))  # a mistyped rate stops the start

        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        for key in ("data_folder_in", "data_folder_out", "control_folder"):
            folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get(key)
            if folder:
                os.makedirs(str(folder), exist_ok=True)


# The third-party apps under the names operator staff know them by in Django admin (the
# same apps, labels and models: only what the admin index shows changes).


class SignInLockoutsConfig(axes.apps.AppConfig):
    default = False
    verbose_name = "Sign-in lockouts"


class AuthenticatorAppsConfig(otp_totp.DefaultConfig):
    default = False
    verbose_name = "Second factor: authenticator apps"


class BackupCodesConfig(otp_static.DefaultConfig):
    default = False
    verbose_name = "Second factor: backup codes"


class OAuthConfig(oauth2_provider.apps.DOTConfig):
    default = False
    verbose_name = "OAuth 2.0 and OpenID Connect"


class PortalAdminConfig(admin_apps.AdminConfig):
    """Django admin, served by the second-factor-guarded operator site."""

    default = False
    default_site = "portal.admin_site.OperatorAdminSite"
