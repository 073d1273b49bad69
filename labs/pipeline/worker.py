"""Deliver one message: the body of the Celery task (lessons: delivery-guarantees-idempotency,
retries-backoff-jitter, circuit-breakers-bulkheads, dead-letter-queues).

Steps:
1. Claim the delivery with a conditional update at the attempt count the message
   expects. A second copy of the message (redelivery, relay republish) finds the
   count moved on and is dropped as a suppressed duplicate. Attempts are counted
   here, before the provider call, so a message that crashes its worker cannot
   loop forever.
2. Keep per-user order for in-app messages: wait while an earlier one is unfinished.
3. Respect the user's preferences: opted out → suppressed; quiet hours → deferred
   (security alerts excepted).
4. Render the pinned template version; missing data is a poison message → dead letters.
5. Pick a provider through its circuit breaker (transactional messages fail over to
   the secondary), call it with a timeout and the delivery's idempotency key.
6. Record the attempt and the next state in one transaction: delivered, a retry
   scheduled in the database (an outbox row due later), or a dead letter.
"""

import logging
import os
import random
import string
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from labs.models import (
    TERMINAL,
    WAITING,
    AttemptOutcome,
    DeadLetter,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    LabRun,
    OutboxRow,
    Priority,
    TemplateCategory,
)
from labs.pipeline import budget, defences, events, faults, providers
from labs.pipeline.backoff import backoff_ceiling_ms, full_jitter_ms
from labs.pipeline.breaker import ProviderBreaker
from labs.pipeline.topology import PROVIDERS

log = logging.getLogger(__name__)

ORDER_RECHECK = timedelta(milliseconds=300)


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


def deliver(delivery_id: int, expected_attempts: int) -> None:
    now = timezone.now()
    run = LabRun.objects.filter(deliveries=delivery_id).first()
    if run is None:
        return  # the run was reset or deleted while the message waited
    idempotent = defences.enabled(run, "idempotency")
    if not claim(delivery_id, expected_attempts, now, check_attempt=idempotent):
        note_duplicate(delivery_id)
        return
    delivery = Delivery.objects.select_related("recipient", "intent__template").get(pk=delivery_id)
    delivery.run = run
    chaos = faults.fault_for(run.pk, faults.PIPELINE)
    events.emit(run.pk, "attempt_started", delivery=delivery.pk, intent=delivery.intent_id, channel=delivery.channel, attempt=delivery.attempts)
    prepared = prepare(delivery, now, chaos)
    if prepared is None:
        return
    outcome = call_provider(delivery, *prepared, idempotent)
    if outcome is None:
        return
    if random.random() < chaos.get("worker_crash", 0.0):
        crash(delivery.pk)
    record_attempt(delivery, delivery.attempts, outcome, now)


def prepare(delivery: Delivery, now: datetime, chaos: dict) -> tuple[str, str] | None:
    """Everything before the provider call; returns (subject, body), or None when the delivery
    was settled here (exhausted, deferred, suppressed, poison)."""
    run = delivery.run
    attempt = delivery.attempts
    if attempt > run.max_attempts and defences.enabled(run, "dead_letter_queue"):
        # Only reachable when earlier attempts never finished (a crashing worker).
        _dead_letter(delivery, attempt, "attempts_exhausted", f"gave up after {run.max_attempts} attempts")
        return None
    if delivery.channel == "inapp" and _earlier_inapp_unfinished(delivery):
        _defer(delivery, attempt, now + ORDER_RECHECK, "waiting for an earlier in-app message to this user")
        return None
    if not delivery.recipient.opted_in(delivery.channel):
        _finish(delivery, attempt, DeliveryStatus.SUPPRESSED, last_error=f"user opted out of {delivery.channel}")
        events.emit(run.pk, "suppressed", delivery=delivery.pk, intent=delivery.intent_id, reason="opt_out")
        return None
    if delivery.intent.template.category != TemplateCategory.SECURITY:
        skewed_now = now + timedelta(minutes=chaos.get("clock_skew_minutes", 0))
        quiet_until = quiet_hours_end(delivery.recipient, skewed_now)
        if quiet_until is not None:
            _defer(delivery, attempt, quiet_until - (skewed_now - now), "quiet hours")
            return None
    try:
        return render(delivery)
    except PoisonMessage as exc:
        record_attempt(delivery, attempt, Outcome(AttemptOutcome.REJECTED, error=str(exc), group=exc.group, temporary=False), now)
        return None


def crash(delivery_id: int) -> None:
    log.warning("delivery %s: injected worker crash after the provider call, before the ack", delivery_id)
    os._exit(1)  # the process dies here: no attempt recorded, no ack sent


