"""Deliver one message: the body of the Celery task (lessons: delivery-guarantees-idempotency,
retries-backoff-jitter, circuit-breakers-bulkheads, dead-letter-queues).

Steps (every change of state goes through labs/pipeline/deliveries.py):
1. Claim the delivery with the generation the message carries. A second copy of the
   message (redelivery, relay republish, rescue) finds the generation moved on and is
   dropped as a suppressed duplicate.
2. Keep per-user order for in-app messages: wait (holding no message) while an earlier
   one is unfinished; its final transition wakes this one.
3. Respect the user's preferences: opted out → suppressed; quiet hours → deferred
   (security alerts excepted), the window in force recorded on the attempt.
4. Render the pinned template version; a message that cannot render is poison → dead letters.
5. Pick a provider: the one an unknown outcome pinned it to, else the primary through its
   circuit breaker (transactional messages fail over to the secondary). An open breaker's
   refusal defers the delivery to the breaker's next trial without using an attempt.
6. Dispatch: name the provider and count the attempt, then call it with a timeout and the
   delivery's idempotency key; with the run's service discovery on, call the instance the
   lookup returns (labs/pipeline/discovery.py).
7. Record the attempt and the next state in one transaction: delivered, bounced (a
   permanent rejection), a retry scheduled (an outbox row due later), or a dead letter.
"""

import logging
import os
import random
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from datetime import time as time_of_day
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from config.celery import node_name
from labs.models import AttemptOutcome, Delivery, DeliveryAttempt, DeliveryStatus, LabRun, Priority, TemplateCategory
from labs.pipeline import budget, defences, deliveries, discovery, events, faults, providers, tally, templating
from labs.pipeline.backoff import backoff_ceiling_ms, full_jitter_ms
from labs.pipeline.breaker import ProviderBreaker
from labs.pipeline.quiet_hours import quiet_hours_end, quiet_window
from labs.pipeline.topology import PROVIDERS

log = logging.getLogger(__name__)

class PoisonMessage(Exception):
    """A message that can never succeed as it is (bad template data)."""

    group = "template_data_missing"


@dataclass
class Outcome:
    status: str  # AttemptOutcome
    provider: str = ""
    error: str = ""
    group: str = ""
    temporary: bool = True
    latency_ms: int = 0
    # With service discovery on: the instance called and how it was found (labs.pipeline.discovery).
    instance: str = ""
    resolved_by: str = ""
    instance_unhealthy: bool = False
    stale_answer: bool = False


@dataclass
class Prepared:
    subject: str
    body: str
    quiet_hours: str  # the window in force when the worker decided to send, "22:00-07:00" or ""
    local_time: time_of_day | None  # the user's local time by the worker's clock


def deliver(delivery_id: int, generation: int) -> None:
    now = timezone.now()
    run = LabRun.objects.filter(deliveries=delivery_id).first()
    if run is None:
        return  # the run was reset or deleted while the message waited
    idempotent = defences.enabled(run, "idempotency")
    held = deliveries.claim(delivery_id, generation) if idempotent else deliveries.claim_any(delivery_id)
    if held is None:
        note_duplicate(delivery_id)
        return
    delivery = Delivery.objects.select_related("recipient", "intent__template").get(pk=delivery_id)
    delivery.run, delivery.generation = run, held  # every later change is conditional on holding this generation
    chaos = faults.fault_for(run.pk, faults.PIPELINE)
    events.emit(run.pk, "attempt_started", delivery=delivery.pk, intent=delivery.intent_id, channel=delivery.channel, attempt=delivery.attempts + 1)
    prepared = prepare(delivery, now, chaos)
    if prepared is None:
        return
    outcome = call_provider(delivery, prepared, idempotent)
    if outcome is None:
        return
    if random.random() < chaos.get("worker_crash", 0.0):
        crash(delivery.pk)
    record_attempt(delivery, outcome, now, prepared)


