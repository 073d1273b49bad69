"""The pages every learner opens (issue 15): what they show, that a content reload shows at once, and a
number of queries that does not grow with the content or the learner's history.

Those pages keep what they build from content per content version (courseware/content_cache.py) and
fetch each learner's part apart; these tests hold them to showing the same things as before.
"""

import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from courseware import progress as lesson_progress
from courseware.loading import load_content
from courseware.models import Lesson, LessonProgress, Module
from labs.catalogue import CATALOGUE
from labs.models import RunLab
from labs.runs import create_run
from practice import scheduling
from practice.loader import load_questions
from practice.models import Attempt, Question, Rating
from practice.progress import AccountProgress

LESSON = "network-calls"
QUESTION = "brokers-kafka-consumer-groups"
LAB = "outbox-and-relay"
PAGES = {
    "home": "/",
    "lesson catalogue": "/lessons/",
    "a lesson": f"/lessons/{LESSON}/",
    "practice bank": "/practice/",
    "a question": f"/practice/questions/{QUESTION}/",
    "lab catalogue": "/labs/",
    "a lab page": f"/labs/{LAB}/",
}


@pytest.fixture
def content(db):
    """The real lessons and questions, loaded in the test's transaction (other modules expect empty tables)."""
    load_content()
    load_questions()


@pytest.fixture
def learner(db, content, client, django_user_model):
    """A signed-in learner who has read two lessons (the page's lesson among them), answered two questions
    (one due today, one later) and started a run of another lab than the page's."""
    user = django_user_model.objects.create_user("ada")
    for slug in (LESSON, "transactional-outbox"):
        lesson_progress.mark_read(user, Lesson.objects.get(slug=slug), read=True)
    practice = AccountProgress(user)
    now = timezone.now()
    for question_id, rating, score in ((QUESTION, Rating.AGAIN, 0), ("brokers-kafka-ordering", Rating.EASY, 100)):
        _graded(practice, Question.objects.get(pk=question_id), rating, score, now - timedelta(days=3))
    other_lab = next(slug for slug in CATALOGUE if slug != LAB)
    RunLab.objects.create(run=create_run(user), owner=user, lab=other_lab)
    client.force_login(user)
    return user


def _graded(practice: AccountProgress, question: Question, rating: int, score: int, when) -> None:
    attempt = Attempt(question=question, source=Attempt.Source.GAVE_UP, created_at=when, matches=[], grades=[],
                      score=score, rating=rating, graded_at=when)  # fmt: skip
    card = scheduling.review(practice.card(question.pk), rating, when)
    attempt.due_after = card.due
    practice.save_graded(attempt, card)


