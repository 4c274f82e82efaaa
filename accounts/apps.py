from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Enterprises and accounts"

    def ready(self):
        from .api import schema  # noqa: F401 - registers the OpenAPI auth extensions
