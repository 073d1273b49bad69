"""Chaos: tens of thousands of intents while the pipeline is broken for real, phase by phase.

Steps:
1. Start a Redis of its own, a Celery worker and the relay, all pointed at it, with every
   defence on, and wait until the worker and the relay beat.
2. Over the chaos window, send campaigns (one intake request of a few hundred intents) and
   single transactional messages (security alerts, password resets, ...) through the
   intake, remembering every idempotency key sent.
3. Meanwhile apply the fault mix phase by phase with `faults.set_fault`, as the lab pages
   do (see PHASES: provider errors, lost acknowledgements, worker crashes with duplicate
   deliveries and a relay crash, then primaries down while transactional messages fail
   over); SIGKILL a worker child every 2 s; SIGKILL the whole worker once and
   start it again, SIGKILL the relay once and start it again, and restart Redis once
   (empty: the faults it held are gone too, so the current phase is applied again).
4. Clear every fault and wait until every delivery is finished, saying what is in flight
   every few seconds.
5. Print the audit next to an independent count (`count_independently`: the keys the
   harness sent against the intents, the deliveries and the providers' ledger) and a
   summary per phase. Nothing may be lost, sent twice or left unfinished.

Throughout, the harness supervises the worker the way systemd or Kubernetes would:
a worker process that exits, or that stops refreshing its heartbeat (a liveness
probe), is started again. A Celery worker can lose its broker connection in ways it
does not recover from by itself (kombu's Redis transport has had several such bugs),
so production needs that supervision too; the pipeline's job is to lose nothing meanwhile.
(The relay command restarts its own crashed child, so the relay needs no such help.)

`make chaos` runs the long version on a fresh SQLite file; tests/test_chaos.py runs a
short one on the test database.
"""

import tests.environment  # noqa: F401,I001 - first: DEBUG off over plain HTTP with a key of its own, as the suite runs
import argparse
import logging
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from labs.pipeline import faults
from labs.pipeline.topology import ALL_PROVIDERS, PROVIDERS
from tests.harness import BASE_DIR, ServiceProcess, free_port, python_argv, redis_server_binary, wait_for

# Short leases and rescue delays, so a run of minutes sees every recovery path; a variable
# set in the environment wins (e.g. LAB_REDELIVER_AFTER=30 make chaos).
FAST = {"LAB_SENDING_LEASE": "3", "LAB_REDELIVER_AFTER": "5", "HEARTBEAT_TTL": "4"}
CHILD_KILL_EVERY = 2.0  # seconds between two SIGKILLs of a worker pool child
PROGRESS_EVERY = 5.0  # seconds between two progress lines
# A single message is one task, where a campaign batch carries a hundred: a tenth of the
# intents as singles is the traffic a campaign-heavy service sees, and what 2 cores can follow.
TRANSACTIONAL_SHARE = 0.1  # of the intents; the rest go out in campaigns
CAMPAIGN_SIZE = 500  # intents in one campaign request, at most
TRANSACTIONAL_TEMPLATES = ("security_alert", "password_reset", "order_shipped", "inapp_message")
CAMPAIGN_TEMPLATE = "weekly_digest"
RELAY_CRASHED = "the relay process died"  # what the relay command logs when it restarts its crashed child


@dataclass(frozen=True)
class Phase:
    name: str
    share: float  # of the chaos window
    faults: dict[str, dict]  # target -> settings, exactly as faults.set_fault takes them
    campaigns: bool = True  # False: only transactional traffic flows in this phase
    relay_crash: bool = False  # the relay dies once after a publish, from the phase's start until it has


def on_every_provider(**settings) -> dict[str, dict]:
    return {provider: settings for provider in ALL_PROVIDERS}


PRIMARIES_DOWN = (PROVIDERS["email"][0], PROVIDERS["push"][0])
PHASES = (
    Phase("calm", 0.10, {}),
    Phase("provider errors", 0.20, on_every_provider(error_rate=0.3)),
    Phase("lost acks", 0.20, on_every_provider(error_rate=0.3, lost_ack=0.2)),
    Phase(
        "pipeline faults",
        0.25,
        {**on_every_provider(error_rate=0.3, lost_ack=0.2), faults.PIPELINE: {"worker_crash": 0.1, "duplicate_delivery": 0.2}},
        relay_crash=True,
    ),
    # Transactional messages fail over to the secondaries; campaigns would only wait for the primary.
    Phase("primaries down", 0.25, {provider: {"error_rate": 1.0} for provider in PRIMARIES_DOWN}, campaigns=False),
)
# When the big outages happen, as shares of the chaos window.
KILL_WORKER_AT, KILL_RELAY_AT, RESTART_REDIS_AT = 0.25, 0.45, 0.65


