"""Lab 9's synchronous path against the real live process: the API asks its two services over HTTP,
with timeouts, retries, a circuit breaker, a fallback and deadlines, and records what its clients saw.

The services run in a real uvicorn process (labs/services.py); the API side runs here, in the
test process, as the web process would run it.
"""

import json
from dataclasses import replace

import httpx
import pytest
from django.test import Client
from django.urls import reverse

from labs import checks, runs
from labs.catalogue import CATALOGUE
from labs.lab_files import pipeline_problems
from labs.models import LabRun, SyncOutcome, SyncRequest
from labs.pipeline import faults, sync_chain, sync_load
from labs.pipeline.topology import PREFERENCES_SERVICE
from tests.harness import free_port, start_live_process, wait_for

LAB = "synchronous-chains"


@pytest.fixture(scope="module")
def services_url(process_env, process_logs):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_live_process(port, {**process_env, "LAB_SERVICES_URL": url}, process_logs)
    warm_up(url)
    yield url
    process.stop()


def warm_up(url: str) -> None:
    """One call to each service, so the first call a test makes does not pay for the process's first database query."""
    for service, path in ((PREFERENCES_SERVICE, "users/1"), ("template-service", "templates/none")):
        answer = httpx.get(f"{url}/live/services/0/{service}/{path}", headers={sync_chain.TOKEN_HEADER: sync_chain.run_token(0)}, timeout=30)
        assert answer.status_code == 404, answer.text


@pytest.fixture
def learner(django_user_model, transactional_db, services_url, settings):
    settings.LAB_SERVICES_URL = services_url
    client = Client()
    client.user = django_user_model.objects.create_user("ada")
    client.force_login(client.user)
    client.post(reverse("labs:start", args=[LAB]))
    client.run = LabRun.objects.get(owner=client.user)
    client.key = runs.rotate_api_key(client.run)
    yield client
    runs.delete_run(client.run)


def send(learner, user_id: int = 7, key: str = "") -> httpx.Response:
    """POST /api/notifications as a client of the run's API does."""
    response = learner.post(
        reverse("labs-api:send_notification"), json.dumps({"user_id": user_id, "template": "password_reset", "data": {"code": "1"}}),
        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {learner.key}",
        HTTP_IDEMPOTENCY_KEY=key or f"k-{SyncRequest.objects.count()}-{user_id}",
    )  # fmt: skip
    return response


def policy(learner, **changes) -> None:
    learner.run.refresh_from_db()
    sync_chain.set_policy(learner.run, **changes)


def counts(learner) -> dict[str, int]:
    return sync_load.service_counts(learner.run.pk, 0)


def test_accepting_a_notification_asks_both_services_over_http(learner):
    response = send(learner, 7)

    assert response.status_code == 202, response.content
    [request] = SyncRequest.objects.filter(run=learner.run)
    assert (request.outcome, request.service_calls, request.busy_workers) == (SyncOutcome.ACCEPTED, 2, 1)
    # The preferences service is asked twice: by the API, and by the template service for the user's locale.
    wait_for(lambda: counts(learner).get(f"{PREFERENCES_SERVICE}:served") == 2, 10, "both preference calls served")
    assert counts(learner)["template-service:served"] == 1
    assert sync_chain.kept_preferences(learner.run.pk, 7)["user_id"] == 7


def test_the_services_answer_only_their_runs_callers(learner, services_url):
    url = sync_chain.service_url(learner.run.pk, PREFERENCES_SERVICE, "users/7")
    assert httpx.get(url, timeout=5).status_code == 403
    assert httpx.get(url, headers={sync_chain.TOKEN_HEADER: sync_chain.run_token(learner.run.pk + 1)}, timeout=5).status_code == 403
    assert httpx.get(url, headers={sync_chain.TOKEN_HEADER: sync_chain.run_token(learner.run.pk)}, timeout=5).json()["user_id"] == 7


def test_a_service_that_is_down_is_a_503_unless_a_kept_answer_stands_in(learner):
    assert send(learner, 7).status_code == 202  # the API keeps user 7's preferences
    faults.set_fault(learner.run.pk, PREFERENCES_SERVICE, down=True)
    policy(learner, retries=1)

    refused = send(learner, 7)
    assert refused.status_code == 503
    assert "preferences service did not answer: answered 503 (2 attempts)" in refused.json()["error"]

    policy(learner, fallback=True)
    assert send(learner, 7).status_code == 202
    never_seen = send(learner, 8)
    assert never_seen.status_code == 503 and "no answer kept from before" in never_seen.json()["error"]
    outcomes = list(SyncRequest.objects.filter(run=learner.run).order_by("id").values_list("outcome", flat=True))
    assert outcomes == [SyncOutcome.ACCEPTED, SyncOutcome.FAILED, SyncOutcome.FALLBACK, SyncOutcome.FAILED]


