"""Per-run metrics, computed from the rows (the source of truth) when asked."""

from django.db.models import Count, Min, Sum
from django.utils import timezone

from labs.models import AttemptOutcome, DeadLetter, Delivery, DeliveryAttempt, DeliveryStatus, LabRun
from labs.pipeline.deliveries import on_broker

LATENCY_SAMPLE = 2000


def percentile(values: list[int], share: float) -> int | None:
    """Nearest-rank percentile of `values` (share in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, round(share * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def run_metrics(run: LabRun) -> dict:
    attempts = DeliveryAttempt.objects.filter(delivery__run=run)
    by_outcome = dict(attempts.values("outcome").annotate(n=Count("id")).values_list("outcome", "n"))
    provider_calls = [AttemptOutcome.SUCCEEDED, AttemptOutcome.FAILED, AttemptOutcome.REJECTED, AttemptOutcome.TIMEOUT]
    latencies = list(
        attempts.filter(outcome__in=provider_calls).order_by("-id").values_list("latency_ms", flat=True)[:LATENCY_SAMPLE]
    )
    deliveries = Delivery.objects.filter(run=run)
    oldest_queued = on_broker(run.pk).aggregate(at=Min("published_at"))["at"]
    return {
        "sent": sum(by_outcome.get(o, 0) for o in provider_calls),
        "delivered": deliveries.filter(status=DeliveryStatus.DELIVERED).count(),
        "bounced": deliveries.filter(status=DeliveryStatus.BOUNCED).count(),
        "failed_attempts": by_outcome.get(AttemptOutcome.FAILED, 0) + by_outcome.get(AttemptOutcome.TIMEOUT, 0),
        "breaker_refusals": by_outcome.get(AttemptOutcome.BREAKER_OPEN, 0),
        "latency_p50_ms": percentile(latencies, 0.50),
        "latency_p95_ms": percentile(latencies, 0.95),
        "queue_age_s": round((timezone.now() - oldest_queued).total_seconds(), 2) if oldest_queued else 0.0,
        "duplicates_suppressed": deliveries.aggregate(n=Sum("duplicates_suppressed"))["n"] or 0,
        "opt_outs": deliveries.filter(status=DeliveryStatus.SUPPRESSED).count(),
        "dead_letters": DeadLetter.objects.filter(run=run, resolution=DeadLetter.Resolution.OPEN).count(),
    }