def describe(fault_map: dict[str, dict]) -> str:
    """The faults of a phase in one line, e.g. "every provider error_rate=0.3; pipeline worker_crash=0.1"."""

    def settings_text(settings: dict) -> str:
        return " ".join(f"{name}={value}" for name, value in settings.items())

    provider_faults = {target: f for target, f in fault_map.items() if target != faults.PIPELINE}
    shared = list(provider_faults.values())
    if len(provider_faults) == len(ALL_PROVIDERS) and all(f == shared[0] for f in shared):
        parts = [f"every provider {settings_text(shared[0])}"]
    else:
        parts = [f"{target} {settings_text(f)}" for target, f in provider_faults.items()]
    if faults.PIPELINE in fault_map:
        parts.append(f"pipeline {settings_text(fault_map[faults.PIPELINE])}")
    return "; ".join(parts) or "no faults"


def describe_phase(phase: Phase) -> str:
    return describe(phase.faults) + ("; the relay crashes once after a publish" if phase.relay_crash else "")


@dataclass
class PhaseRecord:
    """A phase as it ran: its place in the window and the traffic sent while it was on."""

    phase: Phase
    starts: float  # seconds into the window
    ends: float
    campaigns: int = 0
    campaign_intents: int = 0
    singles: int = 0


class PhasePlan:
    """Which phase is on at a moment of the chaos window, kept applied through the fault API."""

    def __init__(self, run_id: int, seconds: float, relay_crashed=lambda: False, say=print):
        self.run_id = run_id
        self.relay_crashed = relay_crashed  # has the relay-crash fault fired yet?
        self.say = say
        self.records: list[PhaseRecord] = []
        start = 0.0
        for phase in PHASES:
            self.records.append(PhaseRecord(phase, start, start + phase.share * seconds))
            start += phase.share * seconds
        self.applied: PhaseRecord | None = None
        self.forgotten = threading.Event()  # Redis restarted empty: the current faults are gone
        self.reapplied = 0
        self.relay_crash_due = False  # set as a relay-crash phase starts, until the relay has crashed

    def at(self, elapsed: float) -> PhaseRecord:
        return next((r for r in self.records if elapsed < r.ends), self.records[-1])

    def keep_up(self, elapsed: float) -> PhaseRecord:
        """Apply the phase due at `elapsed` if it is not on yet (or Redis forgot it); returns it."""
        from redis.exceptions import RedisError

        due = self.at(elapsed)
        if due is self.applied and not self.forgotten.is_set():
            return due
        first_time = due is not self.applied
        again = self.forgotten.is_set()
        # The relay only crashes once it publishes, which waits for the lease a killed relay
        # held, and a Redis restart may wipe the fault before that: keep it set until it fires.
        self.relay_crash_due = (self.relay_crash_due or (first_time and due.phase.relay_crash)) and not self.relay_crashed()
        try:
            self.forgotten.clear()
            self._apply(due.phase, relay_crash=self.relay_crash_due)
        except RedisError:
            self.forgotten.set()  # Redis is down: try again on the next tick
            return due
        if first_time:
            number = self.records.index(due) + 1
            self.say(f"phase {number}/{len(self.records)} at {elapsed:.0f} s: {due.phase.name}: {describe_phase(due.phase)}")
        elif again:
            self.reapplied += 1
            self.say(f"chaos: Redis forgot the faults; {due.phase.name} applied again")
        self.applied = due
        return due

    def _apply(self, phase: Phase, relay_crash: bool) -> None:
        """Set every target's fault, or clear it, exactly as the lab pages do."""
        for target in faults.TARGETS:
            settings = dict(phase.faults.get(target, {}))
            if target == faults.PIPELINE and relay_crash:
                settings["relay_crash_after_publish"] = True
            faults.set_fault(self.run_id, target, **settings)


