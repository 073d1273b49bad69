"""The auditor: reconciles what the pipeline accepted with what the providers really sent.

Counts are per delivery (one intent on one channel). Provider sends come from the
providers' own ledger, never from the pipeline's bookkeeping, so a bug that records
"delivered" without sending, or sends twice, shows here.

  accepted        deliveries written by the API (intents: the requests behind them)
  delivered / suppressed / bounced / dead_lettered / in_flight   where each delivery is now
  provider_sends  ledger rows; duplicate_sends: ledger rows beyond one per delivery
  sent_but_dead_lettered  dead-lettered deliveries the ledger shows a provider did send (the
                  answer was lost); a replay must not send them again
  lost            unfinished deliveries nothing can move any more, after ORPHAN_AFTER: waiting
                  with no message of their generation (the publish after the commit never
                  happened) or waiting their turn with nothing earlier left to wake them; plus
                  deliveries stuck for LOST_AFTER although a rescue should have moved them
                  (published and never claimed, or held by a worker, for that long)
  order_violations  in-app messages the provider received out of per-user order
  quiet_hours_violations  non-security messages sent inside the quiet hours that were in force
                  when they were sent (recorded with each send), by the provider's clock
"""

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count, DurationField, Exists, ExpressionWrapper, F, Max, OuterRef, Q, Sum
from django.utils import timezone

from labs.models import (
    TERMINAL,
    WAITING,
    DeadLetter,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    LabRun,
    NotificationIntent,
    OutboxRow,
    Priority,
    ProviderSend,
    RunCount,
    Template,
    TemplateCategory,
)
from labs.pipeline import deliveries, tally
from labs.pipeline.quiet_hours import sent_inside

LOST_AFTER = timedelta(minutes=5)
ORPHAN_AFTER = timedelta(seconds=10)


def audit(run: LabRun, now=None) -> dict:
    now = now or timezone.now()
    by_status = dict(
        Delivery.objects.filter(run=run).values("status").annotate(n=Count("id")).values_list("status", "n")
    )
    accepted = sum(by_status.values())
    delivered = by_status.get(DeliveryStatus.DELIVERED, 0)
    suppressed = by_status.get(DeliveryStatus.SUPPRESSED, 0)
    bounced = by_status.get(DeliveryStatus.BOUNCED, 0)
    dead = by_status.get(DeliveryStatus.DEAD_LETTERED, 0) + by_status.get(DeliveryStatus.DISCARDED, 0)
    sends = ProviderSend.objects.filter(run=run)
    provider_sends = sends.count()
    distinct_sent = sends.values("intent_id", "channel").distinct().count()
    lost = deliveries.unreachable(run.pk).filter(updated_at__lt=now - ORPHAN_AFTER).count() + stalled(run, now).count()
    ledger = ProviderSend.objects.filter(run=run, intent_id=OuterRef("intent_id"), channel=OuterRef("channel"))
    sent_but_dead = Delivery.objects.filter(run=run, status=DeliveryStatus.DEAD_LETTERED).filter(Exists(ledger)).count()
    return {
        "intents": NotificationIntent.objects.filter(run=run).count(),
        "accepted": accepted,
        "delivered": delivered,
        "suppressed": suppressed,
        "bounced": bounced,
        "dead_lettered": dead,
        "in_flight": accepted - delivered - suppressed - bounced - dead,
        "provider_sends": provider_sends,
        "duplicate_sends": provider_sends - distinct_sent,
        "sent_but_dead_lettered": sent_but_dead,
        "lost": lost,
        "order_violations": order_violations(run),
        "quiet_hours_violations": quiet_hours_violations(run),
    }


def stalled(run: LabRun, now: datetime):
    """Deliveries a rescue should have moved long ago: their message published and never
    claimed for LOST_AFTER with no copy since, or held by a worker for that long."""
    return Delivery.objects.filter(run=run).filter(stalled_condition(now - LOST_AFTER))


def stalled_condition(lost_before: datetime) -> Q:
    """`stalled` as a condition on deliveries; `lost_before` is now - LOST_AFTER."""
    current = OutboxRow.objects.filter(delivery=OuterRef("pk"), generation=OuterRef("generation"))
    recent = current.filter(Q(published_at__isnull=True) | Q(published_at__gte=lost_before))
    return (Q(status__in=WAITING) & Exists(current) & ~Exists(recent)) | Q(status=DeliveryStatus.SENDING, claimed_at__lt=lost_before)


def order_violations(run: LabRun) -> int:
    """In-app messages the provider received after a later message to the same user."""
    return len(sends_out_of_order([run.pk]))


def quiet_hours_violations(run: LabRun) -> int:
    """Sends inside the quiet hours recorded with them, judged by the provider's clock: a
    worker whose clock is wrong shows here; a user who changes quiet hours later does not."""
    return len(sends_in_quiet_hours([run.pk]))


