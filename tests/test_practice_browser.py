"""A candidate practising in real Chromium: answer, rubric, self-grade, review schedule, exports, mock interview."""

import io
import re
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from django.test import Client
from django.urls import reverse
from playwright.sync_api import expect

from practice.loader import load_questions
from practice.models import ReviewCard
from practice.testing import MovableClock
from tests import content_counts as counts

DESIGN = "design-notification-system"
DESIGN_ANSWER = """The API validates the request, then writes the intent and an **outbox** row in one
transaction and returns 202 with an id. A relay publishes the rows to the broker.

Each channel has its own queue and worker pool, and security messages get a priority lane.

Provider timeouts are retried with exponential backoff and jitter, and after five attempts the
message goes to a dead-letter queue."""


@pytest.fixture
def bank(transactional_db):
    load_questions()


@pytest.fixture
def clock(monkeypatch):
    return MovableClock(monkeypatch, datetime(2025, 3, 3, 9, 0, tzinfo=UTC))


@pytest.fixture
def candidate(django_user_model, page, live_server):
    """A signed-in candidate: the browser carries a session made by Django's test client."""
    user = django_user_model.objects.create_user("ada")
    client = Client()
    client.force_login(user)
    page.context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    return client


def grade_points(page, grades: list[str]) -> None:
    """Tick the candidate's own grade for each rubric point, in order."""
    points = page.get_by_test_id("rubric-point")
    for i, name in enumerate(grades):
        points.nth(i).get_by_label(name).check()


def test_a_candidate_answers_a_design_question_grades_it_and_finds_it_due_again_on_the_right_day(
    page, bank, clock, candidate, screenshot
):
    page.goto(reverse("practice:question", args=[DESIGN]))
    page.get_by_role("link", name="Show hint 1 of 3").click()
    expect(page.locator("#hints")).to_contain_text("Start at the API")
    page.get_by_label("Your answer").fill(DESIGN_ANSWER)
    expect(page.locator("#answer-preview strong")).to_have_text("outbox")  # the Markdown preview
    expect(page.get_by_role("heading", name="Model answer")).to_have_count(0)
    screenshot("practice-question")

    page.get_by_role("button", name="Submit my answer").click()

    expect(page.get_by_test_id("estimate")).to_contain_text("the estimate suggests 3 of 6 key points")
    points = page.get_by_test_id("rubric-point")
    expect(page.locator(".self-grade input:checked")).to_have_count(0)  # the candidate decides
    expect(points.nth(0).get_by_test_id("suggestion")).to_have_text("Suggested: stated")
    expect(points.nth(0).locator("blockquote")).to_have_text(
        "“The API validates the request, then writes the intent and an outbox row in one transaction and returns 202 with an id.”"
    )
    expect(points.nth(2).get_by_test_id("suggestion")).to_have_text("Suggested: not stated")
    expect(points.nth(2)).to_contain_text("Why it matters: Rules checked only at creation time go stale")
    expect(page.get_by_role("heading", name="Model answer")).to_have_count(0)
    screenshot("practice-rubric")
    page.emulate_media(color_scheme="dark")
    page.set_viewport_size({"width": 375, "height": 740})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.evaluate(
        "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > innerWidth + 1)"
        ".slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"
    )
    screenshot("practice-rubric-dark-phone")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1280, "height": 900})

    # The candidate is stricter than the estimate on point 4 (weight 2).
    grade_points(page, ["Covered", "Covered", "Missed", "Partly", "Missed", "Missed"])
    page.get_by_role("button", name="Save my grades and show the model answer").click()

    # (3 + 3 + 0 + 1 + 0 + 0) / 14 = 50%: Hard, due again tomorrow.
    expect(page.get_by_role("heading", name="Score: 50%")).to_be_visible()
    expect(page.get_by_test_id("due-again")).to_contain_text("due again on Tuesday 4 March 2025 (tomorrow)")
    expect(page.get_by_role("heading", name="Model answer")).to_be_visible()
    expect(page.get_by_role("heading", name="API and acceptance")).to_be_visible()
    screenshot("practice-graded")

    page.goto(reverse("practice:review"))
    expect(page.get_by_test_id("queue-empty")).to_be_visible()

    clock.set(datetime(2025, 3, 4, 0, 5, tzinfo=UTC))
    page.reload()
    expect(page.get_by_test_id("due-queue")).to_contain_text("Design a notification system")
    expect(page.get_by_test_id("streak")).to_have_text("1")
    screenshot("practice-review")
    page.get_by_test_id("due-queue").get_by_role("link", name="Design a notification system").click()
    expect(page).to_have_url(re.compile(rf"/practice/questions/{DESIGN}/$"))


def _eval_answer(question: str, kind: str) -> str:
    """The first answer of that kind in the rubric evaluation set (tests/data/rubric_eval/)."""
    data = yaml.safe_load((Path(__file__).parent / "data" / "rubric_eval" / "tuning" / f"{question}.yaml").read_text())
    return next(a["answer"] for a in data["answers"] if a["kind"] == kind)


