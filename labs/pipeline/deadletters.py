"""Triage of the dead-letter queue (lesson: dead-letter-queues): replay one, replay a group, discard.

A replay puts the delivery back in the outbox with a fresh attempt budget, in the same
transaction that closes the dead letter. The delivery keeps its idempotency key, and an
attempt whose outcome was unknown keeps it pinned to that provider, so replaying something
the provider did deliver (its response was lost) sends nothing twice.
"""

from django.db import connection, transaction
from django.db.models import Count, Min
from django.utils import timezone

from labs.models import DeadLetter, Delivery, LabRun
from labs.pipeline import deliveries, events, tally


def _deliveries(ids: list[int]) -> list[Delivery]:
    rows = Delivery.objects.filter(pk__in=ids).only("pk", "run_id", "queue", "generation", "channel", "recipient_id", "sequence")
    if connection.features.has_select_for_update:
        rows = rows.select_for_update().order_by("pk")
    return list(rows)


def open_groups(run: LabRun) -> list[dict]:
    return list(
        DeadLetter.objects.filter(run=run, resolution=DeadLetter.Resolution.OPEN)
        .values("error_group")
        .annotate(count=Count("id"), oldest=Min("created_at"))
        .order_by("-count", "error_group")
    )


def replay(run: LabRun, dead_letter_ids: list[int]) -> int:
    now = timezone.now()
    with transaction.atomic(), tally.counting():
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
        deliveries.replay(_deliveries([d.delivery_id for d in letters]))
        tally.add({(run.pk, "dead_letters_replayed"): len(letters)})
    events.emit_many(run.pk, [("replayed", {"delivery": d.delivery_id, "group": d.error_group}) for d in letters])
    return len(letters)


def replay_group(run: LabRun, error_group: str) -> int:
    ids = DeadLetter.objects.filter(run=run, error_group=error_group, resolution=DeadLetter.Resolution.OPEN)
    return replay(run, list(ids.values_list("pk", flat=True)))


def discard(run: LabRun, dead_letter_ids: list[int]) -> int:
    now = timezone.now()
    with transaction.atomic(), tally.counting():
        letters = DeadLetter.objects.filter(run=run, pk__in=dead_letter_ids, resolution=DeadLetter.Resolution.OPEN)
        delivery_ids = list(letters.values_list("delivery_id", flat=True))
        count = letters.update(resolution=DeadLetter.Resolution.DISCARDED, resolved_at=now)
        deliveries.discard(_deliveries(delivery_ids))
    events.emit_many(run.pk, [("discarded", {"delivery": pk}) for pk in delivery_ids])
    return count
