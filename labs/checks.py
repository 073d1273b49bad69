"""The facts a lab's checks read, taken from the run's real state, and the checks' results.

Every fact is a number computed from the rows (the source of truth), the providers' own
ledger (through the auditor) or Redis (breakers, faults). A lab file names facts in its
checks ("dead_letters == 0") and in each step's `observe` list; FACTS says what each means,
and the experiment card shows how a step changed them.
"""

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.db.models import Count, Exists, Min, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.prepared import Prepared
from labs.lab_files import Check, Condition, Lab
from labs.models import (
    UNFINISHED,
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    DiscoveryMode,
    LabRun,
    OutboxRow,
    Priority,
    ProviderSend,
)
from labs.pipeline import audit, deadletters, discovery, faults, metrics, saga_audit, sync_load, tally
from labs.pipeline.breaker import CLOSED, ProviderBreaker
from labs.pipeline.deliveries import on_broker, unreachable_condition
from labs.pipeline.topology import ALL_PROVIDERS

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


@dataclass
class Reading:
    """What reading the facts found that the panels show too, so a panel refresh asks once."""

    counts: dict[str, int] = field(default_factory=dict)  # the run's running counts (labs.pipeline.tally)
    queues: dict[str, tuple[int, datetime | None]] = field(default_factory=dict)  # lane: (depth, oldest publish)
    dead_letter_groups: list[dict] = field(default_factory=list)
    retries: list["ScheduledRetry"] = field(default_factory=list)  # scheduled in the last HERD_WINDOW, newest first


# The queries of a panel refresh, compiled once per process (config/prepared.py): with a hundred lab pages
# open, building them anew took more of a refresh's CPU than the database took to answer them (cProfile).
# Placeholders are values no real call passes: a negative run id, moments in 1901.
_RUN = -7


def _moment(second: int) -> datetime:
    return datetime(1901, 1, 1, 0, 0, second, tzinfo=dt_timezone.utc)


def _first(rows: list, empty: tuple) -> tuple:
    """The one row of an aggregate over a run's rows, grouped by the run (no rows: `empty`)."""
    return rows[0] if rows else empty


_MOVING = Prepared(lambda run_id: Delivery.objects.filter(run_id=run_id, status__in=UNFINISHED).values("status").annotate(
    n=Count("id"),
    transactional=Count("id", filter=Q(intent__priority=Priority.TRANSACTIONAL)),
    campaign=Count("id", filter=Q(intent__priority=Priority.MARKETING)),
).values_list("status", "n", "transactional", "campaign"), run_id=_RUN)  # fmt: skip
_UNPUBLISHED = Prepared(lambda run_id, now: OutboxRow.objects.filter(run_id=run_id, published_at__isnull=True).values("run").annotate(
    due=Count("id", filter=Q(available_at__lte=now)),
    oldest=Min("available_at", filter=Q(available_at__lte=now)),
    scheduled=Count("id", filter=Q(available_at__gt=now)),
).values_list("due", "oldest", "scheduled"), run_id=_RUN, now=_moment(1))  # fmt: skip
_QUEUES = Prepared(lambda run_id: on_broker(run_id).values("queue").annotate(
    n=Count("delivery_id", distinct=True), oldest=Min("published_at"),
).values_list("queue", "n", "oldest"), run_id=_RUN)  # fmt: skip
_STUCK = Prepared(lambda run_id, orphaned_before, stranded_before, lost_before: Delivery.objects.filter(
    run_id=run_id, status__in=UNFINISHED).values("run").annotate(
    orphaned=Count("id", filter=unreachable_condition() & Q(updated_at__lt=orphaned_before)),
    stranded=Count("id", filter=unreachable_condition() & Q(updated_at__lt=stranded_before)),
    stalled=Count("id", filter=audit.stalled_condition(lost_before)),
).values_list("orphaned", "stranded", "stalled"), run_id=_RUN, orphaned_before=_moment(2), stranded_before=_moment(3),
    lost_before=_moment(4))  # fmt: skip