def prepare(delivery: Delivery, now: datetime, chaos: dict) -> Prepared | None:
    """Everything before the provider call; None when the delivery was settled or set aside
    here (out of attempts, waiting its turn, suppressed, deferred, poison)."""
    run = delivery.run
    if deliveries.attempts_left(delivery, run.max_attempts) <= 0 and defences.enabled(run, "dead_letter_queue"):
        # Only reachable when earlier attempts never finished (lost workers, taken over).
        _dead_letter(delivery, "attempts_exhausted", f"gave up after {run.max_attempts} attempts; the last one's outcome is unknown")
        return None
    if delivery.channel == "inapp" and deliveries.wait_turn(delivery):
        events.emit(run.pk, "deferred", delivery=delivery.pk, intent=delivery.intent_id, reason="waiting for an earlier in-app message to this user")
        return None
    if not delivery.recipient.opted_in(delivery.channel):
        if deliveries.finish(delivery, DeliveryStatus.SUPPRESSED, last_error=f"user opted out of {delivery.channel}"):
            events.emit(run.pk, "suppressed", delivery=delivery.pk, intent=delivery.intent_id, reason="opt_out")
        return None
    skewed_now = now + timedelta(minutes=chaos.get("clock_skew_minutes", 0))
    window, local = quiet_window(delivery.recipient, skewed_now)
    if delivery.intent.template.category != TemplateCategory.SECURITY:
        quiet_until = quiet_hours_end(delivery.recipient, skewed_now)
        if quiet_until is not None:
            until = quiet_until - (skewed_now - now)
            if deliveries.defer(delivery, until):
                events.emit(run.pk, "deferred", delivery=delivery.pk, intent=delivery.intent_id, until=until.isoformat(), reason="quiet hours")
            return None
    try:
        subject, body = render(delivery)
    except PoisonMessage as exc:
        delivery.attempts += 1  # processing it was an attempt, though no provider was called
        outcome = Outcome(AttemptOutcome.REJECTED, error=str(exc), group=exc.group, temporary=False)
        row = _attempt_row(delivery, outcome, now, now)
        if defences.enabled(run, "dead_letter_queue"):
            _dead_letter(delivery, exc.group, str(exc), attempt=row, attempts=delivery.attempts)
        else:  # nowhere to park it: it comes back again and again
            _retry(delivery, row, outcome, attempts=delivery.attempts)
        return None
    return Prepared(subject, body, window, local)


def crash(delivery_id: int) -> None:
    log.warning("delivery %s: injected worker crash after the provider call, before the ack", delivery_id)
    os._exit(1)  # the process dies here: no attempt recorded, no ack sent


def note_duplicate(delivery_id: int) -> None:
    run_id = Delivery.objects.filter(pk=delivery_id).values_list("run_id", flat=True).first()
    if run_id is None:
        return
    with transaction.atomic():
        if Delivery.objects.filter(pk=delivery_id).update(duplicates_suppressed=F("duplicates_suppressed") + 1):
            tally.add({(run_id, "duplicates_suppressed"): 1})
    events.emit(run_id, "duplicate_suppressed", delivery=delivery_id)


def note_provider_duplicates(run_id: int, provider: str, delivery_ids: list[int]) -> None:
    """The provider recognised these idempotency keys and did not send again (the first answer was lost)."""
    if not delivery_ids:
        return
    with transaction.atomic():
        noted = Delivery.objects.filter(pk__in=delivery_ids).update(duplicates_suppressed=F("duplicates_suppressed") + 1)
        tally.add({(run_id, "duplicates_suppressed"): noted})
    events.emit_many(run_id, [("duplicate_suppressed", {"delivery": pk, "provider": provider, "by": "provider idempotency key"})
                              for pk in delivery_ids])  # fmt: skip


