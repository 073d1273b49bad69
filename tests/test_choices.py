"""Unbiased choices: each learner's own option order, and the figures that fail a biased bank.

Pure functions first (courseware/choices.py), then check_content on a biased bank, then the
lesson and practice pages showing one order per learner and attempt.
"""

import html as html_module
import re
import textwrap
from collections import Counter

import pytest
from django.urls import reverse

from courseware.choices import MIN_CHECKS_ENFORCED, ChoiceItem, measure_bias, shuffled_order
from courseware.loading import check_content, load_content
from courseware.models import InlineCheck
from practice.loader import check_questions
from practice.models import Question
from practice.testing import questions, write_question  # noqa: F401  (fixture)

HTMX = {"HTTP_HX_REQUEST": "true"}
CHOICE = "circuit-breakers-half-open"


# --- Shuffling ----------------------------------------------------------------------------


def test_an_order_holds_every_option_once_and_the_same_seed_gives_the_same_order():
    order = shuffled_order(4, "user-7", "sagas-1", 0)

    assert sorted(order) == [0, 1, 2, 3]
    assert all(shuffled_order(4, "user-7", "sagas-1", 0) == order for _ in range(5))


def test_learners_checks_and_attempts_each_change_the_order():
    base = [shuffled_order(4, "user-7", f"check-{n}", 0) for n in range(30)]
    other_learner = [shuffled_order(4, "user-8", f"check-{n}", 0) for n in range(30)]
    next_attempt = [shuffled_order(4, "user-7", f"check-{n}", 1) for n in range(30)]

    assert len({tuple(order) for order in base}) > 10  # checks differ from each other
    assert sum(a != b for a, b in zip(base, other_learner, strict=True)) > 15
    assert sum(a != b for a, b in zip(base, next_attempt, strict=True)) > 15


def test_over_many_learners_the_right_option_lands_in_every_position_about_equally():
    # Whatever position the right option has in the file, learners see it anywhere.
    seen_at = Counter(shuffled_order(4, f"user-{n}", "sagas-1", 0).index(1) for n in range(4000))

    assert all(900 <= seen_at[position] <= 1100 for position in range(4)), seen_at


# --- The figures ------------------------------------------------------------------------------


def test_the_figures_count_a_strictly_longest_right_option_and_leave_true_false_out():
    bias = measure_bias([
        ChoiceItem("a", ("short", "the long right one"), 1),
        ChoiceItem("b", ("same length", "equal width"), 0),  # a tie gives nothing away
        ChoiceItem("c", ("a much longer wrong one", "right", "wrong"), 1),
        ChoiceItem("d", ("True", "False"), 1),  # "False" is longer, but not a cue
    ])  # fmt: skip

    assert (bias.checks, bias.measured, [item.where for item in bias.longest]) == (4, 3, ["a"])
    assert bias.right_at == Counter({1: 3, 0: 1})
    assert bias.fair == pytest.approx({0: 1.5 + 1 / 3, 1: 1.5 + 1 / 3, 2: 1 / 3})
    assert "right option longest in 1 of 3 (33%, limit 33%)" in bias.summary()
    assert "A 1 (fair 1.8), B 3 (fair 1.8), C 0 (fair 0.3)" in bias.summary()


def test_a_bank_that_favours_b_and_the_longest_option_fails_with_both_figures():
    items = [ChoiceItem(f"lesson.md:{n}", ("no", "the right answer, qualified", "nope"), 1) for n in range(30)]

    problems = measure_bias(items).problems("inline checks")

    assert len(problems) == 4  # longest, and positions A, B and C
    assert problems[0].startswith("in 30 of 30 inline checks (100%) the right option is the longest (at most 33%)")
    assert "lesson.md:0, lesson.md:1" in problems[0]
    assert "the right option is at B in 30, but a fair share is 10.0 (keep it between 5.0 and 15.0)" in problems[2]


def test_a_fair_bank_passes_and_a_small_one_is_only_reported():
    fair = [ChoiceItem(str(n), ("one", "two", "six"), n % 3) for n in range(30)]
    small = [ChoiceItem(str(n), ("no", "the right answer, qualified"), 1) for n in range(MIN_CHECKS_ENFORCED - 1)]

    assert measure_bias(fair).problems("checks") == []
    assert measure_bias(small).problems("checks") == []
    assert "longest in 19 of 19 (100%" in measure_bias(small).summary()


def test_the_shipped_lessons_and_questions_pass_and_report_their_figures():
    lessons = check_content()
    bank = check_questions()

    assert lessons.errors == [] and bank.errors == []
    for report in (lessons, bank):
        longest = re.search(r"right option longest in (\d+) of (\d+)", report.summary)
        assert longest and int(longest[1]) <= int(longest[2]) / 3, report.summary
        assert re.search(r"right option at A \d+ \(fair [\d.]+\), B \d+ \(fair [\d.]+\), C \d+", report.summary)


