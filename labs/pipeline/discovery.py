"""Service discovery for the simulated providers (lesson: service-discovery).

With a run's discovery on (`LabRun.discovery`, {"mode": "dns" | "registry", "ttl_s": N}; empty
means off, and the workers call each provider directly, as in every other lab), each provider
runs as a few instances ("email-primary-1", "-2", "-3") and a worker finds one before each call.

The registry (a Redis hash per run, a field per instance) is kept by the relay's tick, about
once a second (`tick`):
1. Heartbeat: each instance whose process runs (not killed, not in the down half of a flap)
   renews its registration. One silent for HEARTBEAT_LEASE_S is gone from the registry.
2. Health check: the checker asks each instance whether it is ready. A dead or restarting
   instance refuses; a slow one answers after CHECK_TIMEOUT_MS, which fails the check while its
   heartbeat goes on (alive, not ready). FAILURES_TO_DROP failed checks in a row take it out of
   rotation; one passing check puts it back.

A lookup (`resolve`), once per provider call:
- registry: the instances in rotation, read from the registry at every call (as a client of
  Consul's health API, or a watch, sees them);
- dns: the answer of a caching resolver the run's workers share: the instances in rotation
  when it asked, kept for the TTL whatever happens to them in the meantime.
Either way the worker takes the next instance of the answer in turn (round robin). The attempt
records which instance it called, how it was found, whether the instance was healthy then and
whether the registry had already taken it out (a stale answer): the page and the checks read
the real calls.
"""

import json
import time
from dataclasses import dataclass

from config.redis_client import get_redis, key
from labs.models import DiscoveryMode, LabRun
from labs.pipeline import events
from labs.pipeline.topology import ALL_INSTANCES, ALL_PROVIDERS, INSTANCE_OF, instances

DNS, REGISTRY = DiscoveryMode.DNS.value, DiscoveryMode.REGISTRY.value
MODES = (DNS, REGISTRY)
DEFAULT_TTL_S = 30  # the TTL of the production story: 30 s of errors after an instance died
TTL_RANGE_S = (1, 300)
CHECK_EVERY_S = 1.0  # the relay's tick
CHECK_TIMEOUT_MS = 500  # a readiness check answered later than this fails
FAILURES_TO_DROP = 2  # failed checks in a row that take an instance out of rotation
HEARTBEAT_LEASE_S = 10  # an instance silent this long is gone from the registry
# A heartbeat comes with each round of checks; one this recent says the process is running (alive).
ALIVE_WITHIN_S = 3 * CHECK_EVERY_S
# Failed calls further apart than this belong to two error windows, not one.
EPISODE_GAP_S = 5.0

# What an instance is doing, as the instance itself knows it.
RUNNING, SLOW, RESTARTING, DEAD = "running", "slow", "restarting", "dead"
# Its entry in the registry, as the registry knows it.
PASSING, CRITICAL = "passing", "critical"


def mode_of(run) -> str:
    """"dns", "registry", or "" when the run's discovery is off."""
    return (run.discovery or {}).get("mode", "")


def ttl_of(run) -> int:
    return (run.discovery or {}).get("ttl_s", DEFAULT_TTL_S)


# --- The instances --------------------------------------------------------------------------


