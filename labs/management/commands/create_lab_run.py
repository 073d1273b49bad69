import json

from django.core.management.base import BaseCommand, CommandError

from accounts.scripted import user_for_script
from labs.runs import create_run


class Command(BaseCommand):
    help = "Create a lab run for a user (created if missing) and print it as one line of JSON."

    def add_arguments(self, parser):
        parser.add_argument("--username", required=True, help="Owner of the run; created (without a password) if new.")
        parser.add_argument("--retry-base-ms", type=int, default=None, help="First retry's maximum delay (default 1000).")
        parser.add_argument("--max-attempts", type=int, default=None, help="Attempts before dead-lettering (default 5).")

    def handle(self, *args, username: str, retry_base_ms: int | None, max_attempts: int | None, **options):
        if retry_base_ms is not None and retry_base_ms < 1:
            raise CommandError("--retry-base-ms must be a positive number of milliseconds.")
        if max_attempts is not None and not 1 <= max_attempts <= 20:
            raise CommandError("--max-attempts must be between 1 and 20.")
        user, created = user_for_script(username, "--username")
        policy = {k: v for k, v in {"retry_base_ms": retry_base_ms, "max_attempts": max_attempts}.items() if v is not None}
        run = create_run(user, **policy)
        self.stdout.write(json.dumps({"run": run.pk, "api_key": run.api_key, "username": user.username,
                                      "user_created": created, "users": run.recipients.count()}))  # fmt: skip