def test_check_content_fails_a_bank_of_choice_questions_that_always_puts_the_answer_first(settings, tmp_path):
    for n in range(MIN_CHECKS_ENFORCED):
        write_question(tmp_path, "retries", f"retries-quick-{n}", textwrap.dedent(f"""\
            id: retries-quick-{n}
            title: Quick check {n}
            kind: choice
            difficulty: 1
            topics: [retries]
            minutes: 1
            prompt: Which one?
            hints: [Think.]
            options:
              - text: The right answer, with a qualifying clause
                correct: true
                explanation: Right.
              - text: Wrong
                explanation: No.
              - text: Also wrong
                explanation: No.
            rubric:
              - point: Knows it
                weight: 1
                terms: [right, answer, qualifying, clause]
                why: Because.
            model_answer: The right one.
            follow_ups: [Why?]
            mistakes: [Guessing.]
            lessons: [retries-backoff-jitter]
            labs: []
        """))  # fmt: skip
    settings.PRACTICE_CONTENT_DIR = tmp_path
    (tmp_path / "mock_phases.yaml").write_text((settings.BASE_DIR / "practice/content/mock_phases.yaml").read_text())

    report = check_questions()

    assert any(e.startswith("in 20 of 20 choice questions (100%) the right option is the longest") for e in report.errors)
    assert any("the right option is at A in 20, but a fair share is 6.7" in e for e in report.errors)


# --- The pages ---------------------------------------------------------------------------------


@pytest.fixture
def lessons(db):
    load_content()


@pytest.fixture
def learner(django_user_model):
    return django_user_model.objects.create_user("ada")


def radio_values(html: str, section_id: str, name: str) -> list[int]:
    section = html.split(f'id="{section_id}"')[1].split("</section>")[0]
    return [int(v) for v in re.findall(rf'name="{name}" value="(\d+)"', section)]


def result_order(html: str, check: InlineCheck) -> list[int]:
    texts = [o["text"] for o in check.options]
    shown = re.findall(r'<p class="check-option-text">\s*<strong>(.*?)</strong>', html, re.S)
    return [texts.index(html_module.unescape(text)) for text in shown]


def test_a_learner_keeps_one_order_until_they_answer_and_then_gets_a_new_one(client, lessons, learner):
    client.force_login(learner)
    checks = list(InlineCheck.objects.filter(lesson__slug="sagas"))
    page = client.get("/lessons/sagas/").content.decode()
    first = {c.check_id: radio_values(page, f"check-{c.check_id}", "option") for c in checks}

    again = client.get("/lessons/sagas/").content.decode()
    assert {c.check_id: radio_values(again, f"check-{c.check_id}", "option") for c in checks} == first
    assert first == {c.check_id: shuffled_order(len(c.options), "check", f"user-{learner.pk}", c.check_id, 0) for c in checks}

    answered = {}
    for check in checks:
        result = client.post(f"/lessons/checks/{check.check_id}/answer/", {"option": 0}, **HTMX).content.decode()
        answered[check.check_id] = result_order(result, check)
    assert answered == first  # the result lists the options as the learner saw them

    after = client.get("/lessons/sagas/").content.decode()
    second = {c.check_id: radio_values(after, f"check-{c.check_id}", "option") for c in checks}
    assert second != first
    retry = client.get(f"/lessons/checks/{checks[0].check_id}/", **HTMX).content.decode()
    assert radio_values(retry, f"check-{checks[0].check_id}", "option") == second[checks[0].check_id]


def test_two_learners_see_the_lessons_checks_in_different_orders(client, lessons, django_user_model):
    orders = []
    for name in ("ada", "grace"):
        client.force_login(django_user_model.objects.create_user(name))
        page = client.get("/lessons/observability/").content.decode()
        orders.append([radio_values(page, f"check-observability-{n}", "option") for n in (1, 2, 3)])
        client.logout()

    assert orders[0] != orders[1]
    assert all(sorted(order) == list(range(len(order))) for order in orders[0] + orders[1])


@pytest.mark.usefixtures("questions")
def test_a_candidate_answers_in_their_order_and_the_review_lists_the_options_in_that_order(client, learner):
    client.force_login(learner)
    question = Question.objects.get(pk=CHOICE)
    url = reverse("practice:question", args=[CHOICE])
    page = client.get(url).content.decode()
    shown = [int(v) for v in re.findall(r'name="choice" value="(\d+)"', page)]
    assert shown == shuffled_order(4, "question", f"user-{learner.pk}", CHOICE, 0)
    assert [int(v) for v in re.findall(r'name="choice" value="(\d+)"', client.get(url).content.decode())] == shown

    review = client.get(client.post(reverse("practice:answer", args=[CHOICE]), {"choice": shown[0]})["Location"]).content.decode()

    texts = [o["text"] for o in question.options]
    listed = re.findall(r'<p class="option-text">(.*?)\n', review)
    assert [texts.index(html_module.unescape(text.strip())) for text in listed] == shown
    next_time = [int(v) for v in re.findall(r'name="choice" value="(\d+)"', client.get(url).content.decode())]
    assert next_time == shuffled_order(4, "question", f"user-{learner.pk}", CHOICE, 1)


@pytest.mark.usefixtures("questions")
def test_a_visitor_keeps_their_order_across_requests_and_another_visitor_gets_their_own(client, django_db_blocker):
    from django.test import Client

    ids = list(Question.objects.filter(kind="choice").values_list("id", flat=True))

    def orders(visitor):
        return [
            tuple(re.findall(r'name="choice" value="(\d+)"', visitor.get(reverse("practice:question", args=[qid])).content.decode()))
            for qid in ids
        ]

    mine = orders(client)
    assert orders(client) == mine
    assert orders(Client()) != mine
