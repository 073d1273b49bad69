"""Faults injected into one run, kept in the run's row (`LabRun.faults`), so every process sees a
change at its next read and a Redis restart changes nothing a learner or instructor set. Only the
"fail first N" call counters live in Redis (a Redis restart starts them again from zero).

Toxiproxy's vocabulary (latency with jitter, down, timeout; a share of calls affected)
plus the application-level faults a TCP proxy cannot express. A fault has a target:
a provider (e.g. "sms-primary") or "pipeline" for the run's own processes.

Provider faults:
  down               every call fails with 503
  error_rate         that share of calls (0..1) fails with 503
  rate_limited       that share of calls is refused with 429 Too Many Requests
  latency_ms         each call takes this long ...
  latency_jitter_ms  ... give or take up to this much; past the client's timeout the call times out
  fail_first         the next N calls fail with 503, then calls succeed
  reject             every call is refused with a permanent 400 (the address is invalid)
  lost_ack           that share of calls delivers, but the response is lost (the client sees a timeout)
Service faults (lab 9's preferences-service and template-service): down, error_rate, latency_ms
and latency_jitter_ms, as for a provider; the services are called over HTTP, so a latency past the
caller's timeout is a timeout the caller sees.
Pipeline faults:
  worker_crash               that share of deliveries kills the worker process after the provider call, before the ack
  relay_paused               the relay publishes nothing
  relay_crash_after_publish  the relay dies after publishing a batch and before marking it (once per setting)
  duplicate_delivery         that share of messages is published twice
  publish_crash              with the outbox off: that share of API requests dies between the commit and the publish
  clock_skew_minutes         the worker's clock for quiet hours is off by this many minutes
Order saga faults (lab 7; labs/pipeline/saga.py):
  inventory_down             the inventory service answers nothing: reservations fail and are retried
  payment_decline            that share of payment authorisations is declined by the card issuer
  compensation_fail_first    the next N compensations (release, void, cancel) fail, then succeed
  orchestrator_crash         that share of the orchestrator's transitions kills its worker after the commit, before the ack
Instance faults (a provider's instance, e.g. "email-primary-2", when the run's discovery is on):
  killed   the instance's process is gone: no heartbeat; health checks and calls are refused
  slow_ms  every call and health check takes this long; past the check's timeout it fails
           readiness, though it stays alive (keeps its heartbeat) and serves the calls it gets
  flap_s   the instance crashes and restarts in turns of this many seconds (down, up, down, ...)
"""

import math

from django.apps import apps
from django.db import transaction

from config.redis_client import get_redis, key
from labs.pipeline import events
from labs.pipeline.topology import ALL_INSTANCES, ALL_PROVIDERS, SERVICES

PIPELINE = "pipeline"
SHARE = "share"  # a float between 0 and 1

PROVIDER_FAULTS: dict[str, type | str] = {
    "down": bool,
    "error_rate": SHARE,
    "rate_limited": SHARE,
    "latency_ms": int,
    "latency_jitter_ms": int,
    "fail_first": int,
    "reject": bool,
    "lost_ack": SHARE,
}
PIPELINE_FAULTS: dict[str, type | str] = {
    "worker_crash": SHARE,
    "relay_paused": bool,
    "relay_crash_after_publish": bool,
    "duplicate_delivery": SHARE,
    "publish_crash": SHARE,
    "clock_skew_minutes": int,
    "inventory_down": bool,
    "payment_decline": SHARE,
    "compensation_fail_first": int,
    "orchestrator_crash": SHARE,
}
SERVICE_FAULTS: dict[str, type | str] = {name: PROVIDER_FAULTS[name] for name in ("down", "error_rate", "latency_ms", "latency_jitter_ms")}
INSTANCE_FAULTS: dict[str, type | str] = {
    "killed": bool,
    "slow_ms": int,
    "flap_s": int,
}
# The targets of the fault panel (the pipeline last: workshop forms list the others before it); a
# provider's instances are targets too (INSTANCE_TARGETS), set from the lab steps.
TARGETS = (*ALL_PROVIDERS, *SERVICES, PIPELINE)
INSTANCE_TARGETS = tuple(ALL_INSTANCES)
# Each whole-number fault's range: wide enough for any experiment, narrow enough that no setting
# makes a worker sleep, count or shift its clock without end (10**12 minutes overflows a datetime).
WHOLE_NUMBER_RANGES: dict[str, tuple[int, int]] = {
    "latency_ms": (0, 60_000),
    "latency_jitter_ms": (0, 60_000),
    "fail_first": (0, 10_000),
    "clock_skew_minutes": (-24 * 60, 24 * 60),
    "compensation_fail_first": (0, 10_000),
    "slow_ms": (0, 60_000),
    "flap_s": (1, 600),
}