def page(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    return response.content.decode()


# --- What each page shows ------------------------------------------------------------------------


def test_a_visitor_sees_every_page_with_its_content_and_a_way_to_sign_in(client, db, content):
    lessons = list(Lesson.objects.order_by("position"))
    lesson = Lesson.objects.get(slug=LESSON)
    question = Question.objects.get(pk=QUESTION)
    bank = Question.objects.filter(retired=False)
    pages = {name: page(client, path) for name, path in PAGES.items()}

    assert all("Log in</a>" in html for html in pages.values())
    assert "How services talk, and how they fail" in pages["home"] and "Pick up where you left off" not in pages["home"]
    for each in lessons:
        assert f'href="{reverse("courseware:lesson", args=[each.slug])}">{escape(each.title)}</a>' in pages["lesson catalogue"]
    assert "lessons read" not in pages["lesson catalogue"] and "✓ Read" not in pages["lesson catalogue"]
    assert f"<h1 id=\"lesson-title\">{escape(lesson.title)}</h1>" in pages["a lesson"]
    assert lesson.checks.count() == pages["a lesson"].count('class="check"') > 0
    following = lessons[lesson.position]  # positions count from 1
    assert f'rel="next" href="{reverse("courseware:lesson", args=[following.slug])}"' in pages["a lesson"]
    assert f"{bank.count()} of {bank.count()} questions" in pages["practice bank"]
    for each in bank:
        assert f'href="{each.get_absolute_url()}">{escape(each.title)}</a>' in pages["practice bank"]
    assert 'class="badge due"' not in pages["practice bank"] and 'class="badge score"' not in pages["practice bank"]
    assert f"<h1>{escape(question.title)}</h1>" in pages["a question"] and '<div class="prompt"><p>' in pages["a question"]
    for title, url in question.lesson_links():
        assert f'<a href="{url}">{escape(title)}</a>' in pages["a question"]
    for lab in CATALOGUE.values():
        assert f'href="{reverse("labs:lab", args=[lab.slug])}">{escape(lab.title)}</a>' in pages["lab catalogue"]
    for slug in CATALOGUE[LAB].lessons:
        assert f'href="{reverse("courseware:lesson", args=[slug])}">{escape(Lesson.objects.get(slug=slug).title)}</a>' in pages["a lab page"]
    assert "Sign in to start a run" in pages["a lab page"]


def test_a_signed_in_learner_sees_their_own_progress_on_every_page(client, learner):
    lesson = Lesson.objects.get(slug=LESSON)
    module_lessons = Lesson.objects.filter(module=lesson.module).count()
    pages = {name: page(client, path) for name, path in PAGES.items()}

    assert all('data-testid="signed-in-as">ada<' in html for html in pages.values())
    home = pages["home"]
    assert f'href="{reverse("courseware:lesson", args=["transactional-outbox"])}">' in home
    assert "1 question due for review" in home
    started = RunLab.objects.get(owner=learner).lab
    assert f'href="{reverse("labs:lab", args=[started])}">{escape(CATALOGUE[started].title)}</a>' in home
    catalogue = pages["lesson catalogue"]
    assert f"2 of {Lesson.objects.count()} lessons read" in catalogue
    assert catalogue.count('<span class="read-badge">✓ Read</span>') == 2 and catalogue.count("lesson-item is-read") == 2
    assert catalogue.count('data-testid="module-progress"') == Module.objects.count()
    assert "Continue where you left off" in catalogue
    assert "You marked this lesson as read." in pages["a lesson"]
    assert f"1 of {module_lessons} lessons read in {escape(lesson.module.title)}" in pages["a lesson"]
    bank = pages["practice bank"]
    assert '<strong data-testid="due-count">1</strong>' in bank
    assert bank.count('<span class="badge due">Due</span>') == 1 and bank.count('title="Next review">Next ') == 1
    assert '<span class="badge score" title="Latest score">100%</span>' in bank
    assert 'data-testid="next-review"' in pages["a question"]
    assert pages["lab catalogue"].count("run in progress") == 1
    assert "Start your run" in pages["a lab page"]


def test_a_visitor_answers_a_check_of_a_lesson_page_others_have_seen(db, content):
    """A visitor's checks are kept rendered; each visitor's forms still carry their own CSRF token."""
    first, second = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    page(first, PAGES["a lesson"])
    html = page(second, PAGES["a lesson"])
    check = Lesson.objects.get(slug=LESSON).checks.first()
    token = re.search(rf'id="check-{check.check_id}".*?name="csrfmiddlewaretoken" value="([^"]+)"', html, re.S)[1]

    response = second.post(reverse("courseware:answer_check", args=[check.check_id]), {"option": "0", "csrfmiddlewaretoken": token},
                           HTTP_HX_REQUEST="true")  # fmt: skip

    assert response.status_code == 200 and "check-verdict" in response.content.decode()
    assert 'value="<!--' not in html


# --- A content reload shows at once ---------------------------------------------------------------


@pytest.fixture
def content_copy(tmp_path) -> tuple[Path, Path]:
    """The real lessons and questions, copied to be edited and loaded again."""
    lessons, questions = tmp_path / "courseware", tmp_path / "practice"
    shutil.copytree(Path(settings.BASE_DIR) / "courseware" / "content", lessons)
    shutil.copytree(Path(settings.BASE_DIR) / "practice" / "content", questions)
    return lessons, questions


def _retitle(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_a_content_reload_shows_on_every_page_at_once(client, learner, content_copy, settings):
    lessons, questions = content_copy
    before = {name: page(client, path) for name, path in PAGES.items()}  # every page has kept its content
    lesson = Lesson.objects.get(slug=LESSON)
    question = Question.objects.get(pk=QUESTION)
    _retitle(next((lessons / "lessons").glob(f"*{LESSON}*.md")), f"title: {lesson.title}", "title: Calls across the wire")
    _retitle(next(questions.glob(f"questions/*/{QUESTION}.yaml")), f"title: {question.title}", "title: Consumer groups, renamed")
    settings.PRACTICE_CONTENT_DIR = str(questions)

    load_content(lessons, questions / "questions")
    load_questions()

    after = {name: page(client, path) for name, path in PAGES.items()}
    assert escape(lesson.title) in before["lesson catalogue"] and escape(lesson.title) not in after["lesson catalogue"]
    for name in ("lesson catalogue", "a lesson"):
        assert "Calls across the wire" in after[name]
    assert escape(question.title) in before["practice bank"]
    for name in ("practice bank", "a question"):
        assert "Consumer groups, renamed" in after[name] and escape(question.title) not in after[name]


def test_a_content_row_saved_by_hand_shows_at_once(client, db, content):
    """The admin or a shell can change a row without the loader: the pages show that at once too."""
    page(client, PAGES["practice bank"])
    question = Question.objects.get(pk=QUESTION)
    question.title = "Edited in the admin"
    question.save()

    assert "Edited in the admin" in page(client, PAGES["practice bank"])


# --- Queries do not grow with content or history -------------------------------------------------


def _grow(user) -> None:
    """Thirty more questions and lessons, and a learner who has read every lesson and answered every question."""
    template_question = Question.objects.get(pk=QUESTION)
    for n in range(30):
        template_question.pk = f"{QUESTION}-copy-{n}"
        template_question.save(force_insert=True)
    last = Lesson.objects.order_by("-position").first()
    for n in range(30):
        Lesson.objects.create(slug=f"extra-{n}", title=f"Extra {n}", summary="More.", module=last.module, order=100 + n,
                              position=last.position + 1 + n, minutes=5, source="-", content_hash="-", html="<p>More.</p>",
                              toc_html="", body_text="More.", search_text="more", word_count=1)  # fmt: skip
    if user is None:
        return
    practice = AccountProgress(user)
    for question in Question.objects.all():
        _graded(practice, question, Rating.GOOD, 80, timezone.now() - timedelta(days=1))
    for lesson in Lesson.objects.all():
        LessonProgress.objects.update_or_create(user=user, lesson=lesson, defaults={"read_at": timezone.now(), "last_visited_at": timezone.now()})


def _queries(client, path: str) -> int:
    page(client, path)  # the first request after a change builds what the page keeps
    with CaptureQueriesContext(connection) as queries:
        page(client, path)
    return len(queries)


@pytest.mark.parametrize("name", list(PAGES))
@pytest.mark.parametrize("visitor", ["anonymous", "signed in"])
def test_a_page_makes_as_many_queries_with_far_more_content_and_history(name, visitor, client, db, content, request):
    user = request.getfixturevalue("learner") if visitor == "signed in" else None
    few = _queries(client, PAGES[name])

    _grow(user)

    assert _queries(client, PAGES[name]) == few


# --- Kept pages: each visitor's own parts, never another's ------------------------------------------


def _token(html: str) -> str:
    return re.search(r'hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'', html)[1]


def test_two_learners_one_after_the_other_get_their_own_parts_and_a_visitor_none(db, learner, client, django_user_model):
    """Every page is kept rendered once (courseware/kept_pages.py): ada's request builds it, then bob, a visitor
    and ada again open it, and each sees only their own name, progress, badges, runs and CSRF token."""
    bob = django_user_model.objects.create_user("bob<b>")
    bobs_lesson = Lesson.objects.exclude(slug__in=[LESSON, "transactional-outbox"]).order_by("position").first()
    lesson_progress.mark_read(bob, bobs_lesson, read=True)
    _graded(AccountProgress(bob), Question.objects.get(pk="brokers-kafka-ordering"), Rating.GOOD, 40, timezone.now() - timedelta(days=3))
    bobs_lab = next(slug for slug in CATALOGUE if slug not in (LAB, RunLab.objects.get(owner=learner).lab))
    RunLab.objects.create(run=create_run(bob), owner=bob, lab=bobs_lab)
    bobs, visitor = Client(), Client()
    bobs.force_login(bob)
    total = Lesson.objects.count()
    # What only ada's pages show, and what only bob's do.
    own = {
        "home": (f'href="{reverse("courseware:lesson", args=["transactional-outbox"])}"', f'href="{reverse("courseware:lesson", args=[bobs_lesson.slug])}"'),
        "lesson catalogue": (f"2 of {total} lessons read", f"1 of {total} lessons read"),
        "a lesson": ("You marked this lesson as read.", '<button type="submit" class="button">Mark as read</button>'),
        "practice bank": ('title="Latest score">100%<', 'title="Latest score">40%<'),
        "a question": ("Your attempts at this question", None),
        "lab catalogue": (_run_in_progress(RunLab.objects.get(owner=learner).lab), _run_in_progress(bobs_lab)),
        "a lab page": (None, None),
    }

    for name, path in PAGES.items():
        first, second, anonymous, again = page(client, path), page(bobs, path), page(visitor, path), page(client, path)
        adas_part, bobs_part = own[name]
        for html in (first, again):
            assert 'data-testid="signed-in-as">ada<' in html and "bob" not in html, name
            assert _shows(html, adas_part) and not _shows(html, bobs_part, absent=False), name
        assert 'data-testid="signed-in-as">bob&lt;b&gt;<' in second and ">ada<" not in second, name
        assert _shows(second, bobs_part) and not _shows(second, adas_part, absent=False), name
        assert "signed-in-as" not in anonymous and "Log in</a>" in anonymous, name
        assert not _shows(anonymous, adas_part, absent=False) and not _shows(anonymous, bobs_part, absent=False), name
        assert "<!--slot:" not in first + second + anonymous + again, name
        assert len({_token(first), _token(second), _token(anonymous), _token(again)}) == 4, name


def _run_in_progress(lab: str) -> re.Pattern:
    """A lab's card on the catalogue that says a run of it is in progress."""
    return re.compile(rf'<li id="{lab}" class="card lab-card">(?:(?!</li>).)*run in progress', re.S)


def _shows(html: str, part: str | re.Pattern | None, absent: bool = True) -> bool:
    """Whether the page shows `part`; a page without such a part (None) shows it when `absent` says so."""
    if part is None:
        return absent
    return bool(part.search(html)) if isinstance(part, re.Pattern) else part in html


def test_a_kept_page_shows_a_message_once_to_its_learner(client, learner):
    """The lab page after a run is deleted is a first load again (kept); the note shows there, once."""
    page(client, PAGES["a lab page"])  # kept before the message exists
    run = create_run(learner)
    RunLab.objects.create(run=run, owner=learner, lab=LAB)

    response = client.post(reverse("labs:end", args=[run.pk]), follow=True)

    assert "Run deleted. Your experiment history is kept." in response.content.decode()
    assert "Run deleted." not in page(client, PAGES["a lab page"])
