"""Fixtures by role for the workshop tests: two instructors with a workshop each, learners seated in them, a visitor.

A test module takes them all with `from tests.workshop_roles import *` (the names in `__all__`),
and its helpers by name. Every learner joins through `workshops.joining`,
as the join page does, so each has a real run of the lab seeded in the database.
"""

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.test import Client

from workshops import joining
from workshops.models import Workshop

__all__ = ["instructor", "other_instructor", "workshop", "other_workshop", "learner", "classmate",
           "stranger", "anonymous"]  # fmt: skip

LAB = "dead-letters-poison"
PASSWORD = "correct-horse-battery-42"


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    client.user = user
    return client


def make_instructor(django_user_model, username: str):
    """A user an admin made an instructor. (The group comes from a migration, which a transactional test's flush empties.)"""
    user = django_user_model.objects.create_user(username, password=PASSWORD)
    user.groups.add(Group.objects.get_or_create(name=settings.INSTRUCTOR_GROUP)[0])
    return user


def seat_learner(django_user_model, workshop: Workshop, username: str) -> Client:
    client = signed_in(django_user_model.objects.create_user(username, password=PASSWORD))
    client.seat = joining.join(workshop, client.user)
    return client


@pytest.fixture
def instructor(django_user_model, db) -> Client:
    return signed_in(make_instructor(django_user_model, "grace"))


@pytest.fixture
def other_instructor(django_user_model, db) -> Client:
    return signed_in(make_instructor(django_user_model, "hopper"))


@pytest.fixture
def workshop(instructor) -> Workshop:
    return Workshop.objects.create(owner=instructor.user, title="Game day: email outage", lab=LAB, capacity=5)


@pytest.fixture
def other_workshop(other_instructor) -> Workshop:
    return Workshop.objects.create(owner=other_instructor.user, title="Friday cohort", lab=LAB, capacity=5)


@pytest.fixture
def learner(django_user_model, workshop) -> Client:
    return seat_learner(django_user_model, workshop, "ada")


@pytest.fixture
def classmate(django_user_model, workshop) -> Client:
    """Another learner of the same workshop."""
    return seat_learner(django_user_model, workshop, "alan")


@pytest.fixture
def stranger(django_user_model, other_workshop) -> Client:
    """A learner of another workshop."""
    return seat_learner(django_user_model, other_workshop, "barbara")


@pytest.fixture
def anonymous() -> Client:
    return Client()
