"""The site as a visitor sees it, in a real Chromium."""

from urllib.parse import urlparse

import pytest


def test_the_home_page_shows_the_three_parts_and_loads_nothing_from_other_hosts(page, live_server, screenshot):
    requested = []
    page.on("request", lambda request: requested.append(request.url))

    page.goto("/")

    assert page.title() == "Learn how services talk · Faultline"
    nav = page.get_by_role("navigation", name="Main")
    for name in ("Lessons", "Practice", "Labs"):
        assert nav.get_by_role("link", name=name).is_visible()
    assert page.evaluate("typeof htmx") == "object", "the vendored htmx did not load"
    assert page.evaluate("htmx.version").startswith("2.")
    own_host = urlparse(live_server.url).netloc
    foreign = [url for url in requested if not url.startswith("data:") and urlparse(url).netloc != own_host]
    assert foreign == []
    screenshot("home-light")


@pytest.mark.parametrize(("link", "heading"), [("Lessons", "Lessons"), ("Practice", "Practice"), ("Labs", "Labs")])
def test_each_part_has_a_landing_page_reached_from_the_navigation(page, link, heading):
    page.goto("/")

    page.get_by_role("navigation", name="Main").get_by_role("link", name=link).click()

    assert page.get_by_role("heading", level=1).inner_text() == heading
    current = page.get_by_role("navigation", name="Main").locator("[aria-current=page]")
    assert current.inner_text() == link


def test_the_theme_toggle_switches_to_dark_and_the_choice_survives_a_reload(page, screenshot):
    page.emulate_media(color_scheme="light")
    page.goto("/")
    light_background = page.evaluate("getComputedStyle(document.body).backgroundColor")

    page.get_by_role("button", name="Switch between light and dark theme").click()
    page.reload()

    dark_background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert dark_background != light_background
    assert dark_background == "rgb(15, 18, 23)"
    screenshot("home-dark")


def test_the_system_dark_preference_is_followed_without_a_saved_choice(page):
    page.emulate_media(color_scheme="dark")
    page.goto("/")

    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(15, 18, 23)"


def test_the_layout_fits_a_phone_screen_without_sideways_scrolling(page, screenshot):
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto("/")

    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.get_by_role("link", name="Labs").first.is_visible()
    screenshot("home-phone")


def test_a_keyboard_user_can_skip_straight_to_the_content(page):
    page.goto("/")

    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    assert skip.evaluate("el => el === document.activeElement")
    page.keyboard.press("Enter")

    assert page.evaluate("document.activeElement.id") == "main"
