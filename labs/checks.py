"""The facts a lab's checks read, taken from the run's real state, and the checks' results.

Every fact is a number computed from the rows (the source of truth), the providers' own
ledger (through the auditor) or Redis (breakers, faults). A lab file names facts in its
checks ("dead_letters == 0") and in each step's `observe` list; FACTS says what each means,
and the experiment card shows how a step changed them.
"""

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, Min, Q
from django.utils import timezone

from labs.lab_files import Check, Condition, Lab
from labs.models import (
    TERMINAL,
    AttemptOutcome,
    DeadLetter,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    DiscoveryMode,
    LabRun,
    OutboxRow,
    Priority,
    ProviderSend,
)
from labs.pipeline import audit, discovery, faults, metrics, saga_audit, sync_load
from labs.pipeline.deliveries import on_broker, unreachable
from labs.pipeline.breaker import CLOSED, ProviderBreaker
from labs.pipeline.topology import ALL_PROVIDERS
from labs.pipeline.worker import PoisonMessage

# How long a delivery may sit "pending" with nothing to publish it before it counts as stranded.
STRANDED_AFTER = timedelta(seconds=5)
# An alert "overtook" a campaign when it was delivered while this many earlier campaign messages waited.
CAMPAIGN_WAITING = 50
# The retry herd looks at the last minute of retries, rounds of at least this many.
HERD_WINDOW = timedelta(seconds=60)
HERD_MIN_ROUND = 8

FACTS: dict[str, str] = {
    # From the auditor (labs.pipeline.audit), which reads the providers' ledger.
    "intents": "notifications accepted by the API",
    "accepted": "deliveries accepted (one per notification and channel)",
    "delivered": "deliveries delivered",
    "suppressed": "deliveries suppressed (the user opted out)",
    "dead_lettered": "deliveries dead-lettered or discarded",
    "in_flight": "deliveries not finished yet",
    "provider_sends": "messages the providers really sent (their own ledger)",
    "duplicate_sends": "provider sends beyond one per delivery",
    "sent_but_dead_lettered": "dead-lettered deliveries a provider did send (its answer was lost)",
    "lost": "deliveries stuck for 5 minutes with nothing to move them",
    "order_violations": "in-app messages received out of per-user order",
    "quiet_hours_violations": "messages sent inside the user's quiet hours",
    # From the run's metrics (labs.pipeline.metrics).
    "provider_calls": "calls to a provider, failed ones included",
    "bounced": "deliveries bounced: the provider rejected the address for good (400)",
    "failed_attempts": "attempts that failed or timed out",
    "breaker_refusals": "attempts refused by an open circuit breaker",
    "latency_p50_ms": "provider latency, median (ms)",
    "latency_p95_ms": "provider latency, 95th percentile (ms)",
    "queue_age_s": "age of the oldest message on the broker (s)",
    "duplicates_suppressed": "second copies dropped (by the worker's claim or the provider's idempotency key)",
    "opt_outs": "deliveries skipped because the user opted out",
    "dead_letters": "open dead letters",
    # Read here.
    "outbox_pending": "outbox rows due and not yet published",
    "outbox_oldest_s": "age of the oldest due outbox row (s)",
    "outbox_scheduled": "outbox rows waiting for their time (retries, deferrals)",
    "max_publish_wait_s": "longest a due outbox row waited for the relay (s)",
    "queued": "deliveries on the broker",
    "sending": "deliveries a worker holds",
    "retries_scheduled": "deliveries waiting to retry",
    "retries_total": "retries scheduled so far",
    "retry_herd_pct": "largest share of one round of retries due within a fifth of its ceiling (%)",
    "crashed_attempts": "attempts lost with their worker",
    "dead_letters_total": "dead letters ever written, open or not",
    "replayed": "dead letters replayed",
    "replayed_delivered": "replayed deliveries that were then delivered",
    "redead_lettered": "dead letters of deliveries that had been replayed before",
    "poison_dead_lettered": "dead letters of poison messages (template data missing)",
    "discarded": "deliveries discarded from the dead letters",
    "failovers": "messages sent by a secondary provider",
    "breakers_open": "providers whose breaker is open or half-open",
    "faults_active": "fault targets with a fault set",
    "stranded": "deliveries accepted that nothing will ever publish",
    "transactional_in_flight": "transactional deliveries not finished yet",
    "transactional_dead_lettered": "transactional deliveries dead-lettered",
    "last_alert_ms": "how long the latest transactional message took to deliver, or has waited so far (ms)",
    "alerts_past_campaign": "transactional messages delivered while 50+ campaign messages sent before them waited",
    "campaign_in_flight": "campaign deliveries not finished yet",
    "inapp_delivered": "in-app deliveries delivered",
    # The order saga's auditor (labs.pipeline.saga_audit), lab 7.
    **saga_audit.FACTS,
    # Lab 9's synchronous path (labs.pipeline.sync_load): the latest load, as the API's clients saw it.
    "api_requests": "requests of the latest load answered so far",
    "api_p95_ms": "the API's latency over the latest load, 95th percentile, waiting for a worker included (ms)",
    "api_error_pct": "requests of the latest load that got an error, or no answer before their client gave up (%)",
    "api_fallbacks": "requests of the latest load accepted on kept preferences (the fallback)",
    "api_busy_workers": "API workers busy now",
    "api_busy_peak": "most API workers busy at once during the latest load",
    "preference_calls_per_request": "calls that reached the preferences service per request of the latest load",
    "wasted_work": "service calls of the latest load that finished after their caller had given up",
    "deadline_drops": "calls and requests of the latest load dropped because their deadline had passed",
    "sync_breakers_open": "circuit breakers on the synchronous path that are open or half-open",
    "load_running": "1 while a load is running, else 0",
    "load_timeout_ms": "the call timeout the latest load started with (ms)",
    "load_deadline": "1 if the latest load started with deadlines passed on, else 0",
    "load_breaker": "1 if the latest load started with circuit breakers, else 0",
    "load_slow_ms": "the latency the preferences service's fault added when the latest load started (ms)",
    # Service discovery (labs.pipeline.discovery): the calls as the attempts recorded them, the registry from Redis.
    "instance_calls": "provider calls made to an instance that a lookup found",
    "dns_bad_calls": "calls the DNS resolver's answer sent to an instance that was dead, restarting or not ready",
    "registry_bad_calls": "calls the registry sent to an instance that was dead, restarting or not ready",
    "stale_calls": "calls to an instance the registry had already taken out of rotation (a cached answer sent them)",
    "dns_error_window_s": "the latest error window with the DNS resolver: from the first to the last call to an unhealthy instance (s)",
    "registry_error_window_s": "the latest error window with the registry: from the first to the last call to an unhealthy instance (s)",
    "instances_out": "instances the registry no longer returns (failing their checks, or gone)",
    "instances_alive_not_ready": "instances still sending heartbeats but failing their readiness check",
    "registry_drops": "times the registry took an instance out of rotation",
    "registry_readmissions": "times the registry put an instance back in rotation",
    "flaps": "the most times the registry took one instance out of rotation",
}


