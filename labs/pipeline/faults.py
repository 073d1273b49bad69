"""Faults injected into a run's simulated providers, kept in Redis so every worker sees them at once.

A fault is set per provider (e.g. "sms-primary") with any of:
  down        every call fails with 503
  error_rate  that share of calls (0..1) fails with 503
  fail_first  the next N calls fail with 503, then calls succeed
  reject      every call is refused with a permanent 400 (the address is invalid)
  latency_ms  each call takes this long (past the client's timeout it times out)
"""

import json

from config.redis_client import get_redis, key
from labs.pipeline import events

FIELDS = {"down": bool, "error_rate": float, "fail_first": int, "reject": bool, "latency_ms": int}


def _faults_key(run_id: int) -> str:
    return key("run", str(run_id), "faults")


def _calls_key(run_id: int, provider: str) -> str:
    return key("run", str(run_id), "calls", provider)


def set_fault(run_id: int, provider: str, **settings) -> dict:
    unknown = set(settings) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
    fault = {name: FIELDS[name](value) for name, value in settings.items()}
    redis = get_redis()
    with redis.pipeline() as pipe:
        pipe.hset(_faults_key(run_id), provider, json.dumps(fault))
        pipe.delete(_calls_key(run_id, provider))  # "fail first N" counts from now
        pipe.execute()
    events.emit(run_id, "fault_changed", provider=provider, fault=fault)
    return fault


def clear_faults(run_id: int) -> None:
    redis = get_redis()
    providers = [p.decode() for p in redis.hkeys(_faults_key(run_id))]
    redis.delete(_faults_key(run_id), *[_calls_key(run_id, p) for p in providers])
    events.emit(run_id, "fault_changed", provider="*", fault={})


def fault_for(run_id: int, provider: str) -> dict:
    raw = get_redis().hget(_faults_key(run_id), provider)
    return json.loads(raw) if raw else {}


def count_call(run_id: int, provider: str) -> int:
    """Number this call (1-based) since the provider's fault was set."""
    return get_redis().incr(_calls_key(run_id, provider))