# Each fault as a learner reads it (the feed, the fault panel, the classroom bar): {share} is a percentage of
# calls, {number} a whole number; a boolean fault is its phrase alone.
IN_WORDS = {
    "down": "down",
    "error_rate": "{share} of calls fail (503)",
    "rate_limited": "{share} of calls refused (429)",
    "latency_ms": "{number} ms a call",
    "latency_jitter_ms": "give or take {number} ms",
    "fail_first": "fails {number} calls, then recovers",
    "reject": "rejects every address (400)",
    "lost_ack": "{share} of answers lost",
    "worker_crash": "{share} of deliveries crash the worker",
    "relay_paused": "relay paused",
    "relay_crash_after_publish": "relay crashes after its next publish",
    "duplicate_delivery": "{share} of messages published twice",
    "publish_crash": "{share} of API requests crash before publishing",
    "clock_skew_minutes": "worker's clock {number} min {ahead}",
    "inventory_down": "inventory service down",
    "payment_decline": "{share} of payments declined",
    "compensation_fail_first": "{number} compensations fail, then succeed",
    "orchestrator_crash": "{share} of orchestrator steps crash it",
    "killed": "killed",
    "slow_ms": "{number} ms a call and health check",
    "flap_s": "crashes and restarts every {number} s",
}


def in_words(settings: dict) -> str:
    """A fault's settings as a learner reads them: {"error_rate": 0.5, "latency_ms": 200} is
    "50% of calls fail (503), 200 ms a call". A switch that is off says nothing."""
    said = []
    for name, value in settings.items():
        if value is False:
            continue
        phrase = IN_WORDS.get(name)
        if phrase is None:  # not in the vocabulary above: its name and value as stored
            said.append(name if value is True else f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}")
        elif value is True:
            said.append(phrase)
        else:
            said.append(phrase.format(share=f"{value * 100:g}%", number=f"{abs(value):,}" if isinstance(value, int) else f"{value:g}",
                                      ahead="ahead" if value >= 0 else "behind"))  # fmt: skip
    return ", ".join(said) or "nothing"


def _runs():
    # Looked up when used: the chaos harness and the benches import this module before Django is set up.
    return apps.get_model("labs", "LabRun").objects


def paused_runs() -> list[int]:
    """Runs whose relay is paused: the relay skips their outbox rows."""
    return list(_runs().filter(faults__pipeline__relay_paused=True).values_list("pk", flat=True))


def _calls_key(run_id: int, target: str) -> str:
    return key("run", str(run_id), "calls", target)


def kinds_for(target: str) -> dict[str, type | str]:
    """The faults `target` can have."""
    if target == PIPELINE:
        return PIPELINE_FAULTS
    if target in SERVICES:
        return SERVICE_FAULTS
    return INSTANCE_FAULTS if target in INSTANCE_TARGETS else PROVIDER_FAULTS


def is_target(target: str) -> bool:
    return target in TARGETS or target in INSTANCE_TARGETS