def render(delivery: Delivery) -> tuple[str, str]:
    template = delivery.intent.template
    bodies = template.bodies.get(delivery.recipient.locale) or template.bodies["en"]
    data = {"name": delivery.recipient.name, **delivery.intent.data}
    try:
        return templating.render(bodies.get("subject", ""), data), templating.render(bodies["body"], data)
    except templating.TemplateError as exc:
        raise PoisonMessage(str(exc)) from exc


UNKNOWN_OUTCOMES = (AttemptOutcome.TIMEOUT, AttemptOutcome.CRASHED)


def pinned_provider(delivery: Delivery) -> str:
    """The provider an earlier attempt may have delivered through (its answer never came back), or "".

    Idempotency keys do not span providers: once an outcome is unknown, only that provider
    may be asked again, and its key makes asking again safe.
    """
    return (
        DeliveryAttempt.objects.filter(delivery=delivery, outcome__in=UNKNOWN_OUTCOMES)
        .exclude(provider="")
        .order_by("number", "id")
        .values_list("provider", flat=True)
        .first()
        or ""
    )


def call_provider(delivery: Delivery, prepared: Prepared, idempotent: bool = True) -> Outcome | None:
    """Dispatch and call the provider; None when the delivery was settled without a call
    (an open breaker deferred it) or this worker lost it before it could call."""
    run_id = delivery.run_id
    use_breaker = defences.enabled(delivery.run, "circuit_breaker")
    provider, refused = choose_provider(delivery, (lambda name: _admitted(run_id, name)) if use_breaker else (lambda name: True),
                                        pin=idempotent)  # fmt: skip
    if provider is None:
        refuse(delivery, refused, timezone.now())
        return None
    if not deliveries.dispatch(delivery, provider):
        log.warning("delivery %s was taken over before its provider call", delivery.pk)
        return None  # calling now could send it twice
    message = providers.OutgoingMessage(
        run_id=run_id,
        channel=delivery.channel,
        address=delivery.recipient.address(delivery.channel),
        subject=prepared.subject,
        body=prepared.body,
        # Without the idempotency defence every attempt looks new to the provider.
        idempotency_key=delivery.idempotency_key if idempotent else f"{delivery.idempotency_key}-{uuid.uuid4().hex}",
        intent_id=delivery.intent_id,
        recipient_number=delivery.recipient.number,
        sequence=delivery.sequence,
        template=delivery.intent.template.name,
        quiet_hours=prepared.quiet_hours,
        time_zone=delivery.recipient.timezone,
    )
    budget.record_attempt(run_id, delivery.channel, delivery.attempts - delivery.replayed_at_attempt)
    found: dict = {}
    started = time.monotonic()
    try:
        found = find_instance(delivery.run, provider)
        result = providers.send(provider, message, settings.LAB_PROVIDER_TIMEOUT_MS, instance=found.get("instance", ""))
    except providers.ProviderError as exc:
        latency = int((time.monotonic() - started) * 1000)
        if use_breaker:
            _record_breaker(run_id, provider, ok=not exc.temporary)  # a rejected address says nothing about health
        return replace(outcome_of_error(provider, exc, latency), **found)
    latency = int((time.monotonic() - started) * 1000)
    if use_breaker:
        _record_breaker(run_id, provider, ok=True)
    if result.already_sent:
        note_provider_duplicates(run_id, provider, [delivery.pk])
    return Outcome(AttemptOutcome.SUCCEEDED, provider, latency_ms=latency, **found)


def find_instance(run: LabRun, provider: str) -> dict:
    """With the run's discovery on, the instance of `provider` to call, as the Outcome fields that record it
    (the instance's own state noted as the call goes out); {} with discovery off: the provider is called directly.
    An empty answer raises NoInstance (the call fails like a refused connection, and is retried)."""
    if not discovery.mode_of(run):
        return {}
    route = discovery.resolve(run, provider)
    if route is None:
        raise providers.NoInstance(f"no instance of {provider} is in rotation")
    state = discovery.condition(faults.fault_for(run.pk, route.instance), time.time())
    return {"instance": route.instance, "resolved_by": route.resolved_by, "instance_unhealthy": state != discovery.RUNNING,
            "stale_answer": route.stale}  # fmt: skip


