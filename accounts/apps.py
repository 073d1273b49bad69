from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        from accounts import limits  # noqa: F401 - connects the failed log-in counter
        from config import csrf_random

        csrf_random.install()
