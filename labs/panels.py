"""The live panels of a lab run: everything the diagram, tables and charts show, read once per refresh.

The page asks for them again (`labs:panels`) when events arrive, at most about once a
second, so each refresh reads the rows, the breakers and the faults once and every panel
draws from that one `RunState`.
"""

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.db.models import Count
from django.db.models.functions import TruncSecond
from django.utils import timezone
from django.utils.translation import ngettext

from config import heartbeat
from config.prepared import Prepared
from labs import charts, checks
from labs.lab_files import Lab
from labs.models import (
    TERMINAL,
    DeadLetter,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    LabRun,
    NotificationIntent,
    Order,
    OrderStatus,
    PaymentAuthorisation,
    SagaMode,
    SagaState,
    SagaStepName,
    SagaStepStatus,
    StockLevel,
    SyncOutcome,
    SyncRequest,
)
from labs.pipeline import defences, discovery, events, faults, metrics, saga, sync_chain, sync_load, tally
from labs.pipeline.intake import URGENT_QUEUE
from labs.pipeline.topology import ALL_PROVIDERS, INSTANCE_OF, PROVIDERS, SERVICES, instances

SERIES_SECONDS = 60
RETRY_CHART_WINDOW = timedelta(seconds=30)


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
    sagas: dict | None = None  # the order saga's panel (lab 7), when the run has orders or is the saga lab
    sync_path: "SyncPath | None" = None  # lab 9's synchronous path, in runs that have one
    discovery: "DiscoveryView | None" = None
    # The run's newest event when these figures were read: the page adds what later events moved to the strip.
    events_through: str = "0-0"

    @property
    def main_stages(self) -> list[dict]:
        """The diagram's boxes on the main line (API, outbox, relay; workers): the figure and the lines under it."""
        f = self.facts
        outbox_lines = ["pending", f"{f['outbox_oldest_s']:g} s old"] if f["outbox_pending"] else ["pending"]
        stages = [
            ("api", 6, 78, "API", f["intents"], "stage-accepted", ["accepted"], ""),
            ("outbox", 100, 96, "Outbox", f["outbox_pending"], "stage-outbox", outbox_lines, "waiting" if f["outbox_pending"] else ""),
            ("relay", 212, 80, "Relay", self.relay_state, "stage-relay", [f"{f['outbox_scheduled']} due", "later"], f"relay-{self.relay_state}"),
            ("workers", 414, 84, "Workers", f["sending"], "stage-sending", ["sending", f"{self.workers_alive} up"], ""),
        ]
        return [{"stage": stage, "x": x, "width": width, "middle": x + width / 2, "title": title, "figure": figure,
                 "testid": testid, "lines": [(177 + 19 * n, line) for n, line in enumerate(lines)], "classes": classes}
                for stage, x, width, title, figure, testid, lines, classes in stages]  # fmt: skip

    @property
    def queue_boxes(self) -> list[dict]:
        """The diagram's queue column: one box per lane."""
        return [{"name": name, "depth": depth, "age": age, "y": y, "height": height, "middle": y + height / 2}
                for (name, depth, age), (y, height) in zip(self.queues, charts.stack(len(self.queues), 24, 262), strict=True)]  # fmt: skip

    @property
    def provider_boxes(self) -> list[dict]:
        """The diagram's provider column: breaker state, fault and what each really sent."""
        names = [name for pair in PROVIDERS.values() for name in pair]
        return [{"name": name, "state": self.breakers.get(name, "closed"), "fault": self.faults.get(name),
                 "sent": self.provider_sends.get(name, 0), "y": y, "height": height, "middle": y + height / 2}
                for name, (y, height) in zip(names, charts.stack(len(names), 4, 300, gap=4), strict=True)]  # fmt: skip

    @property
    def retry_rows(self) -> list[dict]:
        """Retries waiting: attempt n of m, and when."""
        now = timezone.now()
        return [{"delivery": d, "attempt": d.attempts + 1, "of": self.run.max_attempts, "at": d.next_attempt_at,
                 "clock": d.next_attempt_at.strftime("%H:%M:%S"), "in_s": max(0.0, (d.next_attempt_at - now).total_seconds())}
                for d in self.retries if d.next_attempt_at]  # fmt: skip

    @property
    def invariants(self) -> list[tuple[str, bool, str]]:
        return invariants(self.facts)

    @property
    def breaker_rows(self) -> list[dict]:
        """Per channel: the primary and the secondary provider, each with its breaker state and what it sent."""
        boxes = {box["name"]: box for box in self.provider_boxes}
        return [{"channel": channel, "providers": [boxes[name] for name in pair]} for channel, pair in PROVIDERS.items()]

    @property
    def relay_state(self) -> str:
        if not self.relay_alive:
            return "down"
        return "paused" if self.faults.get(faults.PIPELINE, {}).get("relay_paused") else "running"

    @property
    def busy(self) -> bool:
        """Whether something is moving or waiting on a clock, so the panels should tick on their own."""
        f = self.facts
        return bool(f["in_flight"] or f["outbox_pending"] or f["retries_scheduled"] or self.faults or f["breakers_open"]
                    or f["orders_in_flight"] or f["load_running"] or f["sync_breakers_open"] or self.run.discovery)  # fmt: skip


