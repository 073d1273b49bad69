"""Load on the API's synchronous path, for lab 9 (lesson: circuit-breakers-bulkheads).

A load sends `rate` notifications a second for `seconds`, on a steady clock, whatever the API
does: clients at peak do not slow down because the server did (an open loop). The API serves
them with API_WORKERS workers, like a web process with that many sync workers: a request that
finds every worker busy waits for one, and its client's clock runs meanwhile. Each request goes
through labs.pipeline.sync_chain, which records its latency and outcome.

Steps:
1. Claim the run's one load slot (a second load is refused until this one ends) and number the load.
2. A thread of the process that started it schedules the arrivals and hands each to the pool.
3. When every request has been answered, free the slot and say so in the event feed.
"""

import json
import logging
import math
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from django.db import close_old_connections, connections

from config.redis_client import get_redis, key
from labs.models import SYNC_ERRORS, LabRun, SyncOutcome, SyncRequest
from labs.pipeline import events, faults, intake, sync_chain, traffic
from labs.pipeline.breaker import CLOSED
from labs.pipeline.topology import PREFERENCES_SERVICE
from labs.seeding import USERS_PER_RUN

log = logging.getLogger(__name__)

API_WORKERS = 4
LOAD_TEMPLATE = "password_reset"
MAX_RATE, MAX_SECONDS = 20, 30


def _slot_key(run_id: int) -> str:
    return key("run", str(run_id), "load-running")


def _number_key(run_id: int) -> str:
    return key("run", str(run_id), "loads")


def _started_key(run_id: int, load: int) -> str:
    return key("run", str(run_id), "load", str(load), "started-with")


def started_with(run_id: int, load: int) -> tuple[sync_chain.CallPolicy, int]:
    """The call policy a load started with, and the latency the preferences service's fault added then (ms)."""
    raw = get_redis().get(_started_key(run_id, load)) if load else None
    if not raw:
        return sync_chain.CallPolicy(), 0
    found = json.loads(raw)
    return sync_chain.CallPolicy(**found["policy"]), found["preferences_latency_ms"]


def latest_load(run_id: int) -> int:
    """The number of the run's latest load (0: none yet)."""
    return int(get_redis().get(_number_key(run_id)) or 0)


def load_running(run_id: int) -> bool:
    return bool(get_redis().exists(_slot_key(run_id)))


def start_load(run: LabRun, rate: int, seconds: int) -> int:
    """Start a load in the background; returns its number. ValueError when one is running or the numbers are out of range."""
    if not sync_chain.chain_on(run):
        raise ValueError("this run's API has no synchronous path to load (lab 9's runs do)")
    if not (1 <= rate <= MAX_RATE and 1 <= seconds <= MAX_SECONDS):
        raise ValueError(f"a load sends 1 to {MAX_RATE} requests a second for 1 to {MAX_SECONDS} seconds")
    # The slot expires by itself should this process die mid-load.
    longest = seconds + sync_chain.CLIENT_TIMEOUT_MS / 1000 * (rate * seconds / API_WORKERS + 2)
    if not get_redis().set(_slot_key(run.pk), 1, nx=True, ex=int(longest) + 5):
        raise ValueError("a load is already running on this run: wait for it to end")
    number = get_redis().incr(_number_key(run.pk))
    # What the load starts with, which its figures are read against (the learner may change either during the load).
    started_with = {"policy": asdict(sync_chain.CallPolicy.of(run)),
                    "preferences_latency_ms": faults.fault_for(run.pk, PREFERENCES_SERVICE).get("latency_ms", 0)}  # fmt: skip
    get_redis().set(_started_key(run.pk, number), json.dumps(started_with), ex=24 * 3600)
    events.emit(run.pk, "load_started", load=number, rate=rate, seconds=seconds, workers=API_WORKERS)
    threading.Thread(target=_run_load, args=(run.pk, number, rate, seconds), name=f"load-{run.pk}-{number}", daemon=True).start()
    return number


def _run_load(run_id: int, number: int, rate: int, seconds: int) -> None:
    total = rate * seconds
    try:
        with sync_chain.new_client() as client, ThreadPoolExecutor(API_WORKERS, thread_name_prefix=f"api-{run_id}") as pool:
            start = time.monotonic()
            for n in range(total):
                time.sleep(max(0.0, start + n / rate - time.monotonic()))
                pool.submit(_one_request, run_id, number, n, client, sync_chain.Timing.now())
    except Exception:
        log.exception("run %s: load %s stopped", run_id, number)
    finally:
        connections.close_all()
        get_redis().delete(_slot_key(run_id))
        events.emit(run_id, "load_finished", load=number, requests=total)