def test_a_keyword_list_gets_almost_no_suggested_points_and_a_strong_answer_in_own_words_gets_most(
    page, bank, candidate, screenshot
):
    suggested = page.get_by_test_id("suggestion").filter(has_text="Suggested: stated")

    page.goto(reverse("practice:question", args=[DESIGN]))
    page.get_by_label("Your answer").fill(_eval_answer(DESIGN, "keywords"))
    page.get_by_role("button", name="Submit my answer").click()

    expect(page.get_by_test_id("estimate")).to_contain_text("the estimate suggests 0 of 6 key points")
    expect(suggested).to_have_count(0)
    expect(page.locator(".self-grade input:checked")).to_have_count(0)

    page.goto(reverse("practice:question", args=[DESIGN]))
    page.get_by_label("Your answer").fill(_eval_answer(DESIGN, "strong"))
    page.get_by_role("button", name="Submit my answer").click()

    expect(page.get_by_test_id("estimate")).to_contain_text(re.compile(r"the estimate suggests [56] of 6 key points"))
    assert suggested.count() >= 5
    expect(page.get_by_test_id("rubric-point").nth(4).locator("blockquote")).to_contain_text("switch to a backup vendor")
    expect(page.locator(".self-grade input:checked")).to_have_count(0)  # a suggestion, not a grade
    screenshot("practice-suggestions")

    grade_points(page, ["Covered", "Covered", "Covered", "Covered", "Missed", "Covered"])
    page.get_by_role("button", name="Save my grades and show the model answer").click()

    expect(page.get_by_role("heading", name="Score: 86%")).to_be_visible()  # 12 of 14: the candidate's grades
    missed = page.get_by_test_id("rubric-point").nth(4)
    expect(missed.get_by_test_id("verdict")).to_have_text("Missed")
    expect(missed).not_to_contain_text("Suggested: stated")


def test_a_visitor_answers_a_quick_check_and_the_attempt_stays_in_their_session(page, browser, live_server, bank):
    page.goto(reverse("practice:question", args=["circuit-breakers-half-open"]))
    expect(page.get_by_test_id("visitor-note")).to_be_visible()

    page.get_by_label("Passes all calls through normally but records failures for later.").check()
    page.get_by_role("button", name="Check my answer").click()

    expect(page.get_by_role("heading", name="Not quite")).to_be_visible()
    expect(page.get_by_text("That describes the closed state.")).to_be_visible()
    expect(page.get_by_role("heading", name="Model answer")).to_be_visible()

    page.goto(reverse("practice:question", args=["circuit-breakers-half-open"]))
    expect(page.get_by_role("heading", name="Your attempts at this question")).to_be_visible()
    expect(page.locator(".history-table tbody tr")).to_have_count(1)

    stranger = browser.new_context(base_url=live_server.url).new_page()
    stranger.goto(reverse("practice:question", args=["circuit-breakers-half-open"]))
    expect(stranger.get_by_role("heading", name="Your attempts at this question")).to_have_count(0)
    stranger.context.close()
    assert not ReviewCard.objects.exists()


def test_the_question_bank_downloads_as_an_anki_deck_and_the_attempts_as_csv(page, bank):
    page.goto(reverse("practice:question", args=["circuit-breakers-half-open"]))
    page.get_by_label("Lets a limited number of trial calls through; if they succeed it closes, if they fail it opens again.").check()
    page.get_by_role("button", name="Check my answer").click()
    page.goto(reverse("practice:index"))

    with page.expect_download() as deck_download:
        page.get_by_role("link", name="the question bank as an Anki deck (.apkg)").click()
    with page.expect_download() as csv_download:
        page.get_by_role("link", name="your attempts as CSV").click()

    assert deck_download.value.suggested_filename == "faultline-questions.apkg"
    with zipfile.ZipFile(io.BytesIO(open(deck_download.value.path(), "rb").read())) as apkg:
        assert "collection.anki2" in apkg.namelist()
    rows = open(csv_download.value.path(), encoding="utf-8").read().splitlines()
    assert rows[0].startswith("date,question,title")
    assert len(rows) == 2 and ",circuit-breakers-half-open,What does a breaker do when half-open?," in rows[1]


