"""The live view of a lab run: the event feed and the state behind the live panels.

How the page stays live (measured by bench/live_view.py):
1. The page polls `labs:events` with the last event id it saw, every 200 ms while it is
   visible. That view reads only the run's Redis stream after that id (no table is
   touched beyond the session and the run), and answers 204 when nothing happened.
2. New events go straight into the feed, and ask for a fresh copy of the heavy panels
   (`labs:panels`: counts, tables, charts), at most about once a second.
3. A hidden page stops polling; a failed poll is retried with a growing, jittered delay
   and resumes from the last id, so nothing is missed (the stream keeps 5,000 events).

Long-lived connections (server-sent events) would need an ASGI process beside gunicorn;
at this load, 100 open pages polling a 204 endpoint is well inside what two gunicorn
workers serve, and it keeps one process and one origin.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.db.models import Count, Min
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from config import heartbeat
from config.redis_client import get_redis
from labs import charts, checks
from labs.lab_files import Lab
from labs.models import (
    TERMINAL,
    AttemptOutcome,
    DeadLetter,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    LabRun,
    NotificationIntent,
    ProviderSend,
)
from labs.pipeline import deadletters, defences, events, faults
from labs.pipeline.intake import URGENT_QUEUE
from labs.pipeline.topology import PROVIDERS

FEED_SIZE = 60  # events shown when the page opens, and at most per poll
SERIES_SECONDS = 60

# --- The event feed ----------------------------------------------------------------------------

# kind -> (label, sentence, tone). The sentence is formatted with the event's fields.
EVENT_WORDING: dict[str, tuple[str, str, str]] = {
    "accepted": ("accepted", "Notification {intent} accepted: {template} to user {user_id}", "info"),
    "published": ("published", "Relay published delivery {delivery} to the {queue} queue (attempt {attempt})", "info"),
    "republished": ("republished", "Relay republished delivery {delivery} (attempt {attempt}): {reason}", "warn"),
    "attempt_started": ("attempt", "Worker started attempt {attempt} of delivery {delivery} ({channel})", "info"),
    "attempt_succeeded": ("delivered", "Delivery {delivery} sent by {provider} in {latency_ms} ms", "ok"),
    "attempt_failed": ("failed", "Attempt {attempt} of delivery {delivery} failed at {provider}: {error}", "bad"),
    "retry_scheduled": ("retry", "Delivery {delivery}: retry in {delay_ms} ms (drawn under {ceiling_ms} ms), attempt {next_attempt} of {max_attempts}", "warn"),
    "retry_budget_exhausted": ("budget", "Retry budget for {channel} spent: delivery {delivery} waits the longest backoff", "warn"),
    "deferred": ("deferred", "Delivery {delivery} deferred: {reason}", "info"),
    "suppressed": ("suppressed", "Delivery {delivery} suppressed: {reason}", "info"),
    "dead_lettered": ("dead letter", "Delivery {delivery} dead-lettered ({group}): {error}", "bad"),
    "replayed": ("replayed", "Delivery {delivery} replayed from the dead letters ({group})", "warn"),
    "discarded": ("discarded", "Delivery {delivery} discarded from the dead letters", "info"),
    "duplicate_suppressed": ("duplicate", "A second copy of delivery {delivery} was suppressed{by}", "ok"),
    "failover": ("failover", "Delivery {delivery} sent via {provider} instead of {instead_of}", "warn"),
    "breaker_changed": ("breaker", "The circuit breaker of {provider} is now {state}", "warn"),
    "fault_changed": ("fault", "{fault_text}", "warn"),
    "defences_changed": ("defences", "{defences_text}", "warn"),
}
# Events a screen reader hears (summarised, at most every few seconds): the ones a learner acts on.
ANNOUNCED = {"fault_changed", "defences_changed", "breaker_changed", "dead_lettered", "failover"}


class _Blank(dict):
    def __missing__(self, name):
        return "?"


def _settings_text(settings: dict) -> str:
    return ", ".join(f"{name}" if value is True else f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
                     for name, value in settings.items())  # fmt: skip


def describe(event: dict) -> tuple[str, str, str]:
    label, sentence, tone = EVENT_WORDING.get(event["kind"], (event["kind"], event["kind"].replace("_", " "), "info"))
    fields = _Blank(event)
    if event["kind"] == "retry_scheduled":
        fields["next_attempt"] = event.get("attempt", 0) + 1
    elif event["kind"] == "duplicate_suppressed":
        fields["by"] = f" by the {event['by']}" if event.get("by") else " by the worker's claim"
    elif event["kind"] == "fault_changed":
        target, fault = event.get("target"), event.get("fault") or {}
        if target == "*":
            fields["fault_text"] = "Every fault stopped"
        elif fault:
            fields["fault_text"] = f"Fault on {target}: {_settings_text(fault)}"
        else:
            fields["fault_text"], tone = f"Fault on {target} cleared", "ok"
    elif event["kind"] == "defences_changed":
        off = [name.replace("_", " ") for name, on in (event.get("defences") or {}).items() if not on]
        fields["defences_text"] = f"Defences off: {', '.join(off)}" if off else "Every defence is on"
    return label, sentence.format_map(fields), tone


def event_rows(run: LabRun, found: list[dict]) -> list[dict]:
    """The events as the feed shows them: wording, time, and a link to the message's lineage."""
    rows = []
    for event in found:
        label, text, tone = describe(event)
        link = None
        if event.get("intent"):
            link = reverse("labs:notification", args=[run.pk, event["intent"]])
        elif event.get("delivery"):
            link = reverse("labs:delivery", args=[run.pk, event["delivery"]])
        at = datetime.fromtimestamp(event["at"], dt_timezone.utc)
        clock = at.strftime("%H:%M:%S.") + f"{at.microsecond // 1000:03d}"
        rows.append({**event, "label": label, "text": text, "tone": tone, "link": link, "time": at, "clock": clock})
    return rows