def _one_request(run_id: int, number: int, n: int, client, arrived: sync_chain.Timing) -> None:
    """One API worker serving one request (the worker's thread keeps its own database connection)."""
    close_old_connections()
    run = LabRun.objects.filter(pk=run_id).first()
    if run is None:
        return  # the run was deleted mid-load
    user_id = n % USERS_PER_RUN + 1  # every user in turn: a load of 50 or more asks after each of them
    request = intake.IntentRequest(f"load-{number}-{n}-{uuid.uuid4().hex[:6]}", user_id, LOAD_TEMPLATE, None, None,
                                   dict(traffic.SAMPLE_DATA.get(LOAD_TEMPLATE, {})))  # fmt: skip
    try:
        sync_chain.accept(run, request, client, arrived, load=number, request_name=f"load-{number}-{n}")
    except (sync_chain.ServiceUnavailable, intake.IntakeError):
        pass  # recorded: what the client saw is in the run's SyncRequest rows
    except Exception:
        log.exception("run %s: a request of load %s failed", run_id, number)
    finally:
        connections.close_all()  # this thread's own connections: the pool's threads end with the load


# --- What the services count, per load ----------------------------------------------------------


def _counts_key(run_id: int, load: int) -> str:
    return key("run", str(run_id), "load", str(load), "services")


def count_service(run_id: int, load: int, service: str, *names: str) -> None:
    """Count, for one load (0: calls outside any load), what a service did with a call: received, served, dropped, wasted, failed."""
    with get_redis().pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hincrby(_counts_key(run_id, load), f"{service}:{name}", 1)
        pipe.expire(_counts_key(run_id, load), 24 * 3600)
        pipe.execute()


def service_counts(run_id: int, load: int) -> dict[str, int]:
    """{"preferences-service:received": 12, ...} for one load."""
    return {name.decode() if isinstance(name, bytes) else name: int(value)
            for name, value in get_redis().hgetall(_counts_key(run_id, load)).items()}  # fmt: skip


# --- The figures lab 9 reads ---------------------------------------------------------------------


def percentile(values: list[int], share: float) -> int | None:
    """The nearest-rank percentile: the smallest value at least `share` of the values are at or under."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def load_figures(run: LabRun) -> dict:
    """The synchronous path's figures (labs.checks.FACTS): the latest load's requests as their clients saw
    them (SyncRequest rows), what the services did with its calls, and the path as it is now."""
    load = latest_load(run.pk) if sync_chain.chain_on(run) else 0
    rows = list(SyncRequest.objects.filter(run=run, load=load).values_list("latency_ms", "outcome", "busy_workers")) if load else []
    counts = service_counts(run.pk, load) if load else {}
    answered = len(rows)
    errors = sum(1 for _, outcome, _ in rows if outcome in SYNC_ERRORS)
    skipped = sum(1 for _, outcome, _ in rows if outcome == SyncOutcome.SKIPPED)
    on = sync_chain.chain_on(run)
    policy, slow_ms = started_with(run.pk, load)
    return {
        "api_requests": answered,
        "api_p95_ms": percentile([latency for latency, _, _ in rows], 0.95),
        "api_error_pct": round(100 * errors / answered) if answered else 0,
        "api_fallbacks": sum(1 for _, outcome, _ in rows if outcome == SyncOutcome.FALLBACK),
        "api_busy_workers": sync_chain.busy_workers(run.pk) if on else 0,
        "api_busy_peak": max((busy for _, _, busy in rows), default=0),
        "preference_calls_per_request": round(counts.get(f"{PREFERENCES_SERVICE}:received", 0) / answered, 1) if answered else 0.0,
        "wasted_work": sum(value for name, value in counts.items() if name.endswith(":wasted")),
        "deadline_drops": skipped + sum(value for name, value in counts.items() if name.endswith(":dropped")),
        "sync_breakers_open": sum(1 for state in sync_chain.breaker_states(run).values() if state != CLOSED) if on else 0,
        "load_running": int(load_running(run.pk)) if on else 0,
        "load_timeout_ms": policy.timeout_ms if load else 0,
        "load_deadline": int(policy.deadline) if load else 0,
        "load_breaker": int(policy.breaker) if load else 0,
        "load_slow_ms": slow_ms,
    }