def claim(delivery_id: int, expected_attempts: int, now: datetime, check_attempt: bool = True) -> bool:
    """Take the delivery for one attempt; False if another copy of the message already did.

    Without the idempotency defence any copy of the message takes the delivery,
    whatever state it is in: that is how a redelivery turns into a second send.
    """
    if not check_attempt:
        return Delivery.objects.filter(pk=delivery_id).update(
            status=DeliveryStatus.SENDING, attempts=F("attempts") + 1, claimed_at=now, updated_at=now
        ) == 1
    stale = now - timedelta(seconds=settings.LAB_SENDING_LEASE)
    with transaction.atomic():
        current = Delivery.objects.filter(pk=delivery_id, attempts=expected_attempts)
        if connection.features.has_select_for_update:
            current = current.select_for_update()  # the takeover below is decided on what this read sees
        found = current.values_list("status", "claimed_at", "provider").first()
        if found is None:
            return False
        status, claimed_at, provider = found
        takeover = status == DeliveryStatus.SENDING and claimed_at is not None and claimed_at < stale
        if status not in WAITING and not takeover:
            return False
        claimed = Delivery.objects.filter(pk=delivery_id, attempts=expected_attempts, status=status).update(
            status=DeliveryStatus.SENDING, attempts=F("attempts") + 1, claimed_at=now, updated_at=now, provider=""
        )
        if claimed and takeover:
            # The worker that held it died mid-attempt: the attempt counts, its outcome is unknown.
            # `provider` is the one it was calling (recorded before the call), or "" if it never called.
            DeliveryAttempt.objects.create(
                delivery_id=delivery_id,
                number=expected_attempts,
                provider=provider,
                outcome=AttemptOutcome.CRASHED,
                error="the worker was lost before it recorded the result",
                started_at=claimed_at,
                finished_at=now,
            )
    return claimed == 1


def claim_many(delivery_ids: list[int], expected_attempts: int, now: datetime) -> set[int]:
    """`claim` for many deliveries at one expected attempt count, in two statements; returns
    the ids this caller took. Only for messages that cannot find a stale claim to take over
    (first attempts: a delivery being sent has already counted its first attempt)."""
    with transaction.atomic():
        waiting = Delivery.objects.filter(pk__in=delivery_ids, attempts=expected_attempts, status__in=WAITING)
        if connection.features.has_select_for_update:
            # Lock in id order, so two workers holding copies of one batch queue up instead of deadlocking;
            # the second one finds the attempt count moved on.
            waiting = waiting.select_for_update().order_by("pk")
        taken = list(waiting.values_list("pk", flat=True))
        Delivery.objects.filter(pk__in=taken).update(
            status=DeliveryStatus.SENDING, attempts=F("attempts") + 1, claimed_at=now, updated_at=now, provider=""
        )
    return set(taken)


def note_duplicate(delivery_id: int) -> None:
    Delivery.objects.filter(pk=delivery_id).update(duplicates_suppressed=F("duplicates_suppressed") + 1)
    run_id = Delivery.objects.filter(pk=delivery_id).values_list("run_id", flat=True).first()
    if run_id is not None:
        events.emit(run_id, "duplicate_suppressed", delivery=delivery_id)


def note_provider_duplicates(run_id: int, provider: str, delivery_ids: list[int]) -> None:
    """The provider recognised these idempotency keys and did not send again (the first answer was lost)."""
    Delivery.objects.filter(pk__in=delivery_ids).update(duplicates_suppressed=F("duplicates_suppressed") + 1)
    events.emit_many(run_id, [("duplicate_suppressed", {"delivery": pk, "provider": provider, "by": "provider idempotency key"})
                              for pk in delivery_ids])  # fmt: skip


def _earlier_inapp_unfinished(delivery: Delivery) -> bool:
    return (
        Delivery.objects.filter(recipient_id=delivery.recipient_id, channel="inapp", sequence__lt=delivery.sequence)
        .exclude(status__in=TERMINAL)
        .exists()
    )


def quiet_hours_end(recipient, now: datetime) -> datetime | None:
    """When the recipient's quiet hours end, if `now` falls inside them; else None."""
    if recipient.quiet_start is None or recipient.quiet_end is None:
        return None
    local = now.astimezone(ZoneInfo(recipient.timezone))
    start, end, clock = recipient.quiet_start, recipient.quiet_end, local.time()
    inside = (start <= clock < end) if start < end else (clock >= start or clock < end)
    if not inside:
        return None
    end_at = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if end_at <= local:
        end_at += timedelta(days=1)
    return end_at.astimezone(ZoneInfo("UTC"))


