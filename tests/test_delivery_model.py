"""A model-based test of the delivery state machine (labs/pipeline/deliveries.py).

Hypothesis interleaves, in any order it likes, everything that happens to deliveries in a
cohort's worst hour: the relay publishing, the broker handing a message over twice or losing
it, workers claiming, dispatching, calling a provider that answers, fails, loses its answer
(a timeout) or outlives the worker (a crash before or after the send), a breaker opening on
the primary so transactional messages want to fail over, the relay taking over every held
delivery (a slow worker past its lease) or republishing what the broker lost, and a person
replaying the dead letters. After every step it checks what the labs promise:

- at most one provider send per delivery (intent and channel), across providers;
- nothing lost: every unfinished delivery has something that will move it on;
- attempts and generations never go down.

At the end it lets the pipeline run calmly until every delivery is finished.

The workers are this process calling the pipeline's own functions step by step, and the
broker is a list, so that hypothesis controls every interleaving; the database, the
providers' ledger and the breaker/budget state in Redis are real. The end-to-end tests with
real Celery workers are tests/test_labs_pipeline.py, tests/test_labs_faults.py and tests/test_chaos.py.
"""

import uuid
from dataclasses import dataclass

import pytest
from django.db.models import Count
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from labs.models import TERMINAL, DeadLetter, Delivery, DeliveryStatus, OutboxRow, ProviderSend, Recipient
from labs.pipeline import deadletters, deliveries, faults, providers, traffic, worker
from labs.pipeline.breaker import ProviderBreaker
from labs.pipeline.topology import PROVIDERS
from labs.runs import create_run

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Held:
    """A worker between steps: the delivery it claimed, and how far it got."""

    delivery: Delivery
    stage: str = "claimed"  # claimed → dispatched → (answered) → recorded
    outcome: worker.Outcome | None = None


