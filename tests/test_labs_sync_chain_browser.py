"""Lab 9 driven in real Chromium as a learner does it: the API's synchronous path against the real
live process's services, with a real worker and relay delivering what the API accepts.

The learner predicts, presses the step's buttons (a slow or hung preferences service, a call policy,
a load) and watches the panel of the API's synchronous path and the checks. Screenshots of the
cascade and of the breaker holding land in test-artifacts/screenshots/.
"""

import pytest
from playwright.sync_api import Page, expect

from tests.test_labs_browser import Pipeline, TEST_POLICY, count, expect_check_green, predict, press, start_lab

LAB = "synchronous-chains"
LOAD_WAIT = 60_000  # ms: a 10-second load, and its last clients' 3 seconds, on a loaded machine


@pytest.fixture(scope="module")
def pipeline(process_env, process_logs, live_server):
    env = {**process_env, "CSRF_TRUSTED_ORIGINS": live_server.url}
    processes = Pipeline(env, process_logs)
    # The live process serves the lab's services, and the template service calls the preferences service there.
    processes.env = {**env, "LAB_SERVICES_URL": f"http://127.0.0.1:{processes.live_port}"}
    processes.start_worker()
    processes.start_relay()
    processes.start_live()
    yield processes
    processes.stop()
    from config.celery import app

    app.control.purge()


@pytest.fixture
def learner(django_user_model, page, live_server, pipeline, settings, request):
    from django.test import Client

    from labs import runs
    from labs.models import LabRun

    settings.LAB_PAGE_RUN_POLICY = TEST_POLICY
    settings.LAB_LIVE_URL = f"http://localhost:{pipeline.live_port}"
    settings.LAB_SERVICES_URL = f"http://127.0.0.1:{pipeline.live_port}"
    user = django_user_model.objects.create_user("learner-sync")
    client = Client()
    client.force_login(user)
    page.context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    yield user
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.passed:
        page.goto("about:blank")
    for run in LabRun.objects.filter(owner=user):
        runs.delete_run(run)


def expect_step_check(page: Page, check_id: str) -> None:
    """A load takes its time: the step's check turns green once the load has ended."""
    try:
        expect(page.get_by_test_id(f"check-{check_id}")).to_have_attribute("data-passed", "true", timeout=LOAD_WAIT)
    except AssertionError as exc:
        waiting = page.get_by_test_id(f"step-check-{check_id}").inner_text()
        panel = page.get_by_test_id("sync-path").inner_text()
        raise AssertionError(f"{check_id} stayed ○. The step card says:\n{waiting}\nThe panel says:\n{panel}") from exc


def test_a_too_short_timeout_fails_a_slow_service_and_a_hung_one_is_contained_by_a_breaker(page, learner, screenshot):
    start_lab(page, LAB)
    panel = page.get_by_test_id("sync-path")
    expect(panel).to_be_visible()
    expect(page.get_by_test_id("sync-policy")).to_have_text("timeout 1000 ms, 2 retries, breaker off, no fallback, no deadline")

    predict(page, 1, "Two preference calls per request, one or two workers busy.")
    press(page, 1, "Send a load of 5 a second for 10 s")
    expect_step_check(page, "healthy-baseline")
    expect(page.get_by_test_id("sync-calls-per-request")).to_have_text("2.0")
    assert count(page, "sync-requests") >= 50

    predict(page, 2, "Nearly every request fails, and the service gets three calls for each.")
    press(page, 2, "Slow the preferences service and cut the timeout to 100 ms")
    expect(page.get_by_test_id("active-faults")).to_contain_text("preferences-service: 150 ms a call, give or take 50 ms")
    press(page, 2, "Send a load of 5 a second for 10 s")
    expect_step_check(page, "short-timeout-fails")
    assert count(page, "sync-error-pct") >= 80
    assert count(page, "sync-wasted") >= 20
    expect(page.get_by_test_id("sync-outcome-failed")).not_to_have_text("0")
    screenshot("lab-synchronous-chains-short-timeout")

    press(page, 2, "Give the calls a 1,000 ms timeout")
    press(page, 2, "Send the load again")
    expect_step_check(page, "fitting-timeout")

    predict(page, 4, "All four workers busy, clients give up after 3 seconds.")
    press(page, 4, "Make the preferences service hang; 1,000 ms timeout, 1 retry")
    press(page, 4, "Send a load of 5 a second for 10 s")
    expect(page.get_by_test_id("sync-busy")).to_have_text("4 of 4", timeout=LOAD_WAIT)  # every API worker waits on the hung service
    screenshot("lab-synchronous-chains-hung-service")
    expect_step_check(page, "hang-takes-every-worker")

    predict(page, 5, "Few errors once the breaker opens; a trial call closes it after the fix.")
    press(page, 5, "Switch on the breakers (cooldown 5 s) and the fallback")
    press(page, 5, "Send a load of 5 a second for 10 s")
    expect_step_check(page, "breaker-holds")
    assert count(page, "sync-fallbacks") >= 20
    expect(page.locator("[data-testid=sync-breaker]").first).to_have_text("open")
    screenshot("lab-synchronous-chains-breaker-holds")

    press(page, 5, "Mend the preferences service")
    press(page, 5, "Send the load again")
    expect_step_check(page, "breaker-recovers")
    expect(page.locator("[data-testid=sync-breaker]")).to_have_text(["closed", "closed", "closed"])
    assert count(page, "sync-error-pct") <= 5