def outcome_of_error(provider: str, exc: providers.ProviderError, latency_ms: int) -> Outcome:
    status = AttemptOutcome.TIMEOUT if isinstance(exc, providers.ProviderTimeout) else (
        AttemptOutcome.FAILED if exc.temporary else AttemptOutcome.REJECTED
    )
    return Outcome(status, provider, str(exc), exc.group, exc.temporary, latency_ms)


def refuse(delivery: Delivery, provider: str, now: datetime) -> None:
    """An open breaker refused the call: nothing was tried, so no attempt is used. The delivery
    waits for the breaker's next trial, or, past the message's deadline, is dead-lettered."""
    run = delivery.run
    error = f"{provider}'s circuit breaker is open"
    row = DeliveryAttempt(delivery=delivery, run_id=delivery.run_id, number=delivery.attempts + 1, provider=provider, outcome=AttemptOutcome.BREAKER_OPEN,
                          error=error, started_at=now, finished_at=now, worker=node_name())  # fmt: skip
    due = deliveries.deadline(delivery)
    if now >= due and defences.enabled(run, "dead_letter_queue"):
        _dead_letter(delivery, "breaker_open", f"{error} still, {settings.LAB_MESSAGE_DEADLINE} s after the message was accepted", attempt=row)
        return
    breaker = ProviderBreaker(run.pk, provider)
    # Spread the waiting deliveries over half a cooldown, so the trial is not met by a herd.
    trial = breaker.next_trial_at(now.timestamp()) + random.uniform(0, breaker.policy.open_for_s / 2)
    until = datetime.fromtimestamp(trial, dt_timezone.utc)
    if defences.enabled(run, "dead_letter_queue"):
        until = min(until, due)
    if deliveries.defer(delivery, until, attempt=row):
        events.emit(run.pk, "deferred", delivery=delivery.pk, intent=delivery.intent_id, until=until.isoformat(),
                    reason=f"{error}; waiting for its next trial")  # fmt: skip


def _admitted(run_id: int, provider: str) -> bool:
    allowed, changed = ProviderBreaker(run_id, provider).admit()
    _announce_breaker(run_id, provider, changed)
    return allowed


def choose_provider(delivery: Delivery, admitted, pin: bool = True) -> tuple[str | None, str]:
    """(the provider to call, or None if a breaker refused; the provider asked first).

    A delivery pinned by an unknown outcome goes only to that provider. Otherwise the primary,
    if its breaker admits the call; a transactional message fails over to the secondary;
    campaigns wait for the primary rather than crowd the backup.
    """
    primary, secondary = PROVIDERS[delivery.channel]
    pinned = pinned_provider(delivery) if pin and delivery.attempts else ""
    if pinned:
        return (pinned if admitted(pinned) else None), pinned
    if admitted(primary):
        return primary, primary
    if delivery.intent.priority == Priority.TRANSACTIONAL and admitted(secondary):
        events.emit(delivery.run_id, "failover", delivery=delivery.pk, provider=secondary, instead_of=primary)
        return secondary, primary
    return None, primary


def _record_breaker(run_id: int, provider: str, ok: bool) -> None:
    _announce_breaker(run_id, provider, ProviderBreaker(run_id, provider).record(ok))


def _announce_breaker(run_id: int, provider: str, changed) -> None:
    if changed is not None:
        events.emit(run_id, "breaker_changed", provider=provider, state=changed.state)


