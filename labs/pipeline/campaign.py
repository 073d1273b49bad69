"""Deliver a batch of campaign messages in one task (lesson: case-study-notification-system).

One Celery task per message caps a 2-core machine near the broker's own rate; a
campaign does not need per-message tasks to keep its guarantees. Steps:
1. Claim the deliveries with the same condition as one-by-one delivery (the
   expected attempt count), in one statement; copies already claimed are dropped
   as duplicates.
2. Settle what needs no provider (opt-outs, quiet hours, poison) exactly as `deliver` does.
3. Per channel, admit the batch through the provider's breaker and make one bulk
   send with every message's own idempotency key.
4. Record the successes in one transaction; every failure goes through the
   one-by-one path (retry scheduled in the database, or a dead letter).

Only first attempts of campaign-lane messages are batched (see relay.publish_due);
retries, in-app messages and the urgent lane keep one task per message. The event
feed gets one line per batch (started, delivered), not one per message.
"""

import random
from collections import defaultdict

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from labs.models import AttemptOutcome, Delivery, DeliveryAttempt, DeliveryStatus, LabRun, Recipient, Template
from labs.pipeline import budget, defences, events, faults, providers, worker
from labs.pipeline.breaker import ProviderBreaker
from labs.pipeline.topology import PROVIDERS
from labs.rows import insert_rows

BATCH_SIZE = 100


def deliver_batch(run_id: int, items: list[tuple[int, int]]) -> None:
    run = LabRun.objects.filter(pk=run_id).first()
    if run is None:
        return
    if not defences.enabled(run, "idempotency"):
        for delivery_id, expected in items:  # the lab about idempotency shows it one message at a time
            worker.deliver(delivery_id, expected)
        return
    now = timezone.now()
    claimed: set[int] = set()
    for expected in {expected for _, expected in items}:
        claimed |= worker.claim_many([pk for pk, at in items if at == expected], expected, now)
    fresh = set(claimed)
    for delivery_id, _ in items:
        if delivery_id in fresh:
            fresh.discard(delivery_id)  # a second copy in this same batch is a duplicate too
        else:
            worker.note_duplicate(delivery_id)
    chaos = faults.fault_for(run.pk, faults.PIPELINE)
    deliveries = _load(run, claimed)
    if deliveries:
        events.emit(run.pk, "batch_started", channel=deliveries[0].channel, count=len(deliveries), deliveries=[d.pk for d in deliveries])
    by_channel: dict[str, list] = defaultdict(list)
    for delivery in deliveries:
        prepared = worker.prepare(delivery, now, chaos)
        if prepared is not None:
            by_channel[delivery.channel].append((delivery, *prepared))
    results = []
    for channel, ready in by_channel.items():
        results += _send(run, channel, ready)
    if results and random.random() < chaos.get("worker_crash", 0.0):
        worker.crash(results[0][0].pk)
    _record(run, results, now)


def _load(run: LabRun, ids: set[int]) -> list[Delivery]:
    """The claimed deliveries with what sending them needs. A run has a few dozen users and
    templates, so each is loaded once per batch rather than once per message."""
    deliveries = list(Delivery.objects.select_related("intent").filter(pk__in=ids))
    recipients = Recipient.objects.in_bulk({d.recipient_id for d in deliveries})
    templates = Template.objects.in_bulk({d.intent.template_id for d in deliveries})
    for delivery in deliveries:
        delivery.run, delivery.recipient = run, recipients[delivery.recipient_id]
        delivery.intent.template = templates[delivery.intent.template_id]
    return deliveries


