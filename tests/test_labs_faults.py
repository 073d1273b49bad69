"""Each fault against a real worker, relay and Redis: with the defence on the invariant
holds (nothing lost, nothing sent twice); with the matching defence off it visibly breaks."""

import re
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.test import Client

from labs.models import AttemptOutcome, DeadLetter, Delivery, DeliveryAttempt, DeliveryStatus, OutboxRow, ProviderSend, Recipient
from labs.pipeline import audit, defences, events, faults, traffic
from labs.pipeline.relay import broker_depths
from labs.runs import create_run
from tests.conftest import start_pipeline
from tests import pipeline_steps
from tests.harness import wait_for

# Short leases and timeouts so crashes and timeouts play out in seconds, not minutes.
FAST = {"LAB_SENDING_LEASE": "3", "LAB_REDELIVER_AFTER": "5", "LAB_PROVIDER_TIMEOUT_MS": "300"}


@pytest.fixture(scope="module")
def pipeline(process_env, process_logs):
    worker, relay = start_pipeline({**process_env, **FAST}, process_logs)
    yield worker, relay
    relay.stop()
    worker.stop()


@pytest.fixture
def run(transactional_db, django_user_model, pipeline):
    owner = django_user_model.objects.create_user(f"learner-{uuid.uuid4().hex[:6]}", password="not-used-1234")
    lab = create_run(owner, retry_base_ms=100, retry_cap_ms=1000, max_attempts=4)
    Recipient.objects.filter(run=lab).update(
        quiet_start=None, quiet_end=None, email_opt_in=True, sms_opt_in=True, push_opt_in=True
    )
    yield lab
    counts, from_rows = pipeline_steps.counts_and_rows(lab.pk)
    assert counts == from_rows, "the running counts the panels read differ from the rows (labs.pipeline.tally)"
    faults.clear_faults(lab.pk)


def emails(run, count: int, template: str = "password_reset", data=None) -> None:
    traffic_data = data if data is not None else traffic.SAMPLE_DATA[template]
    for n in range(count):
        traffic.send_one(run, n % 50 + 1, template, traffic_data, channels=["email"])


def settled(run, timeout: float = 45) -> dict:
    try:
        return wait_for(lambda: (a := audit.audit(run))["in_flight"] == 0 and a, timeout, "every delivery to finish")
    except TimeoutError as timed_out:  # say where the unfinished ones wait, and whether anything still moves
        from django.db.models import Count, Max

        waiting = dict(Delivery.objects.filter(run=run).values_list("status").annotate(Count("pk")))
        unpublished = OutboxRow.objects.filter(run=run, published_at=None).aggregate(n=Count("pk"), due=Max("available_at"))
        raise TimeoutError(f"{timed_out}: deliveries {waiting}; unpublished outbox rows {unpublished}; "
                           f"broker {broker_depths()}; audit {audit.audit(run)}") from None  # fmt: skip


@pytest.mark.parametrize("idempotency", [True, False], ids=["idempotency-on", "idempotency-off"])
def test_lost_acknowledgements_send_twice_only_without_idempotency(run, idempotency):
    # The breaker would soon stop the retries that show the difference; this lab is about idempotency.
    defences.set_defences(run, idempotency=idempotency, circuit_breaker=False)
    faults.set_fault(run.pk, "email-primary", lost_ack=0.5)

    emails(run, 20)
    result = settled(run)

    assert result["lost"] == 0
    if idempotency:
        assert result["duplicate_sends"] == 0
        assert result["provider_sends"] == 20
        # Every retry that finally got an answer found the provider already held the message: each one counts.
        retried = Delivery.objects.filter(run=run, status="delivered", attempts__gt=1)
        assert retried.exists()
        assert sum(Delivery.objects.filter(run=run).values_list("duplicates_suppressed", flat=True)) == retried.count()
    else:
        assert result["duplicate_sends"] > 0, result


