"""The notification pipeline end to end: the API in this process, a real relay and a real
Celery worker as processes, a real Redis and the test database. No eager mode, no mocks."""

import re
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.test import Client

from labs.models import (
    AttemptOutcome,
    DeadLetter,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    OutboxRow,
    ProviderSend,
    Recipient,
)
from labs.pipeline import audit, defences, events, faults
from labs.pipeline.breaker import ProviderBreaker
from labs.runs import create_run
from tests import pipeline_steps
from tests.harness import wait_for


@pytest.fixture
def run(transactional_db, django_user_model, worker_and_relay):
    owner = django_user_model.objects.create_user(f"learner-{uuid.uuid4().hex[:6]}", password="not-used-1234")
    lab = calm(create_run(owner, retry_base_ms=100, retry_cap_ms=2000, max_attempts=4))
    yield lab
    counts, from_rows = pipeline_steps.counts_and_rows(lab.pk)
    assert counts == from_rows, "the running counts the panels read differ from the rows (labs.pipeline.tally)"
    faults.clear_faults(lab.pk)


def calm(lab):
    """A predictable cast for tests: everyone opted in, nobody in quiet hours."""
    Recipient.objects.filter(run=lab).update(
        quiet_start=None, quiet_end=None, email_opt_in=True, sms_opt_in=True, push_opt_in=True
    )
    return lab


class LabClient:
    """Talks to the run's API the way a learner's curl does."""

    def __init__(self, run):
        self.client = Client()
        self.auth = {"HTTP_AUTHORIZATION": f"Bearer {run.api_key}"}

    def send(self, key: str | None = None, **body):
        headers = {**self.auth, "HTTP_IDEMPOTENCY_KEY": key or uuid.uuid4().hex}
        return self.client.post("/api/notifications", body, content_type="application/json", **headers)

    def batch(self, notifications: list[dict]):
        return self.client.post(
            "/api/notifications/batch", {"notifications": notifications}, content_type="application/json", **self.auth
        )

    def get(self, path: str):
        return self.client.get(path, **self.auth)

    def post(self, path: str, body: dict | None = None):
        return self.client.post(path, body or {}, content_type="application/json", **self.auth)


def wait_until_settled(lab, timeout: float = 30) -> dict:
    return wait_for(lambda: (a := audit.audit(lab))["in_flight"] == 0 and a, timeout, "every delivery to finish")


def test_an_intent_travels_from_the_api_through_outbox_relay_and_worker_to_the_provider(run):
    api = LabClient(run)

    response = api.send(user_id=3, template="password_reset", data={"code": "481516"})

    assert response.status_code == 202
    intent_id = response.json()["id"]
    assert response.json()["deliveries"][0]["status"] == "pending"
    assert OutboxRow.objects.filter(delivery__intent_id=intent_id).count() == 1
    result = wait_until_settled(run)
    assert result["delivered"] == 1 and result["provider_sends"] == 1 and result["duplicate_sends"] == 0
    assert OutboxRow.objects.get(delivery__intent_id=intent_id).published_at is not None
    sent = ProviderSend.objects.get(run=run)
    assert (sent.provider, sent.intent_id, sent.recipient_number) == ("email-primary", intent_id, 3)
    detail = api.get(f"/api/notifications/{intent_id}").json()
    assert detail["status"] == "delivered"
    assert [a["outcome"] for a in detail["deliveries"][0]["attempt_history"]] == ["succeeded"]
    # The attempt names the Celery node that made it (the test worker's `--hostname test-…@host`).
    assert re.fullmatch(r"test-[0-9a-f]{8}@.+", detail["deliveries"][0]["attempt_history"][0]["worker"])
    kinds = [e["kind"] for e in events.recent(run.pk)]
    assert kinds.index("accepted") < kinds.index("published") < kinds.index("attempt_succeeded")