class Redis:
    """A private redis-server that can be killed and started again on the same port."""

    def __init__(self, logs: Path):
        self.port = free_port()
        self.logs = logs
        self.server: ServiceProcess | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        argv = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.server = ServiceProcess("chaos-redis", argv, {}, self.logs).start()
        client = redis.Redis(port=self.port)

        def up():
            try:
                return client.ping()
            except redis.ConnectionError:
                return False

        wait_for(up, 10, "the chaos Redis")

    def kill(self) -> None:
        self.server.kill()


def worker_children(worker: ServiceProcess) -> list[int]:
    try:
        return [int(pid) for pid in Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()]
    except (FileNotFoundError, ValueError):
        return []


class Chaos:
    def __init__(self, env: dict, logs: Path, say=print):
        self.env = env
        self.logs = logs
        self.say = say
        self.worker: ServiceProcess | None = None
        self.relay: ServiceProcess | None = None
        self.started: list[ServiceProcess] = []  # every worker and relay, for their logs
        self.worker_started_at = 0.0
        self.stats = {"children_killed": 0, "worker_killed": 0, "relay_killed": 0, "redis_restarted": 0,
                      "worker_restarted_by_supervisor": 0}  # fmt: skip

    def beating(self, process: str) -> bool | None:
        """Has a `process` ("worker" or "relay") refreshed its heartbeat within 10 s? None when Redis is down."""
        import redis

        try:
            client = redis.Redis.from_url(self.env["REDIS_URL"], socket_timeout=1)
            name = f"{self.env['FAULTLINE_REDIS_PREFIX']}heartbeat:{process}"
            return bool(client.zrangebyscore(name, time.time() - 10, "+inf"))
        except redis.RedisError:
            return None

    def supervise(self) -> None:
        """Restart a worker that exited or whose heartbeat stopped (a liveness probe)."""
        if self.worker is None or time.monotonic() - self.worker_started_at < 15:
            return
        alive = False
        if self.worker.running():
            alive = self.beating("worker")
            if alive is None:
                return  # Redis itself is down: nothing to judge the worker by
        if not alive:
            self.say("supervisor: the worker is gone or its heartbeat stopped; starting a new one")
            self.worker.kill()
            self.start_worker()
            self.stats["worker_restarted_by_supervisor"] += 1

    def start_worker(self) -> None:
        argv = python_argv("-m", "celery", "-A", "config", "worker", "-l", "WARNING", "-c", "2",
                           "--without-mingle", "--without-gossip", "--hostname", f"chaos-{uuid.uuid4().hex[:6]}@%h")  # fmt: skip
        self.worker = ServiceProcess("chaos-worker", argv, self.env, self.logs).start()
        self.started.append(self.worker)
        self.worker_started_at = time.monotonic()

    def start_relay(self) -> None:
        self.relay = ServiceProcess("chaos-relay", python_argv("manage.py", "relay"), self.env, self.logs).start()
        self.started.append(self.relay)

    def stop(self) -> None:
        for proc in (self.relay, self.worker):
            if proc is not None:
                proc.stop()

    def log_lines(self, name: str, text: str) -> int:
        """How many lines containing `text` the processes called `name` logged."""
        return sum(proc.output().count(text) for proc in self.started if proc.name == name)

    def unleash(self, redis: Redis, seconds: float, phases: PhasePlan, stop: threading.Event) -> None:
        """Break things for `seconds`: a child killed every 2 s throughout, each big outage once."""
        started = time.monotonic()
        plan = {
            seconds * KILL_WORKER_AT: self._kill_worker,
            seconds * KILL_RELAY_AT: self._kill_relay,
            seconds * RESTART_REDIS_AT: lambda: self._restart_redis(redis, phases),
        }
        while not stop.is_set() and time.monotonic() - started < seconds:
            elapsed = time.monotonic() - started
            for at in sorted(plan):
                if elapsed >= at:
                    plan.pop(at)()
            self.supervise()
            children = worker_children(self.worker)
            if children:
                try:
                    os.kill(random.choice(children), signal.SIGKILL)
                    self.stats["children_killed"] += 1
                except ProcessLookupError:
                    pass  # it exited on its own (an injected crash) since the listing
            stop.wait(CHILD_KILL_EVERY)

    def _kill_worker(self) -> None:
        self.say("chaos: SIGKILL the whole worker, start it again in 2 s")
        self.worker.kill()
        self.stats["worker_killed"] += 1
        time.sleep(2)
        self.start_worker()

    def _kill_relay(self) -> None:
        self.say("chaos: SIGKILL the relay, start it again in 2 s")
        self.relay.kill()
        self.stats["relay_killed"] += 1
        time.sleep(2)
        self.start_relay()

    def _restart_redis(self, redis: Redis, phases: PhasePlan) -> None:
        self.say("chaos: SIGKILL Redis and start it again, empty")
        redis.kill()
        time.sleep(1)
        redis.start()
        phases.forgotten.set()
        self.stats["redis_restarted"] += 1