def feed_payload(run: LabRun, after: str) -> dict | None:
    """What the page's poll gets: new events with their rendered rows, or None when nothing happened."""
    found = events.recent(run.pk, after=after, count=1000)
    if not found:
        return None
    shown = found[-FEED_SIZE:]
    html = render_to_string("labs/event_row.html", {"rows": reversed(event_rows(run, shown))})
    announce = [describe(e)[1] for e in found if e["kind"] in ANNOUNCED][-3:]
    return {
        "last": found[-1]["id"],
        "count": len(found),
        "skipped": len(found) - len(shown),
        "html": html,
        "at": [e["at"] for e in shown],
        "kinds": sorted({e["kind"] for e in found}),
        "announce": announce,
    }


def opening_feed(run: LabRun) -> tuple[list[dict], str]:
    """The newest events for the page's first render, newest first, and the id to poll after."""
    newest = get_redis().xrevrange(events.stream_key(run.pk), count=FEED_SIZE)
    if not newest:
        return [], "0-0"
    found = events.recent(run.pk, after=_before(newest[-1][0].decode()), count=FEED_SIZE)
    return list(reversed(event_rows(run, found))), newest[0][0].decode()


def _before(stream_id: str) -> str:
    """The stream id just before `stream_id`, so `recent(after=...)` includes it."""
    millis, sequence = (int(part) for part in stream_id.split("-"))
    return f"{millis}-{sequence - 1}" if sequence else f"{millis - 1}-{2**64 - 1}"


# --- The live panels -------------------------------------------------------------------------