def validate(target: str, settings: dict) -> dict:
    """The settings as typed values; ValueError naming the target and setting when one is wrong."""
    if not is_target(target):
        raise ValueError(f"{target!r} is not a fault target; choose a provider ({', '.join(ALL_PROVIDERS)}), one of its "
                         f"instances (such as {INSTANCE_TARGETS[1]!r}), {PIPELINE!r} or a service ({', '.join(SERVICES)})")  # fmt: skip
    allowed = kinds_for(target)
    clean = {}
    for name, value in settings.items():
        kind = allowed.get(name)
        if kind is None:
            raise ValueError(f"{target}.{name} is not a fault; choose from {', '.join(allowed)}")
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{target}.{name} must be true or false")
            clean[name] = value
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value in (math.inf, -math.inf) or value != value:
            raise ValueError(f"{target}.{name} must be a finite number")  # value != value: NaN
        elif kind == SHARE:
            if not 0 <= value <= 1:
                raise ValueError(f"{target}.{name} is a share of calls: between 0 and 1")
            clean[name] = float(value)
        else:
            low, high = WHOLE_NUMBER_RANGES[name]
            if (isinstance(value, float) and not value.is_integer()) or not low <= value <= high:
                raise ValueError(f"{target}.{name} must be a whole number from {low:,} to {high:,}")
            clean[name] = int(value)
    return clean


def set_fault(run_id: int, target: str, **settings) -> dict:
    """Replace the target's fault with `settings` (none clears it)."""
    return set_fault_of([run_id], target, **settings)


def set_fault_of(run_ids: list[int], target: str, **settings) -> dict:
    """`set_fault` in many runs at once (an instructor's broadcast): one Redis round trip for the
    counters, one transaction for the runs' rows, one for the pages' events, however many runs."""
    fault = validate(target, settings)
    if not run_ids:
        return fault
    # Redis first: if it is down, nothing changes and the caller hears so (the counters and the page's event live there).
    # "fail first N" counts from now; a new pipeline setting may crash the relay once again.
    get_redis().delete(*[name for run_id in run_ids
                         for name in (_calls_key(run_id, target), *([_crash_spent_key(run_id)] if target == PIPELINE else []))])  # fmt: skip
    with transaction.atomic():
        runs = list(_runs().select_for_update().filter(pk__in=run_ids).order_by("pk").only("faults"))  # in one order: no deadlocks
        for run in runs:
            run.faults = {**{t: f for t, f in run.faults.items() if t != target}, **({target: fault} if fault else {})}
        _runs().bulk_update(runs, ["faults"])
    events.emit_each([(run_id, "fault_changed", {"target": target, "fault": fault}) for run_id in run_ids])
    return fault


def clear_faults(run_id: int) -> None:
    """Stop every fault of the run at once."""
    clear_faults_of([run_id])


def clear_faults_of(run_ids: list[int]) -> None:
    """`clear_faults` in many runs at once (the emergency stop): three round trips, however many runs."""
    if not run_ids:
        return
    get_redis().delete(*[_calls_key(run_id, t) for run_id in run_ids for t in TARGETS])
    _runs().filter(pk__in=run_ids).update(faults={})
    events.emit_each([(run_id, "fault_changed", {"target": "*", "fault": {}}) for run_id in run_ids])


def all_faults(run_id: int) -> dict[str, dict]:
    return all_faults_of([run_id])[run_id]


def fault_for(run_id: int, target: str) -> dict:
    return all_faults(run_id).get(target, {})


def _crash_spent_key(run_id: int) -> str:
    return key("run", str(run_id), "relay-crash-spent")


def relay_crash_spent(run_id: int) -> bool:
    """Has this run's relay_crash_after_publish setting crashed a relay already?"""
    return bool(get_redis().exists(_crash_spent_key(run_id)))


def spend_relay_crash(run_id: int) -> None:
    get_redis().set(_crash_spent_key(run_id), 1, ex=3600)


def count_call(run_id: int, target: str) -> int:
    """Number this call (1-based) since the target's fault was set."""
    return count_calls(run_id, target, 1)


def count_calls(run_id: int, target: str, calls: int) -> int:
    """Count `calls` more calls; returns the number of the last one."""
    return get_redis().incrby(_calls_key(run_id, target), calls)


def all_faults_of(run_ids: list[int]) -> dict[int, dict[str, dict]]:
    """`all_faults` of many runs in one query (a workshop's grid reads a whole cohort at once)."""
    found = dict(_runs().filter(pk__in=run_ids).values_list("pk", "faults"))
    return {run_id: found.get(run_id) or {} for run_id in run_ids}