@pytest.mark.parametrize("idempotency", [True, False], ids=["idempotency-on", "idempotency-off"])
def test_a_worker_crash_after_the_provider_call_sends_twice_only_without_idempotency(run, idempotency):
    defences.set_defences(run, idempotency=idempotency)
    faults.set_fault(run.pk, faults.PIPELINE, worker_crash=0.3)

    emails(run, 15)
    wait_for(lambda: audit.audit(run)["provider_sends"] >= 15, 60, "every message to reach the provider")
    faults.clear_faults(run.pk)  # let the stragglers finish without crashing again
    result = settled(run, timeout=60)

    assert result["lost"] == 0 and result["delivered"] == 15
    if idempotency:
        assert result["duplicate_sends"] == 0, result
        crashed = DeliveryAttempt.objects.filter(delivery__run=run, outcome="crashed")
        assert crashed.exists()
        # Each takeover names the worker that died holding the delivery (the test worker's `test-…@host`).
        assert all(re.fullmatch(r"test-[0-9a-f]{8}@.+", worker) for worker in crashed.values_list("worker", flat=True))
    else:
        assert result["duplicate_sends"] > 0, result


@pytest.mark.parametrize("template", ["password_reset", "weekly_digest"], ids=["one-by-one", "campaign-batch"])
@pytest.mark.parametrize("idempotency", [True, False], ids=["idempotency-on", "idempotency-off"])
def test_duplicate_delivery_by_the_broker_is_dropped_only_with_idempotency(run, idempotency, template):
    # A campaign's first attempts travel in batches, where both copies can land in one batch.
    defences.set_defences(run, idempotency=idempotency)
    faults.set_fault(run.pk, faults.PIPELINE, duplicate_delivery=1.0)

    emails(run, 10, template=template)
    result = settled(run)

    assert result["delivered"] == 10
    if idempotency:
        assert result["duplicate_sends"] == 0
        assert sum(Delivery.objects.filter(run=run).values_list("duplicates_suppressed", flat=True)) >= 10
    else:
        assert result["duplicate_sends"] > 0, result


def test_a_relay_crash_after_publishing_republishes_the_batch_and_the_consumer_drops_the_copies(run, pipeline):
    _, relay = pipeline
    faults.set_fault(run.pk, faults.PIPELINE, relay_crash_after_publish=True)

    emails(run, 10)
    settled(run)
    # The batch was published but never marked: the restarted relay publishes it again.
    wait_for(lambda: not OutboxRow.objects.filter(run=run, published_at=None).exists(), 20, "the republish")
    crashed = next(e for e in events.recent(run.pk, count=1000) if e["kind"] == "relay_crashed")
    wait_for(lambda: sum(Delivery.objects.filter(run=run).values_list("duplicates_suppressed", flat=True)) >= crashed["published"],
             20, "the worker to drop the second copies")  # fmt: skip

    result = audit.audit(run)
    assert relay.running(), "the relay command restarts its loop after the crash"
    assert "restarting it" in relay.output()
    assert (result["delivered"], result["duplicate_sends"], result["lost"]) == (10, 0, 0)


def test_a_paused_relay_lets_the_outbox_grow_and_drains_it_when_resumed(run):
    faults.set_fault(run.pk, faults.PIPELINE, relay_paused=True)

    emails(run, 12)

    def pending() -> int:
        return OutboxRow.objects.filter(run=run, published_at=None).count()

    # Meanwhile the relay keeps serving other runs: one of theirs goes all the way through.
    other = create_run(run.owner)
    Recipient.objects.filter(run=other).update(inapp_opt_in=True)
    traffic.send_one(other, 1, "security_alert", channels=["inapp"])
    wait_for(lambda: audit.audit(other)["delivered"] == 1, 20, "another run's message, past the paused one")
    assert pending() == 12 and audit.audit(run)["provider_sends"] == 0
    faults.set_fault(run.pk, faults.PIPELINE)  # resume
    result = settled(run)
    assert (result["delivered"], result["lost"], pending()) == (12, 0, 0)