def condition(fault: dict, now: float) -> str:
    """What an instance with this fault is doing at `now`: running, slow (alive but not ready), restarting or dead."""
    if fault.get("killed"):
        return DEAD
    flap = fault.get("flap_s")
    if flap and int(now // flap) % 2 == 0:
        return RESTARTING
    if fault.get("slow_ms", 0) > CHECK_TIMEOUT_MS:
        return SLOW
    return RUNNING


def alive(state: str) -> bool:
    """Does the process run (and so send its heartbeat)?"""
    return state in (RUNNING, SLOW)


# --- The registry ---------------------------------------------------------------------------


def _registry_key(run_id: int) -> str:
    return key("run", str(run_id), "registry")


def _counts_key(run_id: int) -> str:
    return key("run", str(run_id), "registry-counts")


def _dns_key(run_id: int, provider: str) -> str:
    return key("run", str(run_id), "dns", provider)


def _turn_key(run_id: int, provider: str) -> str:
    return key("run", str(run_id), "turn", provider)


def checked(entry: dict | None, state: str, now: float) -> tuple[dict | None, str]:
    """One round of heartbeat and health check for one instance: its new registry entry, and
    "dropped" or "readmitted" when that changed whether it is in rotation ("" otherwise).

    An instance with no entry registers itself, in rotation, once its process runs.
    """
    if entry is None:
        if not alive(state):
            return None, ""
        return {"beat": now, "status": PASSING, "fails": 0, "since": now}, ""
    entry = dict(entry)
    if alive(state):
        entry["beat"] = now
    if state == RUNNING:
        entry["fails"] = 0
        if entry["status"] != PASSING:
            entry.update(status=PASSING, since=now)
            return entry, "readmitted"
        return entry, ""
    entry["fails"] = entry.get("fails", 0) + 1
    if entry["status"] == PASSING and entry["fails"] >= FAILURES_TO_DROP:
        entry.update(status=CRITICAL, since=now, drops=entry.get("drops", 0) + 1)
        return entry, "dropped"
    return entry, ""


def registered(entry: dict | None, now: float) -> bool:
    """Still in the registry: its heartbeat is younger than the lease."""
    return entry is not None and now - entry["beat"] < HEARTBEAT_LEASE_S


def alive_now(entry: dict | None, now: float) -> bool:
    """The registry's view of liveness: a heartbeat within the last few rounds."""
    return entry is not None and now - entry["beat"] < ALIVE_WITHIN_S


def in_rotation(registry: dict[str, dict], provider: str, now: float) -> list[str]:
    """The instances of `provider` a lookup returns: registered and passing their checks."""
    return [name for name in instances(provider)
            if registered(registry.get(name), now) and registry[name]["status"] == PASSING]  # fmt: skip


def read_registry(run_id: int) -> dict[str, dict]:
    raw = get_redis().hgetall(_registry_key(run_id))
    return {name.decode(): json.loads(value) for name, value in raw.items()}


def counts(run_id: int) -> dict[str, int]:
    """How often the registry took an instance out of rotation ("dropped") and put one back ("readmitted")."""
    raw = get_redis().hgetall(_counts_key(run_id))
    return {"dropped": 0, "readmitted": 0, **{name.decode(): int(value) for name, value in raw.items()}}


def register_all(run_id: int, fault_settings: dict, now: float | None = None) -> None:
    """Each running instance registers itself (as it does when it starts): the first lookup finds them."""
    now = time.time() if now is None else now
    registry = read_registry(run_id)
    fresh = {}
    for name in ALL_INSTANCES:
        if name not in registry:
            entry, _ = checked(None, condition(fault_settings.get(name, {}), now), now)
            if entry is not None:
                fresh[name] = json.dumps(entry)
    if fresh:
        get_redis().hset(_registry_key(run_id), mapping=fresh)


def check_run(run_id: int, fault_settings: dict, now: float) -> list[tuple[str, str]]:
    """One round of heartbeats and checks for every instance of a run; the (instance, change) pairs."""
    redis = get_redis()
    # Several relays may tick at once (PostgreSQL lets them all publish): one round per run and tick.
    if not redis.set(key("run", str(run_id), "registry-round"), 1, nx=True, px=int(CHECK_EVERY_S * 900)):
        return []
    registry = read_registry(run_id)
    updated, changes = {}, []
    for name in ALL_INSTANCES:
        entry, change = checked(registry.get(name), condition(fault_settings.get(name, {}), now), now)
        if entry is not None:
            updated[name] = json.dumps(entry)
        if change:
            changes.append((name, change))
    with redis.pipeline(transaction=False) as pipe:
        if updated:
            pipe.hset(_registry_key(run_id), mapping=updated)
        for _, change in changes:
            pipe.hincrby(_counts_key(run_id), change, 1)
        pipe.execute()
    events.emit_many(run_id, [(f"instance_{change}", {"instance": name, "provider": INSTANCE_OF[name]}) for name, change in changes])
    return changes


def tick(now: float | None = None) -> int:
    """Heartbeats and health checks of every run with discovery on (the relay calls this about once a second)."""
    now = time.time() if now is None else now
    found = list(LabRun.objects.filter(discovery__has_key="mode").values_list("pk", "faults"))
    for run_id, fault_settings in found:
        check_run(run_id, fault_settings or {}, now)
    return len(found)


# --- Lookups --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    instance: str
    resolved_by: str  # DNS or REGISTRY
    stale: bool  # the registry had already taken the instance out: only a cached answer sends a call there


def cached_answer(run_id: int, provider: str) -> tuple[list[str], float] | None:
    """The resolver's cached answer for `provider` and the seconds it has left, or None."""
    redis = get_redis()
    with redis.pipeline(transaction=False) as pipe:
        pipe.get(_dns_key(run_id, provider))
        pipe.pttl(_dns_key(run_id, provider))
        raw, left_ms = pipe.execute()
    if raw is None:
        return None
    return json.loads(raw), max(0.0, left_ms / 1000)


def _dns_answer(run, provider: str, listed: list[str]) -> list[str]:
    """The cached answer, or the registry's list now, cached for the run's TTL (the first worker to ask fills it)."""
    redis = get_redis()
    name = _dns_key(run.pk, provider)
    if redis.set(name, json.dumps(listed), nx=True, ex=ttl_of(run)):
        return listed
    raw = redis.get(name)
    return listed if raw is None else json.loads(raw)


def resolve(run, provider: str, now: float | None = None) -> Route | None:
    """The instance of `provider` to call now, and how it was found; None when the answer is empty."""
    now = time.time() if now is None else now
    registry = read_registry(run.pk)
    listed = in_rotation(registry, provider, now)
    how = mode_of(run)
    answer = _dns_answer(run, provider, listed) if how == DNS else listed
    if not answer:
        return None
    turn = get_redis().incr(_turn_key(run.pk, provider))
    instance = answer[turn % len(answer)]
    return Route(instance, how, stale=instance not in listed)


# --- Switching it on and off -----------------------------------------------------------------


def validate(mode: str, ttl_s) -> tuple[str, int]:
    if mode not in ("off", *MODES):
        raise ValueError(f"discovery.mode must be one of off, {', '.join(MODES)}")
    low, high = TTL_RANGE_S
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not low <= ttl_s <= high:
        raise ValueError(f"discovery.ttl_s is the resolver's cache time in whole seconds, from {low} to {high}")
    return mode, ttl_s


def set_discovery(run, mode: str, ttl_s: int = DEFAULT_TTL_S) -> dict:
    """Switch how the run's workers find provider instances; every cached answer is dropped."""
    mode, ttl_s = validate(mode, ttl_s)
    run.discovery = {} if mode == "off" else {"mode": mode, "ttl_s": ttl_s}
    run.save(update_fields=["discovery"])
    # Switched off, the instances stop registering (their entries would only age into "gone").
    get_redis().delete(*[_dns_key(run.pk, provider) for provider in ALL_PROVIDERS], *([] if run.discovery else [_registry_key(run.pk)]))
    if run.discovery:
        register_all(run.pk, run.faults or {})
    events.emit(run.pk, "discovery_changed", text=describe(run.discovery))
    return run.discovery


def describe(setting: dict) -> str:
    """How the workers find an instance, in words."""
    if not setting:
        return "Service discovery off: workers call each provider directly"
    if setting["mode"] == DNS:
        return f"Workers find instances through a DNS resolver that caches each answer for {setting['ttl_s']} s"
    return "Workers find instances through the health-checked registry, at every call"


# --- What the calls show -------------------------------------------------------------------------


def error_window_s(times: list[float]) -> float:
    """The latest error window: from the first to the last of the latest run of bad calls (timestamps),
    a gap of more than EPISODE_GAP_S starting a new one."""
    if not times:
        return 0.0
    times = sorted(times)
    start = len(times) - 1
    while start > 0 and times[start] - times[start - 1] <= EPISODE_GAP_S:
        start -= 1
    return round(times[-1] - times[start], 1)

