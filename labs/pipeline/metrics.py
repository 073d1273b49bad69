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


# A call that reached a provider and came back with an answer, or timed out waiting for one.
PROVIDER_CALL_OUTCOMES = (AttemptOutcome.SUCCEEDED, AttemptOutcome.FAILED, AttemptOutcome.REJECTED, AttemptOutcome.TIMEOUT)
# An attempt that failed and may be retried: the provider failed or did not answer in time. (A poison
# message is rejected for good before any provider is called, like a bounce: not a failed attempt.)
FAILED_OUTCOMES = (AttemptOutcome.FAILED, AttemptOutcome.TIMEOUT)


def provider_calls(attempts):
    """Attempts that called a provider: not a poison message, which fails before the call (no provider)."""
    return attempts.filter(outcome__in=PROVIDER_CALL_OUTCOMES).exclude(provider="")


def run_metrics(run: LabRun) -> dict:
    """The run's figures; each means one thing, named alike on the lab page, in the API and in checks.FACTS.

    `provider_calls` counts every call to a provider, failed ones included; what the providers
    really sent is the auditor's `provider_sends` (their own ledger), which never counts a failure.
    """
    attempts = DeliveryAttempt.objects.filter(run=run)
    by_outcome = dict(attempts.values("outcome").annotate(n=Count("id")).values_list("outcome", "n"))
    called = provider_calls(attempts)
    latencies = list(called.order_by("-finished_at", "-id").values_list("latency_ms", flat=True)[:LATENCY_SAMPLE])
    deliveries = Delivery.objects.filter(run=run)
    oldest_queued = on_broker(run.pk).aggregate(at=Min("published_at"))["at"]
    return {
        "provider_calls": called.count(),
        "delivered": deliveries.filter(status=DeliveryStatus.DELIVERED).count(),
        "bounced": deliveries.filter(status=DeliveryStatus.BOUNCED).count(),
        "failed_attempts": sum(by_outcome.get(o, 0) for o in FAILED_OUTCOMES),
        "breaker_refusals": by_outcome.get(AttemptOutcome.BREAKER_OPEN, 0),
        "latency_p50_ms": percentile(latencies, 0.50),
        "latency_p95_ms": percentile(latencies, 0.95),
        "queue_age_s": round((timezone.now() - oldest_queued).total_seconds(), 2) if oldest_queued else 0.0,
        "duplicates_suppressed": deliveries.aggregate(n=Sum("duplicates_suppressed"))["n"] or 0,
        "opt_outs": deliveries.filter(status=DeliveryStatus.SUPPRESSED).count(),
        "dead_letters": DeadLetter.objects.filter(run=run, resolution=DeadLetter.Resolution.OPEN).count(),
    }
