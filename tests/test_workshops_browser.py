"""A workshop in real Chromium: an instructor and two learners, each in a browser context of their own.

The instructor creates a workshop on its page; one learner types the code and creates an
account on the join page, the other opens the join link and signs in there; both land in
their lab page. The instructor injects an email outage into every run for two minutes, both
learners see it on their page with the time left, and the emergency stop clears every fault
of both runs at once, which both pages say; the debrief's CSV then holds both learners. A relay
process runs, as it would in class.
Screenshots land in test-artifacts/screenshots/.
"""

import csv
import re

from playwright.sync_api import Page, expect

from labs.catalogue import CATALOGUE
from labs.models import RunLab
from labs.pipeline import faults
from tests.conftest import ARTIFACTS
from tests.workshop_roles import LAB, PASSWORD, make_instructor, signed_in
from workshops.models import EmergencyStop, Seat

SLOW = 20_000  # ms: the longest one browser waits for what another did


def sign_in_as(page: Page, user, live_server) -> None:
    client = signed_in(user)
    page.context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])


def learner_tab(browser, live_server) -> Page:
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(SLOW)
    return tab


def snap(tab: Page, name: str) -> None:
    path = ARTIFACTS / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(path), full_page=True)


def test_an_instructor_runs_an_outage_for_two_learners_and_stops_it(page, browser, live_server, relay, settings, django_user_model, screenshot):
    settings.LAB_LIVE_URL = live_server.url  # the page server answers the stream once a second: no live process needed
    teacher = make_instructor(django_user_model, "grace")
    django_user_model.objects.create_user("alan", password=PASSWORD)
    sign_in_as(page, teacher, live_server)

    page.goto("/workshops/new")
    page.get_by_label("Title").fill("Game day: email outage")
    page.get_by_label("Lab").select_option(LAB)
    page.get_by_label("Seats").fill("10")
    page.get_by_role("button", name="Create the workshop").click()
    code = page.get_by_test_id("join-code").text_content().strip()
    join_link = page.get_by_test_id("join-url").text_content().strip()
    assert re.fullmatch(r"[2-9A-HJKMNP-Z]{3}-[2-9A-HJKMNP-Z]{3}", code)

    ada, alan = learner_tab(browser, live_server), learner_tab(browser, live_server)
    try:
        ada.goto("/workshops/join/")
        ada.get_by_label("Join code").fill(code.lower())
        ada.get_by_role("button", name="Join").click()
        new = ada.locator("form", has_text="I am new here")
        new.get_by_label("Username").fill("ada")
        new.get_by_label("Password", exact=True).fill(PASSWORD)
        new.get_by_label("Password confirmation").fill(PASSWORD)
        new.get_by_role("button", name="Create my account and join").click()

        alan.goto(join_link)
        known = alan.locator("form", has_text="I have an account")
        known.get_by_label("Username").fill("alan")
        known.get_by_label("Password").fill(PASSWORD)
        known.get_by_role("button", name="Log in and join").click()

        for tab in (ada, alan):
            expect(tab).to_have_url(re.compile(f"/labs/{LAB}/$"))
            expect(tab.get_by_test_id("classroom-bar")).to_contain_text("Game day: email outage")
            expect(tab.locator("[data-live-status]")).to_have_attribute("data-state", "live")
        runs = {name: Seat.objects.get(learner__username=name).run_id for name in ("ada", "alan")}
        assert {RunLab.objects.get(run_id=run_id).owner.username for run_id in runs.values()} == {"ada", "alan"}

        expect(page.get_by_test_id("tile")).to_have_count(2, timeout=SLOW)  # the grid's poll finds them
        page.get_by_label("Fault on").select_option("email-primary")
        page.locator("[data-fault-fields=provider]").get_by_label("down", exact=True).check()
        expect(page.locator("[data-fault-fields=pipeline]")).to_be_hidden()
        page.get_by_label("For (seconds)").fill("120")
        page.get_by_role("button", name="Inject").click()
        expect(page.locator("#controls-note")).to_contain_text("Injected email-primary down into 2 runs for 2 min")

        for tab in (ada, alan):
            banner = tab.get_by_test_id("instructor-fault")
            expect(banner).to_contain_text("Injected by your instructor: email-primary down", timeout=SLOW)
            expect(banner).to_have_text(re.compile(r"— (2:00|1:[0-5]\d) left"))
            expect(tab.get_by_test_id("active-faults")).to_contain_text("email-primary: down", timeout=SLOW)
        for run_id in runs.values():
            assert faults.all_faults(run_id) == {"email-primary": {"down": True}}
        expect(page.get_by_test_id("in-force")).to_contain_text("email-primary")
        expect(page.get_by_test_id("tile-faults")).to_have_count(2, timeout=SLOW)
        screenshot("workshop-grid-outage")
        snap(ada, "workshop-learner-outage")

        page.get_by_role("button", name="Stop every fault").click()
        expect(page.locator("#controls-note")).to_contain_text("Emergency stop: every fault cleared in 2 runs")
        for run_id in runs.values():
            assert faults.all_faults(run_id) == {}
        for tab in (ada, alan):
            # The bar redraws on the run's "classroom" event, well before its own poll (every minute) would.
            expect(tab.get_by_test_id("instructor-stop")).to_contain_text("Your instructor stopped every fault at", timeout=8_000)
            expect(tab.get_by_test_id("instructor-fault")).to_have_count(0)
            expect(tab.get_by_test_id("active-faults")).to_contain_text("No fault is active", timeout=SLOW)
        assert EmergencyStop.objects.get().stopped_by == teacher
        snap(alan, "workshop-learner-stopped")

        page.get_by_test_id("debrief-link").click()  # the debrief: the outage on its timeline, a CSV row per learner per step
        expect(page.get_by_test_id("timeline-entry").first).to_contain_text("email-primary down")
        with page.expect_download() as download:
            page.get_by_test_id("debrief-csv").click()
        rows = list(csv.DictReader(download.value.path().read_text(encoding="utf-8").splitlines()))
        assert {row["learner"] for row in rows} == {"ada", "alan"} and len(rows) == 2 * len(CATALOGUE[LAB].steps)
        screenshot("workshop-debrief")
    finally:
        ada.context.close()
        alan.context.close()
