"""The home page: a returning learner sees where they left off in lessons, practice and labs."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from courseware.loading import load_content
from courseware.models import Lesson
from labs.catalogue import CATALOGUE
from labs.models import RunLab
from labs.runs import create_run
from practice.loader import load_questions
from practice.models import Question, ReviewCard


@pytest.fixture
def learner(client, django_user_model):
    user = django_user_model.objects.create_user("grace")
    client.force_login(user)
    return user


def test_a_visitor_and_a_new_learner_see_no_resume_card(client, db, django_user_model):
    assert "Pick up where you left off" not in client.get("/").content.decode()
    client.force_login(django_user_model.objects.create_user("new"))
    assert "Pick up where you left off" not in client.get("/").content.decode()


def test_a_returning_learner_gets_links_to_their_lesson_reviews_and_lab(client, learner):
    load_content()
    load_questions()
    lesson = Lesson.objects.get(slug="transactional-outbox")
    assert client.get(reverse("courseware:lesson", args=[lesson.slug])).status_code == 200
    for question in Question.objects.all()[:2]:
        ReviewCard.objects.create(user=learner, question=question, due=timezone.now() - timedelta(days=1), state={})
    RunLab.objects.create(run=create_run(learner), owner=learner, lab="outbox-and-relay")

    html = client.get("/").content.decode()

    assert "Pick up where you left off" in html
    assert f'href="{reverse("courseware:lesson", args=[lesson.slug])}">{lesson.title}</a>' in html
    assert f'href="{reverse("practice:review")}">2 questions due for review</a>' in html
    assert f'href="{reverse("labs:lab", args=["outbox-and-relay"])}">{CATALOGUE["outbox-and-relay"].title}</a>' in html


def test_the_resume_card_offers_the_lesson_last_read_even_once_marked_read(client, learner):
    load_content()
    reading = Lesson.objects.get(slug="transactional-outbox")
    client.get(reverse("courseware:lesson", args=["network-calls"]))
    client.get(reverse("courseware:lesson", args=[reading.slug]))
    client.post(reverse("courseware:mark_read", args=[reading.slug]), {"read": "1"})

    html = client.get("/").content.decode()

    following = Lesson.objects.get(position=reading.position + 1)
    assert f'Lesson: <a href="{reverse("courseware:lesson", args=[reading.slug])}">{reading.title}</a>' in html
    assert following.title not in html