def _attempt_row(delivery: Delivery, outcome: Outcome, started_at: datetime, now: datetime, prepared: Prepared | None = None) -> DeliveryAttempt:
    return DeliveryAttempt(
        delivery=delivery,
        run_id=delivery.run_id,
        number=delivery.attempts,
        provider=outcome.provider,
        outcome=outcome.status,
        error=outcome.error[:300],
        started_at=started_at,
        finished_at=now,
        latency_ms=outcome.latency_ms,
        quiet_hours=prepared.quiet_hours if prepared else "",
        local_time=prepared.local_time if prepared else None,
        instance=outcome.instance,
        resolved_by=outcome.resolved_by,
        instance_unhealthy=outcome.instance_unhealthy,
        stale_answer=outcome.stale_answer,
        worker=node_name(),
    )


def record_attempt(delivery: Delivery, outcome: Outcome, started_at: datetime, prepared: Prepared | None = None) -> None:
    """Record one attempt and move the delivery on: delivered, bounced, retry scheduled, or dead-lettered."""
    now = timezone.now()
    row = _attempt_row(delivery, outcome, started_at, now, prepared)
    run = delivery.run
    attempt = delivery.attempts
    fields = {"intent": delivery.intent_id, "delivery": delivery.pk, "channel": delivery.channel, "attempt": attempt,
              **({"instance": outcome.instance} if outcome.instance else {})}  # fmt: skip
    if outcome.status == AttemptOutcome.SUCCEEDED:
        if deliveries.finish(delivery, DeliveryStatus.DELIVERED, row, provider=outcome.provider):
            events.emit(run.pk, "attempt_succeeded", provider=outcome.provider, latency_ms=outcome.latency_ms, **fields)
        return
    events.emit(run.pk, "attempt_failed", provider=outcome.provider, error=outcome.error, **fields)
    if not outcome.temporary:
        # A permanent rejection (an invalid address) is a final answer, not something to replay.
        if deliveries.finish(delivery, DeliveryStatus.BOUNCED, row, last_error=outcome.error[:300]):
            events.emit(run.pk, "bounced", provider=outcome.provider, error=outcome.error, **fields)
        return
    # Without the dead-letter queue nothing is ever given up on: it retries for ever.
    if defences.enabled(run, "dead_letter_queue") and deliveries.attempts_left(delivery, run.max_attempts) <= 0:
        _dead_letter(delivery, outcome.group, outcome.error, attempt=row)
        return
    _retry(delivery, row, outcome)


def _retry(delivery: Delivery, row: DeliveryAttempt, outcome: Outcome, **changes) -> None:
    """Schedule the next attempt after a full-jitter backoff (the longest one past the retry budget)."""
    run = delivery.run
    fields = {"intent": delivery.intent_id, "delivery": delivery.pk, "channel": delivery.channel, "attempt": delivery.attempts}
    used = delivery.attempts - delivery.replayed_at_attempt
    ceiling = backoff_ceiling_ms(used, run.retry_base_ms, run.retry_cap_ms)
    jitter = defences.enabled(run, "jitter")
    delay = full_jitter_ms(used, run.retry_base_ms, run.retry_cap_ms) if jitter else ceiling
    if not budget.retry_allowed(run.pk, delivery.channel):
        delay = ceiling = run.retry_cap_ms
        events.emit(run.pk, "retry_budget_exhausted", **fields)
    row.backoff_ms, row.backoff_cap_ms = delay, ceiling
    next_at = timezone.now() + timedelta(milliseconds=delay)
    if deliveries.schedule_retry(delivery, next_at, row, outcome.error, **changes):
        events.emit(run.pk, "retry_scheduled", next_at=next_at.isoformat(), delay_ms=delay, ceiling_ms=ceiling,
                    max_attempts=run.max_attempts, **fields)  # fmt: skip


def _dead_letter(delivery: Delivery, group: str, error: str, attempt: DeliveryAttempt | None = None, **changes) -> None:
    if deliveries.dead_letter(delivery, group, error, attempt, **changes):
        events.emit(delivery.run_id, "dead_lettered", delivery=delivery.pk, intent=delivery.intent_id, group=group, error=error,
                    replayed_before=delivery.replays > 0)  # fmt: skip