@dataclass
class SyncPath:
    """Lab 9's panel: the call policy, the breakers and faults on the path, and how the latest load's requests ended."""

    policy: sync_chain.CallPolicy
    breakers: dict[str, str]  # "api → preferences-service": state
    service_faults: list[tuple[str, dict]]
    load: int
    outcomes: list[tuple[str, str, int]]  # (outcome, label, requests)
    workers: int = sync_load.API_WORKERS

    @property
    def policy_text(self) -> str:
        return sync_chain.policy_text(self.policy)


def sync_path(run: LabRun, fault_settings: dict) -> SyncPath:
    load = sync_load.latest_load(run.pk)
    counted = dict(SyncRequest.objects.filter(run=run, load=load).values("outcome").annotate(n=Count("id")).values_list("outcome", "n"))
    return SyncPath(
        policy=sync_chain.CallPolicy.of(run),
        breakers=sync_chain.breaker_states(run),
        service_faults=[(service, fault_settings.get(service, {})) for service in SERVICES],
        load=load,
        outcomes=[(outcome.value, outcome.label, counted.get(outcome.value, 0)) for outcome in SyncOutcome],
    )


@dataclass
class DiscoveryView:
    """The discovery panel: how workers find instances, each instance's health, the cached answers, the latest calls."""

    text: str
    mode: str
    ttl_s: int
    providers: list[dict]  # {"name", "instances": [...], "cached": (answer, seconds left) or None}
    calls: list[DeliveryAttempt]


def _instance_box(name: str, entry: dict | None, fault: dict, calls: dict, now: float) -> dict:
    """One instance as the panel shows it: the registry's view, what the instance is really doing, its calls."""
    if entry is None:
        status, label = "unregistered", "not registered"
    elif not discovery.registered(entry, now):
        status, label = "gone", "gone: no heartbeat"
    elif entry["status"] == discovery.PASSING:
        status, label = "passing", "in rotation"
    elif discovery.alive_now(entry, now):
        status, label = "critical", "out: alive, failing checks"
    else:
        status, label = "critical", "out: failing checks, no heartbeat"
    doing = discovery.condition(fault, now)
    made, failed = calls.get(name, (0, 0))
    return {"name": name, "number": name.rsplit("-", 1)[1], "status": status, "label": label, "doing": doing,
            "fault": fault, "calls": made, "failed": failed,
            "beat_s": round(now - entry["beat"], 1) if entry else None}  # fmt: skip


def discovery_view(run: LabRun, fault_settings: dict, counts: dict[str, int]) -> DiscoveryView:
    """`counts`: the run's running counts (labs.pipeline.tally), which hold each instance's calls."""
    now = time.time()
    registry = discovery.read_registry(run.pk)
    calls = {name.removeprefix("calls:"): (n, counts.get(tally.instance_calls(name.removeprefix("calls:"), failed=True), 0))
             for name, n in counts.items() if name.startswith("calls:")}  # fmt: skip
    active = {INSTANCE_OF[name] for name in [*calls, *fault_settings] if name in INSTANCE_OF}
    active |= {INSTANCE_OF[name] for name, entry in registry.items() if name in INSTANCE_OF
               and (not discovery.registered(entry, now) or entry["status"] != discovery.PASSING)}  # fmt: skip
    shown = [name for name in ALL_PROVIDERS if name in active] or [ALL_PROVIDERS[0]]
    providers = [{"name": provider,
                  "instances": [_instance_box(name, registry.get(name), fault_settings.get(name, {}), calls, now) for name in instances(provider)],
                  "cached": discovery.cached_answer(run.pk, provider) if discovery.mode_of(run) == discovery.DNS else None}
                 for provider in shown]  # fmt: skip
    latest = list(DeliveryAttempt.objects.filter(run=run).exclude(instance="").select_related("delivery").order_by("-finished_at", "-id")[:10])
    return DiscoveryView(discovery.describe(run.discovery), discovery.mode_of(run), discovery.ttl_of(run), providers, latest)