def facts(run: LabRun, breakers: dict[str, str] | None = None, fault_settings: dict | None = None) -> dict:
    """Every fact in FACTS for `run`; pass breaker states and faults when you already have them."""
    now = timezone.now()
    found = {**audit.audit(run, now), **metrics.run_metrics(run), **saga_audit.saga_facts(run)}
    deliveries = Delivery.objects.filter(run=run)
    by_status = dict(deliveries.values("status").annotate(n=Count("id")).values_list("status", "n"))

    # A few aggregates with conditional counts rather than a query per fact: the panels ask every second.
    unpublished = Q(published_at__isnull=True)
    outbox = OutboxRow.objects.filter(run=run).aggregate(
        due=Count("id", filter=unpublished & Q(available_at__lte=now)),
        oldest=Min("available_at", filter=unpublished & Q(available_at__lte=now)),
        scheduled=Count("id", filter=unpublished & Q(available_at__gt=now)),
        longest=Max(ExpressionWrapper(F("published_at") - F("available_at"), output_field=DurationField()),
                    filter=Q(published_at__isnull=False)),
    )  # fmt: skip
    oldest_s = (now - outbox["oldest"]).total_seconds() if outbox["oldest"] else 0.0
    attempts = DeliveryAttempt.objects.filter(delivery__run=run).aggregate(
        retries=Count("id", filter=Q(backoff_ms__isnull=False)),
        crashed=Count("id", filter=Q(outcome=AttemptOutcome.CRASHED)),
        instance_calls=Count("id", filter=~Q(instance="")),
        dns_bad_calls=Count("id", filter=Q(resolved_by=DiscoveryMode.DNS, instance_unhealthy=True)),
        registry_bad_calls=Count("id", filter=Q(resolved_by=DiscoveryMode.REGISTRY, instance_unhealthy=True)),
        stale_calls=Count("id", filter=Q(stale_answer=True)),
    )
    letters = DeadLetter.objects.filter(run=run).aggregate(
        total=Count("id"),
        replayed=Count("id", filter=Q(resolution=DeadLetter.Resolution.REPLAYED)),
        again=Count("id", filter=Q(was_replayed=True)),
        poison=Count("id", filter=Q(error_group=PoisonMessage.group)),
    )
    unfinished = ~Q(status__in=TERMINAL)
    kinds = deliveries.aggregate(
        replayed_delivered=Count("id", filter=Q(replays__gt=0, status=DeliveryStatus.DELIVERED)),
        transactional_in_flight=Count("id", filter=Q(intent__priority=Priority.TRANSACTIONAL) & unfinished),
        transactional_dead=Count("id", filter=Q(intent__priority=Priority.TRANSACTIONAL, status=DeliveryStatus.DEAD_LETTERED)),
        campaign_in_flight=Count("id", filter=Q(intent__priority=Priority.MARKETING) & unfinished),
        inapp_delivered=Count("id", filter=Q(channel="inapp", status=DeliveryStatus.DELIVERED)),
    )
    if breakers is None:
        breakers = breaker_states(run)
    if fault_settings is None:
        fault_settings = faults.all_faults(run.pk)
    found.update(
        outbox_pending=outbox["due"],
        outbox_oldest_s=round(oldest_s, 1),
        outbox_scheduled=outbox["scheduled"],
        max_publish_wait_s=round(max(oldest_s, outbox["longest"].total_seconds() if outbox["longest"] else 0.0), 1),
        queued=on_broker(run.pk).values("delivery_id").distinct().count(),
        sending=by_status.get(DeliveryStatus.SENDING, 0),
        retries_scheduled=by_status.get(DeliveryStatus.RETRY_SCHEDULED, 0),
        retries_total=attempts["retries"],
        retry_herd_pct=retry_herd_pct(run, now),
        crashed_attempts=attempts["crashed"],
        dead_letters_total=letters["total"],
        replayed=letters["replayed"],
        replayed_delivered=kinds["replayed_delivered"],
        redead_lettered=letters["again"],
        poison_dead_lettered=letters["poison"],
        discarded=by_status.get(DeliveryStatus.DISCARDED, 0),
        failovers=ProviderSend.objects.filter(run=run, provider__endswith="-secondary").count(),
        breakers_open=sum(1 for state in breakers.values() if state != CLOSED),
        faults_active=len(fault_settings),
        stranded=_stranded(run, now),
        transactional_in_flight=kinds["transactional_in_flight"],
        transactional_dead_lettered=kinds["transactional_dead"],
        last_alert_ms=_last_alert_ms(run, now),
        alerts_past_campaign=_alerts_past_campaign(run),
        campaign_in_flight=kinds["campaign_in_flight"],
        inapp_delivered=kinds["inapp_delivered"],
        **sync_load.load_figures(run),
        **{name: attempts[name] for name in ("instance_calls", "dns_bad_calls", "registry_bad_calls", "stale_calls")},
        **_discovery_facts(run, attempts),
    )
    return found


