from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Enterprises and accounts"

    def ready(self):
        # Services queue tasks by name (kernel.enqueue): register them in every process.
        from . import tasks  # noqa: F401
