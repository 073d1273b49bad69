"""Users made by management commands for scripts (create_lab_run, create_workshop): named, without a password."""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError


def user_for_script(username: str, option: str):
    """(user, created): the user called `username`, created without a usable password if new;
    CommandError naming `option` when the name is not one a user may have."""
    username = username.strip()
    User = get_user_model()
    try:
        User._meta.get_field("username").run_validators(username)
    except ValidationError as exc:
        raise CommandError(f"{option} {username!r} is not a valid user name: {' '.join(exc.messages)}")
    user, created = User.objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save()
    return user, created
