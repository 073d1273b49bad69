"""Every kind of page passes the Content-Security-Policy in real Chromium (config/csp.py).

Chromium reports each blocked script, style or connection twice: as a console error naming the
Content Security Policy, and as a `securitypolicyviolation` event in the page, which a script
added before any page script forwards to the test. The tour visits each kind of page, and
presses the htmx controls on it so the fragments they swap in are checked too; the last test
shows the watch does report a violation.
"""

import re

import pytest
from playwright.sync_api import Page, expect

from courseware.loading import load_content
from labs import runs
from labs.models import LabRun
from practice.loader import load_questions
from tests.harness import free_port, start_live_process
from tests.workshop_roles import LAB, PASSWORD, make_instructor

SLOW = 30_000

FORWARD_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.cspViolation(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


class Violations(list):
    """What Chromium blocked, with the page it happened on."""

    def watch(self, page: Page) -> Page:
        page.context.expose_function("cspViolation", lambda text: self.append(f"{page.url}: {text}"))
        page.context.add_init_script(FORWARD_VIOLATIONS)
        page.on("console", lambda message: "Content Security Policy" in message.text and self.append(f"{page.url}: {message.text}"))
        return page


@pytest.fixture(scope="module")
def live_port(process_env, process_logs, live_server):
    port = free_port()
    process = start_live_process(port, {**process_env, "CSRF_TRUSTED_ORIGINS": live_server.url}, process_logs)
    yield port
    process.stop()


@pytest.fixture
def site(transactional_db, settings, live_port):
    """The real lessons and questions; lab pages find their live process on its own port."""
    load_content()
    load_questions()
    settings.LAB_LIVE_URL = f"http://localhost:{live_port}"
    yield
    for run in LabRun.objects.all():
        runs.delete_run(run)


@pytest.fixture
def violations(page) -> Violations:
    found = Violations()
    found.watch(page)
    return found


def log_in(page: Page, username: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("signed-in-as")).to_have_text(username)


def settle(page: Page) -> None:
    """Let htmx and the page scripts finish what they started (a violation is reported asynchronously)."""
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(300)


def test_a_visitor_sees_no_violation_on_the_public_pages(page, site, violations):
    page.goto("/")
    assert page.evaluate("typeof htmx") == "object"
    page.goto("/lessons/")
    page.goto("/lessons/delivery-guarantees-idempotency/")
    expect(page.locator("svg").first).to_be_visible()  # the lesson's diagram
    check = page.locator("#check-delivery-guarantees-idempotency-1")
    check.get_by_role("radio").first.check()
    check.get_by_role("button", name="Check my answer").click()  # swapped in by htmx
    expect(check.locator(".check-verdict")).to_be_visible()
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: diagrams.js sizes the enlarged diagram
    page.get_by_role("button", name="Enlarge diagram").first.click()
    expect(page.get_by_role("dialog")).to_be_visible()
    page.keyboard.press("Escape")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/lessons/search/?q=outbox")
    page.goto("/practice/")
    page.goto("/labs/")
    page.goto("/labs/dead-letters-poison/")
    page.goto("/accounts/signup/")
    page.get_by_label("Username").fill("ada")
    page.get_by_role("button", name="Sign up").click()  # the form comes back with its errors
    expect(page.locator(".field-errors").first).to_be_visible()
    page.goto("/accounts/login/")
    page.goto("/admin/login/")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    page.goto("/workshops/join/")
    settle(page)

    assert violations == []


def test_a_learner_sees_no_violation_on_lessons_practice_a_mock_interview_and_a_live_lab_run(page, site, violations, django_user_model):
    django_user_model.objects.create_user("ada", password=PASSWORD)
    log_in(page, "ada")

    page.goto("/practice/questions/design-notification-system/")
    page.get_by_role("link", name="Show hint 1 of 3").click()
    page.get_by_label("Your answer").fill("The API writes the intent and an **outbox** row in one transaction.")
    expect(page.locator("#answer-preview strong")).to_have_text("outbox")  # the htmx preview
    page.get_by_role("button", name="Submit my answer").click()
    expect(page.get_by_test_id("estimate")).to_be_visible()

    page.goto("/practice/mock/")
    page.get_by_role("button", name="Start a 45-minute mock interview: Design a notification system").click()
    page.wait_for_load_state("load")  # htmx binds the notes' autosave once the page has loaded; a person types later
    page.get_by_label("Notes: clarify requirements").fill("Callers: internal teams.")
    expect(page.locator("#notes-saved")).to_contain_text("Notes saved at")

    page.goto("/labs/dead-letters-poison/")
    page.get_by_role("button", name="Start a run").click()
    expect(page.locator("[data-live-status]")).to_have_attribute("data-state", "live", timeout=SLOW)
    assert page.evaluate("window.faultlineLive.source") == "live", "the page should listen to the live process"
    card = page.locator("#step-1")
    card.locator("textarea[name=prediction]").fill("Every digest ends in the dead letters.")
    card.get_by_role("button", name="Save my prediction").click()
    expect(page.locator("#step-1-note")).to_contain_text("Prediction saved")
    card.get_by_role("button", name="Switch the circuit breaker off and put email-primary down", exact=True).click()
    expect(page.get_by_test_id("active-faults")).to_contain_text("email-primary: down")
    card.get_by_role("button", name="Send 20 weekly digests", exact=True).click()
    expect(page.locator("#event-feed")).to_contain_text("20 notifications accepted", timeout=SLOW)  # brought by the live stream
    page.goto("/labs/history/")
    settle(page)

    assert violations == []


def test_the_workshop_grid_and_a_learners_classroom_page_show_no_violation(page, browser, live_server, site, violations, django_user_model):
    make_instructor(django_user_model, "grace")
    log_in(page, "grace")
    page.goto("/workshops/new")
    page.get_by_label("Title").fill("Game day")
    page.get_by_label("Lab").select_option(LAB)
    page.get_by_role("button", name="Create the workshop").click()
    join_link = page.get_by_test_id("join-url").text_content().strip()

    learner = browser.new_context(base_url=live_server.url).new_page()
    try:
        violations.watch(learner)
        learner.goto(join_link)
        new = learner.locator("form", has_text="I am new here")
        new.get_by_label("Username").fill("ada")
        new.get_by_label("Password", exact=True).fill(PASSWORD)
        new.get_by_label("Password confirmation").fill(PASSWORD)
        new.get_by_role("button", name="Create my account and join").click()
        expect(learner.get_by_test_id("classroom-bar")).to_contain_text("Game day", timeout=SLOW)
        learner.get_by_role("button", name="✋ I need help").click()
        expect(learner.get_by_test_id("hand-up")).to_be_visible()

        page.reload()
        expect(page.locator("#cohort")).to_contain_text("ada", timeout=SLOW)
        page.locator("#cohort").get_by_role("link", name="raised hands").click()  # the grid, swapped by htmx
        expect(page.locator("#cohort")).to_contain_text("ada")
        page.get_by_role("button", name="Announce").click()
        settle(page)
        settle(learner)
    finally:
        learner.context.close()

    assert violations == []


def test_the_watch_reports_an_inline_script_and_an_inline_style_slipped_into_a_page(page, site, violations):
    def inject(route):
        response = route.fetch()
        body = response.text().replace("</main>", '<script>document.title = "pwned"</script><p style="color: red">x</p></main>')
        route.fulfill(response=response, body=body)

    page.route(re.compile(r".*/lessons/$"), inject)
    page.goto("/lessons/")
    settle(page)

    assert page.title() != "pwned"
    assert any("script-src" in v for v in violations), violations
    assert any("style-src" in v for v in violations), violations