def test_retries_after_a_timeout_are_served_for_nobody_unless_the_deadline_travels_with_them(learner):
    faults.set_fault(learner.run.pk, PREFERENCES_SERVICE, latency_ms=400)
    policy(learner, timeout_ms=50, retries=1)

    assert send(learner, 7).status_code == 503
    # The service finishes both attempts long after the API stopped waiting for them.
    wait_for(lambda: counts(learner).get(f"{PREFERENCES_SERVICE}:wasted") == 2, 10, "two calls served for nobody")

    policy(learner, deadline=True)
    assert send(learner, 8).status_code == 503
    wait_for(lambda: counts(learner).get(f"{PREFERENCES_SERVICE}:dropped") == 2, 10, "two calls dropped at their deadline")
    assert counts(learner)[f"{PREFERENCES_SERVICE}:wasted"] == 2  # none more
    assert counts(learner)[f"{PREFERENCES_SERVICE}:received"] == 4


def test_an_open_breaker_refuses_at_once_and_a_trial_after_the_cooldown_closes_it(learner):
    faults.set_fault(learner.run.pk, PREFERENCES_SERVICE, down=True)
    policy(learner, retries=0, breaker=True, cooldown_s=1)
    for user in range(1, 6):
        assert send(learner, user).status_code == 503
    assert sync_chain.breaker_states(learner.run)["api → preferences-service"] == "open"

    refused = send(learner, 6)
    assert "refused by the open circuit breaker" in refused.json()["error"]
    assert counts(learner)[f"{PREFERENCES_SERVICE}:received"] == 5  # the refused call never left the API

    faults.set_fault(learner.run.pk, PREFERENCES_SERVICE)
    wait_for(lambda: send(learner, 9).status_code == 202, 10, "a trial call after the cooldown")
    assert sync_chain.breaker_states(learner.run)["api → preferences-service"] == "closed"


def test_a_load_runs_on_the_api_workers_one_at_a_time_and_its_figures_are_read_back(learner):
    number = sync_load.start_load(learner.run, 10, 1)
    with pytest.raises(ValueError, match="a load is already running"):
        sync_load.start_load(learner.run, 10, 1)
    wait_for(lambda: not sync_load.load_running(learner.run.pk), 30, "the load to end")

    found = checks.facts(learner.run)
    latencies = sorted(SyncRequest.objects.filter(run=learner.run, load=number).values_list("latency_ms", flat=True))
    assert len(latencies) == found["api_requests"] == 10
    assert found["api_p95_ms"] == latencies[-1] and found["api_error_pct"] == 0  # of ten, the slowest is the 95th percentile
    assert 1 <= found["api_busy_peak"] <= sync_load.API_WORKERS
    assert found["preference_calls_per_request"] == 2.0
    assert (found["load_timeout_ms"], found["load_deadline"], found["load_breaker"]) == (1000, 0, 0)


def test_the_call_policy_and_load_forms_answer_with_what_changed_or_what_is_wrong(learner):
    url = reverse("labs:call_policy", args=[learner.run.pk])
    fields = {"timeout_ms": "250", "retries": "1", "cooldown_s": "30", "breaker": "on"}
    saved = learner.post(url, fields, HTTP_HX_REQUEST="true").content.decode()
    assert "Call policy saved: timeout 250 ms, 1 retry, breaker on (cooldown 30 s), no fallback, no deadline." in saved
    learner.run.refresh_from_db()
    assert sync_chain.CallPolicy.of(learner.run) == sync_chain.CallPolicy(timeout_ms=250, retries=1, breaker=True, cooldown_s=30)

    bad = learner.post(url, {**fields, "timeout_ms": "5"}, HTTP_HX_REQUEST="true").content.decode()
    assert "Ensure this value is greater than or equal to 10" in bad
    learner.run.refresh_from_db()
    assert learner.run.call_policy["timeout_ms"] == 250

    too_long = learner.post(reverse("labs:load", args=[learner.run.pk]), {"rate": "5", "seconds": "600"}, HTTP_HX_REQUEST="true")
    assert "Ensure this value is less than or equal to 30" in too_long.content.decode()
    assert not sync_load.load_running(learner.run.pk)


def test_a_run_of_another_lab_has_no_synchronous_path(django_user_model, db):
    client = Client()
    client.force_login(django_user_model.objects.create_user("bob"))
    client.post(reverse("labs:start", args=["outbox-and-relay"]))
    run = LabRun.objects.get()
    assert client.post(reverse("labs:call_policy", args=[run.pk]), {"timeout_ms": "100", "retries": "0", "cooldown_s": "5"}).status_code == 404
    assert client.post(reverse("labs:load", args=[run.pk]), {"rate": "5", "seconds": "5"}).status_code == 404
    with pytest.raises(ValueError, match="has no synchronous path to load"):
        sync_load.start_load(run, 5, 5)
    assert checks.facts(run)["api_requests"] == 0
    runs.delete_run(run)


