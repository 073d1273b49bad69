"""Lessons as a reader meets them in a real Chromium: both themes, keyboard, htmx, progress."""

import re

import pytest
from playwright.sync_api import expect

from courseware.loading import load_content
from courseware.models import CheckAnswer, Lesson
from tests import content_counts as counts
from tests.conftest import ARTIFACTS

PASSWORD = "correct-horse-battery-42"


@pytest.fixture
def lessons(transactional_db):
    """The real lessons; the live server's database is emptied after every test, so load per test."""
    load_content()
    return list(Lesson.objects.select_related("module"))


@pytest.fixture
def learner(django_user_model):
    return django_user_model.objects.create_user("grace", password=PASSWORD)


def log_in(page, username: str, next_path: str = "/lessons/") -> None:
    page.goto(f"/accounts/login/?next={next_path}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("signed-in-as")).to_have_text(username)


def use_theme(page, theme: str) -> None:
    page.evaluate("theme => { document.documentElement.dataset.theme = theme }", theme)


def screenshot_through(page, name: str, last) -> None:
    """Save the page from its top down to the element `last`, in test-artifacts/screenshots/.

    A whole long lesson takes ten times longer to capture; the top through the first diagram
    shows the title, the prose, code and the diagram in each theme.
    """
    box = last.bounding_box()
    bottom = page.evaluate("window.scrollY") + box["y"] + box["height"] + 24
    path = ARTIFACTS / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"]
    page.screenshot(path=str(path), full_page=True, clip={"x": 0, "y": 0, "width": width, "height": bottom})


def test_every_lesson_renders_its_title_diagram_and_highlighted_code_in_both_themes(page, lessons):
    for lesson in lessons:
        page.goto(f"/lessons/{lesson.slug}/")
        expect(page.get_by_role("heading", level=1)).to_have_text(lesson.title)
        diagram = page.locator("figure.diagram svg[role=img]").first
        expect(diagram).to_be_visible()
        assert diagram.bounding_box()["height"] > 100, f"{lesson.slug}: the diagram has collapsed"
        keyword = page.locator(".highlight code span[class]:not(.w)").first
        colours = {}
        for theme in ("light", "dark"):
            use_theme(page, theme)
            colours[theme] = (
                page.evaluate("getComputedStyle(document.body).backgroundColor"),
                diagram.evaluate("svg => getComputedStyle(svg.querySelector('.accent') || svg).color"),
                keyword.evaluate("el => getComputedStyle(el).color") if keyword.count() else None,
            )
            screenshot_through(page, f"lesson-{lesson.position:02d}-{lesson.slug}-{theme}", page.locator("figure.diagram").first)
        light, dark = colours["light"], colours["dark"]
        assert light[0] == "rgb(255, 255, 255)" and dark[0] == "rgb(15, 18, 23)", lesson.slug
        assert light[1] != dark[1], f"{lesson.slug}: the diagram's accent does not follow the theme"
        assert keyword.count(), f"{lesson.slug}: no highlighted code"
        assert light[2] != dark[2], f"{lesson.slug}: code colours do not follow the theme"


def test_a_lesson_fits_a_phone_screen(page, lessons, screenshot):
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto("/lessons/case-study-notification-system/")

    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.get_by_text("On this page").first.click()
    expect(page.locator(".toc-inline").get_by_role("link", name="Common mistakes")).to_be_visible()
    screenshot("lesson-phone")


PHONE = {"width": 390, "height": 844}

# For each diagram on the page, in CSS pixels: the page's and the figure's sideways overflow, the
# SVG's box against its figure's, and the empty space between the lowest drawn shape and the caption.
DIAGRAM_LAYOUT = """() => [...document.querySelectorAll('figure.diagram')].map(figure => {
    const svg = figure.querySelector('svg'), caption = figure.querySelector('figcaption');
    const shapes = [...svg.querySelectorAll('text, rect, line, path, circle, ellipse, polyline, polygon')]
        .filter(shape => !shape.closest('defs'));
    const box = svg.getBoundingClientRect(), frame = figure.getBoundingClientRect();
    return {
        pageOverflow: document.documentElement.scrollWidth - window.innerWidth,
        figureOverflow: figure.scrollWidth - figure.clientWidth,
        svgLeft: box.left - frame.left, svgRight: frame.right - box.right, svgWidth: box.width,
        gapAboveCaption: caption.getBoundingClientRect().top - Math.max(...shapes.map(s => s.getBoundingClientRect().bottom)),
    };
})"""


def test_every_diagram_fits_a_phone_screen_with_its_caption_right_below(page, lessons):
    page.set_viewport_size(PHONE)
    for lesson in lessons:
        page.goto(f"/lessons/{lesson.slug}/")
        expect(page.locator("figure.diagram .diagram-enlarge").first).to_be_visible()  # diagrams.js has run
        for n, diagram in enumerate(page.evaluate(DIAGRAM_LAYOUT), start=1):
            where = f"{lesson.slug}, diagram {n}: {diagram}"
            assert diagram["pageOverflow"] <= 0, f"the page scrolls sideways: {where}"
            assert diagram["figureOverflow"] <= 0, f"the diagram scrolls sideways inside its figure: {where}"
            assert diagram["svgLeft"] >= 0 and diagram["svgRight"] >= 0 and diagram["svgWidth"] > 300, where
            assert diagram["gapAboveCaption"] < 20, f"an empty band above the caption: {where}"


def test_a_diagram_on_a_phone_enlarges_on_tap_to_fill_the_screen(page, lessons):
    page.set_viewport_size(PHONE)
    page.goto("/lessons/case-study-notification-system/")
    figure = page.locator("figure.diagram").first
    enlarge = figure.get_by_role("button", name="Enlarge diagram")
    figure.scroll_into_view_if_needed()
    inline_width = figure.locator("svg").bounding_box()["width"]
    for theme in ("light", "dark"):
        use_theme(page, theme)
        figure.screenshot(path=str(ARTIFACTS / "screenshots" / f"diagram-phone-inline-{theme}.png"))

    enlarge.click()
    viewer = page.get_by_role("dialog", name=figure.locator("figcaption").inner_text())
    expect(viewer).to_be_visible()
    expect(viewer).to_contain_text("turn your phone sideways")
    enlarged = viewer.locator("svg").bounding_box()
    page.screenshot(path=str(ARTIFACTS / "screenshots" / "diagram-phone-enlarged-dark.png"))
    # Turned a quarter, the diagram's long side runs down the screen: about twice its width on the page.
    assert enlarged["height"] > 1.8 * inline_width, (inline_width, enlarged)
    assert enlarged["x"] >= 0 and enlarged["x"] + enlarged["width"] <= PHONE["width"], enlarged
    assert enlarged["y"] >= 0 and enlarged["y"] + enlarged["height"] <= PHONE["height"], enlarged

    viewer.get_by_role("button", name="Close").click()
    expect(viewer).to_be_hidden()
    expect(enlarge).to_be_focused()
    # A tap on the diagram itself enlarges it too.
    figure.locator("svg").click()
    expect(viewer).to_be_visible()
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()


def test_a_glossary_tooltip_opens_on_keyboard_focus_is_announced_and_closes_on_escape(page, lessons):
    page.goto("/lessons/network-calls/")
    term = page.get_by_role("button", name="load balancer")
    tooltip = page.get_by_role("tooltip").filter(has_text="load balancer: A component that spreads requests")
    expect(tooltip).to_be_hidden()

    # Tab from the element just before the term, as a keyboard user would arrive at it.
    page.locator("main").evaluate("main => main.focus()")
    for _ in range(40):
        page.keyboard.press("Tab")
        if term.evaluate("el => el === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the glossary term")

    expect(tooltip).to_be_visible()
    expect(term).to_have_attribute("aria-describedby", tooltip.get_attribute("id"))
    expect(term).to_have_accessible_description(re.compile(r"^load balancer: A component that spreads requests"))
    screenshot_through(page, "glossary-tooltip-focused", tooltip)
    page.keyboard.press("Escape")
    expect(tooltip).to_be_hidden()
    assert term.evaluate("el => el === document.activeElement"), "Escape should not move focus"


def test_an_inline_check_is_answered_in_place_and_recorded_for_a_signed_in_learner(page, lessons, learner):
    log_in(page, "grace", "/lessons/delivery-guarantees-idempotency/")
    check = page.locator("#check-delivery-guarantees-idempotency-1")
    options = check.get_by_role("radio")
    count = options.count()
    url = page.url

    chosen = int(options.nth(0).get_attribute("value"))  # the learner's own order: the first shown is any of them
    options.nth(0).check()
    check.get_by_role("button", name="Check my answer").click()

    expect(check.locator(".check-verdict")).to_be_focused()
    expect(check.locator(".check-explanation")).to_have_count(count)
    assert page.url == url, "the answer should be shown in place"
    check.screenshot(path=str(ARTIFACTS / "screenshots" / "inline-check-answered.png"))
    answer = CheckAnswer.objects.get(user=learner)
    assert answer.inline_check.check_id == "delivery-guarantees-idempotency-1" and answer.option == chosen

    check.get_by_role("link", name="Try again").click()
    expect(check.get_by_role("radio").first).to_be_focused()
    page.reload()
    expect(check.locator(f'input[type=radio][value="{chosen}"]')).to_be_checked()  # last answer, wherever it is shown now
    expect(check.locator(".check-previous")).to_contain_text("Last time")


def test_search_finds_a_lesson_by_a_word_in_its_body(page, lessons):
    page.goto("/lessons/")
    page.get_by_label("Search the lessons").fill("Hystrix")
    page.get_by_role("button", name="Search").click()

    results = page.locator(".search-results li")
    expect(results).to_have_count(1)
    expect(results.first.get_by_role("link")).to_have_text("Circuit breakers and bulkheads")
    expect(results.first.locator("mark").first).to_have_text("Hystrix")

    # Typing on the results page updates them in place (htmx) and keeps the URL shareable.
    page.get_by_label("Search the lessons").fill("choreography")
    expect(page.locator(".search-results li").first.get_by_role("link")).to_have_text(re.compile("Sagas"))
    expect(page).to_have_url(re.compile(r"q=choreography"))


def test_reading_progress_survives_logging_out_and_back_in(page, lessons, learner, screenshot):
    log_in(page, "grace", "/lessons/rest-and-grpc/")
    page.get_by_role("button", name="Mark as read").click()
    expect(page.get_by_test_id("lesson-module-progress")).to_contain_text("1 of 4 lessons read in Calling across the network")
    page.get_by_role("link", name=re.compile("Next →")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Timeouts, retries, backoff and jitter")

    page.get_by_role("button", name="Log out").click()
    log_in(page, "grace")

    module = page.locator("#calling-across-the-network")
    expect(module.get_by_test_id("module-progress")).to_contain_text("1 of 4 read")
    expect(module.locator(".lesson-item.is-read")).to_have_text(re.compile("Synchronous calls: REST and gRPC"))
    expect(page.get_by_test_id("overall-progress")).to_have_text(f"1 of {counts.lessons()} lessons read")
    expect(page.get_by_test_id("continue-link")).to_have_text("Timeouts, retries, backoff and jitter")
    screenshot("course-map-with-progress")
    page.get_by_test_id("continue-link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Timeouts, retries, backoff and jitter")

    # The home page offers the same lesson to a returning reader.
    page.goto("/")
    resume = page.get_by_test_id("resume")
    expect(resume.get_by_role("heading")).to_have_text("Pick up where you left off")
    screenshot("home-resume")
    resume.get_by_role("link", name="Timeouts, retries, backoff and jitter").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Timeouts, retries, backoff and jitter")


def test_the_course_map_lists_modules_in_order_and_previous_next_walk_the_course(page, lessons, screenshot):
    page.goto("/lessons/")
    modules = page.locator(".module h2")
    expect(modules).to_have_count(counts.modules())
    expect(modules.first).to_contain_text("Calling across the network")
    expect(page.locator(".lesson-item")).to_have_count(counts.lessons())
    screenshot("course-map")

    page.locator(".course-map").get_by_role("link", name="Why a network call is not a function call").click()
    expect(page.get_by_role("link", name=re.compile("Previous"))).to_have_count(0)
    page.get_by_role("link", name=re.compile("Next →")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Synchronous calls: REST and gRPC")
    page.get_by_role("link", name=re.compile("← Previous")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Why a network call is not a function call")

    page.goto("/lessons/choosing-communication-style/")
    expect(page.get_by_role("link", name=re.compile("Next →"))).to_have_count(0)
    page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name="Putting it together").click()
    expect(page).to_have_url(re.compile(r"/lessons/#putting-it-together$"))


def test_the_glossary_page_links_each_term_to_the_lessons_that_use_it(page, lessons, screenshot):
    page.goto("/lessons/glossary/")
    entry = page.locator("#saga")

    expect(entry.locator("dt")).to_contain_text("saga")
    entry.get_by_role("link", name="Sagas").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sagas")
