"""Deliver a batch of campaign messages in one task (lesson: case-study-notification-system).

One Celery task per message caps a 2-core machine near the broker's own rate; a
campaign does not need per-message tasks to keep its guarantees. Steps:
1. Claim the deliveries with the same condition as one-by-one delivery (the
   generation the message carries), in one statement; copies already claimed are
   dropped as duplicates.
2. Settle what needs no provider (opt-outs, quiet hours, poison) exactly as `deliver` does.
3. Per channel, admit the batch through the provider's breaker (a refusal defers each
   delivery, as one by one), dispatch the ones still held and make one bulk send with
   every message's own idempotency key.
4. Record the successes in one transaction; every failure goes through the
   one-by-one path (retry scheduled in the database, or a dead letter).

Only first attempts of campaign-lane messages are batched (see relay.publish_due);
retries, in-app messages and the urgent lane keep one task per message. The event
feed gets one line per batch (started, delivered), not one per message.
"""

import random
from collections import defaultdict
from dataclasses import replace

from django.conf import settings
from django.utils import timezone

from config.celery import node_name
from labs.models import AttemptOutcome, Delivery, LabRun, Recipient, Template
from labs.pipeline import budget, defences, deliveries, events, faults, providers, worker
from labs.pipeline.breaker import ProviderBreaker
from labs.pipeline.topology import PROVIDERS

BATCH_SIZE = 200


def deliver_batch(run_id: int, items: list[tuple[int, int]]) -> None:
    run = LabRun.objects.filter(pk=run_id).first()
    if run is None:
        return
    if not defences.enabled(run, "idempotency"):
        for delivery_id, generation in items:  # the lab about idempotency shows it one message at a time
            worker.deliver(delivery_id, generation)
        return
    now = timezone.now()
    taken: list[Delivery] = []
    for generation in {generation for _, generation in items}:
        taken += deliveries.claim_many([pk for pk, at in items if at == generation], generation)
    fresh = {d.pk for d in taken}
    for delivery_id, _ in items:
        if delivery_id in fresh:
            fresh.discard(delivery_id)  # a second copy in this same batch is a duplicate too
        else:
            worker.note_duplicate(delivery_id)
    chaos = (run.faults or {}).get(faults.PIPELINE, {})  # the run's faults as this batch found them
    _load(run, taken)
    if taken:
        events.emit(run.pk, "batch_started", channel=taken[0].channel, count=len(taken), deliveries=[d.pk for d in taken])
    by_channel: dict[str, list] = defaultdict(list)
    for delivery in taken:
        prepared = worker.prepare(delivery, now, chaos)
        if prepared is not None:
            by_channel[delivery.channel].append((delivery, prepared))
    results = []
    for channel, ready in by_channel.items():
        results += _send(run, channel, ready)
    if results and random.random() < chaos.get("worker_crash", 0.0):
        worker.crash(results[0][0].pk)
    _record(run, results, now)


def _load(run: LabRun, taken: list[Delivery]) -> None:
    """Give the claimed deliveries the rest of what sending them needs. A run has a few dozen users
    and templates, so each is loaded once per batch rather than once per message."""
    if not taken:
        return
    # By one array each (labs.rows' `any`): in_bulk's IN list is a statement of another length for every
    # count of users, which neither psycopg nor the server then reuses.
    recipients = {r.pk: r for r in Recipient.objects.filter(pk__any={d.recipient_id for d in taken})}
    templates = {t.pk: t for t in Template.objects.filter(pk__any={d.intent.template_id for d in taken})}
    for delivery in taken:
        delivery.run, delivery.recipient = run, recipients[delivery.recipient_id]
        delivery.intent.template = templates[delivery.intent.template_id]


