"""A scenario in real Chromium: the instructor plays one from the grid, a learner sees its steps.

A relay process plays the scenario and a Celery worker delivers what it sends, as in class.
The instructor presses Play on "A poison message after a bad deploy": the panel shows the
timeline with the current step and its time left, the learner's page shows the first
announcement; Pause freezes the wait, Skip moves on, the learner sees the second announcement, the worker
dead-letters the poison (the learner's tile says 5), and the emergency stop stops the scenario.
Screenshots land in test-artifacts/screenshots/.
"""

import re

from playwright.sync_api import expect

from tests.test_workshops_browser import SLOW, learner_tab, sign_in_as, snap
from tests.workshop_roles import LAB, make_instructor
from workshops import joining
from workshops.models import ScenarioPlay, Workshop


def test_an_instructor_plays_a_scenario_and_a_learner_sees_its_steps(page, browser, live_server, relay, celery_worker, settings,
                                                                    django_user_model, screenshot):  # fmt: skip
    settings.LAB_LIVE_URL = live_server.url  # the page server answers the stream once a second: no live process needed
    teacher = make_instructor(django_user_model, "grace")
    workshop = Workshop.objects.create(owner=teacher, title="Game day: a bad deploy", lab=LAB)
    ada = django_user_model.objects.create_user("ada")
    joining.join(workshop, ada)
    sign_in_as(page, teacher, live_server)
    page.set_default_timeout(SLOW)
    learner = learner_tab(browser, live_server)
    sign_in_as(learner, ada, live_server)
    try:
        learner.goto(f"/labs/{LAB}/")
        expect(learner.get_by_test_id("classroom-bar")).to_contain_text("Game day: a bad deploy")

        page.goto(f"/workshops/{workshop.pk}/")
        scenario_panel = page.get_by_test_id("scenario-panel")
        expect(scenario_panel.get_by_test_id("scenario-choice")).to_have_count(2)  # the two that suit this lab
        scenario_panel.get_by_text("Brief and timeline").first.click()
        page.get_by_role("button", name="Play “A poison message after a bad deploy”").click()
        expect(scenario_panel).to_contain_text("Playing “A poison message after a bad deploy”")

        # The relay begins the announcement and the order updates, and stops on the 20 s wait.
        current = scenario_panel.get_by_test_id("scenario-current")
        expect(current).to_contain_text("Wait 20 s")
        expect(scenario_panel.get_by_test_id("scenario-time-left")).to_have_text(re.compile(r"0:(1\d|20|0\d) left"))
        expect(scenario_panel.locator(".timeline-step.done")).to_have_count(2)
        expect(learner.get_by_test_id("announcement")).to_contain_text("14:00: a quiet afternoon")
        screenshot("scenario-panel-playing")
        scenario_panel.get_by_role("button", name="Pause").click()  # the wait's clock stops: no hurry to press Skip
        expect(scenario_panel.get_by_test_id("scenario-state")).to_have_text("Paused")
        expect(scenario_panel.get_by_test_id("scenario-time-left")).to_contain_text("left (paused)")

        scenario_panel.get_by_role("button", name="Skip this step").click()
        expect(current).to_contain_text("Wait 45 s")  # step 7: after the second announcement, the poison and the campaign
        expect(scenario_panel.locator(".timeline-step.done")).to_have_count(6)
        expect(scenario_panel.get_by_test_id("scenario-note")).to_contain_text("Step 7: waiting 45 s")
        expect(learner.get_by_test_id("announcement")).to_contain_text("14:02: the orders team deployed")
        expect(page.get_by_test_id("tile-dead-letters")).to_have_text("5")  # the worker parked the 5 poison messages
        snap(learner, "scenario-learner-after-the-deploy")

        page.get_by_role("button", name="Stop every fault").click()
        expect(scenario_panel.get_by_test_id("scenario-last")).to_contain_text(
            "Last played: A poison message after a bad deploy — stopped (Emergency stop)")
        assert ScenarioPlay.objects.get().state == ScenarioPlay.State.STOPPED
    finally:
        learner.context.close()