class DeliveryMachine(RuleBasedStateMachine):
    def __init__(self, owner):
        super().__init__()
        self.run = create_run(owner, retry_base_ms=10, retry_cap_ms=50, max_attempts=3)
        Recipient.objects.filter(run=self.run).update(quiet_start=None, quiet_end=None, email_opt_in=True, sms_opt_in=True,
                                                      push_opt_in=True, inapp_opt_in=True)  # fmt: skip
        self.run.refresh_from_db()
        for n, (template, channels) in enumerate([("security_alert", ["email", "sms"]), ("security_alert", ["email"]),
                                                  ("weekly_digest", ["email"]), ("security_alert", ["inapp"]),
                                                  ("security_alert", ["inapp"])], start=1):  # fmt: skip
            traffic.send_one(self.run, 1 if "inapp" in channels else n, template, channels=channels)
        self.broker: list[tuple[int, int]] = []  # (delivery id, generation), as the relay publishes them
        self.workers: list[Held] = []
        self.seen: dict[int, tuple[int, int]] = {}  # delivery id → (attempts, generation) last seen
        self.primary_refused = False

    # --- The relay and the broker ------------------------------------------------------------

    @rule()
    def relay_publishes(self):
        rows = OutboxRow.objects.filter(run=self.run, published_at=None)  # due or not: time is not modelled
        # In the order of the run's deliveries: PostgreSQL returns unordered rows (and the rescue writes its rows)
        # in whatever order its pages hold them, which differs between hypothesis's replays of one example on a
        # fresh run, and hypothesis then cannot replay it. The deliveries were made in the same order every time.
        self.broker += list(rows.order_by("delivery_id", "generation", "id").values_list("delivery_id", "generation"))
        rows.update(published_at=timezone.now() - timezone.timedelta(seconds=1))

    @precondition(lambda self: self.broker)
    @rule(data=st.data())
    def broker_delivers_twice(self, data):
        self.broker.append(data.draw(st.sampled_from(self.broker)))

    @precondition(lambda self: self.broker)
    @rule(data=st.data())
    def broker_loses_a_message(self, data):
        self.broker.remove(data.draw(st.sampled_from(self.broker)))

    @rule()
    def relay_takes_over_every_held_delivery(self):
        with override_settings(LAB_SENDING_LEASE=-1):  # every lease has run out: slow workers included
            deliveries.take_over_lost(limit=100)

    @rule()
    def relay_rescues_what_was_never_claimed(self):
        with override_settings(LAB_REDELIVER_AFTER=-1):
            deliveries.rescue_unclaimed(limit=100)

    @rule()
    def the_primary_breaker_flips(self):
        self.primary_refused = not self.primary_refused

    @rule()
    def a_person_replays_the_dead_letters(self):
        deadletters.replay(self.run, list(DeadLetter.objects.filter(run=self.run, resolution="open").values_list("pk", flat=True)))

    # --- Workers, one step at a time ---------------------------------------------------------

    @precondition(lambda self: self.broker)
    @rule(data=st.data())
    def a_worker_takes_a_message(self, data):
        self._take(data.draw(st.integers(0, len(self.broker) - 1)))

    @precondition(lambda self: self.workers)
    @rule(data=st.data(), answer=st.sampled_from(["ok", "fail", "lost_answer", "crash_before_send", "crash_after_send", "reject"]))
    def a_worker_moves_on(self, data, answer):
        held = self.workers[data.draw(st.integers(0, len(self.workers) - 1))]
        if held.stage == "claimed":
            self._dispatch(held)
        elif held.stage == "dispatched":
            self._call(held, answer)
        else:
            worker.record_attempt(held.delivery, held.outcome, timezone.now())
            self.workers.remove(held)

    @precondition(lambda self: self.broker)
    @rule(answer=st.sampled_from(["ok", "fail", "lost_answer", "crash_after_send"]))
    def a_worker_handles_the_next_message_in_one_go(self, answer):
        job = self._take(0)
        if job is None:
            return
        self._dispatch(job)
        if job.stage == "dispatched":
            self._call(job, answer)
        if job.stage == "answered":
            worker.record_attempt(job.delivery, job.outcome, timezone.now())
            self.workers.remove(job)

    def _take(self, index: int) -> Held | None:
        delivery_id, generation = self.broker.pop(index)
        held = deliveries.claim(delivery_id, generation)
        if held is None:
            return None  # a late copy: dropped
        delivery = Delivery.objects.select_related("recipient", "intent__template").get(pk=delivery_id)
        delivery.run, delivery.generation = self.run, held
        job = Held(delivery)
        self.workers.append(job)
        return job

    def _dispatch(self, held: Held):
        delivery = held.delivery
        if worker.prepare(delivery, timezone.now(), {}) is None:  # in-app order: waiting its turn
            self.workers.remove(held)
            return
        primary = PROVIDERS[delivery.channel][0]
        provider, asked = worker.choose_provider(delivery, lambda name: not (self.primary_refused and name == primary))
        if provider is None:
            worker.refuse(delivery, asked, timezone.now())
            self.workers.remove(held)
        elif deliveries.dispatch(delivery, provider):
            held.stage = "dispatched"
        else:
            self.workers.remove(held)  # taken over meanwhile: it must not call

    def _call(self, held: Held, answer: str):
        delivery = held.delivery
        if answer == "crash_before_send":
            self.workers.remove(held)
            return
        if answer in ("ok", "lost_answer", "crash_after_send"):
            message = providers.OutgoingMessage(
                run_id=self.run.pk, channel=delivery.channel, address="x", subject="", body="",
                idempotency_key=delivery.idempotency_key, intent_id=delivery.intent_id,
                recipient_number=delivery.recipient.number, sequence=delivery.sequence, template="t",
            )  # fmt: skip
            providers._record_send(delivery.provider, message)
        if answer == "crash_after_send":
            self.workers.remove(held)
            return
        held.outcome = {
            "ok": worker.Outcome("succeeded", delivery.provider),
            "fail": worker.Outcome("failed", delivery.provider, "503", "provider_unavailable"),
            "lost_answer": worker.Outcome("timeout", delivery.provider, "no answer", "provider_timeout"),
            "reject": worker.Outcome("rejected", delivery.provider, "400", "provider_rejected", temporary=False),
        }[answer]
        held.stage = "answered"

    # --- What must hold after every step ------------------------------------------------------

    @invariant()
    def nothing_is_sent_twice(self):
        twice = (ProviderSend.objects.filter(run=self.run).values("intent_id", "channel").annotate(n=Count("id"))
                 .filter(n__gt=1))  # fmt: skip
        assert not twice.exists(), list(ProviderSend.objects.filter(run=self.run).values_list("intent_id", "channel", "provider"))

    @invariant()
    def nothing_is_lost(self):
        stuck = deliveries.unreachable(self.run.pk)
        assert not stuck.exists(), list(stuck.values_list("pk", "status", "generation"))

    @invariant()
    def attempts_and_generations_never_go_down(self):
        for pk, attempts, generation in Delivery.objects.filter(run=self.run).values_list("pk", "attempts", "generation"):
            before = self.seen.get(pk, (0, 0))
            assert attempts >= before[0] and generation >= before[1], (pk, before, (attempts, generation))
            self.seen[pk] = (attempts, generation)

    def teardown(self):
        """Calm weather: whatever state the run was left in, every delivery finishes."""
        self.primary_refused = False
        self.workers.clear()  # the workers still holding deliveries die; the relay takes over
        for _ in range(60):
            if not Delivery.objects.filter(run=self.run).exclude(status__in=TERMINAL).exists():
                break
            self.relay_takes_over_every_held_delivery()
            self.relay_rescues_what_was_never_claimed()
            self.relay_publishes()
            while self.broker:
                self.a_worker_handles_the_next_message_in_one_go("ok")
        unfinished = Delivery.objects.filter(run=self.run).exclude(status__in=TERMINAL)
        assert not unfinished.exists(), list(unfinished.values_list("pk", "status"))
        self.nothing_is_sent_twice()
        faults.clear_faults(self.run.pk)
        for provider in [name for pair in PROVIDERS.values() for name in pair]:
            ProviderBreaker(self.run.pk, provider).record(True)

def test_no_interleaving_of_crashes_redeliveries_takeovers_and_replays_loses_or_sends_twice(django_user_model):
    owner = django_user_model.objects.create_user(f"model-{uuid.uuid4().hex[:6]}", password="not-used-1234")
    run_state_machine_as_test(
        lambda: DeliveryMachine(owner),
        settings=settings(max_examples=60, stateful_step_count=60, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]),
    )  # fmt: skip
    assert DeliveryStatus.WAITING_TURN in DeliveryStatus.values
