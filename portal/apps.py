import os

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

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


class PortalAdminConfig(admin_apps.AdminConfig):
    """Django admin, served by the second-factor-guarded operator site."""

    default = False
    default_site = "portal.admin_site.OperatorAdminSite"
