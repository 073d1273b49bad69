"""Practice pages through Django's test client: answering, grading, review, exports, mock interviews."""

import csv
import io
import re
import sqlite3
import zipfile
from datetime import timedelta

import pytest
from django.urls import reverse

from practice.models import Attempt, MockInterview, ReviewCard
from practice.testing import moved_clock, questions  # noqa: F401  (fixtures)
from tests import content_counts as counts

DESIGN = "design-notification-system"
CHOICE = "circuit-breakers-half-open"  # option 3 (0-based, in the file) is correct
GOOD_ANSWER = (
    "The API writes the intent and an outbox row in one transaction and returns 202.\n\n"
    "Each channel gets its own queue and worker pool, with a priority lane for security alerts."
)

pytestmark = pytest.mark.usefixtures("questions")


@pytest.fixture
def candidate(django_user_model):
    return django_user_model.objects.create_user("ada")  # no password: hashing one costs ~0.5 s a test


@pytest.fixture
def signed_in(client, candidate):
    client.force_login(candidate)
    return client


def answer(client, text=GOOD_ANSWER, question=DESIGN):
    response = client.post(reverse("practice:answer", args=[question]), {"answer": text})
    assert response.status_code == 302, response.content[:500]
    return response["Location"]


def grade(client, attempt_url, grades):
    data = {f"point-{i}": g for i, g in enumerate(grades)}
    return client.post(attempt_url + "grade/", data)


def test_the_bank_lists_every_question_and_filters_by_topic_as_a_fragment(client):
    full = client.get(reverse("practice:index"))
    fragment = client.get(reverse("practice:index"), {"topic": "sagas", "kind": "choice"}, headers={"HX-Request": "true"})

    assert f"{counts.bank()} of {counts.bank()} questions" in full.content.decode()
    html = fragment.content.decode()
    assert "<h1>" not in html and 'id="question-list"' in html
    assert f"of {counts.bank()} questions" in html and "Orchestration or choreography" not in html


def test_the_question_page_shows_the_prompt_and_time_box_but_no_hints_or_model_answer_yet(client):
    html = client.get(reverse("practice:question", args=[DESIGN])).content.decode()

    assert "Design a notification system" in html
    assert "Time box: 45 minutes" in html
    assert "Show hint 1 of 3" in html
    assert "Start at the API" not in html  # the first hint
    assert "API and acceptance" not in html  # a heading of the model answer


def test_hints_come_one_at_a_time(client):
    url = reverse("practice:question", args=[DESIGN])

    first = client.get(url, {"hints": 1}, headers={"HX-Request": "true"}).content.decode()
    second = client.get(url, {"hints": 2}).content.decode()

    assert first.lstrip().startswith('<section id="hints"')
    assert "Start at the API" in first and "Separate traffic by urgency" not in first
    assert "Show hint 2 of 3" in first
    assert "Separate traffic by urgency" in second and "Show hint 3 of 3" in second


def test_the_lesson_and_lab_behind_a_question_are_linked(client):
    html = client.get(reverse("practice:question", args=[DESIGN])).content.decode()

    assert f'href="{reverse("courseware:lesson", kwargs={"slug": "transactional-outbox"})}"' in html
    assert f'href="{reverse("labs:index")}#outbox-and-relay"' in html


def test_a_submitted_answer_suggests_points_with_their_sentences_and_leaves_every_grade_to_the_candidate(signed_in):
    html = signed_in.get(answer(signed_in)).content.decode()

    assert "the estimate suggests 2 of 6 key points" in html
    assert html.count("Suggested: stated") == 2 and html.count("Suggested: not stated") == 4
    assert "“The API writes the intent and an outbox row in one transaction and returns 202.”" in html
    assert html.count('type="radio"') == 18 and not re.search(r"<input[^>]*checked", html)  # every box starts empty
    assert "Why it matters: Rules checked only at creation time go stale" in html  # a miss, explained
    assert "API and acceptance" not in html
    assert "Save my grades and show the model answer" in html
    assert Attempt.objects.get().score is None


def test_grading_scores_the_answer_schedules_the_question_and_reveals_the_model_answer(signed_in, moved_clock):
    url = answer(signed_in)

    response = grade(signed_in, url, ["covered", "covered", "partly", "missed", "missed", "missed"])
    html = signed_in.get(url).content.decode()

    assert response.status_code == 302
    attempt = Attempt.objects.get()
    assert attempt.score == 50  # (3 + 3 + 1) / 14
    assert attempt.rating == 2  # Hard
    assert "Score: 50%" in html and "Rated <strong>Hard</strong>" in html
    assert "due again on\n      <strong>Tuesday 4 March 2025</strong> (tomorrow)" in html
    assert "API and acceptance" in html and "Follow-up questions an interviewer would ask" in html
    assert ReviewCard.objects.get().due == moved_clock.current + timedelta(days=1)