class _StrictData(dict):
    def __missing__(self, name):
        raise PoisonMessage(f"template data has no value for {{{name}}}")


def render(delivery: Delivery) -> tuple[str, str]:
    template = delivery.intent.template
    bodies = template.bodies.get(delivery.recipient.locale) or template.bodies["en"]
    data = {"name": delivery.recipient.name, **delivery.intent.data}
    from labs.pipeline import templating  # here, not at the top: keeps this change to render() while worker.py is rewritten

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


def call_provider(delivery: Delivery, subject: str, body: str, idempotent: bool = True) -> Outcome | None:
    """Call the provider; None when this worker lost the delivery before it could call."""
    run_id = delivery.run_id
    primary, secondary = PROVIDERS[delivery.channel]
    use_breaker = defences.enabled(delivery.run, "circuit_breaker")
    pinned = pinned_provider(delivery) if idempotent and (delivery.attempts > 1 or delivery.replays) else ""
    if pinned:
        provider = pinned if not use_breaker or _admitted(delivery.run_id, pinned) else None
        refused = pinned
    else:
        provider = _admitted_provider(delivery, primary, secondary) if use_breaker else primary
        refused = primary
    if provider is None:
        return Outcome(AttemptOutcome.BREAKER_OPEN, provider=refused, error=f"{refused}'s circuit breaker is open", group="breaker_open")
    if not _move(delivery, delivery.attempts, provider=provider):
        return None  # another worker took the delivery over: calling now could send it twice
    message = providers.OutgoingMessage(
        run_id=run_id,
        channel=delivery.channel,
        address=delivery.recipient.address(delivery.channel),
        subject=subject,
        body=body,
        # Without the idempotency defence every attempt looks new to the provider.
        idempotency_key=delivery.idempotency_key if idempotent else f"{delivery.idempotency_key}-{uuid.uuid4().hex}",
        intent_id=delivery.intent_id,
        recipient_number=delivery.recipient.number,
        sequence=delivery.sequence,
        template=delivery.intent.template.name,
    )
    budget.record_attempt(run_id, delivery.channel, delivery.attempts)
    started = time.monotonic()
    try:
        result = providers.send(provider, message, settings.LAB_PROVIDER_TIMEOUT_MS)
    except providers.ProviderError as exc:
        latency = int((time.monotonic() - started) * 1000)
        if use_breaker:
            _record_breaker(run_id, provider, ok=not exc.temporary)  # a rejected address says nothing about health
        status = AttemptOutcome.TIMEOUT if isinstance(exc, providers.ProviderTimeout) else (
            AttemptOutcome.FAILED if exc.temporary else AttemptOutcome.REJECTED
        )
        return Outcome(status, provider, str(exc), exc.group, exc.temporary, latency)
    latency = int((time.monotonic() - started) * 1000)
    if use_breaker:
        _record_breaker(run_id, provider, ok=True)
    if result.already_sent:
        note_provider_duplicates(run_id, provider, [delivery.pk])
    return Outcome(AttemptOutcome.SUCCEEDED, provider, latency_ms=latency)


def _admitted(run_id: int, provider: str) -> bool:
    allowed, changed = ProviderBreaker(run_id, provider).admit()
    _announce_breaker(run_id, provider, changed)
    return allowed


def _admitted_provider(delivery: Delivery, primary: str, secondary: str) -> str | None:
    """Primary if its breaker lets the call through; a transactional message fails over to the secondary.
    (A delivery pinned by an unknown outcome never gets here: see `pinned_provider`.)"""
    if _admitted(delivery.run_id, primary):
        return primary
    if delivery.intent.priority != Priority.TRANSACTIONAL:
        return None  # campaigns wait for the primary rather than crowd the backup
    if _admitted(delivery.run_id, secondary):
        events.emit(delivery.run_id, "failover", delivery=delivery.pk, provider=secondary, instead_of=primary)
        return secondary
    return None


def _record_breaker(run_id: int, provider: str, ok: bool) -> None:
    _announce_breaker(run_id, provider, ProviderBreaker(run_id, provider).record(ok))


def _announce_breaker(run_id: int, provider: str, changed) -> None:
    if changed is not None:
        events.emit(run_id, "breaker_changed", provider=provider, state=changed.state)