@pytest.mark.parametrize("outbox", [True, False], ids=["outbox-on", "outbox-off"])
def test_a_crash_between_commit_and_publish_loses_messages_only_without_the_outbox(run, outbox):
    defences.set_defences(run, outbox=outbox)
    faults.set_fault(run.pk, faults.PIPELINE, publish_crash=0.5)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {run.api_key}")

    statuses = [
        api.post("/api/notifications", {"user_id": n, "template": "password_reset", "data": {"code": "1"}},
                 content_type="application/json", HTTP_IDEMPOTENCY_KEY=f"crash-{n}").status_code
        for n in range(1, 21)
    ]  # fmt: skip

    if outbox:
        assert set(statuses) == {202}
        assert (settled(run)["delivered"], audit.audit(run)["lost"]) == (20, 0)
    else:
        assert 500 in statuses and 202 in statuses
        crashed = statuses.count(500)
        wait_for(lambda: audit.audit(run)["lost"] == crashed, 30, "the auditor to count the lost messages")
        assert audit.audit(run)["delivered"] == 20 - crashed


@pytest.mark.parametrize("jitter", [True, False], ids=["jitter-on", "jitter-off"])
def test_without_jitter_messages_that_failed_together_retry_together(run, jitter):
    # With the breaker on, how many first calls fail before it opens (and refuses the rest, which
    # then wait for its trial, not a backoff) depends on how many were in flight; this is about jitter.
    # The provider stays down until every first attempt has been made: with "fail the first 10 calls"
    # a message whose first attempt came late (published in the relay's next pass) could find the
    # failures used up by an early message's quick jittered retry, and succeed at once.
    defences.set_defences(run, jitter=jitter, circuit_breaker=False)
    faults.set_fault(run.pk, "email-primary", down=True)

    emails(run, 10, template="weekly_digest")
    firsts = DeliveryAttempt.objects.filter(delivery__run=run, number=1)
    wait_for(lambda: firsts.count() == 10, 30, "every message's first attempt")
    faults.clear_faults(run.pk)
    settled(run)

    # Every first call failed and was given a wait. (On a machine so loaded that a worker held a message past the
    # test's 3 s lease, the relay took that one over: its first attempt is "crashed", retried at once, no wait.)
    delays = list(firsts.filter(outcome=AttemptOutcome.FAILED).values_list("backoff_ms", flat=True))
    seen = "; ".join(map(str, DeliveryAttempt.objects.filter(delivery__run=run).order_by("delivery_id", "number").values_list(
        "delivery_id", "number", "provider", "outcome", "backoff_ms", "error")))  # named in a failure, to find why
    assert len(delays) + firsts.filter(outcome=AttemptOutcome.CRASHED).count() == 10 and len(delays) >= 5 and None not in delays, seen
    if jitter:
        assert len(set(delays)) > len(delays) // 2
    else:
        assert set(delays) == {100}  # the whole herd waits exactly base * 2**0


@pytest.mark.parametrize("breaker", [True, False], ids=["breaker-on", "breaker-off"])
def test_an_sms_outage_fails_over_only_with_the_circuit_breaker(run, breaker):
    defences.set_defences(run, circuit_breaker=breaker)
    faults.set_fault(run.pk, "sms-primary", down=True)

    for n in range(1, 13):
        traffic.send_one(run, n, "security_alert", channels=["sms"])
    result = settled(run)

    if breaker:
        assert (result["delivered"], result["dead_lettered"]) == (12, 0)
    else:
        assert result["delivered"] == 0 and result["dead_lettered"] == 12  # hammered the dead primary until giving up


@pytest.mark.parametrize("dlq", [True, False], ids=["dlq-on", "dlq-off"])
def test_a_poison_message_is_parked_with_the_dead_letter_queue_and_retried_for_ever_without(run, dlq):
    defences.set_defences(run, dead_letter_queue=dlq)

    traffic.send_poison(run)

    if dlq:
        assert settled(run)["dead_lettered"] == 1
    else:
        delivery = Delivery.objects.get(run=run)
        wait_for(lambda: Delivery.objects.get(pk=delivery.pk).attempts > run.max_attempts + 1, 30, "retries past the limit")
        assert not DeadLetter.objects.filter(run=run).exists()
        assert audit.audit(run)["in_flight"] == 1


@pytest.mark.parametrize("lane", [True, False], ids=["lane-on", "lane-off"])
def test_without_the_priority_lane_a_security_alert_waits_behind_the_campaign(run, lane):
    defences.set_defences(run, priority_lane=lane)
    traffic.send_burst(run, 1000)

    alert = traffic.send_one(run, 9, "security_alert", channels=["email"]).intent
    delivery = Delivery.objects.get(intent=alert)
    wait_for(lambda: Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.DELIVERED, 60, "the alert")
    campaign_left = Delivery.objects.filter(run=run).exclude(intent=alert).exclude(status__in=["delivered", "suppressed"]).count()

    if lane:
        assert delivery.queue == "urgent" and campaign_left > 100
    else:
        assert delivery.queue == "email" and campaign_left <= 150  # it waited for most of the campaign
    settled(run, timeout=90)


