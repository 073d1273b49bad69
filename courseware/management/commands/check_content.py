"""Check every content file (lessons, glossary, questions, labs) without loading anything.

Each app with content names a checker in its AppConfig (`content_checker`, a dotted
path to a function that takes no arguments and returns a `ContentReport`). Errors
(a malformed file, a link to something that does not exist) fail the command;
gaps that later work will fill (a lesson with fewer than three questions yet) are
reported as warnings.
"""

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.utils.module_loading import import_string


class Command(BaseCommand):
    help = "Validate lessons, glossary, questions and labs; exit 1 on any error."

    def handle(self, *args, **options):
        checkers = [(c.label, c.content_checker) for c in apps.get_app_configs() if getattr(c, "content_checker", None)]
        errors = 0
        for label, dotted in checkers:
            report = import_string(dotted)()
            for warning in report.warnings:
                self.stdout.write(f"{label}: warning: {warning}")
            for error in report.errors:
                self.stderr.write(f"{label}: error: {error}")
            errors += len(report.errors)
            self.stdout.write(f"{label}: {report.summary}")
        if errors:
            raise CommandError(f"{errors} content error(s); see above.")
        self.stdout.write("check_content: all content is valid.")