@dataclass
class RunState:
    """Everything the live panels show, read once per refresh."""

    run: LabRun
    facts: dict
    breakers: dict[str, str]
    faults: dict[str, dict]
    defences: dict[str, bool]
    queues: list[tuple[str, int, float]]  # (queue, depth, oldest age in s)
    provider_sends: dict[str, int]
    retries: list[Delivery]
    recent_notifications: list[dict]
    dead_letter_groups: list[dict]
    dead_letters: list[DeadLetter]
    relay_alive: bool
    workers_alive: int
    series: dict[str, charts.Sparkline] = field(default_factory=dict)
    retry_chart: charts.RetryChart | None = None
    checks: dict = field(default_factory=dict)

    @property
    def queue_boxes(self) -> list[dict]:
        """The diagram's queue column: one box per lane."""
        return [{"name": name, "depth": depth, "age": age, "y": y, "height": height, "middle": y + height / 2}
                for (name, depth, age), (y, height) in zip(self.queues, charts.stack(len(self.queues), 12, 288), strict=True)]  # fmt: skip

    @property
    def provider_boxes(self) -> list[dict]:
        """The diagram's provider column: breaker state, fault and what each really sent."""
        names = [name for pair in PROVIDERS.values() for name in pair]
        return [{"name": name, "state": self.breakers.get(name, "closed"), "fault": self.faults.get(name),
                 "sent": self.provider_sends.get(name, 0), "y": y, "height": height, "middle": y + height / 2}
                for name, (y, height) in zip(names, charts.stack(len(names), 8, 292, gap=4), strict=True)]  # fmt: skip

    @property
    def retry_rows(self) -> list[dict]:
        """Retries waiting: attempt n of m, and when."""
        now = timezone.now()
        return [{"delivery": d, "attempt": d.attempts + 1, "of": self.run.max_attempts, "at": d.next_attempt_at,
                 "clock": d.next_attempt_at.strftime("%H:%M:%S"), "in_s": max(0.0, (d.next_attempt_at - now).total_seconds())}
                for d in self.retries if d.next_attempt_at]  # fmt: skip

    @property
    def invariants(self) -> list[tuple[str, bool, str]]:
        """The auditor's invariants as (name, holds, detail)."""
        f = self.facts
        lost = f["lost"] + f["stranded"]
        return [
            ("Nothing lost", lost == 0, f"{lost} lost or stranded"),
            ("Nothing sent twice", f["duplicate_sends"] == 0, f"{f['duplicate_sends']} duplicate sends"),
            ("Quiet hours respected", f["quiet_hours_violations"] == 0, f"{f['quiet_hours_violations']} sent in quiet hours"),
            ("Per-user order kept", f["order_violations"] == 0, f"{f['order_violations']} out of order"),
        ]

    @property
    def relay_state(self) -> str:
        if not self.relay_alive:
            return "down"
        return "paused" if self.faults.get(faults.PIPELINE, {}).get("relay_paused") else "running"

    @property
    def busy(self) -> bool:
        """Whether something is moving or waiting on a clock, so the panels should tick on their own."""
        f = self.facts
        return bool(f["in_flight"] or f["outbox_pending"] or f["retries_scheduled"] or self.faults or f["breakers_open"])


def run_state(run: LabRun, lab: Lab | None = None) -> RunState:
    now = timezone.now()
    breakers = checks.breaker_states(run)
    fault_settings = faults.all_faults(run.pk)
    found = checks.facts(run, breakers, fault_settings)
    queued = (
        Delivery.objects.filter(run=run, status=DeliveryStatus.QUEUED)
        .values("queue")
        .annotate(n=Count("id"), oldest=Min("updated_at"))
    )
    by_queue = {row["queue"]: row for row in queued}
    queues = [
        (name, by_queue.get(name, {}).get("n", 0), _age(now, by_queue.get(name, {}).get("oldest")))
        for name in [URGENT_QUEUE, *PROVIDERS]
    ]
    sends = dict(
        ProviderSend.objects.filter(run=run).values("provider").annotate(n=Count("id")).values_list("provider", "n")
    )
    state = RunState(
        run=run,
        facts=found,
        breakers=breakers,
        faults=fault_settings,
        defences=defences.all_defences(run),
        queues=queues,
        provider_sends=sends,
        retries=list(
            Delivery.objects.filter(run=run, status=DeliveryStatus.RETRY_SCHEDULED)
            .select_related("intent__template")
            .order_by("next_attempt_at")[:8]
        ),
        recent_notifications=recent_notifications(run),
        dead_letter_groups=deadletters.open_groups(run),
        dead_letters=list(
            DeadLetter.objects.filter(run=run, resolution=DeadLetter.Resolution.OPEN)
            .select_related("delivery__intent__template", "delivery__recipient")
            .order_by("error_group", "-created_at")[:60]
        ),
        relay_alive=bool(heartbeat.alive("relay")),
        workers_alive=len(heartbeat.alive("worker")),
        series=series(run, now),
        retry_chart=charts.retry_chart(checks.retry_due_times(run, now - timedelta(seconds=30)), now, found["retry_herd_pct"]),
    )
    if lab is not None:
        state.checks = checks.evaluate(lab, found)
    return state


