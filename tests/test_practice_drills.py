"""Estimation drills: reading an estimate, the drill files, and answering one through the pages."""

import re
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from practice.drills import NotAnEstimate, check_estimate, parse_estimate, read_drills
from practice.loader import check_questions
from practice.models import Attempt, Question, ReviewCard
from practice.testing import moved_clock, questions  # noqa: F401  (fixtures)

DRILL = "notification-intents-per-second"


# --- Reading an estimate -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "unit", "value"),
    [
        ("1200", "per second", 1200), ("1,200", "per second", 1200), ("1 200", "per second", 1200),
        ("1200/s", "per second", 1200), ("1.2k", "per second", 1200), ("1.2k/s", "per second", 1200),
        ("~1,157 rps", "per second", 1157), ("about 1.2 thousand", "per second", 1200), ("1.2e3", "per second", 1200),
        ("100 million", "per day", 1e8), ("100M", "per day", 1e8), ("2bn", "rows", 2e9), ("2B", "users", 2e9),
        ("21.9", "TB", 21.9), ("21,900 GB", "TB", 21.9), ("2 TB", "GB", 2000), ("35 MB/s", "Mbit/s", 280),
        ("278 Mbps", "Mbit/s", 278), (".5", "GB", 0.5),
    ],
)  # fmt: skip
def test_an_estimate_is_read_in_the_forms_people_write_numbers(typed, unit, value):
    assert parse_estimate(typed, unit) == pytest.approx(value)


@pytest.mark.parametrize("typed", ["", "   ", "lots", "-5", "1,2", "between 1000 and 2000", "1200 or 1300", "k"])
def test_anything_but_one_number_is_refused_with_a_message_that_shows_how_to_write_it(typed):
    with pytest.raises(NotAnEstimate) as refused:
        parse_estimate(typed, "per second")

    assert "1,200 or 1.2k" in str(refused.value)


def test_an_estimate_counts_within_the_tolerance_and_the_verdict_says_how_far_off_it_is():
    assert check_estimate(1000, 1157, 0.15).right  # a day rounded to 100,000 seconds
    assert not check_estimate(1400, 1157, 0.15).right
    assert check_estimate(1400, 1157, 0.15).describe(1157, "per second", 0.15) == (
        "1,400 per second is 21% too high: the answer is about 1,157 per second."
    )
    assert check_estimate(12000, 1157, 0.15).describe(1157, "per second", 0.15) == (
        "12,000 per second is 10.4× too high: the answer is about 1,157 per second."
    )
    assert check_estimate(1.2, 1157, 0.15).describe(1157, "per second", 0.15).endswith("964.2× too low: the answer is about 1,157 per second.")


# --- The files -------------------------------------------------------------------------------


def test_the_shipped_drills_are_valid_and_cover_the_notification_systems_rate():
    found = read_drills()

    assert found.errors == []
    assert len(found.drills) >= 15
    drill = next(d for d in found.drills if d["id"] == DRILL)
    assert drill["answer"] == 1157 and check_estimate(parse_estimate("1,200", drill["unit"]), 1157, drill["tolerance"]).right
    assert "100 million intents a day" in drill["solution"]
    assert re.search(r"(\d+) of \1 estimation drills valid", check_questions().summary)


def test_a_broken_drill_file_is_reported_with_its_file_and_line(settings, tmp_path):
    drills = tmp_path / "drills"
    drills.mkdir()
    (drills / "bad-drill.yaml").write_text(textwrap.dedent("""\
        id: bad-drill
        title: A broken drill
        difficulty: 1
        minutes: 3
        prompt: How many?
        inputs:
          - name: Users
            value: 20 million
        answer: lots
        unit: per second
        tolerance: 2
        solution: Divide.
        lessons: [no-such-lesson]
        colour: blue
    """))
    settings.PRACTICE_CONTENT_DIR = tmp_path

    errors = read_drills().errors

    assert any(":14: unknown key 'colour'" in e for e in errors), errors
    (drills / "bad-drill.yaml").write_text((drills / "bad-drill.yaml").read_text().replace("colour: blue\n", ""))
    errors = read_drills().errors
    assert any(":9: answer must be a positive number" in e for e in errors), errors
    assert any(":11: tolerance must be a share of the answer above 0 and at most 0.5" in e for e in errors), errors
    assert any(":13: unknown lesson slug 'no-such-lesson'" in e for e in errors), errors


# --- Answering one ----------------------------------------------------------------------------


@pytest.fixture
def signed_in(client, django_user_model, questions):
    client.force_login(django_user_model.objects.create_user("ada"))
    return client


def test_drills_are_in_the_bank_as_estimation_drills(client, questions):
    html = client.get(reverse("practice:index"), {"kind": "estimate"}).content.decode()

    assert Question.objects.filter(kind=Question.Kind.ESTIMATE).count() >= 15
    assert "Notification intents per second" in html and "Estimation drill" in html


def test_a_wrong_estimate_then_a_right_one_each_show_the_worked_solution_and_schedule_the_drill(signed_in, moved_clock):
    page = signed_in.get(reverse("practice:question", args=[DRILL])).content.decode()
    assert "<strong>Users:</strong> 20 million" in page and "intents per second" in page
    assert "100 million intents a day" not in page  # the solution waits for an answer

    wrong = signed_in.get(signed_in.post(reverse("practice:answer", args=[DRILL]), {"estimate": "12k"})["Location"]).content.decode()

    assert '<h2 id="estimate-heading">Not quite</h2>' in wrong
    assert "12,000 intents per second is 10.4× too high" in wrong
    assert "Worked solution" in wrong and "100 million intents a day" in wrong
    assert ReviewCard.objects.get().due == moved_clock.current + timedelta(days=1)

    moved_clock.advance(days=1)
    right = signed_in.get(signed_in.post(reverse("practice:answer", args=[DRILL]), {"estimate": "1,200/s"})["Location"]).content.decode()

    assert '<h2 id="estimate-heading">Right</h2>' in right
    assert "1,200 intents per second is within 15% of 1,157 intents per second." in right
    assert [a.score for a in Attempt.objects.order_by("pk")] == [0, 100]
    assert ReviewCard.objects.get().due > moved_clock.current + timedelta(days=1)


def test_a_non_number_is_a_form_error_that_keeps_what_was_typed(signed_in):
    response = signed_in.post(reverse("practice:answer", args=[DRILL]), {"estimate": "a lot per second"})

    html = response.content.decode()
    assert response.status_code == 400
    assert "“a lot per second” is not one number: write your estimate like 1200, 1,200 or 1.2k (intents per second)." in html
    assert 'value="a lot per second"' in html and 'aria-invalid="true"' in html
    assert not Attempt.objects.exists()


def test_giving_up_on_a_drill_shows_the_solution_and_brings_it_back_tomorrow(signed_in, moved_clock):
    response = signed_in.post(reverse("practice:give_up", args=[DRILL]))
    html = signed_in.get(response["Location"].split("#")[0]).content.decode()

    assert "No estimate" in html and "100 million intents a day" in html
    assert ReviewCard.objects.get().due == moved_clock.current + timedelta(days=1)


def test_a_drill_answered_wrong_is_due_in_the_review_queue_the_next_day(signed_in, moved_clock):
    signed_in.post(reverse("practice:answer", args=[DRILL]), {"estimate": "100"})
    moved_clock.set(datetime(2025, 3, 4, 9, 0, tzinfo=UTC))

    html = signed_in.get(reverse("practice:review")).content.decode()

    due = html[html.index('data-testid="due-queue"') :]
    assert "Notification intents per second" in due
