"""In real Chromium: a mock interviewer follows up on what the notes miss, and an estimation drill is checked."""

from django.urls import reverse
from playwright.sync_api import expect

from practice.models import MockInterview, Question
from tests.test_practice_browser import bank, candidate, clock  # noqa: F401 (the practice browser tests' fixtures)

DESIGN = "design-notification-system"
DRILL = "notification-intents-per-second"


def test_the_mock_interviewer_follows_up_on_what_the_notes_miss_when_the_pages_timer_ends_a_phase(
    page, bank, clock, candidate, screenshot
):
    rubric = Question.objects.get(pk=DESIGN).rubric
    page.goto(reverse("practice:mock_index"))
    page.get_by_role("button", name="Start a 45-minute mock interview: Design a notification system").click()
    page.wait_for_load_state("load")  # htmx binds the notes' autosave once the page has loaded
    page.get_by_label("Notes: clarify requirements").fill(
        "Internal teams call the API. It writes the intent and an outbox row in one transaction and returns 202."
    )
    expect(page.locator("#notes-saved")).to_contain_text("Notes saved at")
    expect(page.get_by_test_id("follow-up")).to_have_count(0)

    clock.advance(minutes=6, seconds=58)  # two seconds of the first phase left, by the server's clock
    page.reload()
    page.wait_for_load_state("load")
    expect(page.locator("[data-phase-title]")).to_have_text("Clarify requirements")
    clock.advance(seconds=5)  # the server's clock is past the phase when the page's timer gets there

    follow_up = page.get_by_test_id("follow-up")
    expect(follow_up).to_be_visible()  # asked by the page's timer, without a reload
    expect(page.locator("[data-phase-title]")).to_have_text("High-level design")
    expect(follow_up).to_contain_text(rubric[1]["follow_up"])  # the heaviest point the notes miss
    expect(follow_up).not_to_contain_text(rubric[0]["follow_up"])  # the outbox is in the notes
    expect(page.locator("[data-phase='1']").get_by_test_id("follow-up")).to_be_visible()
    screenshot("practice-mock-follow-up")

    page.get_by_label("Notes: high-level design").fill("Security codes take a priority lane apart from campaigns.")
    expect(page.locator("#notes-saved")).to_contain_text("Notes saved at")
    clock.advance(minutes=40)
    page.reload()
    page.get_by_role("button", name="Finish and review against the rubric").click()

    expect(page.get_by_role("heading", name="What the interviewer asked")).to_be_visible()
    expect(page.get_by_test_id("mock-follow-ups")).to_contain_text(f"After clarify requirements: {rubric[1]['follow_up']}")
    expect(page.get_by_test_id("mock-follow-ups")).to_contain_text("Your notes now cover this point")
    times = page.get_by_test_id("phase-times")
    expect(times.get_by_role("row", name="Clarify requirements 7:00 7:00")).to_be_visible()
    expect(times.get_by_role("row", name="Trade-offs and wrap-up 8:00 10:03 over")).to_be_visible()  # finished 2:03 late
    assert MockInterview.objects.get().follow_ups[0][0]["point"] == 1
    screenshot("practice-mock-review")


def test_an_estimation_drill_is_answered_wrong_then_right_with_the_worked_solution_shown(page, bank, clock, candidate, screenshot):
    page.goto(reverse("practice:question", args=[DRILL]))
    expect(page.get_by_text("Notifications per user per day:")).to_be_visible()
    expect(page.get_by_role("heading", name="Worked solution")).to_have_count(0)

    page.get_by_label("Your estimate").fill("lots")
    page.get_by_role("button", name="Check my estimate").click()
    expect(page.get_by_role("alert")).to_have_text(
        "“lots” is not one number: write your estimate like 1200, 1,200 or 1.2k (intents per second)."
    )
    expect(page.get_by_label("Your estimate")).to_have_value("lots")

    page.get_by_label("Your estimate").fill("12k")
    page.get_by_role("button", name="Check my estimate").click()
    expect(page.get_by_role("heading", name="Not quite")).to_be_visible()
    expect(page.get_by_test_id("estimate-verdict")).to_contain_text("12,000 intents per second is 10.4× too high")
    expect(page.get_by_role("heading", name="Worked solution")).to_be_visible()
    expect(page.locator("#model-answer")).to_contain_text("100 million intents a day")
    screenshot("practice-drill-wrong")

    page.get_by_role("link", name="Answer it again").click()
    page.get_by_label("Your estimate").fill("1,200/s")
    page.get_by_role("button", name="Check my estimate").click()
    expect(page.get_by_role("heading", name="Right")).to_be_visible()
    expect(page.get_by_test_id("estimate-verdict")).to_contain_text("within 15% of 1,157 intents per second")
    expect(page.get_by_role("heading", name="Worked solution")).to_be_visible()
    expect(page.get_by_test_id("due-again")).to_contain_text("due again on")
    page.set_viewport_size({"width": 375, "height": 740})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
