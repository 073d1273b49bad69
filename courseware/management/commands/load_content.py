"""Load every app's content files (lessons, questions, labs) into the database.

Each app that has content names a loader in its AppConfig (`content_loader`, a
dotted path to a function that takes no arguments and returns a one-line summary).
Loading is idempotent: a second run changes nothing.
"""

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.utils.module_loading import import_string


class Command(BaseCommand):
    help = "Load lessons, questions and labs from their files; safe to run again."

    def handle(self, *args, **options):
        loaders = [(c.label, c.content_loader) for c in apps.get_app_configs() if getattr(c, "content_loader", None)]
        if not loaders:
            self.stdout.write("load_content: no app has content to load yet.")
            return
        for label, dotted in loaders:
            try:
                summary = import_string(dotted)()
            except ValueError as exc:  # loaders raise ValueError naming the file and line
                raise CommandError(f"{label}: {exc}") from exc
            self.stdout.write(f"load_content: {label}: {summary}")