def invariants(f: dict) -> list[tuple[str, bool, str]]:
    """The auditor's invariants as (name, holds, detail), from a run's facts (labs.checks)."""
    lost = f["lost"] + f["stranded"]
    return [
        ("Nothing lost", lost == 0, f"{lost} lost or stranded"),
        ("Nothing sent twice", f["duplicate_sends"] == 0,
         f"{f['duplicate_sends']} {ngettext('duplicate send', 'duplicate sends', f['duplicate_sends'])}"),
        ("Quiet hours respected", f["quiet_hours_violations"] == 0, f"{f['quiet_hours_violations']} sent in quiet hours"),
        ("Per-user order kept", f["order_violations"] == 0, f"{f['order_violations']} out of order"),
        *(saga_invariants(f) if f.get("orders") else []),
    ]


def saga_invariants(f: dict) -> list[tuple[str, bool, str]]:
    """The order saga's invariants (labs.pipeline.saga_audit), shown once a run has orders."""
    return [
        ("Every order confirmed or fully compensated", f["orders_half_done"] == 0,
         f"{f['orders_half_done']} {ngettext('order', 'orders', f['orders_half_done'])} half-done"),
        ("Nothing charged twice", f["double_charges"] == 0,
         f"{f['double_charges']} {ngettext('extra authorisation', 'extra authorisations', f['double_charges'])}"),
        ("No stock leaked", f["stock_leaked"] == 0, f"{f['stock_leaked']} {ngettext('unit', 'units', f['stock_leaked'])} held for nothing"),
    ]


def run_state(run: LabRun, lab: Lab | None = None) -> RunState:
    """Everything the panels show, in a fixed number of queries that does not grow with the run's
    history (labs.checks.facts says how); the faults are the run row's, read with it."""
    now = timezone.now()
    events_through = events.last_id(run.pk)  # read before the figures (static/js/labs.js, "The strip")
    breakers = checks.breaker_states(run)
    fault_settings = dict(run.faults or {})
    reading = checks.Reading()
    found = checks.facts(run, breakers, fault_settings, reading)
    queues = [(name, reading.queues.get(name, (0, None))[0], _age(now, reading.queues.get(name, (0, None))[1]))
              for name in [URGENT_QUEUE, *PROVIDERS]]  # fmt: skip
    state = RunState(
        run=run,
        facts=found,
        breakers=breakers,
        faults=fault_settings,
        defences=defences.all_defences(run),
        queues=queues,
        provider_sends={name.removeprefix("sent:"): n for name, n in reading.counts.items() if name.startswith("sent:")},
        retries=list(
            Delivery.objects.filter(run=run, status=DeliveryStatus.RETRY_SCHEDULED)
            .select_related("intent__template")
            .order_by("next_attempt_at")[:8]
        ),
        recent_notifications=recent_notifications(run),
        dead_letter_groups=reading.dead_letter_groups,
        dead_letters=list(
            DeadLetter.objects.filter(run=run, resolution=DeadLetter.Resolution.OPEN)
            .select_related("delivery__intent__template", "delivery__recipient")
            .order_by("error_group", "-created_at")[:60]
        ),
        relay_alive=bool(heartbeat.alive("relay")),
        workers_alive=len(heartbeat.alive("worker")),
        series=series(run, now),
        retry_chart=charts.retry_chart([r for r in reading.retries if r.failed_at >= (now - RETRY_CHART_WINDOW).timestamp()], now,
                                       found["retry_herd_pct"]),
        events_through=events_through,
    )  # fmt: skip
    if sync_chain.chain_on(run):
        state.sync_path = sync_path(run, fault_settings)
    if run.discovery or found["instance_calls"] or (lab is not None and lab.uses_discovery):
        state.discovery = discovery_view(run, fault_settings, reading.counts)
    if lab is not None:
        state.checks = checks.evaluate(lab, found)
    if found["orders"] or (lab is not None and lab.slug == SAGA_LAB):
        state.sagas = saga_panel(run)
    return state


SAGA_LAB = "order-saga"
SAGA_ROWS = 8
# What a step is called on its chip in the saga panel, in the order the chips stand.
STEP_CHIPS = {
    SagaStepName.RESERVE_INVENTORY: "reserve",
    SagaStepName.AUTHORISE_PAYMENT: "authorise",
    SagaStepName.CONFIRM_ORDER: "confirm",
    SagaStepName.NOTIFY_CUSTOMER: "notify",
    SagaStepName.VOID_AUTHORISATION: "void",
    SagaStepName.RELEASE_INVENTORY: "release",
    SagaStepName.CANCEL_ORDER: "cancel",
}
CHIP_MARKS = {SagaStepStatus.SUCCEEDED: "✔", SagaStepStatus.FAILED: "✘", SagaStepStatus.GAVE_UP: "✘",
              SagaStepStatus.RETRYING: "↻", SagaStepStatus.RUNNING: "…"}  # fmt: skip