def test_a_lab_without_the_synchronous_path_may_not_load_it_and_policies_are_checked():
    lab = CATALOGUE[LAB]
    assert pipeline_problems(lab) == []
    load_step = next(step for step in lab.steps if any(op == "load" for action in step.actions for op, _ in action.operations))
    elsewhere = replace(lab, sync_chain=False)
    assert any("only a lab with `sync_chain: true`" in problem for problem in pipeline_problems(elsewhere))
    with pytest.raises(ValueError, match="timeout_ms must be a whole number from 10 to 10,000"):
        sync_chain.validate_policy({"timeout_ms": 5})
    with pytest.raises(ValueError, match="'jitter' is not a call policy setting"):
        sync_chain.validate_policy({"jitter": True})
    assert load_step.number == 1


def test_the_percentile_is_the_nearest_rank():
    assert sync_load.percentile([], 0.95) is None
    assert sync_load.percentile(list(range(1, 101)), 0.95) == 95
    assert sync_load.percentile([5, 1, 3], 0.95) == 5
    assert sync_load.percentile([10] * 19 + [3000], 0.95) == 10  # one slow request in twenty is the 5% the p95 leaves out


# The figures each of the lab's loads leaves behind, as they come out of a run (step, then the load's own
# figures); a check must hold on the load of its own step and on no earlier one, or it would turn green
# (and stay green) as soon as the learner pressed the step's first button.
LOADS = [
    ("healthy-baseline", dict(load_timeout_ms=1000, load_deadline=0, load_breaker=0, load_slow_ms=0, api_error_pct=0,
                              preference_calls_per_request=2.0, wasted_work=0, deadline_drops=0, api_busy_peak=2, api_fallbacks=0)),
    ("short-timeout-fails", dict(load_timeout_ms=100, load_deadline=0, load_breaker=0, load_slow_ms=150, api_error_pct=100,
                                 preference_calls_per_request=3.0, wasted_work=140, deadline_drops=0, api_busy_peak=3, api_fallbacks=0)),
    ("fitting-timeout", dict(load_timeout_ms=1000, load_deadline=0, load_breaker=0, load_slow_ms=150, api_error_pct=0,
                             preference_calls_per_request=2.0, wasted_work=0, deadline_drops=0, api_busy_peak=4, api_fallbacks=0)),
    ("deadline-stops-waste", dict(load_timeout_ms=100, load_deadline=1, load_breaker=0, load_slow_ms=150, api_error_pct=100,
                                  preference_calls_per_request=2.9, wasted_work=0, deadline_drops=140, api_busy_peak=3, api_fallbacks=0)),
    ("hang-takes-every-worker", dict(load_timeout_ms=1000, load_deadline=1, load_breaker=0, load_slow_ms=10000, api_error_pct=100,
                                     preference_calls_per_request=1.1, wasted_work=0, deadline_drops=60, api_busy_peak=4, api_fallbacks=0)),
    ("breaker-holds", dict(load_timeout_ms=1000, load_deadline=1, load_breaker=1, load_slow_ms=10000, api_error_pct=12,
                           preference_calls_per_request=0.3, wasted_work=0, deadline_drops=18, api_busy_peak=4, api_fallbacks=44)),
    ("breaker-recovers", dict(load_timeout_ms=1000, load_deadline=1, load_breaker=1, load_slow_ms=0, api_error_pct=0,
                              preference_calls_per_request=1.6, wasted_work=0, deadline_drops=0, api_busy_peak=4, api_fallbacks=20)),
]  # fmt: skip


def test_each_check_of_the_lab_holds_on_its_own_load_and_on_no_earlier_one():
    lab = CATALOGUE[LAB]
    fault_on = {"short-timeout-fails", "fitting-timeout", "deadline-stops-waste", "hang-takes-every-worker", "breaker-holds"}
    for position, (check_id, figures) in enumerate(LOADS):
        found = {**figures, "api_requests": 50, "load_running": 0, "faults_active": int(check_id in fault_on),
                 "sync_breakers_open": int(check_id in {"hang-takes-every-worker", "breaker-holds"})}  # fmt: skip
        passing = {check for check, result in checks.evaluate(lab, found).items() if result.passed}
        assert check_id in passing, (check_id, checks.evaluate(lab, found)[check_id].failing)
        later = {later_id for later_id, _ in LOADS[position + 1:]}
        assert not passing & later, (check_id, passing & later)