def test_a_campaign_is_a_few_lines_in_the_event_feed_not_one_per_message(run):
    from labs.live import describe
    from labs.pipeline.campaign import BATCH_SIZE

    response = LabClient(run).batch([{"idempotency_key": f"c{i}", "user_id": i % 50 + 1, "template": "weekly_digest",
                                      "channels": ["email"], "data": {"count": 2}} for i in range(250)])  # fmt: skip
    assert response.status_code == 202
    assert wait_until_settled(run)["delivered"] == 250
    # A batch's line goes out just after its deliveries commit as delivered: wait for the feed to have them all.
    wait_for(lambda: sum(e["count"] for e in events.recent(run.pk, count=1000) if e["kind"] == "batch_delivered") >= 250,
             10, "every batch's line in the feed")  # fmt: skip

    feed = events.recent(run.pk, count=1000)
    kinds = [e["kind"] for e in feed]
    assert "attempt_succeeded" not in kinds and "accepted" not in kinds
    [accepted] = [e for e in feed if e["kind"] == "accepted_batch"]
    assert describe(accepted)[1] == "250 notifications accepted in one request (weekly_digest)"
    published = [e for e in feed if e["kind"] == "published_batch"]
    delivered = [e for e in feed if e["kind"] == "batch_delivered"]
    # Batches hold at most BATCH_SIZE, and every delivery shows up in exactly one of them.
    for lines in (published, delivered):
        assert 2 <= len(lines) <= 10 and all(e["count"] <= BATCH_SIZE for e in lines)
        assert sorted(pk for e in lines for pk in e["deliveries"]) == sorted(Delivery.objects.filter(run=run).values_list("pk", flat=True))
    assert describe(delivered[0])[1].startswith(f"{delivered[0]['count']} email deliveries sent by email-primary in one bulk call")


def test_a_repeated_idempotency_key_returns_the_first_intent_and_sends_once(run):
    api = LabClient(run)
    body = {"user_id": 4, "template": "order_shipped", "channels": ["email"], "data": {"order_id": "A-1"}}

    first = api.send("order-A-1", **body)
    again = api.send("order-A-1", **body)
    conflict = api.send("order-A-1", **{**body, "user_id": 5})

    assert (first.status_code, again.status_code, conflict.status_code) == (202, 200, 409)
    assert again.json()["id"] == first.json()["id"] and again.json()["replayed"] is True
    assert "different body" in conflict.json()["error"]
    result = wait_until_settled(run)
    assert (result["intents"], result["provider_sends"], result["duplicate_sends"]) == (1, 1, 0)


def test_a_provider_that_fails_twice_is_retried_with_growing_jittered_delays(run):
    faults.set_fault(run.pk, "email-primary", fail_first=2)
    api = LabClient(run)

    intent_id = api.send(user_id=6, template="password_reset", data={"code": "1"}).json()["id"]

    assert wait_until_settled(run)["delivered"] == 1
    attempts = list(DeliveryAttempt.objects.filter(delivery__intent_id=intent_id))
    assert [a.outcome for a in attempts] == ["failed", "failed", "succeeded"]
    assert [a.backoff_cap_ms for a in attempts[:2]] == [100, 200]  # base * 2**(n-1): the ceiling grows
    assert all(0 <= a.backoff_ms <= a.backoff_cap_ms for a in attempts[:2])
    # Each retry really waited (roughly) its drawn delay before the next attempt started.
    for failed, following in zip(attempts, attempts[1:]):
        waited_ms = (following.started_at - failed.finished_at).total_seconds() * 1000
        assert waited_ms >= failed.backoff_ms - 5


def test_the_jitter_spreads_retries_of_messages_that_failed_together_and_exhausted_ones_are_dead_lettered(run):
    defences.set_defences(run, circuit_breaker=False)  # every attempt reaches the failing provider
    faults.set_fault(run.pk, "email-primary", down=True)
    api = LabClient(run)
    api.batch([{"idempotency_key": f"j{i}", "user_id": i, "template": "weekly_digest", "data": {"count": 1}}
               for i in range(1, 21)])  # fmt: skip

    # A campaign does not fail over: 4 failed attempts each, then the dead letters.
    assert wait_until_settled(run)["dead_lettered"] == 20
    assert set(DeadLetter.objects.filter(run=run).values_list("error_group", "attempts")) == {("provider_unavailable", 4)}

    first_delays = list(DeliveryAttempt.objects.filter(delivery__run=run, number=1).values_list("backoff_ms", flat=True))
    assert len(first_delays) == 20
    assert len(set(first_delays)) > 10, "full jitter should draw (almost) all different delays"


