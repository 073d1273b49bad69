"""Lab 7, the order saga, driven in real Chromium the way a learner does it, against the real
worker, relay and live-stream processes of tests/test_labs_browser.py (its fixtures and helpers).

The learner places orders from the steps, injects each fault from the page, watches the Order
sagas panel draw the steps and compensations, and sees the checks turn green and the auditor's
saga invariants turn red when a defence is off. Screenshots in the middle of the faults land in
test-artifacts/screenshots/.
"""

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from tests.conftest import ARTIFACTS
from tests.test_labs_browser import SLOW, expect_check_green, learner, pipeline, predict, press, start_lab  # noqa: F401 (fixtures)


def panels_screenshot(page, name: str) -> None:
    """The Order sagas panel and the auditor's invariants, as the learner sees them, for a reviewer.
    The panels are redrawn whole by each refresh: an answer landing while Playwright waits for the element
    to be stable detaches it, so a shot is taken again (up to three times) on the element drawn in its place."""
    for part, locator in (("sagas", page.get_by_test_id("saga-panel")), ("auditor", page.locator("section:has(#invariants-heading)"))):
        path = ARTIFACTS / "screenshots" / f"{name}-{part}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        for tries_left in (2, 1, 0):
            try:
                locator.screenshot(path=str(path))
                break
            except PlaywrightError as error:
                if "not attached" not in str(error) or not tries_left:
                    raise


def saga_row(page, reference: str):
    return page.get_by_test_id(f"saga-{reference}")


def invariant(page, name: str):
    return page.get_by_test_id("invariant").filter(has_text=name)