# The breaches with their moments, for many runs at once: the workshop debrief charts them
# across a cohort, and the counts above are their lengths, so both read one rule.


def sends_out_of_order(run_ids: list[int]) -> list[tuple[int, datetime]]:
    """(run id, sent at) of each in-app message received after a later message to the same user."""
    found = []
    highest: dict[tuple[int, int], int] = {}
    for run_id, number, sequence, sent_at in (
        ProviderSend.objects.filter(run_id__in=run_ids, channel="inapp", sequence__isnull=False)
        .order_by("sent_at", "id")
        .values_list("run_id", "recipient_number", "sequence", "sent_at")
    ):
        user = (run_id, number)
        if sequence < highest.get(user, 0):
            found.append((run_id, sent_at))
        highest[user] = max(sequence, highest.get(user, 0))
    return found


def sends_in_quiet_hours(run_ids: list[int]) -> list[tuple[int, datetime]]:
    """(run id, sent at) of each non-security send inside the quiet hours recorded with it."""
    security = Template.objects.filter(run_id=OuterRef("run_id"), name=OuterRef("template"), category=TemplateCategory.SECURITY)
    sends = ProviderSend.objects.filter(run_id__in=run_ids).exclude(quiet_hours="").exclude(Exists(security))
    return [(run_id, sent_at) for run_id, window, zone, sent_at in sends.values_list("run_id", "quiet_hours", "time_zone", "sent_at")
            if sent_inside(window, zone, sent_at)]  # fmt: skip


def duplicate_sends(run_ids: list[int]) -> list[tuple[int, datetime]]:
    """(run id, sent at) of each ledger row beyond the first for its delivery (one intent on one channel)."""
    earlier = ProviderSend.objects.filter(run_id=OuterRef("run_id"), intent_id=OuterRef("intent_id"), channel=OuterRef("channel"),
                                          id__lt=OuterRef("id"))  # fmt: skip
    return list(ProviderSend.objects.filter(run_id__in=run_ids).filter(Exists(earlier)).values_list("run_id", "sent_at"))


# --- The running counts (labs.pipeline.tally) as the rows say they should be ----------------------


def counts_from_rows(run_id: int) -> dict[str, int]:
    """Every running count of the run, computed from its rows: what `tally.read` must equal.

    Reads the run's whole history: for the tests and the backfill, never for the panels.
    """
    counts: dict[str, int] = {"intents": NotificationIntent.objects.filter(run_id=run_id).count()}
    rows = Delivery.objects.filter(run_id=run_id)
    for name, n in rows.filter(status__in=TERMINAL).values_list("status").annotate(n=Count("id")):
        counts[tally.status(name)] = n
    counts.update(rows.aggregate(
        delivered_inapp=Count("id", filter=Q(status=DeliveryStatus.DELIVERED, channel="inapp")),
        delivered_after_replay=Count("id", filter=Q(status=DeliveryStatus.DELIVERED, replays__gt=0)),
        duplicates_suppressed=Sum("duplicates_suppressed"),
        last_alert=Max("id", filter=Q(intent__priority=Priority.TRANSACTIONAL)),
        campaign_deliveries=Count("id", filter=Q(intent__priority=Priority.MARKETING)),
    ))  # fmt: skip
    counts.update(tally.attempt_counts(DeliveryAttempt.objects.filter(run_id=run_id).values(*tally.ATTEMPT_FIELDS)))
    counts.update(DeadLetter.objects.filter(run_id=run_id).aggregate(
        dead_letters=Count("id"),
        dead_letters_again=Count("id", filter=Q(was_replayed=True)),
        dead_letters_poison=Count("id", filter=Q(error_group=tally.POISON_GROUP)),
        dead_letters_replayed=Count("id", filter=Q(resolution=DeadLetter.Resolution.REPLAYED)),
    ))  # fmt: skip
    longest = OutboxRow.objects.filter(run_id=run_id, published_at__isnull=False).aggregate(
        longest=Max(ExpressionWrapper(F("published_at") - F("available_at"), output_field=DurationField()))
    )["longest"]
    counts["publish_wait_us"] = tally.microseconds(longest) if longest is not None and longest.total_seconds() > 0 else None
    for provider, n in ProviderSend.objects.filter(run_id=run_id).values_list("provider").annotate(n=Count("id")):
        counts[tally.sent(provider)] = n
    counts["duplicate_sends"] = len(duplicate_sends([run_id]))
    counts["order_violations"] = len(sends_out_of_order([run_id]))
    counts["quiet_hours_violations"] = len(sends_in_quiet_hours([run_id]))
    return {name: value for name, value in counts.items() if value}


def rebuild_counts(run_id: int) -> None:
    """Set the run's running counts from its rows (the migration's backfill, while no process writes)."""
    with transaction.atomic():
        tally.forget(run_id)
        RunCount.objects.bulk_create([RunCount(run_id=run_id, name=name, value=value)
                                      for name, value in counts_from_rows(run_id).items()])  # fmt: skip