def test_a_refusal_by_an_open_breaker_uses_no_attempt_and_the_campaign_waits_for_the_provider(run):
    faults.set_fault(run.pk, "email-primary", down=True)
    api = LabClient(run)
    api.batch([{"idempotency_key": f"w{i}", "user_id": i, "template": "weekly_digest", "data": {"count": 1}}
               for i in range(1, 21)])  # fmt: skip

    # The breaker opens on the first failures; from then on the digests are refused without a call.
    wait_for(lambda: DeliveryAttempt.objects.filter(delivery__run=run, outcome=AttemptOutcome.BREAKER_OPEN).count() >= 20,
             30, "the open breaker to refuse the digests")  # fmt: skip
    assert not DeadLetter.objects.filter(run=run).exists()
    assert max(Delivery.objects.filter(run=run).values_list("attempts", flat=True)) < run.max_attempts
    deferred = Delivery.objects.filter(run=run, status=DeliveryStatus.DEFERRED).first()
    assert deferred is not None and deferred.outbox_rows.filter(published_at=None).exists()  # due at the next trial

    faults.clear_faults(run.pk)
    result = wait_until_settled(run)
    assert (result["delivered"], result["dead_lettered"], result["duplicate_sends"]) == (20, 0, 0)


def test_a_permanent_rejection_bounces_at_once_and_is_not_a_dead_letter(run):
    faults.set_fault(run.pk, "sms-primary", reject=True)
    api = LabClient(run)
    intent_id = api.send(user_id=7, template="security_alert", channels=["sms"], data={"device": "Firefox"}).json()["id"]

    result = wait_until_settled(run)

    assert (result["bounced"], result["dead_lettered"], result["provider_sends"]) == (1, 0, 0)
    assert DeliveryAttempt.objects.filter(delivery__intent_id=intent_id).count() == 1  # no retries
    assert api.get("/api/dead-letters").json()["groups"] == []
    assert api.get("/api/runs/current/metrics").json()["bounced"] == 1
    delivery = Delivery.objects.get(intent_id=intent_id)
    assert delivery.status == DeliveryStatus.BOUNCED and "rejected the address" in delivery.last_error


def test_a_poison_message_is_dead_lettered_and_replaying_it_unfixed_dead_letters_it_again_tagged(run):
    api = LabClient(run)
    intent_id = api.send(user_id=8, template="order_shipped", channels=["email"], data={}).json()["id"]  # no order_id

    wait_until_settled(run)
    letter = DeadLetter.objects.get(delivery__intent_id=intent_id)
    assert letter.error_group == "template_data_missing" and "{order_id}" in letter.error
    api.post(f"/api/dead-letters/{letter.pk}/replay")
    wait_for(lambda: DeadLetter.objects.filter(delivery__intent_id=intent_id).count() == 2, 20, "the second dead letter")

    second = DeadLetter.objects.filter(delivery__intent_id=intent_id).latest("id")
    assert second.was_replayed is True and second.resolution == "open"
    assert api.get("/api/dead-letters").json()["dead_letters"][0]["replayed_before"] is True


def test_the_breaker_opens_on_a_failing_provider_and_transactional_sms_fail_over(run):
    faults.set_fault(run.pk, "sms-primary", down=True)
    api = LabClient(run)
    api.batch([{"idempotency_key": f"s{i}", "user_id": i, "template": "security_alert", "channels": ["sms"],
                "data": {"device": "Safari"}} for i in range(1, 13)])  # fmt: skip

    result = wait_until_settled(run, timeout=45)

    assert result["delivered"] == 12 and result["dead_lettered"] == 0 and result["duplicate_sends"] == 0
    assert ProviderBreaker(run.pk, "sms-primary").state().state in ("open", "half_open")
    senders = set(ProviderSend.objects.filter(run=run).values_list("provider", flat=True))
    assert senders == {"sms-secondary"}
    changes = [e for e in events.recent(run.pk, count=1000) if e["kind"] == "breaker_changed"]
    assert {"provider": "sms-primary", "state": "open"}.items() <= changes[0].items()
    assert any(e["kind"] == "failover" for e in events.recent(run.pk, count=1000))


def test_a_campaign_does_not_delay_a_security_alert(run):
    api = LabClient(run)
    for part in range(3):
        campaign = [{"idempotency_key": f"c{part}-{i}", "user_id": i % 50 + 1, "template": "weekly_digest", "data": {"count": 3}}
                    for i in range(1000)]  # fmt: skip
        assert api.batch(campaign).status_code == 202

    alert = api.send(user_id=9, template="security_alert", channels=["email"], data={"device": "a new phone"})

    delivery = Delivery.objects.get(intent_id=alert.json()["id"])
    wait_for(lambda: Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.DELIVERED, 20, "the alert")
    campaign_left = Delivery.objects.filter(run=run, queue="email").exclude(status=DeliveryStatus.DELIVERED).count()
    # In arrival order it would come after all 3,000; on its own lane it overtakes most of them.
    assert campaign_left > 300, f"the alert waited for the campaign: only {campaign_left} campaign messages were left"
    assert delivery.queue == "urgent"
    wait_until_settled(run, timeout=90)


