"""Dropping in and ending a workshop, in real Chromium, with a real relay and worker.

The instructor opens a learner's run from the grid: the learner's page says the instructor is
looking; the instructor's copy is read-only and live (what the learner sends shows up in it).
Then the instructor ends the workshop from the grid: the learner's open page reloads by itself,
read-only, saying why. Screenshots land in test-artifacts/screenshots/.
"""

import re

from playwright.sync_api import expect

from tests.test_workshops_browser import SLOW, learner_tab, sign_in_as, snap
from tests.workshop_roles import LAB, PASSWORD, make_instructor
from workshops import joining
from workshops.models import Workshop


def test_an_instructor_drops_in_live_then_ends_the_workshop_and_the_learners_page_turns_read_only(
        page, browser, live_server, relay, celery_worker, settings, django_user_model, screenshot):  # fmt: skip
    settings.LAB_LIVE_URL = live_server.url  # the page server answers the stream once a second: no live process needed
    teacher = make_instructor(django_user_model, "grace")
    workshop = Workshop.objects.create(owner=teacher, title="Game day: drop-in", lab=LAB, capacity=5)
    ada_user = django_user_model.objects.create_user("ada", password=PASSWORD)
    seat = joining.join(workshop, ada_user)
    sign_in_as(page, teacher, live_server)
    ada = learner_tab(browser, live_server)
    try:
        sign_in_as(ada, ada_user, live_server)
        ada.goto(f"/labs/{LAB}/")
        expect(ada.locator("[data-live-status]")).to_have_attribute("data-state", "live")
        expect(ada.get_by_test_id("looked-at")).to_have_count(0)

        page.goto(f"/workshops/{workshop.pk}/")
        page.get_by_test_id("tile").filter(has_text="ada").get_by_test_id("drop-in").click()
        expect(page).to_have_url(re.compile(f"/workshops/{workshop.pk}/seats/{seat.pk}/run$"))
        expect(page.get_by_test_id("watch-bar")).to_contain_text("You are looking at ada's run")
        expect(page.locator("[data-live-status]")).to_have_attribute("data-state", "live")
        expect(page.get_by_role("button", name="Send", exact=True)).to_have_count(0)
        expect(page.get_by_role("button", name="Save my prediction")).to_have_count(0)
        # The look is a "classroom" event in ada's stream: her bar says so well before its own poll (every minute).
        expect(ada.get_by_test_id("looked-at")).to_contain_text("Your instructor is looking at your run", timeout=20_000)
        expect(ada.locator("#event-feed")).to_contain_text("Your instructor is looking at your run")

        # What the learner does shows up, live, on the instructor's copy of the page.
        ada.get_by_role("button", name="Send", exact=True).click()
        expect(ada.get_by_test_id("traffic-note")).to_contain_text("Accepted")
        expect(page.locator("#event-feed [data-kind=accepted]").first).to_be_visible(timeout=SLOW)
        expect(page.locator("#event-feed [data-kind=attempt_succeeded]").first).to_be_visible(timeout=SLOW)
        screenshot("workshop-drop-in")

        page.get_by_role("link", name="Back to the grid").click()
        page.get_by_label(re.compile("Type the code")).fill(workshop.shown_code)
        page.get_by_role("button", name="End the workshop").click()
        expect(page.locator("#controls-note")).to_contain_text("Workshop ended: every run is read-only")

        # The learner's open page reloads by itself, read-only, and says why.
        expect(ada.get_by_test_id("workshop-ended")).to_contain_text("This workshop ended", timeout=SLOW)
        expect(ada.get_by_role("button", name="Send", exact=True)).to_have_count(0)
        expect(ada.get_by_role("button", name="Delete it now, to start a run of your own")).to_be_visible()
        snap(ada, "workshop-learner-ended")
    finally:
        ada.context.close()