_DEAD = Prepared(lambda run_id: Delivery.objects.filter(run_id=run_id, status=DeliveryStatus.DEAD_LETTERED).values("run").annotate(
    transactional=Count("id", filter=Q(intent__priority=Priority.TRANSACTIONAL)),
    sent=Count("id", filter=Q(Exists(ProviderSend.objects.filter(run_id=run_id, intent_id=OuterRef("intent_id"),
                                                                 channel=OuterRef("channel"))))),
).values_list("transactional", "sent"), run_id=_RUN)  # fmt: skip
_LATENCIES = Prepared(lambda run_id: metrics.provider_calls(DeliveryAttempt.objects.filter(run_id=run_id))
                      .order_by("-finished_at", "-id").values_list("latency_ms", flat=True)[:metrics.LATENCY_SAMPLE], run_id=_RUN)  # fmt: skip
_RETRIES = Prepared(lambda run_id, since: DeliveryAttempt.objects.filter(run_id=run_id, backoff_ms__isnull=False, finished_at__gte=since)
                    .order_by("-id").values_list("number", "finished_at", "backoff_ms", "backoff_cap_ms")[:2000],
                    run_id=_RUN, since=_moment(5))  # fmt: skip


def facts(run: LabRun, breakers: dict[str, str] | None = None, fault_settings: dict | None = None,
          reading: Reading | None = None) -> dict:
    """Every fact in FACTS for `run`; pass breaker states and faults when you already have them.

    A fixed number of queries, none of which reads the run's history: the history's totals are
    the run's running counts (labs.pipeline.tally), kept exact by the code that writes the rows;
    the rest reads what is still moving (unfinished deliveries, unpublished rows, open dead
    letters) or a recent window, each through an index. The auditor reads the rows themselves
    (labs.pipeline.audit), and the tests hold the two equal.
    """
    now = timezone.now()
    reading = reading if reading is not None else Reading()
    counts = reading.counts = tally.read(run.pk)
    moving = {status: {"n": n, "transactional": transactional, "campaign": campaign}
              for status, n, transactional, campaign in _MOVING(run_id=run.pk)}  # fmt: skip
    due, oldest, scheduled = _first(_UNPUBLISHED(run_id=run.pk, now=now), (0, None, 0))
    oldest_s = (now - oldest).total_seconds() if oldest else 0.0
    reading.queues = {queue: (n, oldest_published) for queue, n, oldest_published in _QUEUES(run_id=run.pk)}
    oldest_queued = min((oldest for _, oldest in reading.queues.values() if oldest), default=None)
    orphaned, stranded, stalled = _first(_STUCK(run_id=run.pk, orphaned_before=now - audit.ORPHAN_AFTER,
                                                stranded_before=now - STRANDED_AFTER, lost_before=now - audit.LOST_AFTER), (0, 0, 0))  # fmt: skip
    dead = dict(zip(("transactional", "sent"), _first(_DEAD(run_id=run.pk), (0, 0)), strict=True))
    reading.dead_letter_groups = deadletters.open_groups(run)
    reading.retries = retry_due_times(run, now - HERD_WINDOW)
    latencies = _LATENCIES(run_id=run.pk)
    if breakers is None:
        breakers = breaker_states(run)
    if fault_settings is None:
        fault_settings = faults.all_faults(run.pk)

    def status(name: str) -> int:
        return counts.get(tally.status(name), 0)

    def unfinished(column: str = "n") -> int:
        return sum(row[column] for row in moving.values())

    sends = {name.removeprefix("sent:"): n for name, n in counts.items() if name.startswith("sent:")}
    delivered, suppressed, bounced = status(DeliveryStatus.DELIVERED), status(DeliveryStatus.SUPPRESSED), status(DeliveryStatus.BOUNCED)
    dead_lettered = status(DeliveryStatus.DEAD_LETTERED) + status(DeliveryStatus.DISCARDED)
    found = {
        # The auditor's figures (labs.pipeline.audit.audit reads the same from the rows).
        "intents": counts.get("intents", 0),
        "accepted": delivered + suppressed + bounced + dead_lettered + unfinished(),
        "delivered": delivered,
        "suppressed": suppressed,
        "bounced": bounced,
        "dead_lettered": dead_lettered,
        "in_flight": unfinished(),
        "provider_sends": sum(sends.values()),
        "duplicate_sends": counts.get("duplicate_sends", 0),
        "sent_but_dead_lettered": dead["sent"],
        "lost": orphaned + stalled,
        "order_violations": counts.get("order_violations", 0),
        "quiet_hours_violations": counts.get("quiet_hours_violations", 0),
        # The run's metrics (labs.pipeline.metrics.run_metrics reads the same from the rows).
        "provider_calls": counts.get("provider_calls", 0),
        "failed_attempts": sum(counts.get(f"attempts:{outcome}", 0) for outcome in metrics.FAILED_OUTCOMES),
        "breaker_refusals": counts.get(f"attempts:{AttemptOutcome.BREAKER_OPEN}", 0),
        "latency_p50_ms": metrics.percentile(latencies, 0.50),
        "latency_p95_ms": metrics.percentile(latencies, 0.95),
        "queue_age_s": round((timezone.now() - oldest_queued).total_seconds(), 2) if oldest_queued else 0.0,
        "duplicates_suppressed": counts.get("duplicates_suppressed", 0),
        "opt_outs": suppressed,
        "dead_letters": sum(group["count"] for group in reading.dead_letter_groups),
        # Read here.
        "outbox_pending": due,
        "outbox_oldest_s": round(oldest_s, 1),
        "outbox_scheduled": scheduled,
        "max_publish_wait_s": round(max(oldest_s, counts.get("publish_wait_us", 0) / 1e6), 1),
        "queued": sum(n for n, _ in reading.queues.values()),
        "sending": moving.get(DeliveryStatus.SENDING, {}).get("n", 0),
        "retries_scheduled": moving.get(DeliveryStatus.RETRY_SCHEDULED, {}).get("n", 0),
        "retries_total": counts.get("retries", 0),
        "retry_herd_pct": herd_pct(reading.retries),
        "crashed_attempts": counts.get(f"attempts:{AttemptOutcome.CRASHED}", 0),
        "dead_letters_total": counts.get("dead_letters", 0),
        "replayed": counts.get("dead_letters_replayed", 0),
        "replayed_delivered": counts.get("delivered_after_replay", 0),
        "redead_lettered": counts.get("dead_letters_again", 0),
        "poison_dead_lettered": counts.get("dead_letters_poison", 0),
        "discarded": status(DeliveryStatus.DISCARDED),
        "failovers": sum(n for provider, n in sends.items() if provider.endswith("-secondary")),
        "breakers_open": sum(1 for state in breakers.values() if state != CLOSED),
        "faults_active": len(fault_settings),
        "stranded": stranded,
        "transactional_in_flight": unfinished("transactional"),
        "transactional_dead_lettered": dead["transactional"],
        "last_alert_ms": _last_alert_ms(run, counts.get("last_alert"), now),
        "alerts_past_campaign": _alerts_past_campaign(run, counts.get("last_alert"), counts.get("campaign_deliveries", 0)),
        "campaign_in_flight": unfinished("campaign"),
        "inapp_delivered": counts.get("delivered_inapp", 0),
        # Service discovery's calls (lab 8), counted as the attempts are written.
        **{name: counts.get(name, 0) for name in tally.DISCOVERY_CALLS},
        **saga_audit.saga_facts(run),
        **sync_load.load_figures(run),
    }
    found.update(_discovery_facts(run, counts))
    return found


