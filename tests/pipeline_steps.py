"""Moving a delivery through the state machine by hand, for tests that run no worker.

A test that wants a dead letter asks the state machine for one (labs.pipeline.deliveries), as
the relay and the worker would, so every count the panels read moves with it.
"""

from django.utils import timezone

from labs.models import DeadLetter, Delivery, DeliveryAttempt, OutboxRow
from labs.pipeline import deliveries, relay, traffic


def dead_letter(run, group: str = "provider_unavailable", replayed: bool = False, user: int = 5,
                attempts: tuple[dict, ...] = ()) -> DeadLetter:
    """A new delivery of `run`, published, claimed and dead-lettered. `attempts` (outcome, provider,
    error) are the worker's: each but the last schedules a retry; the last goes with the dead letter."""
    delivery = Delivery.objects.get(intent=traffic.send_one(run, user, "weekly_digest").intent)
    if replayed:
        Delivery.objects.filter(pk=delivery.pk).update(replays=1)
        delivery.replays = 1
    relay.mark_published(list(OutboxRow.objects.filter(delivery=delivery).values_list("pk", flat=True)))  # the relay's part
    now = timezone.now()
    rows = [DeliveryAttempt(delivery=delivery, number=n, started_at=now, finished_at=now, **given) for n, given in enumerate(attempts, 1)]
    for row in rows[:-1]:
        delivery.generation = deliveries.claim(delivery.pk, delivery.generation)
        assert deliveries.schedule_retry(delivery, now, row, row.error)
    delivery.generation = deliveries.claim(delivery.pk, delivery.generation)
    delivery.attempts = max(len(rows), 4)
    assert deliveries.dead_letter(delivery, group, "503", attempt=rows[-1] if rows else None, attempts=delivery.attempts)
    return DeadLetter.objects.get(delivery=delivery)


def counts_and_rows(run_id: int) -> tuple[dict, dict]:
    """The run's running counts and what its rows say they should be, read in one snapshot (the
    counts commit with the rows they count, so the two agree at every moment, not only when quiet)."""
    from django.db import connection, transaction

    from labs.pipeline import audit, tally

    snapshot = connection.vendor == "postgresql" and not connection.in_atomic_block  # inside a test's transaction nothing else writes
    with transaction.atomic():
        if snapshot:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return tally.read(run_id), audit.counts_from_rows(run_id)
