"""A notification's lineage: each delivery from acceptance to its end, with every backoff to scale.

Read from the rows (outbox rows, attempts, dead letters) plus the run's event stream for
the duplicates that idempotency stopped, which leave no row of their own.
"""

from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone

from django.utils.translation import ngettext

from labs import charts
from labs.models import AttemptOutcome, DeadLetter, Delivery, DeliveryStatus, DiscoveryMode, LabRun, NotificationIntent
from labs.pipeline import events

FOUND_THROUGH = {DiscoveryMode.DNS: "the DNS resolver", DiscoveryMode.REGISTRY: "the registry"}


@dataclass
class Moment:
    at: datetime
    kind: str  # accepted, outbox, published, attempt, backoff, dead_lettered, replayed, discarded, delivered, duplicate
    text: str
    tone: str = "info"
    tag: str = ""
    offset: str = ""  # since the notification was accepted, e.g. "+1.2 s"


@dataclass
class DeliveryLineage:
    delivery: Delivery
    moments: list[Moment]
    track: charts.LineageTrack


def lineage(run: LabRun, intent: NotificationIntent) -> list[DeliveryLineage]:
    """Each delivery of `intent` as a timeline, from acceptance to its end, with the backoffs to scale."""
    duplicates: dict[int, list[float]] = {}
    for event in events.recent(run.pk, count=events.STREAM_LENGTH):
        if event["kind"] == "duplicate_suppressed" and event.get("delivery"):
            duplicates.setdefault(event["delivery"], []).append(event["at"])
    found = []
    deliveries = intent.deliveries.prefetch_related("outbox_rows", "attempt_rows", "dead_letters").order_by("channel")
    for delivery in deliveries:
        moments = [Moment(intent.created_at, "accepted", f"Accepted by the API for {delivery.get_channel_display()}")]
        for row in delivery.outbox_rows.all():
            due = f", due {_offset(row.available_at, row.created_at)} later" if row.available_at > row.created_at else ""
            moments.append(Moment(row.created_at, "outbox", f"Outbox row written (generation {row.generation}){due}"))
            if row.published_at:
                moments.append(Moment(row.published_at, "published", f"Published to the {row.queue} queue"))
        for attempt in delivery.attempt_rows.all():
            outcome = AttemptOutcome(attempt.outcome)
            where = f" at {attempt.provider}" if attempt.provider else ""
            if attempt.instance:  # with service discovery: the instance called, and how the worker found it
                stale = ", a stale answer" if attempt.stale_answer else ""
                where = f" at {attempt.instance} (found through {FOUND_THROUGH.get(attempt.resolved_by, attempt.resolved_by)}{stale})"
            detail = f": {attempt.error}" if attempt.error else ""
            tone = "ok" if outcome == AttemptOutcome.SUCCEEDED else "bad"
            if outcome == AttemptOutcome.BREAKER_OPEN:
                text = f"Not sent: {attempt.provider}'s breaker was open (no attempt used; deferred to its next trial)"
            else:
                text = f"Attempt {attempt.number}{where}: {outcome.label.lower()}{detail}"
            moments.append(Moment(attempt.started_at, "attempt", text, tone))
            if attempt.backoff_ms is not None:
                moments.append(Moment(attempt.finished_at, "backoff",
                                      f"Backoff {attempt.backoff_ms} ms, drawn between 0 and {attempt.backoff_cap_ms} ms", "warn"))  # fmt: skip
        for letter in delivery.dead_letters.all():
            attempts = f"{letter.attempts} {ngettext('attempt', 'attempts', letter.attempts)}"
            moments.append(Moment(letter.created_at, "dead_lettered", f"Dead-lettered after {attempts}: {letter.error_group}", "bad",
                                  "replayed before" if letter.was_replayed else ""))  # fmt: skip
            if letter.resolution != DeadLetter.Resolution.OPEN and letter.resolved_at:
                moments.append(Moment(letter.resolved_at, letter.resolution, f"{letter.get_resolution_display()} from the dead letters", "warn"))
        for at in duplicates.get(delivery.pk, []):
            moments.append(Moment(datetime.fromtimestamp(at, dt_timezone.utc), "duplicate", "Duplicate suppressed: idempotency stopped a second send", "ok"))
        if delivery.status == DeliveryStatus.DELIVERED and delivery.finished_at:
            moments.append(Moment(delivery.finished_at, "delivered", f"Delivered by {delivery.provider}", "ok"))
        elif delivery.status == DeliveryStatus.BOUNCED:
            moments.append(Moment(delivery.finished_at or delivery.updated_at, "bounced", f"Bounced: {delivery.last_error}", "bad"))
        elif delivery.status == DeliveryStatus.SUPPRESSED:
            moments.append(Moment(delivery.finished_at or delivery.updated_at, "suppressed", delivery.last_error or "Suppressed"))
        moments.sort(key=lambda m: m.at)
        for moment in moments:
            moment.offset = "+" + _offset(moment.at, intent.created_at)
        found.append(DeliveryLineage(delivery, moments, charts.lineage_track(intent.created_at, delivery, moments)))
    return found


def _offset(later: datetime, earlier: datetime) -> str:
    ms = max(0.0, (later - earlier).total_seconds() * 1000)
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"
