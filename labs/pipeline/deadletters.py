"""Triage of the dead-letter queue (lesson: dead-letter-queues): replay one, replay a group, discard.

A replay puts the delivery back in the outbox with a fresh attempt budget, in the same
transaction that closes the dead letter. The delivery keeps its idempotency key, so
replaying something the provider did deliver (its response was lost) sends nothing twice.
"""

from django.db import transaction
from django.db.models import Count, F, Min
from django.utils import timezone

from labs.models import DeadLetter, Delivery, DeliveryStatus, LabRun, OutboxRow
from labs.pipeline import events


def open_groups(run: LabRun) -> list[dict]:
    return list(
        DeadLetter.objects.filter(run=run, resolution=DeadLetter.Resolution.OPEN)
        .values("error_group")
        .annotate(count=Count("id"), oldest=Min("created_at"))
        .order_by("-count", "error_group")
    )


def replay(run: LabRun, dead_letter_ids: list[int]) -> int:
    now = timezone.now()
    with transaction.atomic():
        letters = list(
            DeadLetter.objects.select_for_update()
            .filter(run=run, pk__in=dead_letter_ids, resolution=DeadLetter.Resolution.OPEN)
            .select_related("delivery")
        )
        if not letters:
            return 0
        DeadLetter.objects.filter(pk__in=[d.pk for d in letters]).update(
            resolution=DeadLetter.Resolution.REPLAYED, resolved_at=now
        )
        delivery_ids = [d.delivery_id for d in letters]
        Delivery.objects.filter(pk__in=delivery_ids, status=DeliveryStatus.DEAD_LETTERED).update(
            status=DeliveryStatus.PENDING, attempts=0, replays=F("replays") + 1, next_attempt_at=None,
            finished_at=None, last_error="", updated_at=now,
        )  # fmt: skip
        OutboxRow.objects.bulk_create(
            [OutboxRow(run=run, delivery_id=d.delivery_id, queue=d.delivery.queue, expected_attempts=0) for d in letters]
        )
    events.emit_many(run.pk, [("replayed", {"delivery": d.delivery_id, "group": d.error_group}) for d in letters])
    return len(letters)


def replay_group(run: LabRun, error_group: str) -> int:
    ids = DeadLetter.objects.filter(run=run, error_group=error_group, resolution=DeadLetter.Resolution.OPEN)
    return replay(run, list(ids.values_list("pk", flat=True)))


def discard(run: LabRun, dead_letter_ids: list[int]) -> int:
    now = timezone.now()
    with transaction.atomic():
        letters = DeadLetter.objects.filter(run=run, pk__in=dead_letter_ids, resolution=DeadLetter.Resolution.OPEN)
        delivery_ids = list(letters.values_list("delivery_id", flat=True))
        count = letters.update(resolution=DeadLetter.Resolution.DISCARDED, resolved_at=now)
        Delivery.objects.filter(pk__in=delivery_ids, status=DeliveryStatus.DEAD_LETTERED).update(
            status=DeliveryStatus.DISCARDED, updated_at=now
        )
    events.emit_many(run.pk, [("discarded", {"delivery": pk}) for pk in delivery_ids])
    return count