def _send(run: LabRun, channel: str, ready: list) -> list[tuple[Delivery, worker.Outcome]]:
    primary = PROVIDERS[channel][0]
    use_breaker = defences.enabled(run, "circuit_breaker")
    if use_breaker:
        allowed, changed = ProviderBreaker(run.pk, primary).admit()
        worker._announce_breaker(run.pk, primary, changed)
        if not allowed:
            refusal = worker.Outcome(AttemptOutcome.BREAKER_OPEN, primary, f"{primary}'s circuit breaker is open", "breaker_open")
            return [(d, refusal) for d, _, _ in ready]
    ready = _still_held(ready, primary)
    messages = [
        providers.OutgoingMessage(
            run_id=run.pk, channel=channel, address=d.recipient.address(channel), subject=subject, body=body,
            idempotency_key=d.idempotency_key, intent_id=d.intent_id, recipient_number=d.recipient.number,
            sequence=d.sequence, template=d.intent.template.name,
        )
        for d, subject, body in ready
    ]  # fmt: skip
    budget.record_attempt(run.pk, channel, 1, count=len(messages))
    started = timezone.now()
    sent = providers.send_batch(primary, messages, settings.LAB_PROVIDER_TIMEOUT_MS)
    latency = int((timezone.now() - started).total_seconds() * 1000)
    worker.note_provider_duplicates(run.pk, primary, [d.pk for (d, _, _), r in zip(ready, sent, strict=True)
                                                     if isinstance(r, providers.SendResult) and r.already_sent])  # fmt: skip
    outcomes = []
    for result in sent:
        if isinstance(result, providers.ProviderError):
            status = AttemptOutcome.TIMEOUT if isinstance(result, providers.ProviderTimeout) else (
                AttemptOutcome.FAILED if result.temporary else AttemptOutcome.REJECTED
            )
            outcomes.append(worker.Outcome(status, primary, str(result), result.group, result.temporary, latency))
        else:
            outcomes.append(worker.Outcome(AttemptOutcome.SUCCEEDED, primary, latency_ms=latency))
    if use_breaker:
        failures = sum(1 for r in sent if isinstance(r, providers.ProviderError) and r.temporary)
        worker._announce_breaker(run.pk, primary, ProviderBreaker(run.pk, primary).record_many(len(sent) - failures, failures))
    return list(zip([d for d, _, _ in ready], outcomes, strict=True))


def _still_held(ready: list, provider: str) -> list:
    """Record which provider each delivery is about to be sent to, for those this worker still holds.

    A takeover after a crash then names the provider that may have sent it, and pins the
    retry to it (worker.pinned_provider). A delivery taken over meanwhile is not sent here.
    """
    with transaction.atomic():
        held = _held([d for d, _, _ in ready])
        Delivery.objects.filter(pk__in=held).update(provider=provider)
    return [item for item in ready if item[0].pk in held]


def _held(deliveries: list[Delivery]) -> set[int]:
    """The ids of these deliveries this worker still holds (same attempt count, still sending),
    locked until the caller's transaction ends where the database can lock rows."""
    held: set[int] = set()
    for attempts in {d.attempts for d in deliveries}:
        mine = Delivery.objects.filter(pk__in=[d.pk for d in deliveries if d.attempts == attempts],
                                       attempts=attempts, status=DeliveryStatus.SENDING)  # fmt: skip
        if connection.features.has_select_for_update:
            mine = mine.select_for_update().order_by("pk")  # id order: two batches queue, never deadlock
        held.update(mine.values_list("pk", flat=True))
    return held


def _record(run: LabRun, results: list[tuple[Delivery, worker.Outcome]], started_at) -> None:
    now = timezone.now()
    succeeded = [(d, o) for d, o in results if o.status == AttemptOutcome.SUCCEEDED]
    if succeeded:
        with transaction.atomic():
            # Only deliveries this worker still holds (same attempt, still sending) move on, and
            # only they get an attempt row: a takeover has already recorded the others.
            held = _held([d for d, _ in succeeded])
            for provider in {o.provider for _, o in succeeded}:
                ids = [d.pk for d, o in succeeded if o.provider == provider and d.pk in held]
                Delivery.objects.filter(pk__in=ids).update(
                    status=DeliveryStatus.DELIVERED, provider=provider, finished_at=now, next_attempt_at=None, updated_at=now
                )
            insert_rows(DeliveryAttempt, [
                {"delivery_id": d.pk, "number": d.attempts, "provider": o.provider, "outcome": o.status,
                 "started_at": started_at, "finished_at": now, "latency_ms": o.latency_ms}
                for d, o in succeeded if d.pk in held
            ])  # fmt: skip
        events.emit_many(run.pk, [
            ("batch_delivered", {"channel": channel, "provider": provider, "count": len(sent), "latency_ms": sent[0][1].latency_ms,
                                 "deliveries": [d.pk for d, _ in sent]})
            for (channel, provider), sent in _grouped(succeeded).items()
        ])  # fmt: skip
    for delivery, outcome in results:
        if outcome.status != AttemptOutcome.SUCCEEDED:
            worker.record_attempt(delivery, delivery.attempts, outcome, started_at)


def _grouped(results: list[tuple[Delivery, worker.Outcome]]) -> dict[tuple[str, str], list]:
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for delivery, outcome in results:
        groups[delivery.channel, outcome.provider].append((delivery, outcome))
    return groups
