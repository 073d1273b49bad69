import json

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import URLValidator
from django.db import transaction
from django.urls import reverse

from accounts.scripted import user_for_script
from labs.catalogue import CATALOGUE
from workshops import api_keys
from workshops.models import MAX_CAPACITY, Workshop


class Command(BaseCommand):
    help = ("Create a workshop of a lab for an instructor (created if missing, and given the instructor role) "
            "and print it as one line of JSON: its join code and link, and its API key (shown only here).")  # fmt: skip

    def add_arguments(self, parser):
        parser.add_argument("--instructor", required=True, help="Who runs it; created (without a password) if new.")
        parser.add_argument("--lab", required=True, help=f"The lab's slug: {', '.join(CATALOGUE)}.")
        parser.add_argument("--title", default=None, help="Default: the lab's title.")
        parser.add_argument("--capacity", type=int, default=30, help="Seats (default 30).")
        parser.add_argument("--base-url", default="http://localhost:8000", help="Where learners reach the site, for the join link.")

    def handle(self, *args, instructor: str, lab: str, title: str | None, capacity: int, base_url: str, **options):
        if lab not in CATALOGUE:
            raise CommandError(f"--lab {lab!r} is not a lab; choose from {', '.join(CATALOGUE)}")
        title = (title or CATALOGUE[lab].title).strip()
        if not 1 <= len(title) <= Workshop._meta.get_field("title").max_length:
            raise CommandError("--title must be 1 to 120 characters.")
        if not 1 <= capacity <= MAX_CAPACITY:
            raise CommandError(f"--capacity must be between 1 and {MAX_CAPACITY}.")
        try:
            URLValidator(schemes=["http", "https"])(base_url)
        except ValidationError:
            raise CommandError(f"--base-url {base_url!r} is not an http(s) URL such as https://faultline.example.org")
        with transaction.atomic():
            user, created = user_for_script(instructor, "--instructor")
            user.groups.add(Group.objects.get_or_create(name=settings.INSTRUCTOR_GROUP)[0])
            workshop = Workshop.objects.create(owner=user, title=title, lab=lab, capacity=capacity)
            key = api_keys.new_key(workshop, user)
        join_url = base_url.rstrip("/") + reverse("workshops:join_code", args=[workshop.join_code])
        self.stdout.write(json.dumps({"workshop": workshop.pk, "title": workshop.title, "lab": lab, "join_code": workshop.shown_code,
                                      "join_url": join_url, "api_key": key, "instructor": user.username,
                                      "instructor_created": created}))  # fmt: skip