def saga_panel(run: LabRun) -> dict:
    """Each recent order's saga as a state machine: its forward steps and its compensations, each
    with what happened (done, failed, retrying, gave up), its attempts, and copies ignored or done twice."""
    orders = list(Order.objects.filter(run=run).prefetch_related("steps").order_by("-number")[:SAGA_ROWS])
    rows = []
    for order in orders:
        ran = {step.step: step for step in order.steps.all()}
        current = order.saga_state if order.mode == SagaMode.ORCHESTRATION else ""

        def chip(name: str) -> dict:
            step = ran.get(name)
            status = step.status if step else "not_reached"
            return {"name": STEP_CHIPS[name], "title": SagaStepName(name).label, "status": status,
                    "mark": CHIP_MARKS.get(status, ""), "current": name == current, "step": step,
                    "retries": step.retries if step else 0, "twice": step is not None and step.executions > 1,
                    "compensation": name in saga.COMPENSATION_STEPS}  # fmt: skip

        rows.append({
            "order": order,
            "forward": [chip(name) for name in saga.FORWARD],
            "compensations": [chip(name) for name in saga.COMPENSATION_STEPS if name in ran],
            "state": _saga_state_words(order, ran),
            "stuck": order.status == OrderStatus.PENDING and any(s.status == SagaStepStatus.GAVE_UP for s in ran.values()),
        })  # fmt: skip
    stock = StockLevel.objects.filter(run=run).first()  # None on a run made before the saga lab, until its first order
    return {"orders": rows, "mode": SagaMode(run.saga_mode).label, "stock": stock,
            "charges": PaymentAuthorisation.objects.filter(run=run, voided_at__isnull=True).count()}  # fmt: skip


def _age(now, since) -> float:
    return round((now - since).total_seconds(), 1) if since else 0.0


def recent_notifications(run: LabRun, count: int = 8) -> list[dict]:
    intents = list(
        NotificationIntent.objects.filter(run=run)
        .select_related("template", "recipient")
        .prefetch_related("deliveries")
        .order_by("-created_at", "-id")[:count]
    )
    shown = []
    for intent in intents:
        statuses = {d.status for d in intent.deliveries.all()}
        status = "in flight" if not statuses <= set(TERMINAL) else ", ".join(sorted(DeliveryStatus(s).label for s in statuses))
        shown.append({"intent": intent, "status": status, "done": statuses <= set(TERMINAL)})
    return shown


def series(run: LabRun, now) -> dict[str, charts.Sparkline]:
    """Per-second counts over the last minute, each the same figure as the tile or fact of that name
    (labs.checks.FACTS): notifications accepted, deliveries delivered, failed attempts, dead letters written.
    The database counts each second (at most SERIES_SECONDS rows a series, through the run's time indexes)."""
    since = now - timedelta(seconds=SERIES_SECONDS)
    return {name: charts.sparkline(query(run_id=run.pk, since=since), now, SERIES_SECONDS) for name, query in SERIES.items()}


def _per_second(rows, column: str):
    return rows.annotate(second=TruncSecond(column)).order_by().values("second").annotate(n=Count("id")).values_list("second", "n")


# Compiled once per process (config/prepared.py; placeholders: a negative run id, a moment in 1901).
_SINCE = datetime(1901, 1, 1, tzinfo=dt_timezone.utc)
SERIES = {
    "notifications accepted": Prepared(lambda run_id, since: _per_second(
        NotificationIntent.objects.filter(run_id=run_id, created_at__gte=since), "created_at"), run_id=-7, since=_SINCE),
    "deliveries delivered": Prepared(lambda run_id, since: _per_second(
        Delivery.objects.filter(run_id=run_id, finished_at__gte=since, status=DeliveryStatus.DELIVERED), "finished_at"),
        run_id=-7, since=_SINCE),
    "failed attempts": Prepared(lambda run_id, since: _per_second(
        DeliveryAttempt.objects.filter(run_id=run_id, finished_at__gte=since, outcome__in=metrics.FAILED_OUTCOMES), "finished_at"),
        run_id=-7, since=_SINCE),
    "dead letters written": Prepared(lambda run_id, since: _per_second(
        DeadLetter.objects.filter(run_id=run_id, created_at__gte=since), "created_at"), run_id=-7, since=_SINCE),
}  # fmt: skip


def _saga_state_words(order: Order, ran: dict) -> str:
    """The orchestrator's state; a choreographed order has none, so its own status and its steps say it."""
    if order.mode == SagaMode.ORCHESTRATION:
        return SagaState(order.saga_state).label
    if order.status != OrderStatus.PENDING:
        return OrderStatus(order.status).label
    if any(step.status == SagaStepStatus.GAVE_UP for step in ran.values()):
        return "Stuck: a compensation gave up, and no service listens for that"
    return "In flight: no orchestrator, each service reacts to the last event"