def test_a_timed_mock_interview_survives_a_reload_and_ends_in_a_rubric_review(page, bank, clock, candidate, screenshot):
    page.goto(reverse("practice:mock_index"))
    page.get_by_role("button", name="Start a 45-minute mock interview: Design a notification system").click()

    timer = page.locator("[data-mock-timer]")
    expect(timer).to_contain_text("Phase 1 of 4: Clarify requirements")
    expect(page.locator("[data-clock]")).to_have_text(re.compile(r"^(7:00|6:5\d)$"))
    page.wait_for_load_state("load")  # htmx binds the notes' autosave once the page has loaded; a person types later
    page.get_by_label("Notes: clarify requirements").fill("Callers: internal teams. 50M a day, bursts from campaigns.")
    expect(page.locator("#notes-saved")).to_contain_text("Notes saved at")

    clock.advance(minutes=8)
    page.reload()

    expect(timer).to_contain_text("Phase 2 of 4: High-level design")
    expect(page.locator("[data-clock]")).to_have_text(re.compile(r"^(13:00|12:5\d)$"))
    expect(page.get_by_label("Notes: clarify requirements")).to_have_value("Callers: internal teams. 50M a day, bursts from campaigns.")
    expect(page.locator("[data-phase='0'] [data-phase-state]")).to_have_text("done")
    page.get_by_label("Notes: high-level design").fill(
        "The API writes the intent and an outbox row in the same transaction.\n"
        "Separate queues per channel with a priority lane for security alerts."
    )
    screenshot("practice-mock")
    page.emulate_media(color_scheme="dark")
    screenshot("practice-mock-dark")
    page.emulate_media(color_scheme="light")
    page.get_by_role("button", name="Next phase now").click()
    expect(timer).to_contain_text("Phase 3 of 4: Deep dive")

    clock.advance(minutes=40)
    page.reload()
    expect(page.get_by_text("Time is up.")).to_be_visible()
    page.get_by_role("button", name="Finish and review against the rubric").click()

    expect(page.get_by_role("heading", name="Mock interview review")).to_be_visible()
    expect(page.get_by_test_id("estimate")).to_contain_text("the estimate suggests 2 of 6 key points")
    grade_points(page, ["Covered", "Covered", "Missed", "Missed", "Missed", "Missed"])
    page.get_by_role("button", name="Save my grades and show the model answer").click()
    expect(page.get_by_role("heading", name="Model answer")).to_be_visible()

    page.goto(reverse("practice:mock_index"))
    expect(page.locator(".history-table")).to_contain_text("Design a notification system")
    expect(page.locator(".history-table").get_by_role("link", name="Review")).to_be_visible()


def test_the_countdown_runs_in_the_page_from_the_servers_clock(page, bank, clock, candidate):
    page.goto(reverse("practice:mock_index"))
    page.get_by_role("button", name="Start a 45-minute mock interview: Design a notification system").click()
    first = page.locator("[data-clock]").inner_text()

    page.wait_for_timeout(1300)

    assert page.locator("[data-clock]").inner_text() != first


def test_no_script_in_an_answer_ever_runs_or_reaches_the_page(page, bank, candidate):
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    hostile = (
        "We use an outbox. <script>window.pwned = 1; alert('script')</script>\n\n"
        "<img src=x onerror=\"window.pwned = 2; alert('img')\"> [click](javascript:alert('link'))"
    )
    page.goto(reverse("practice:question", args=[DESIGN]))

    page.get_by_label("Your answer").fill(hostile)
    expect(page.locator("#answer-preview")).to_contain_text("We use an outbox.")
    page.get_by_role("button", name="Submit my answer").click()
    expect(page.get_by_test_id("answer-body")).to_contain_text("We use an outbox.")
    page.get_by_test_id("answer-body").get_by_text("click").click()

    assert dialogs == []
    assert page.evaluate("window.pwned") is None
    assert page.get_by_test_id("answer-body").locator("script, img, [onerror]").count() == 0


def test_the_progress_dashboard_draws_its_charts_and_points_to_lessons_for_weak_topics(page, bank, clock, candidate, screenshot):
    for day, grades in ((0, ["missed"] * 6), (1, ["covered"] * 3 + ["missed"] * 3)):
        clock.set(datetime(2025, 3, 3 + day, 9, 0, tzinfo=UTC))
        url = candidate.post(reverse("practice:answer", args=[DESIGN]), {"answer": DESIGN_ANSWER})["Location"]
        candidate.post(url + "grade/", {f"point-{i}": g for i, g in enumerate(grades)})
    candidate.post(reverse("practice:answer", args=["circuit-breakers-half-open"]), {"choice": "3"})

    page.goto(reverse("practice:dashboard"))

    charts = page.locator("figure.chart svg")
    expect(charts).to_have_count(2)
    expect(charts.nth(0).locator("rect")).to_have_count(30)
    expect(charts.nth(1).locator("title")).to_contain_text(["Retries and backoff: 57%"])
    weak = page.get_by_test_id("weak-topics")
    expect(weak).to_contain_text("Transactional outbox")
    expect(weak.get_by_role("link", name="Outbox and relay").first).to_have_attribute("href", "/labs/#outbox-and-relay")
    screenshot("practice-dashboard")
    page.emulate_media(color_scheme="dark")
    screenshot("practice-dashboard-dark")
    page.set_viewport_size({"width": 375, "height": 740})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot("practice-dashboard-phone")


def test_the_practice_pages_fit_a_phone_screen(page, bank, screenshot):
    page.set_viewport_size({"width": 375, "height": 740})
    for name in ("index", "question", "review", "mock_index"):
        args = [DESIGN] if name == "question" else []
        page.goto(reverse(f"practice:{name}", args=args))
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
    screenshot("practice-question-phone")
    page.goto(reverse("practice:index"))
    page.get_by_label("Topic").select_option("sagas")
    expect(page.locator(".list-count")).to_have_text(re.compile(rf"^\d of {counts.bank()} questions$"))
    expect(page).to_have_url(re.compile(r"topic=sagas"))
    screenshot("practice-index-phone")