def test_in_app_messages_keep_per_user_order_even_across_retries(run):
    faults.set_fault(run.pk, "inapp-primary", fail_first=2)
    api = LabClient(run)

    for n in range(1, 6):
        assert api.send(user_id=10, template="inapp_message", data={"text": f"message {n}"}).status_code == 202

    result = wait_until_settled(run)
    assert result["delivered"] == 5 and result["order_violations"] == 0
    sent = list(ProviderSend.objects.filter(run=run).order_by("sent_at", "id").values_list("sequence", flat=True))
    assert sent == [1, 2, 3, 4, 5]


def _quiet_hours_around_now(recipient: Recipient) -> None:
    local = datetime.now(ZoneInfo(recipient.timezone))
    recipient.quiet_start = (local - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    recipient.quiet_end = (local + timedelta(hours=2)).time().replace(second=0, microsecond=0)
    recipient.save()


def test_quiet_hours_delay_a_digest_but_not_a_security_alert_and_an_opt_out_suppresses(run):
    api = LabClient(run)
    sleeper = Recipient.objects.get(run=run, number=11)
    _quiet_hours_around_now(sleeper)
    assert api.client.put(
        "/api/users/12/notification-preferences", {"channels": {"email": False}}, content_type="application/json", **api.auth
    ).json()["channels"]["email"] is False

    digest = api.send(user_id=11, template="weekly_digest", data={"count": 2}).json()["id"]
    alert = api.send(user_id=11, template="security_alert", channels=["email"], data={"device": "Edge"}).json()["id"]
    opted_out = api.send(user_id=12, template="password_reset", channels=["email"], data={"code": "9"}).json()["id"]

    wait_for(lambda: Delivery.objects.get(intent_id=alert).status == DeliveryStatus.DELIVERED, 20, "the alert")
    wait_for(lambda: Delivery.objects.get(intent_id=opted_out).status == DeliveryStatus.SUPPRESSED, 20, "the opt-out")
    wait_for(lambda: Delivery.objects.get(intent_id=digest).status == DeliveryStatus.DEFERRED, 20, "the deferral")
    deferred = Delivery.objects.get(intent_id=digest)
    assert deferred.next_attempt_at > datetime.now(ZoneInfo("UTC")) + timedelta(minutes=100)
    assert deferred.attempts == 0  # waiting out quiet hours spends no attempt
    result = audit.audit(run)
    assert (result["suppressed"], result["quiet_hours_violations"], result["provider_sends"]) == (1, 0, 1)


def test_runs_are_isolated_from_each_other(run, django_user_model):
    other = calm(create_run(django_user_model.objects.create_user("someone-else", password="not-used-1234")))
    mine, theirs = LabClient(run), LabClient(other)
    their_intent = theirs.send(user_id=1, template="password_reset", data={"code": "7"}).json()["id"]
    mine.send(user_id=1, template="password_reset", data={"code": "8"})

    assert mine.get(f"/api/notifications/{their_intent}").status_code == 404
    wait_until_settled(run)
    wait_until_settled(other)
    assert audit.audit(run)["intents"] == 1 and audit.audit(other)["intents"] == 1
    assert their_intent not in {e.get("intent") for e in events.recent(run.pk) if e["kind"] == "accepted"}
    assert their_intent in {e.get("intent") for e in events.recent(other.pk) if e["kind"] == "accepted"}


def test_an_attempt_counts_before_the_provider_call_so_redelivery_never_sends_twice(run):
    """Two copies of one message (a redelivery) reach the worker: the provider sees one send."""
    from config.celery import app

    api = LabClient(run)
    intent_id = api.send(user_id=13, template="password_reset", data={"code": "5"}).json()["id"]
    wait_until_settled(run)
    delivery = Delivery.objects.get(intent_id=intent_id)

    app.send_task("labs.deliver_task", args=[delivery.pk, 0], queue="urgent")  # a stale duplicate of attempt 1
    wait_for(lambda: Delivery.objects.get(pk=delivery.pk).duplicates_suppressed == 1, 20, "the duplicate to be dropped")

    assert ProviderSend.objects.filter(run=run).count() == 1
    assert DeliveryAttempt.objects.filter(delivery=delivery).exclude(outcome=AttemptOutcome.SUCCEEDED).count() == 0