def test_the_candidates_grades_alone_make_the_score_and_a_point_graded_missed_never_shows_as_found(signed_in, moved_clock):
    url = answer(signed_in)  # the estimate suggests points 0 and 1

    grade(signed_in, url, ["missed"] * 6)
    html = signed_in.get(url).content.decode()

    attempt = Attempt.objects.get()
    assert attempt.score == 0 and attempt.rating == 1  # Again, whatever the estimate suggested
    assert ReviewCard.objects.get().due == moved_clock.current + timedelta(days=1)
    assert html.count('class="point missed"') == 6 and "covered" not in html.split('id="result"')[0].split("Rubric")[1]
    assert "Score: 0%" in html


def test_a_grade_for_every_point_is_required(signed_in):
    url = answer(signed_in)

    response = grade(signed_in, url, ["covered", "covered"])

    assert response.status_code == 400
    assert Attempt.objects.get().graded_at is None


def test_an_empty_answer_is_refused_with_a_reason(client):
    response = client.post(reverse("practice:answer", args=[DESIGN]), {"answer": "   "})

    assert response.status_code == 400
    assert "Write an answer first, or give up to see the model answer." in response.content.decode()


def test_giving_up_shows_the_model_answer_and_brings_the_question_back_tomorrow(signed_in, moved_clock):
    response = signed_in.post(reverse("practice:give_up", args=[DESIGN]), {"answer": ""})
    html = signed_in.get(response["Location"].split("#")[0]).content.decode()

    assert "API and acceptance" in html
    assert "Rated <strong>Again</strong>" in html and "(tomorrow)" in html
    assert Attempt.objects.get().source == Attempt.Source.GAVE_UP


@pytest.mark.parametrize(("choice", "verdict", "days"), [(3, "Right", 2), (0, "Not quite", 1)])
def test_a_quick_check_is_marked_at_once_with_every_option_explained(signed_in, moved_clock, choice, verdict, days):
    response = signed_in.post(reverse("practice:answer", args=[CHOICE]), {"choice": choice})
    html = signed_in.get(response["Location"]).content.decode()

    assert f'<h2 id="choice-heading">{verdict}</h2>' in html
    assert "That describes the closed state." in html  # the explanation of a wrong option
    assert "Half-open lets a small number of trial calls through." in html  # the model answer
    assert ReviewCard.objects.get().due == moved_clock.current + timedelta(days=days)


def test_a_script_in_an_answer_never_reaches_a_page(signed_in):
    # One sentence, so the rubric quotes it: the quote is sanitised too.
    hostile = 'Outbox in one transaction <script>alert("x")</script> <img src=x onerror="alert(1)"> [a](javascript:alert(2))'

    preview = signed_in.post(reverse("practice:preview"), {"answer": hostile}).content.decode()
    page = signed_in.get(answer(signed_in, hostile)).content.decode()

    for html in (preview, page):
        assert "<script>alert" not in html
        assert "onerror" not in html
        assert "href=\"javascript:" not in html
    assert "<p>Outbox in one transaction" in page
    assert "<blockquote class=\"quote\">“Outbox in one transaction" in page


def test_a_candidate_cannot_open_another_candidates_attempt(client, signed_in, django_user_model):
    url = answer(signed_in)
    other = django_user_model.objects.create_user("bob")
    client.force_login(other)

    assert client.get(url).status_code == 404
    assert grade(client, url, ["covered"] * 6).status_code == 404


def test_a_visitors_attempts_stay_in_their_session_and_come_along_when_they_sign_up(client, django_user_model):
    url = answer(client)
    grade(client, url, ["covered"] * 6)

    page = client.get(reverse("practice:question", args=[DESIGN])).content.decode()
    assert "Your attempts at this question" in page and "100%" in page
    assert not Attempt.objects.exists()

    client.post(
        reverse("accounts:signup"),
        {"username": "newcomer", "password1": "correct-horse-battery-42", "password2": "correct-horse-battery-42"},
    )

    user = django_user_model.objects.get(username="newcomer")
    assert Attempt.objects.get(user=user).score == 100
    assert ReviewCard.objects.filter(user=user, question_id=DESIGN).exists()
    assert "100%" in client.get(reverse("practice:dashboard")).content.decode()


def test_the_review_queue_shows_a_question_from_the_start_of_its_due_day_and_not_before(signed_in, moved_clock):
    answered_at = moved_clock.current  # Monday 3 March 2025, 09:00 UTC
    grade(signed_in, answer(signed_in), ["covered", "covered", "covered", "covered", "partly", "missed"])  # 79%: Good
    assert ReviewCard.objects.get().due == answered_at + timedelta(days=2)

    moved_clock.set(answered_at.replace(day=4, hour=23, minute=59))
    the_day_before = signed_in.get(reverse("practice:review")).content.decode()
    moved_clock.set(answered_at.replace(day=5, hour=0, minute=1))
    on_the_day = signed_in.get(reverse("practice:review")).content.decode()

    assert "Nothing is due today." in the_day_before
    assert 'data-testid="due-queue"' in on_the_day and "Design a notification system" in on_the_day


