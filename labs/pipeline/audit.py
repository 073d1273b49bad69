"""The auditor: reconciles what the pipeline accepted with what the providers really sent.

Counts are per delivery (one intent on one channel). Provider sends come from the
providers' own ledger, never from the pipeline's bookkeeping, so a bug that records
"delivered" without sending, or sends twice, shows here.

  accepted        deliveries written by the API (intents: the requests behind them)
  delivered / suppressed / dead_lettered / in_flight   where each delivery is now
  provider_sends  ledger rows; duplicate_sends: ledger rows beyond one per delivery
  sent_but_dead_lettered  dead-lettered deliveries the ledger shows a provider did send (the
                  answer was lost); a replay must not send them again
  lost            unfinished deliveries nothing can move any more: still pending with
                  no outbox row after ORPHAN_AFTER (the publish after the commit never
                  happened), or with no progress at all for LOST_AFTER
  order_violations  in-app messages the provider received out of per-user order
  quiet_hours_violations  non-security messages sent inside the user's quiet hours
"""

from datetime import timedelta

from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from labs.models import (
    TERMINAL,
    Delivery,
    DeliveryStatus,
    LabRun,
    NotificationIntent,
    OutboxRow,
    ProviderSend,
    TemplateCategory,
)
from labs.pipeline.worker import quiet_hours_end

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
    dead = by_status.get(DeliveryStatus.DEAD_LETTERED, 0) + by_status.get(DeliveryStatus.DISCARDED, 0)
    sends = ProviderSend.objects.filter(run=run)
    provider_sends = sends.count()
    distinct_sent = sends.values("intent_id", "channel").distinct().count()
    pending_message = OutboxRow.objects.filter(delivery=OuterRef("pk"), published_at__isnull=True)
    unfinished = Delivery.objects.filter(run=run).exclude(status__in=TERMINAL)
    orphaned = Q(status=DeliveryStatus.PENDING, created_at__lt=now - ORPHAN_AFTER) & ~Exists(pending_message)
    stalled = Q(updated_at__lt=now - LOST_AFTER) & ~Exists(pending_message)
    lost = unfinished.filter(orphaned | stalled).count()
    ledger = ProviderSend.objects.filter(run=run, intent_id=OuterRef("intent_id"), channel=OuterRef("channel"))
    sent_but_dead = Delivery.objects.filter(run=run, status=DeliveryStatus.DEAD_LETTERED).filter(Exists(ledger)).count()
    return {
        "intents": NotificationIntent.objects.filter(run=run).count(),
        "accepted": accepted,
        "delivered": delivered,
        "suppressed": suppressed,
        "dead_lettered": dead,
        "in_flight": accepted - delivered - suppressed - dead,
        "provider_sends": provider_sends,
        "duplicate_sends": provider_sends - distinct_sent,
        "sent_but_dead_lettered": sent_but_dead,
        "lost": lost,
        "order_violations": order_violations(run),
        "quiet_hours_violations": quiet_hours_violations(run),
    }


def order_violations(run: LabRun) -> int:
    """In-app messages the provider received after a later message to the same user."""
    violations = 0
    highest: dict[int, int] = {}
    for number, sequence in (
        ProviderSend.objects.filter(run=run, channel="inapp", sequence__isnull=False)
        .order_by("sent_at", "id")
        .values_list("recipient_number", "sequence")
    ):
        if sequence < highest.get(number, 0):
            violations += 1
        highest[number] = max(sequence, highest.get(number, 0))
    return violations


def quiet_hours_violations(run: LabRun) -> int:
    recipients = {r.number: r for r in run.recipients.exclude(quiet_start=None)}
    security = run.templates.filter(category=TemplateCategory.SECURITY).values_list("name", flat=True)
    sends = ProviderSend.objects.filter(run=run, recipient_number__in=recipients).exclude(template__in=list(security))
    return sum(1 for s in sends.only("recipient_number", "sent_at") if quiet_hours_end(recipients[s.recipient_number], s.sent_at))
