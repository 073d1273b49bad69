"""Roles beyond Django's staff flag. An instructor runs workshops for a cohort."""

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser


def is_instructor(user: AbstractBaseUser | AnonymousUser) -> bool:
    return user.is_authenticated and user.groups.filter(name=settings.INSTRUCTOR_GROUP).exists()