def test_the_attempts_csv_has_every_attempt_with_its_answer_and_defuses_formulas(signed_in):
    grade(signed_in, answer(signed_in), ["covered"] * 6)
    answer(signed_in, "=HYPERLINK(\"http://evil\") and an outbox")

    response = signed_in.get(reverse("practice:export_attempts"))
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))

    assert response["Content-Disposition"].startswith('attachment; filename="faultline-attempts-')
    assert len(rows) == 2
    assert rows[0]["answer"].startswith("'=HYPERLINK")
    assert rows[1]["score"] == "100" and rows[1]["rating"] == "Easy" and rows[1]["answer"] == GOOD_ANSWER


def test_the_deck_is_an_anki_package_with_a_note_per_question_tagged_by_topic(client, tmp_path):
    response = client.get(reverse("practice:export_deck"))

    assert response["Content-Disposition"] == 'attachment; filename="faultline-questions.apkg"'
    with zipfile.ZipFile(io.BytesIO(response.content)) as apkg:
        assert set(apkg.namelist()) == {"collection.anki2", "media"}
        (tmp_path / "collection.anki2").write_bytes(apkg.read("collection.anki2"))
    db = sqlite3.connect(tmp_path / "collection.anki2")
    notes = db.execute("select flds, tags from notes").fetchall()
    db.close()
    assert len(notes) == counts.bank()
    fields, tags = next((f, t) for f, t in notes if f.endswith(DESIGN))
    prompt, model_answer, _ = fields.split("\x1f")
    assert "Design a notification system" in prompt and "API and acceptance" in model_answer
    assert "topic::outbox" in tags and "kind::design" in tags


def test_a_mock_interview_keeps_its_clock_and_notes_on_the_server(signed_in, moved_clock):
    start = signed_in.post(reverse("practice:mock_start"), {"question": DESIGN})
    url = start["Location"]
    mock = MockInterview.objects.get()
    assert mock.phase_seconds == [7 * 60, 14 * 60, 16 * 60, 8 * 60]  # 45 minutes

    signed_in.post(reverse("practice:mock_notes", args=[mock.pk]), {"notes-0": "Who calls us? 50M a day."},
                   headers={"HX-Request": "true"})  # fmt: skip
    moved_clock.advance(minutes=8)
    html = signed_in.get(url).content.decode()

    assert "Who calls us? 50M a day." in html
    assert "<strong data-phase-title>High-level design</strong>" in html
    assert 'data-clock>13:00</p>' in html


def test_finishing_a_mock_interview_reviews_its_notes_against_the_rubric(signed_in, moved_clock):
    signed_in.post(reverse("practice:mock_start"), {"question": DESIGN})
    mock = MockInterview.objects.get()
    moved_clock.advance(minutes=46)

    response = signed_in.post(reverse("practice:mock_finish", args=[mock.pk]),
                              {"notes-1": "Outbox row in the same transaction as the intent."})  # fmt: skip
    html = signed_in.get(response["Location"]).content.decode()

    attempt = Attempt.objects.get()
    assert attempt.source == Attempt.Source.MOCK
    assert "Mock interview review" in html and "the estimate suggests 1 of 6 key points" in html
    assert "<h3>High-level design</h3>" in html
    assert MockInterview.objects.get().attempt == attempt


def test_the_dashboard_charts_attempts_and_scores_and_names_the_weakest_topics(signed_in):
    grade(signed_in, answer(signed_in), ["missed"] * 6)
    signed_in.post(reverse("practice:answer", args=[CHOICE]), {"choice": 3})

    html = signed_in.get(reverse("practice:dashboard")).content.decode()

    assert html.count('<svg viewBox=') == 2
    assert "<th scope=\"row\">Circuit breakers</th><td>50%</td>" in html  # 0% design question, 100% quick check
    weak = html[html.index('data-testid="weak-topics"'):]
    assert "Transactional outbox" in weak and "Lesson: <a" in weak and "Lab: <a" in weak


def test_a_visitors_mock_interview_lives_in_their_session_and_resumes_on_reload(client, moved_clock):
    url = client.post(reverse("practice:mock_start"), {"question": DESIGN})["Location"]
    mock_id = int(url.rstrip("/").rsplit("/", 1)[1])
    client.post(reverse("practice:mock_next", args=[mock_id]), {"notes-0": "Scale: 50M a day."})
    moved_clock.advance(minutes=3)

    html = client.get(url).content.decode()

    assert not MockInterview.objects.exists()
    assert "Scale: 50M a day." in html
    assert "<strong data-phase-title>High-level design</strong>" in html
    assert 'data-clock>11:00</p>' in html  # the 14-minute phase began early, 3 minutes ago