def _discovery_facts(run: LabRun, attempts: dict) -> dict:
    """The error window of each way of finding an instance, and the registry's state (labs.pipeline.discovery)."""
    found = {"dns_error_window_s": 0.0, "registry_error_window_s": 0.0, "instances_out": 0, "instances_alive_not_ready": 0,
             "registry_drops": 0, "registry_readmissions": 0, "flaps": 0}  # fmt: skip
    for how in DiscoveryMode.values:
        if attempts[f"{how}_bad_calls"]:
            times = (DeliveryAttempt.objects.filter(delivery__run=run, resolved_by=how, instance_unhealthy=True)
                     .order_by("-finished_at").values_list("finished_at", flat=True)[:1000])  # fmt: skip
            found[f"{how}_error_window_s"] = discovery.error_window_s([t.timestamp() for t in times])
    if not run.discovery and not attempts["instance_calls"]:
        return found
    now = time.time()
    registry = discovery.read_registry(run.pk)
    out = [entry for entry in registry.values() if not discovery.registered(entry, now) or entry["status"] != discovery.PASSING]
    counted = discovery.counts(run.pk)
    found.update(
        instances_out=len(out),
        instances_alive_not_ready=sum(1 for entry in out if discovery.alive_now(entry, now)),
        registry_drops=counted["dropped"],
        registry_readmissions=counted["readmitted"],
        flaps=max((entry.get("drops", 0) for entry in registry.values()), default=0),
    )
    return found


def breaker_states(run: LabRun) -> dict[str, str]:
    return {provider: ProviderBreaker(run.pk, provider).state().state for provider in ALL_PROVIDERS}


def _stranded(run: LabRun, now) -> int:
    """Waiting deliveries nothing will publish (accepted, and the publish never happened)."""
    return unreachable(run.pk).filter(updated_at__lt=now - STRANDED_AFTER).count()


def _last_alert_ms(run: LabRun, now) -> int | None:
    latest = (
        Delivery.objects.filter(run=run, intent__priority=Priority.TRANSACTIONAL)
        .exclude(status__in=[DeliveryStatus.SUPPRESSED, DeliveryStatus.DISCARDED])
        .order_by("-created_at", "-id")
        .only("created_at", "finished_at")
        .first()
    )
    if latest is None:
        return None
    return int(((latest.finished_at or now) - latest.created_at).total_seconds() * 1000)