# --- Traffic -------------------------------------------------------------------------


@dataclass
class Send:
    at: float  # seconds into the chaos window
    kind: str  # "campaign" or "single"
    requests: list  # intake.IntentRequest


def plan_traffic(intents: int, phases: PhasePlan, seed: int = 0) -> list[Send]:
    """Single transactional messages at an even pace over the whole window; campaigns at an
    even pace over the phases that send them, at least two in each."""
    from labs.pipeline.intake import IntentRequest
    from labs.pipeline.traffic import SAMPLE_DATA
    from labs.seeding import USERS_PER_RUN

    rng = random.Random(seed)
    seconds = phases.records[-1].ends
    singles = min(intents, max(1, round(intents * TRANSACTIONAL_SHARE)))
    sends = []
    for n in range(singles):
        template = TRANSACTIONAL_TEMPLATES[n % len(TRANSACTIONAL_TEMPLATES)]
        request = IntentRequest(f"chaos-single-{n}", rng.randint(1, USERS_PER_RUN), template, data=SAMPLE_DATA[template])
        sends.append(Send(seconds * n / singles, "single", [request]))
    campaign_intents = intents - singles
    spans = [(r.starts, r.ends) for r in phases.records if r.phase.campaigns]
    campaigns = min(campaign_intents, max(2 * len(spans), math.ceil(campaign_intents / CAMPAIGN_SIZE)))
    campaign_seconds = sum(end - start for start, end in spans)
    for c in range(campaigns):
        offset = campaign_seconds * c / campaigns
        for start, end in spans:  # the offset counts only the time of the phases that send campaigns
            if offset < end - start:
                break
            offset -= end - start
        numbers = range(campaign_intents * c // campaigns, campaign_intents * (c + 1) // campaigns)
        requests = [IntentRequest(f"chaos-campaign-{n}", n % USERS_PER_RUN + 1, CAMPAIGN_TEMPLATE,
                                  data=SAMPLE_DATA[CAMPAIGN_TEMPLATE]) for n in numbers]  # fmt: skip
        sends.append(Send(start + offset, "campaign", requests))
    return sorted(sends, key=lambda s: s.at)


def accept(run, requests: list) -> None:
    """Accept through the intake, sending the same keys again when the database fails, as a client would."""
    from django.db import DatabaseError, close_old_connections

    from labs.pipeline import intake

    for attempt in range(1, 4):
        try:
            intake.accept(run, requests)
            return
        except DatabaseError:
            if attempt == 3:
                raise
            close_old_connections()
            time.sleep(1)


def send_traffic(run, sends: list[Send], phases: PhasePlan, started: float, sent: dict[str, str], say=print) -> None:
    """Send each request when its time comes, keeping the phases applied; `sent` gets key -> phase name."""
    last_report = started
    pending = iter(sends)
    upcoming = next(pending, None)
    seconds = phases.records[-1].ends
    while (elapsed := time.monotonic() - started) < seconds or upcoming is not None:
        record = phases.keep_up(elapsed)
        if time.monotonic() - last_report >= PROGRESS_EVERY * 2:
            last_report = time.monotonic()
            say(f"chaos: {elapsed:.0f} s, {record.phase.name}: {len(sent):,} intents sent; {in_flight_line(run)}")
        if upcoming is None or upcoming.at > elapsed:
            time.sleep(0.05)
            continue
        accept(run, upcoming.requests)
        for request in upcoming.requests:
            sent[request.idempotency_key] = record.phase.name
        if upcoming.kind == "campaign":
            record.campaigns += 1
            record.campaign_intents += len(upcoming.requests)
        else:
            record.singles += 1
        upcoming = next(pending, None)


# --- Settling and counting ---------------------------------------------------------------


def in_flight(run) -> Counter:
    """Unfinished deliveries by status."""
    from labs.models import TERMINAL, Delivery

    rows = Delivery.objects.filter(run=run).exclude(status__in=TERMINAL).values_list("status", flat=True)
    return Counter(rows)


def in_flight_line(run) -> str:
    from labs.models import OutboxRow

    unfinished = in_flight(run)
    statuses = ", ".join(f"{status} {n:,}" for status, n in unfinished.most_common())
    unpublished = OutboxRow.objects.filter(run=run, published_at__isnull=True).count()
    return f"{sum(unfinished.values()):,} in flight ({statuses or 'none'}), {unpublished:,} outbox rows unpublished"


def settle(run, chaos: Chaos, timeout: float, say=print) -> bool:
    """Wait until no delivery is in flight, saying how many are every few seconds; False on timeout."""
    started = last_report = time.monotonic()
    while True:
        chaos.supervise()
        if not in_flight(run):
            return True
        now = time.monotonic()
        if now - started > timeout:
            say(f"settling: gave up after {timeout:.0f} s: {in_flight_line(run)}")
            return False
        if now - last_report >= PROGRESS_EVERY:
            last_report = now
            say(f"settling: {now - started:.0f} s, {in_flight_line(run)}")
        time.sleep(1)


def count_independently(run, sent: dict[str, str]) -> dict:
    """Check the keys the harness sent against the database and the providers' ledger.

    Steps:
    1. Every key sent must have become an intent of the run, and every intent have a delivery.
    2. Every delivery (one intent on one channel) must be finished.
    3. The ledger (unique per provider and key) must hold at most one send per intent and channel
       across providers, one for every delivery marked delivered, none for one suppressed,
       and none the harness did not ask for.
    """
    from labs.models import TERMINAL, DeadLetter, Delivery, DeliveryAttempt, DeliveryStatus, NotificationIntent, ProviderSend

    intent_of_key = dict(NotificationIntent.objects.filter(run=run).values_list("idempotency_key", "pk"))
    phase_of_intent = {intent_of_key[k]: phase for k, phase in sent.items() if k in intent_of_key}
    status = {
        (intent_id, channel): s
        for intent_id, channel, s in Delivery.objects.filter(run=run).values_list("intent_id", "channel", "status")
        if intent_id in phase_of_intent
    }
    ledger: dict[tuple[int, str], list[str]] = defaultdict(list)
    for intent_id, channel, provider in ProviderSend.objects.filter(run=run).values_list("intent_id", "channel", "provider"):
        ledger[intent_id, channel].append(provider)
    duplicated = {pair: providers for pair, providers in ledger.items() if len(providers) > 1}
    secondaries = {pair[1] for pair in PROVIDERS.values()}
    by_phase: dict[str, Counter] = defaultdict(Counter)
    for (intent_id, channel), s in status.items():
        outcome = s if s in TERMINAL else "unfinished"
        by_phase[phase_of_intent[intent_id]][outcome] += 1
        if (intent_id, channel) in duplicated:
            by_phase[phase_of_intent[intent_id]]["duplicated"] += 1
    letters = DeadLetter.objects.filter(run=run).values_list("error_group", flat=True)
    outcomes = DeliveryAttempt.objects.filter(delivery__run=run).values_list("outcome", flat=True)
    return {
        "keys_sent": len(sent),
        "intents_missing": len(sent) - len(phase_of_intent),
        "intents_not_sent_by_harness": len(intent_of_key) - len(phase_of_intent),
        "intents_without_delivery": len(set(phase_of_intent) - {intent_id for intent_id, _ in status}),
        "deliveries": len(status),
        "unfinished": sum(1 for s in status.values() if s not in TERMINAL),
        "ledger_rows": sum(len(providers) for providers in ledger.values()),
        "duplicated": len(duplicated),
        "delivered_without_send": sum(1 for pair, s in status.items() if s == DeliveryStatus.DELIVERED and pair not in ledger),
        "suppressed_but_sent": sum(1 for pair, s in status.items() if s == DeliveryStatus.SUPPRESSED and pair in ledger),
        "sends_nobody_asked_for": sum(1 for pair in ledger if pair not in status),
        "sent_by_secondary": sum(1 for providers in ledger.values() if set(providers) & secondaries),
        "ledger_by_provider": dict(Counter(p for providers in ledger.values() for p in providers).most_common()),
        "duplicated_by_providers": dict(Counter("+".join(sorted(p)) for p in duplicated.values()).most_common()),
        "dead_letters_by_group": dict(Counter(letters).most_common()),
        "attempts_by_outcome": dict(Counter(outcomes).most_common()),  # the pipeline's own rows, for the faults' effect
        "by_phase": by_phase,
    }


@dataclass
class ChaosResult:
    audit: dict
    count: dict
    phases: list[PhaseRecord]
    stats: dict
    seconds: dict  # wall time: the window, the settle, the whole run
    # The running counts the panels read (labs.pipeline.tally) that differ from what the rows say:
    # {name: (counted, from the rows)}. Written in the transactions the kills interrupt, so they must agree.
    counts_off: dict = field(default_factory=dict)

    def problems(self) -> list[str]:
        """What broke an invariant: anything lost, sent twice or unfinished, by either count."""
        checks = {
            "audit: lost": self.audit["lost"],
            "audit: duplicate_sends": self.audit["duplicate_sends"],
            "audit: in_flight": self.audit["in_flight"],
            **{f"count: {name}": self.count[name] for name in (
                "intents_missing", "intents_without_delivery", "unfinished", "duplicated",
                "delivered_without_send", "suppressed_but_sent", "sends_nobody_asked_for")},
        }  # fmt: skip
        return [f"{name} = {value}" for name, value in checks.items() if value] + \
            [f"running count {name} = {counted}, the rows say {rows}" for name, (counted, rows) in self.counts_off.items()]

    def report(self) -> str:
        lines = ["audit (labs.pipeline.audit):"]
        lines += _aligned(self.audit)
        lines.append("independent count (the keys the harness sent, the deliveries, the providers' ledger):")
        lines += _aligned({name: value for name, value in self.count.items() if name != "by_phase"})
        lines.append("phases:")
        for number, record in enumerate(self.phases, 1):
            outcome = self.count["by_phase"].get(record.phase.name, Counter())
            window = f"{record.starts:.0f}-{record.ends:.0f} s"
            lines.append(f"  {number}. {record.phase.name} ({window}): {describe_phase(record.phase)}")
            lines.append(f"     sent {record.campaign_intents + record.singles:,} intents ({record.campaign_intents:,} in "
                         f"{record.campaigns} campaigns, {record.singles:,} single); their deliveries: "
                         + ", ".join(f"{name} {n:,}" for name, n in sorted(outcome.items())))  # fmt: skip
        lines.append("processes:")
        lines += _aligned({**self.stats, **{f"seconds_{name}": value for name, value in self.seconds.items()}})
        return "\n".join(lines)


def _aligned(values: dict) -> list[str]:
    width = max(map(len, values))
    return [f"  {name:<{width}}  {value}" for name, value in values.items()]


def calm_run(owner):
    from labs.models import Recipient
    from labs.runs import create_run

    run = create_run(owner, retry_base_ms=200, retry_cap_ms=2000, max_attempts=8)
    Recipient.objects.filter(run=run).update(quiet_start=None, quiet_end=None)
    return run


def run_chaos(run, env: dict, logs: Path, intents: int, chaos_seconds: float, settle_timeout: float,
              say=print, redis: Redis | None = None) -> ChaosResult:  # fmt: skip
    from django.test import override_settings

    from labs.pipeline import defences
    from labs.pipeline.audit import audit

    assert all(defences.all_defences(run).values()), "the chaos run keeps every defence on"
    if redis is None:
        redis = Redis(logs)
        redis.start()
    prefix = f"chaos-{uuid.uuid4().hex[:6]}:"
    env = {**FAST, **env, "REDIS_URL": redis.url, "FAULTLINE_REDIS_PREFIX": prefix}  # the environment may override FAST
    chaos = Chaos(env, logs, say)
    phases = PhasePlan(run.pk, chaos_seconds, lambda: chaos.log_lines("chaos-relay", RELAY_CRASHED) > 0, say)
    sends = plan_traffic(intents, phases, seed=run.pk)
    sent: dict[str, str] = {}
    stop = threading.Event()
    kills = threading.Thread(target=chaos.unleash, args=(redis, chaos_seconds, phases, stop), daemon=True)
    # This process sets the faults: it must use the Redis and the key prefix the worker and relay use.
    with override_settings(REDIS_URL=redis.url, REDIS_KEY_PREFIX=prefix):
        try:
            chaos.start_worker()
            chaos.start_relay()
            wait_for(lambda: chaos.beating("worker") and chaos.beating("relay"), 60, "both heartbeats", interval=0.5)
            started = time.monotonic()
            kills.start()
            send_traffic(run, sends, phases, started, sent, say)
            stop.set()
            kills.join()
            wait_for(lambda: _cleared(run.pk), 30, "Redis to take the fault clearing", interval=0.5)
            window = time.monotonic() - started
            say(f"chaos: every fault cleared after {window:.0f} s and {len(sent):,} intents; waiting for the pipeline to settle")
            settle(run, chaos, settle_timeout, say)
            total = time.monotonic() - started
        finally:
            stop.set()
            chaos.stop()
            redis.kill()
        stats = {**chaos.stats, "faults_applied_again": phases.reapplied,
                 "relay_crashes": chaos.log_lines("chaos-relay", RELAY_CRASHED),
                 "worker_crashes_injected": chaos.log_lines("chaos-worker", "injected worker crash")}  # fmt: skip
        seconds = {"window": round(window, 1), "settle": round(total - window, 1), "total": round(total, 1)}
        return ChaosResult(audit(run), count_independently(run, sent), phases.records, stats, seconds, counts_off(run.pk))


def counts_off(run_id: int) -> dict[str, tuple]:
    from labs.pipeline import audit as auditor, tally

    counted, rows = tally.read(run_id), auditor.counts_from_rows(run_id)
    return {name: (counted.get(name), rows.get(name)) for name in sorted(set(counted) | set(rows)) if counted.get(name) != rows.get(name)}


def _cleared(run_id: int) -> bool:
    from redis.exceptions import RedisError

    try:
        faults.clear_faults(run_id)
        return True
    except RedisError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description="Break the pipeline for real, phase by phase, and count what came out.")
    parser.add_argument("--intents", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=120, help="how long to keep breaking things (and sending)")
    parser.add_argument("--settle", type=float, default=210, help="how long the pipeline may take to finish afterwards")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="faultline-chaos-"))
    database, drop_database = chaos_database(workdir)
    env = {**os.environ, "DATABASE_URL": database, "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONUNBUFFERED": "1"}
    env.pop("REDIS_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=BASE_DIR, env=env, check=True)
    redis = Redis(workdir)
    redis.start()
    os.environ.update(DATABASE_URL=database, DJANGO_SETTINGS_MODULE="config.settings", REDIS_URL=redis.url)
    import django

    django.setup()
    # While Redis is down each request sent would print that its event was dropped; the chaos
    # lines already say when Redis goes down and comes back.
    logging.getLogger("labs.pipeline.events").setLevel(logging.ERROR)
    from django.contrib.auth import get_user_model

    run = calm_run(get_user_model().objects.create(username=f"chaos-{uuid.uuid4().hex[:6]}"))
    print(f"chaos: {args.intents:,} intents over {args.seconds:.0f} s of faults in {len(PHASES)} phases, "
          f"every defence on, on {'PostgreSQL' if database.startswith('postgres') else 'SQLite'} (logs in {workdir})", flush=True)  # fmt: skip
    result = run_chaos(run, env, workdir, args.intents, args.seconds, settle_timeout=args.settle,
                       say=lambda line: print(line, flush=True), redis=redis)  # fmt: skip
    print(result.report())
    problems = result.problems()
    print("chaos: PASS: nothing lost, nothing sent twice, nothing unfinished" if not problems else
          f"chaos: FAIL: {'; '.join(problems)}")  # fmt: skip
    drop_database()
    sys.exit(1 if problems else 0)


def chaos_database(workdir: Path):
    """(the run's DATABASE_URL, how to drop it): a SQLite file in `workdir`; with CHAOS_POSTGRES_URL (a server
    this user may create databases on), a fresh PostgreSQL database `faultline_chaos_<pid>` on it, dropped after."""
    server = os.environ.get("CHAOS_POSTGRES_URL")
    if not server:
        return f"sqlite:///{workdir / 'chaos.sqlite3'}", lambda: None
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"faultline_chaos_{os.getpid()}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urlunsplit(urlsplit(server)._replace(path=f"/{name}")), drop


if __name__ == "__main__":
    main()