def _discovery_facts(run: LabRun, counts: dict) -> dict:
    """The error window of each way of finding an instance, and the registry's state (labs.pipeline.discovery)."""
    found = {"dns_error_window_s": 0.0, "registry_error_window_s": 0.0, "instances_out": 0, "instances_alive_not_ready": 0,
             "registry_drops": 0, "registry_readmissions": 0, "flaps": 0}  # fmt: skip
    for how in DiscoveryMode.values:
        if counts.get(f"{how}_bad_calls"):
            times = (DeliveryAttempt.objects.filter(run=run, resolved_by=how, instance_unhealthy=True)
                     .order_by("-finished_at").values_list("finished_at", flat=True)[:1000])  # fmt: skip
            found[f"{how}_error_window_s"] = discovery.error_window_s([t.timestamp() for t in times])
    if not run.discovery and not counts.get("instance_calls"):
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
    """Every provider's breaker state, in one round trip to Redis."""
    return dict(zip(ALL_PROVIDERS, (state.state for state in ProviderBreaker.states(run.pk, ALL_PROVIDERS)), strict=True))


def _alerts(run_id: int, newest: int):
    """The run's transactional deliveries, newest first, read backwards from the newest one the intake
    counted (so the read stops at the first rows it needs, however long the run's history)."""
    return Delivery.objects.filter(run_id=run_id, pk__lte=newest, intent__priority=Priority.TRANSACTIONAL).order_by("-id")