def _alerts_past_campaign(run: LabRun) -> int:
    alerts = (
        Delivery.objects.filter(run=run, intent__priority=Priority.TRANSACTIONAL, status=DeliveryStatus.DELIVERED)
        .order_by("-id")
        .only("created_at", "finished_at")[:10]
    )
    campaign = Delivery.objects.filter(run=run, intent__priority=Priority.MARKETING)
    overtaking = 0
    for alert in alerts:
        waiting = campaign.filter(created_at__lte=alert.created_at).filter(
            Q(finished_at__isnull=True) | Q(finished_at__gt=alert.finished_at)
        )
        if waiting.count() >= CAMPAIGN_WAITING:
            overtaking += 1
    return overtaking


@dataclass(frozen=True)
class ScheduledRetry:
    attempt: int  # the attempt that failed
    failed_at: float  # timestamps
    due_at: float
    ceiling_ms: int


def retry_due_times(run: LabRun, since) -> list[ScheduledRetry]:
    """The retries scheduled since `since`: when their attempt failed, when they were due, under which ceiling."""
    rows = (
        DeliveryAttempt.objects.filter(delivery__run=run, backoff_ms__isnull=False, finished_at__gte=since)
        .order_by("-id")
        .values_list("number", "finished_at", "backoff_ms", "backoff_cap_ms")[:2000]
    )
    return [ScheduledRetry(number, finished.timestamp(), finished.timestamp() + delay / 1000, ceiling or delay)
            for number, finished, delay, ceiling in rows]  # fmt: skip


def retry_rounds(retries: list[ScheduledRetry]) -> list[list[ScheduledRetry]]:
    """Retries of messages that failed together: the same attempt, failures less than a ceiling apart."""
    rounds = []
    by_attempt: dict[int, list[ScheduledRetry]] = {}
    for retry in retries:
        by_attempt.setdefault(retry.attempt, []).append(retry)
    for same_attempt in by_attempt.values():
        same_attempt.sort(key=lambda r: r.failed_at)
        current = [same_attempt[0]]
        for retry in same_attempt[1:]:
            if retry.failed_at - current[-1].failed_at > retry.ceiling_ms / 1000:
                rounds.append(current)
                current = []
            current.append(retry)
        rounds.append(current)
    return rounds


def retry_herd_pct(run: LabRun, now) -> int:
    return herd_pct(retry_due_times(run, now - HERD_WINDOW))


def herd_pct(scheduled: list[ScheduledRetry]) -> int:
    """The largest share of one round of retries due within a fifth of its ceiling (rounds of HERD_MIN_ROUND or more)."""
    best = 0
    for retries in retry_rounds(scheduled):
        if len(retries) < HERD_MIN_ROUND:
            continue
        window = max(r.ceiling_ms for r in retries) / 5000  # a fifth of the ceiling, in seconds
        times = sorted(r.due_at for r in retries)
        start = 0
        for end, due in enumerate(times):
            while due - times[start] > window:
                start += 1
            best = max(best, round(100 * (end - start + 1) / len(times)))
    return best


@dataclass
class CheckResult:
    check: Check
    passed: bool
    failing: list[str]  # the conditions that do not hold, in words, with the current value
    # When a check that no longer holds passed during its step (labs.steps.hold_passed): it stays passed.
    held_since: datetime | None = None


def evaluate(lab: Lab, found: dict) -> dict[str, CheckResult]:
    results = {}
    for check in lab.checks:
        failing = [condition_text(c, found) for c in check.require if not c.holds(found)]
        results[check.id] = CheckResult(check, not failing, failing)
    return results


# How a condition's comparison reads to a learner ("dead_letters_total >= 10" is for the lab file).
COMPARISON_WORDS = {
    ">=": "at least {}",
    "<=": "at most {}",
    ">": "more than {}",
    "<": "less than {}",
    "==": "{}",
    "!=": "anything but {}",
}


def condition_text(condition: Condition, found: dict) -> str:
    """A condition in words with the run's value now: "dead letters ever written, open or not: at least 10 (now 0)"."""
    wanted = COMPARISON_WORDS[condition.op].format(f"{condition.value:g}")
    return f"{FACTS.get(condition.fact, condition.fact.replace('_', ' '))}: {wanted} (now {_shown(found.get(condition.fact))})"


def _shown(value) -> str:
    return "—" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def changes(before: dict | None, after: dict, names) -> list[tuple[str, object, object]]:
    """(fact, value before, value after) for each name: what a step did to the run."""
    before = before or {}
    return [(name, before.get(name), after.get(name)) for name in names]


def snapshot_for_history(found: dict) -> dict:
    """The facts as stored on an experiment card (JSON-safe numbers only)."""
    return {name: value for name, value in found.items() if isinstance(value, (int, float)) or value is None}

