from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import URLValidator, validate_email
from django.db import transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts.scripted import user_for_script


class Command(BaseCommand):
    help = ("Give an account the instructor role (creating it, without a password, if new) and print a one-time "
            "link where its owner chooses their password. Nobody types a password on the command line.")  # fmt: skip

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="", help="Their e-mail address, for password resets later.")
        parser.add_argument("--base-url", default="http://localhost:8000", help="Where they reach the site, for the link.")

    def handle(self, *args, username: str, email: str, base_url: str, **options):
        email = email.strip()
        if email:
            try:
                validate_email(email)
            except ValidationError:
                raise CommandError(f"--email {email!r} is not an e-mail address.") from None
        try:
            URLValidator(schemes=["http", "https"])(base_url)
        except ValidationError:
            raise CommandError(f"--base-url {base_url!r} is not an http(s) URL such as https://faultline.example.org") from None
        with transaction.atomic():
            user, created = user_for_script(username, "username")
            if email and user.email != email:
                user.email = email
                user.save(update_fields=["email"])
            user.groups.add(Group.objects.get_or_create(name=settings.INSTRUCTOR_GROUP)[0])
        link = base_url.rstrip("/") + reverse(
            "accounts:password_reset_confirm", kwargs={"uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
                                                       "token": default_token_generator.make_token(user)})  # fmt: skip
        self.stdout.write(f"{'Created' if created else 'Updated'} {user.username}: an instructor now.")
        self.stdout.write(f"They choose a password (the link works once): {link}")