def test_rate_limits_and_timeouts_are_retried_and_recorded(run):
    faults.set_fault(run.pk, "email-primary", rate_limited=1.0)  # every call refused: the breaker fails them over
    faults.set_fault(run.pk, "push-primary", latency_ms=600)  # past the 300 ms client timeout

    emails(run, 10)
    traffic.send_one(run, 1, "weekly_digest", channels=["push"])
    result = settled(run)

    assert result["delivered"] == 10 and result["dead_lettered"] == 1 and result["duplicate_sends"] == 0
    assert DeliveryAttempt.objects.filter(delivery__run=run, error__contains="429").exists()
    timeouts = DeliveryAttempt.objects.filter(delivery__run=run, outcome="timeout")
    assert timeouts.count() >= 2 and all(280 <= t.latency_ms < 600 for t in timeouts)
    assert DeadLetter.objects.get(run=run).error_group in ("provider_timeout", "breaker_open")


@pytest.mark.parametrize("skew", [0, 90], ids=["clock-right", "clock-skewed"])
def test_clock_skew_breaks_quiet_hours(run, skew):
    sleeper = Recipient.objects.get(run=run, number=5)
    local = datetime.now(ZoneInfo(sleeper.timezone))
    sleeper.quiet_start = (local - timedelta(hours=2)).time().replace(second=0, microsecond=0)
    sleeper.quiet_end = (local + timedelta(minutes=30)).time().replace(second=0, microsecond=0)
    sleeper.save()
    faults.set_fault(run.pk, faults.PIPELINE, clock_skew_minutes=skew)

    intent = traffic.send_one(run, 5, "weekly_digest", channels=["email"]).intent
    wait_for(lambda: Delivery.objects.get(intent=intent).status in ("deferred", "delivered"), 20, "a decision")

    if skew:
        assert Delivery.objects.get(intent=intent).status == "delivered"
        assert audit.audit(run)["quiet_hours_violations"] == 1
    else:
        assert Delivery.objects.get(intent=intent).status == "deferred"
        assert audit.audit(run)["quiet_hours_violations"] == 0


def test_the_fault_api_validates_and_stops_everything_at_once(run):
    api = Client(HTTP_AUTHORIZATION=f"Bearer {run.api_key}")

    bad = api.put("/api/runs/current/faults", {"faults": {"sms-primary": {"error_rate": 2}}}, content_type="application/json")
    good = api.put("/api/runs/current/faults", {"faults": {"sms-primary": {"error_rate": 0.5}, "pipeline": {"relay_paused": True}}},
                   content_type="application/json")  # fmt: skip
    stopped = api.delete("/api/runs/current/faults")
    switched = api.put("/api/runs/current/defences", {"jitter": False}, content_type="application/json")

    assert bad.status_code == 422 and "faults.sms-primary" in bad.json()["errors"]
    assert good.json()["faults"] == {"sms-primary": {"error_rate": 0.5}, "pipeline": {"relay_paused": True}}
    assert stopped.json()["faults"] == {} and faults.paused_runs() == []
    assert switched.json()["jitter"] is False and switched.json()["outbox"] is True