def _age(now, since) -> float:
    return round((now - since).total_seconds(), 1) if since else 0.0


def recent_notifications(run: LabRun, count: int = 8) -> list[dict]:
    intents = list(
        NotificationIntent.objects.filter(run=run)
        .select_related("template", "recipient")
        .prefetch_related("deliveries")
        .order_by("-id")[:count]
    )
    shown = []
    for intent in intents:
        statuses = {d.status for d in intent.deliveries.all()}
        status = "in flight" if not statuses <= set(TERMINAL) else ", ".join(sorted(DeliveryStatus(s).label for s in statuses))
        shown.append({"intent": intent, "status": status, "done": statuses <= set(TERMINAL)})
    return shown


def series(run: LabRun, now) -> dict[str, charts.Sparkline]:
    """Per-second counts over the last minute: accepted, delivered, failed attempts, dead letters."""
    since = now - timedelta(seconds=SERIES_SECONDS)
    attempts = DeliveryAttempt.objects.filter(delivery__run=run, finished_at__gte=since)
    failing = [AttemptOutcome.FAILED, AttemptOutcome.TIMEOUT, AttemptOutcome.REJECTED, AttemptOutcome.BREAKER_OPEN, AttemptOutcome.CRASHED]
    times = {
        "accepted": Delivery.objects.filter(run=run, created_at__gte=since).values_list("created_at", flat=True),
        "delivered": attempts.filter(outcome=AttemptOutcome.SUCCEEDED).values_list("finished_at", flat=True),
        "failed attempts": attempts.filter(outcome__in=failing).values_list("finished_at", flat=True),
        "dead-lettered": DeadLetter.objects.filter(run=run, created_at__gte=since).values_list("created_at", flat=True),
    }
    return {name: charts.sparkline(list(found), now, SERIES_SECONDS) for name, found in times.items()}


# --- A message's lineage ---------------------------------------------------------------------


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
            moments.append(Moment(row.created_at, "outbox", f"Outbox row written (for attempt {row.expected_attempts + 1}){due}"))
            if row.published_at:
                moments.append(Moment(row.published_at, "published", f"Published to the {row.queue} queue"))
        for attempt in delivery.attempt_rows.all():
            outcome = AttemptOutcome(attempt.outcome)
            where = f" at {attempt.provider}" if attempt.provider else ""
            detail = f": {attempt.error}" if attempt.error else ""
            tone = "ok" if outcome == AttemptOutcome.SUCCEEDED else "bad"
            moments.append(Moment(attempt.started_at, "attempt", f"Attempt {attempt.number}{where}: {outcome.label.lower()}{detail}", tone))
            if attempt.backoff_ms is not None:
                moments.append(Moment(attempt.finished_at, "backoff",
                                      f"Backoff {attempt.backoff_ms} ms, drawn between 0 and {attempt.backoff_cap_ms} ms", "warn"))  # fmt: skip
        for letter in delivery.dead_letters.all():
            moments.append(Moment(letter.created_at, "dead_lettered", f"Dead-lettered after {letter.attempts} attempt(s): {letter.error_group}", "bad",
                                  "replayed before" if letter.was_replayed else ""))  # fmt: skip
            if letter.resolution != DeadLetter.Resolution.OPEN and letter.resolved_at:
                moments.append(Moment(letter.resolved_at, letter.resolution, f"{letter.get_resolution_display()} from the dead letters", "warn"))
        for at in duplicates.get(delivery.pk, []):
            moments.append(Moment(datetime.fromtimestamp(at, dt_timezone.utc), "duplicate", "Duplicate suppressed: idempotency stopped a second send", "ok"))
        if delivery.status == DeliveryStatus.DELIVERED and delivery.finished_at:
            moments.append(Moment(delivery.finished_at, "delivered", f"Delivered by {delivery.provider}", "ok"))
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


def dumps(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":"))