def record_attempt(delivery: Delivery, attempt: int, outcome: Outcome, started_at: datetime) -> None:
    """Record one attempt and move the delivery on: delivered, retry scheduled, or dead-lettered."""
    now = timezone.now()
    row = DeliveryAttempt(
        delivery=delivery,
        number=attempt,
        provider=outcome.provider,
        outcome=outcome.status,
        error=outcome.error[:300],
        started_at=started_at,
        finished_at=now,
        latency_ms=outcome.latency_ms,
    )
    run = delivery.run
    fields = {"intent": delivery.intent_id, "delivery": delivery.pk, "channel": delivery.channel, "attempt": attempt}
    if outcome.status == AttemptOutcome.SUCCEEDED:
        with transaction.atomic():
            if not _finish(delivery, attempt, DeliveryStatus.DELIVERED, provider=outcome.provider):
                return  # taken over meanwhile: the new holder records what happens next
            row.save()
        events.emit(run.pk, "attempt_succeeded", provider=outcome.provider, latency_ms=outcome.latency_ms, **fields)
        return
    events.emit(run.pk, "attempt_failed", provider=outcome.provider, error=outcome.error, **fields)
    # Without the dead-letter queue nothing is ever given up on: it retries for ever.
    if defences.enabled(run, "dead_letter_queue") and (not outcome.temporary or attempt >= run.max_attempts):
        _dead_letter(delivery, attempt, outcome.group, outcome.error, provider=outcome.provider, attempt_row=row)
        return
    ceiling = backoff_ceiling_ms(attempt, run.retry_base_ms, run.retry_cap_ms)
    jitter = defences.enabled(run, "jitter")
    delay = full_jitter_ms(attempt, run.retry_base_ms, run.retry_cap_ms) if jitter else ceiling
    if not budget.retry_allowed(run.pk, delivery.channel):
        delay = ceiling = run.retry_cap_ms
        events.emit(run.pk, "retry_budget_exhausted", **fields)
    row.backoff_ms, row.backoff_cap_ms = delay, ceiling
    next_at = now + timedelta(milliseconds=delay)
    with transaction.atomic():
        moved = _move(delivery, attempt, status=DeliveryStatus.RETRY_SCHEDULED, next_attempt_at=next_at,
                      provider=outcome.provider, last_error=outcome.error[:300])
        if moved:
            row.save()
            OutboxRow.objects.create(run=run, delivery=delivery, queue=delivery.queue, expected_attempts=attempt, available_at=next_at)
    events.emit(run.pk, "retry_scheduled", next_at=next_at.isoformat(), delay_ms=delay, ceiling_ms=ceiling,
                max_attempts=run.max_attempts, **fields)


def _move(delivery: Delivery, attempt: int, **changes) -> bool:
    """Change the delivery only while this worker still holds it (same attempt, still sending)."""
    moved = Delivery.objects.filter(pk=delivery.pk, attempts=attempt, status=DeliveryStatus.SENDING).update(
        updated_at=timezone.now(), **changes
    )
    if not moved:
        log.warning("delivery %s: attempt %s lost its claim before it could record the result", delivery.pk, attempt)
    return bool(moved)


def _finish(delivery: Delivery, attempt: int, status: str, **changes) -> bool:
    return _move(delivery, attempt, status=status, finished_at=timezone.now(), next_attempt_at=None, **changes)


def _defer(delivery: Delivery, attempt: int, until: datetime, reason: str) -> None:
    """Put the delivery back without spending an attempt, to be tried again at `until`."""
    with transaction.atomic():
        if _move(delivery, attempt, status=DeliveryStatus.DEFERRED, attempts=attempt - 1, next_attempt_at=until):
            OutboxRow.objects.create(
                run_id=delivery.run_id, delivery=delivery, queue=delivery.queue, expected_attempts=attempt - 1, available_at=until
            )
    events.emit(delivery.run_id, "deferred", delivery=delivery.pk, intent=delivery.intent_id, until=until.isoformat(), reason=reason)


def _dead_letter(delivery: Delivery, attempt: int, group: str, error: str, provider: str = "",
                 attempt_row: DeliveryAttempt | None = None) -> None:  # fmt: skip
    with transaction.atomic():
        if _finish(delivery, attempt, DeliveryStatus.DEAD_LETTERED, last_error=error[:300], provider=provider or delivery.provider):
            if attempt_row is not None:
                attempt_row.save()
            DeadLetter.objects.create(
                run_id=delivery.run_id,
                delivery=delivery,
                error_group=group,
                error=error[:300],
                attempts=attempt,
                was_replayed=delivery.replays > 0,
            )
    events.emit(delivery.run_id, "dead_lettered", delivery=delivery.pk, intent=delivery.intent_id, group=group, error=error,
                replayed_before=delivery.replays > 0)