def test_a_declined_payment_is_compensated_and_without_the_defences_orders_are_charged_twice_and_left_half_done(page, learner, screenshot):
    start_lab(page, "order-saga")
    panel = page.get_by_test_id("saga-panel")
    expect(panel).to_contain_text("No orders yet")
    expect(page.get_by_test_id("saga-mode")).to_have_text("orchestrated")

    predict(page, 1, "Eight saga messages each; only Orders writes the status.")
    press(page, 1, "Place 5 orders")
    expect_check_green(page, "happy-path")
    expect(saga_row(page, "A-0005")).to_have_attribute("data-status", "confirmed", timeout=SLOW)
    expect(saga_row(page, "A-0005").locator("[data-step=notify]")).to_have_attribute("data-status", "succeeded", timeout=SLOW)
    expect(page.get_by_test_id("stock-available")).to_have_text("95", timeout=SLOW)
    expect(invariant(page, "Every order confirmed or fully compensated")).to_contain_text("✔", timeout=SLOW)

    # A decline after the reservation: the orchestrator releases the mug and cancels the order.
    predict(page, 2, "Reserve, authorise fails, release, cancel; the five mugs go back.")
    press(page, 2, "Make every card decline")
    press(page, 2, "Place 5 orders")
    row = saga_row(page, "A-0010")
    expect(row).to_have_attribute("data-status", "cancelled", timeout=SLOW)
    expect(row.locator("[data-step=authorise]")).to_have_attribute("data-status", "failed", timeout=SLOW)
    expect(row.locator("[data-step=release]")).to_have_attribute("data-status", "succeeded", timeout=SLOW)
    expect(row.locator("[data-step=confirm]")).to_have_attribute("data-status", "not_reached", timeout=SLOW)
    expect(row.get_by_test_id("saga-state")).to_have_text("Cancelled, fully compensated", timeout=SLOW)
    expect_check_green(page, "declined-compensated")
    expect(page.get_by_test_id("stock-available")).to_have_text("95", timeout=SLOW)  # the declined orders' mugs came back
    page.evaluate("document.querySelector('[data-testid=saga-panel]').scrollIntoView()")  # in the page: a refresh may redraw it
    screenshot("lab-order-saga-declined")
    panels_screenshot(page, "lab-order-saga-declined")
    press(page, 2, "Stop the declines")

    # Every message twice: ignored with idempotent steps; charged twice without.
    predict(page, 6, "Ten authorisations for five orders, and five mugs leaked.")
    press(page, 6, "Deliver every saga message twice")
    press(page, 6, "Place 5 orders")
    expect_check_green(page, "duplicates-ignored")
    expect(saga_row(page, "A-0015")).to_contain_text("ignored", timeout=SLOW)
    press(page, 6, "Switch idempotent steps off")
    press(page, 6, "Place 5 more orders")
    expect_check_green(page, "charged-twice")
    expect(invariant(page, "Nothing charged twice")).to_contain_text("✘", timeout=SLOW)
    expect(invariant(page, "No stock leaked")).to_contain_text("✘", timeout=SLOW)
    expect(saga_row(page, "A-0020")).to_contain_text("done 2×", timeout=SLOW)
    screenshot("lab-order-saga-charged-twice")
    panels_screenshot(page, "lab-order-saga-charged-twice")
    press(page, 6, "Stop the duplicates and switch idempotent steps back on")

    # A failing compensation: retried until it succeeds; with retries off, the order is stuck.
    predict(page, 7, "The customer hears nothing and the mug stays reserved.")
    press(page, 7, "Decline every card and fail the next 4 compensations")
    press(page, 7, "Place 2 orders")
    expect_check_green(page, "compensation-retried")
    expect(saga_row(page, "A-0022").locator("[data-step=release]")).to_contain_text("retr", timeout=SLOW)
    press(page, 7, "Switch compensation retries off and fail the next 2 compensations")
    press(page, 7, "Place 2 more orders")
    expect_check_green(page, "compensation-abandoned")
    # Two orders, two failing compensations: which order's compensations run into them is up to the workers
    # (one order's two, or one each), so one order or both are stuck.
    stuck = page.get_by_test_id("saga-panel").locator("tr[data-testid^=saga-A-]", has=page.get_by_text("Stuck: a compensation gave up"))
    expect(stuck.first).to_be_visible(timeout=SLOW)
    assert {stuck.nth(i).get_attribute("data-testid") for i in range(stuck.count())} <= {"saga-A-0023", "saga-A-0024"}
    expect(stuck.first.locator("[data-status=gave_up]").first).to_be_visible()
    expect(invariant(page, "Every order confirmed or fully compensated")).to_contain_text("✘", timeout=SLOW)
    expect(page.locator("#event-feed")).to_contain_text("gave up", timeout=SLOW)
    screenshot("lab-order-saga-compensation-abandoned")
    panels_screenshot(page, "lab-order-saga-compensation-abandoned")
    press(page, 7, "Stop the faults and switch compensation retries back on")


def test_choreographed_orders_compensate_without_an_orchestrator(page, learner, screenshot):
    start_lab(page, "order-saga")

    predict(page, 5, "Inventory subscribes to payment_declined; only the services' own records say where an order is.")
    press(page, 5, "Switch to choreography")
    expect(page.get_by_test_id("saga-mode")).to_have_text("choreographed", timeout=SLOW)
    press(page, 5, "Place 5 orders")
    # Their payments are authorised before every card declines (on a loaded machine a press can come first).
    expect(saga_row(page, "A-0005")).to_have_attribute("data-status", "confirmed", timeout=SLOW)
    press(page, 5, "Make every card decline")
    press(page, 5, "Place 3 orders")
    row = saga_row(page, "A-0008")
    # The panels redraw at most once a second, less often when drawing them is slow (labs.js).
    expect(row).to_have_attribute("data-status", "cancelled", timeout=SLOW)
    expect(row).to_contain_text("choreographed")
    expect(row.locator("[data-step=release]")).to_have_attribute("data-status", "succeeded", timeout=SLOW)
    expect(saga_row(page, "A-0001")).to_have_attribute("data-status", "confirmed", timeout=SLOW)
    expect_check_green(page, "choreography-compensates")
    screenshot("lab-order-saga-choreography")
    panels_screenshot(page, "lab-order-saga-choreography")
    press(page, 5, "Stop the declines and switch back to orchestration")
    expect(page.get_by_test_id("saga-mode")).to_have_text("orchestrated", timeout=SLOW)