_LAST_ALERT = Prepared(lambda run_id, newest: _alerts(run_id, newest).exclude(status__in=[DeliveryStatus.SUPPRESSED, DeliveryStatus.DISCARDED])
                       .values_list("created_at", "finished_at")[:1], run_id=_RUN, newest=-8)  # fmt: skip


def _last_alert_ms(run: LabRun, newest: int | None, now) -> int | None:
    if newest is None:
        return None
    latest = _LAST_ALERT(run_id=run.pk, newest=newest)
    if not latest:
        return None
    created_at, finished_at = latest[0]
    return int(((finished_at or now) - created_at).total_seconds() * 1000)


def _how_many(rows):
    return Coalesce(Subquery(rows.order_by().values("run_id").annotate(n=Count("id")).values("n")[:1]), 0)


def _alerts_overtaking(run_id: int, newest: int):
    """The latest ten delivered alerts, each with the campaign deliveries created before it and still unfinished
    (read through the unfinished ones) or finished after it (read through the finish times since)."""
    campaign = Delivery.objects.filter(run_id=run_id, intent__priority=Priority.MARKETING, created_at__lte=OuterRef("created_at"))
    return _alerts(run_id, newest).filter(status=DeliveryStatus.DELIVERED).annotate(
        unfinished=_how_many(campaign.filter(status__in=UNFINISHED)),
        finished_later=_how_many(campaign.filter(finished_at__gt=OuterRef("finished_at"))),
    ).values_list("unfinished", "finished_later")[:10]


_ALERTS_OVERTAKING = Prepared(_alerts_overtaking, run_id=_RUN, newest=-8)


def _alerts_past_campaign(run: LabRun, newest: int | None, campaign_deliveries: int) -> int:
    """The latest ten delivered alerts that overtook CAMPAIGN_WAITING campaign messages sent before them,
    in one query. None can have while the run has had fewer campaign deliveries than that."""
    if campaign_deliveries < CAMPAIGN_WAITING or newest is None:
        return 0
    return sum(1 for unfinished, finished_later in _ALERTS_OVERTAKING(run_id=run.pk, newest=newest)
               if unfinished + finished_later >= CAMPAIGN_WAITING)  # fmt: skip


@dataclass(frozen=True)
class ScheduledRetry:
    attempt: int  # the attempt that failed
    failed_at: float  # timestamps
    due_at: float
    ceiling_ms: int


def retry_due_times(run: LabRun, since) -> list[ScheduledRetry]:
    """The retries scheduled since `since`: when their attempt failed, when they were due, under which ceiling."""
    rows = _RETRIES(run_id=run.pk, since=since)
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