def _send(run: LabRun, channel: str, ready: list[tuple[Delivery, worker.Prepared]]) -> list[tuple[Delivery, worker.Outcome]]:
    primary = PROVIDERS[channel][0]
    use_breaker = defences.enabled(run, "circuit_breaker")
    if use_breaker:
        allowed, changed = ProviderBreaker(run.pk, primary).admit()
        worker._announce_breaker(run.pk, primary, changed)
        if not allowed:
            now = timezone.now()
            for delivery, _ in ready:
                worker.refuse(delivery, primary, now)
            return []
    prepared = dict(ready)
    # Dispatch: record the provider and count the attempt for the deliveries this worker still holds.
    mine = deliveries.dispatch_many([d for d, _ in ready], primary)
    messages = [
        providers.OutgoingMessage(
            run_id=run.pk, channel=channel, address=d.recipient.address(channel), subject=prepared[d].subject,
            body=prepared[d].body, idempotency_key=d.idempotency_key, intent_id=d.intent_id,
            recipient_number=d.recipient.number, sequence=d.sequence, template=d.intent.template.name,
            quiet_hours=prepared[d].quiet_hours, time_zone=d.recipient.timezone,
        )
        for d in mine
    ]  # fmt: skip
    budget.record_attempt(run.pk, channel, 1, count=len(messages))
    started = timezone.now()
    found: dict = {}  # with the run's discovery on, the one instance this bulk call goes to
    try:
        found = worker.find_instance(run, primary) if messages else {}
        sent = providers.send_batch(primary, messages, settings.LAB_PROVIDER_TIMEOUT_MS, instance=found.get("instance", ""),
                                    fault=(run.faults or {}).get(primary, {}))  # fmt: skip
    except providers.NoInstance as exc:
        sent = [exc for _ in messages]
    latency = int((timezone.now() - started).total_seconds() * 1000)
    worker.note_provider_duplicates(run.pk, primary, [d.pk for d, r in zip(mine, sent, strict=True)
                                                     if isinstance(r, providers.SendResult) and r.already_sent])  # fmt: skip
    outcomes = [
        replace(worker.outcome_of_error(primary, result, latency), **found) if isinstance(result, providers.ProviderError)
        else worker.Outcome(AttemptOutcome.SUCCEEDED, primary, latency_ms=latency, **found)
        for result in sent
    ]  # fmt: skip
    if use_breaker:
        failures = sum(1 for r in sent if isinstance(r, providers.ProviderError) and r.temporary)
        worker._announce_breaker(run.pk, primary, ProviderBreaker(run.pk, primary).record_many(len(sent) - failures, failures))
    return [(d, o, prepared[d]) for d, o in zip(mine, outcomes, strict=True)]


def _record(run: LabRun, results: list, started_at) -> None:
    now, worker_name = timezone.now(), node_name()
    succeeded = [(d, o, p) for d, o, p in results if o.status == AttemptOutcome.SUCCEEDED]
    if succeeded:
        done = set()
        for provider in {o.provider for _, o, _ in succeeded}:
            mine = [(d, o, p) for d, o, p in succeeded if o.provider == provider]
            attempts = [
                {"delivery_id": d.pk, "run_id": run.pk, "number": d.attempts, "provider": o.provider, "outcome": o.status,
                 "started_at": started_at, "finished_at": now, "latency_ms": o.latency_ms,
                 "quiet_hours": p.quiet_hours, "local_time": p.local_time, "instance": o.instance, "resolved_by": o.resolved_by,
                 "instance_unhealthy": o.instance_unhealthy, "stale_answer": o.stale_answer, "worker": worker_name}
                for d, o, p in mine
            ]  # fmt: skip
            done.update(d.pk for d in deliveries.finish_many([d for d, _, _ in mine], provider, attempts))
        # The deliveries this batch moved to delivered (a lab page's strip counts them from this event).
        events.emit_many(run.pk, [
            ("batch_delivered", {"channel": channel, "provider": provider, "count": len(sent), "latency_ms": sent[0][1].latency_ms,
                                 "deliveries": [d.pk for d, _, _ in sent]})
            for (channel, provider), sent in _grouped([s for s in succeeded if s[0].pk in done]).items()
        ])  # fmt: skip
    for delivery, outcome, prepared in results:
        if outcome.status != AttemptOutcome.SUCCEEDED:
            worker.record_attempt(delivery, outcome, started_at, prepared)


def _grouped(results: list) -> dict[tuple[str, str], list]:
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for delivery, outcome, prepared in results:
        groups[delivery.channel, outcome.provider].append((delivery, outcome, prepared))
    return groups