def test_a_crash_after_the_provider_call_pins_the_retries_to_that_provider(run):
    """The primary sent the alerts but the worker died before recording it; then the primary goes
    down. Failing over would send every alert a second time: the retries wait for the primary."""
    run.max_attempts = 20  # room to keep retrying through the outage below
    run.save(update_fields=["max_attempts"])
    faults.set_fault(run.pk, faults.PIPELINE, worker_crash=1.0)
    for n in range(1, 4):
        traffic.send_one(run, n, "security_alert", channels=["email"])
    wait_for(lambda: ProviderSend.objects.filter(run=run).count() == 3, 30, "the primary to send all three")
    faults.set_fault(run.pk, "email-primary", down=True)
    faults.set_fault(run.pk, faults.PIPELINE)  # no more crashes

    crashed = DeliveryAttempt.objects.filter(delivery__run=run, outcome="crashed")
    wait_for(lambda: crashed.count() >= 3, 30, "the takeovers of the three lost attempts")
    assert set(crashed.values_list("provider", flat=True)) == {"email-primary"}
    refused = DeliveryAttempt.objects.filter(delivery__run=run, outcome__in=["failed", "breaker_open"])
    wait_for(lambda: refused.count() >= 6, 30, "retries refused by the dead primary")
    faults.clear_faults(run.pk)
    result = settled(run)

    assert (result["delivered"], result["duplicate_sends"], result["provider_sends"]) == (3, 0, 3), result
    assert set(ProviderSend.objects.filter(run=run).values_list("provider", flat=True)) == {"email-primary"}


def test_past_the_retry_budget_retries_wait_the_longest_backoff_and_every_attempt_is_recorded(run, pipeline):
    worker, _ = pipeline
    defences.set_defences(run, circuit_breaker=False)
    faults.set_fault(run.pk, "email-primary", down=True)

    emails(run, 300, template="weekly_digest")
    result = settled(run, timeout=240)  # 1,200 failing calls, most waiting the cap: minutes on a loaded machine

    assert (result["dead_lettered"], result["lost"], result["provider_sends"]) == (300, 0, 0)
    # Every failed attempt was recorded by the worker that made it, none by a lease rescue.
    attempts = DeliveryAttempt.objects.filter(delivery__run=run)
    assert attempts.count() == 300 * run.max_attempts and not attempts.filter(outcome="crashed").exists()
    waited_longest = attempts.filter(backoff_ms=run.retry_cap_ms, backoff_cap_ms=run.retry_cap_ms)
    assert waited_longest.exists(), "the budget never ran out"
    assert any(e["kind"] == "retry_budget_exhausted" for e in events.recent(run.pk, count=5000))
    assert "TypeError" not in worker.output()


def test_faults_and_defences_outlive_redis_losing_everything(run):
    """Fault and defence settings live in the run's row: a Redis that restarts empty changes neither."""
    from config.redis_client import get_redis, key

    defences.set_defences(run, circuit_breaker=False)
    faults.set_fault(run.pk, "email-primary", down=True)
    redis = get_redis()
    redis.delete(*redis.scan_iter(match=key("*"), count=1000))  # what a restart without a dump leaves: nothing

    assert faults.all_faults(run.pk) == {"email-primary": {"down": True}}
    emails(run, 3)
    result = settled(run)
    assert (result["delivered"], result["dead_lettered"]) == (0, 3)  # the primary stayed down; no breaker to fail over
    assert not ProviderSend.objects.filter(run=run).exists()


def test_every_fault_reads_in_words_as_a_learner_sees_it():
    assert faults.in_words({"error_rate": 0.5, "latency_ms": 1500}) == "50% of calls fail (503), 1,500 ms a call"
    assert faults.in_words({"down": True, "latency_jitter_ms": 50}) == "down, give or take 50 ms"
    assert faults.in_words({"fail_first": 3}) == "fails 3 calls, then recovers"
    assert faults.in_words({"clock_skew_minutes": -90}) == "worker's clock 90 min behind"
    assert faults.in_words({"clock_skew_minutes": 30}) == "worker's clock 30 min ahead"
    assert faults.in_words({"worker_crash": 0.125}) == "12.5% of deliveries crash the worker"
    assert faults.in_words({"down": False}) == "nothing"
    vocabulary = {*faults.PROVIDER_FAULTS, *faults.PIPELINE_FAULTS, *faults.SERVICE_FAULTS, *faults.INSTANCE_FAULTS}
    assert vocabulary == set(faults.IN_WORDS), "every fault the engine takes has its words"
    kinds = {**faults.PROVIDER_FAULTS, **faults.PIPELINE_FAULTS, **faults.INSTANCE_FAULTS}
    for name, kind in kinds.items():  # no setting shows its stored name (they all have underscores or are one word)
        words = faults.in_words({name: {bool: True, int: 7, faults.SHARE: 0.25}[kind]})
        assert "_" not in words and words != "nothing", (name, words)
