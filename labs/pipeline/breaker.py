"""A circuit breaker per provider and run (lesson: circuit-breakers-bulkheads).

closed     calls go through; outcomes are counted in one-second buckets.
           When the last `window_s` seconds hold at least `min_calls` calls and
           the share of failures reaches `error_rate`, the breaker opens.
open       calls are refused at once (no provider call) for `open_for_s` seconds.
half_open  one trial call goes through; success closes the breaker, failure
           opens it again. Other calls are refused while the trial runs.

The decisions are pure functions (`admit`, `after_call`) so they are easy to test;
`ProviderBreaker` keeps the state in Redis, shared by every worker process.
"""

import json
import time
from dataclasses import asdict, dataclass

from redis.exceptions import WatchError

from config.redis_client import get_redis, key
from labs.pipeline.window import SlidingWindow

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    window_s: int = 10
    min_calls: int = 5
    error_rate: float = 0.5
    open_for_s: float = 5.0


@dataclass
class BreakerState:
    state: str = CLOSED
    changed_at: float = 0.0
    trial_started_at: float = 0.0


def admit(current: BreakerState, now: float, policy: BreakerPolicy) -> tuple[bool, BreakerState]:
    """May a call go through now? Returns the decision and the (possibly changed) state."""
    if current.state == CLOSED:
        return True, current
    if current.state == OPEN:
        if now - current.changed_at < policy.open_for_s:
            return False, current
        return True, BreakerState(HALF_OPEN, changed_at=now, trial_started_at=now)
    # Half-open: one trial at a time; a trial that never reported back expires.
    if now - current.trial_started_at < policy.open_for_s:
        return False, current
    return True, BreakerState(HALF_OPEN, changed_at=current.changed_at, trial_started_at=now)


def after_call(
    current: BreakerState, ok: bool, successes: int, failures: int, now: float, policy: BreakerPolicy
) -> BreakerState:
    """The state after a call ended; `successes`/`failures` count the window, this call included."""
    if current.state == HALF_OPEN:
        return BreakerState(CLOSED, changed_at=now) if ok else BreakerState(OPEN, changed_at=now)
    if current.state == CLOSED and not ok:
        calls = successes + failures
        if calls >= policy.min_calls and failures / calls >= policy.error_rate:
            return BreakerState(OPEN, changed_at=now)
    return current


class ProviderBreaker:
    def __init__(self, run_id: int, provider: str, policy: BreakerPolicy | None = None):
        self.provider = provider
        self.policy = policy or BreakerPolicy()
        self.state_key = key("run", str(run_id), "breaker", provider)
        self.calls = SlidingWindow(self.policy.window_s, "run", str(run_id), "breaker", provider, "calls")

    def state(self) -> BreakerState:
        raw = get_redis().get(self.state_key)
        return BreakerState(**json.loads(raw)) if raw else BreakerState()

    @classmethod
    def states(cls, run_id: int, providers: list[str]) -> list[BreakerState]:
        """The states of several providers' breakers of a run, in one round trip (the panels show them all)."""
        raws = get_redis().mget([cls(run_id, provider).state_key for provider in providers])
        return [BreakerState(**json.loads(raw)) if raw else BreakerState() for raw in raws]

    def next_trial_at(self, now: float | None = None) -> float:
        """When a refused call may next be let through (the half-open trial); `now` if it may now."""
        now = time.time() if now is None else now
        current = self.state()
        if current.state == OPEN:
            return max(now, current.changed_at + self.policy.open_for_s)
        if current.state == HALF_OPEN:
            return max(now, current.trial_started_at + self.policy.open_for_s)
        return now

    def admit(self, now: float | None = None) -> tuple[bool, BreakerState | None]:
        """Ask to call the provider. Returns (allowed, new state if it changed)."""
        now = time.time() if now is None else now
        return self._transition(lambda current: admit(current, now, self.policy))

    def record(self, ok: bool, now: float | None = None) -> BreakerState | None:
        """Count a finished call; returns the new state if the breaker changed."""
        return self.record_many(1 if ok else 0, 0 if ok else 1, now)

    def record_many(self, successes: int, failures: int, now: float | None = None) -> BreakerState | None:
        """Count finished calls (a bulk send counts each message); the batch is ok if none failed."""
        now = time.time() if now is None else now
        ok = failures == 0
        redis = get_redis()
        with redis.pipeline() as pipe:
            self.calls.add({"ok": successes, "fail": failures}, now, pipe)
            pipe.get(self.state_key)
            raw_state = pipe.execute()[-1]
        if ok and not raw_state:
            return None  # the common case: a success while closed changes nothing
        counts = self.calls.totals(now)
        _, changed = self._transition(
            lambda current: (None, after_call(current, ok, counts.get("ok", 0), counts.get("fail", 0), now, self.policy))
        )
        return changed

    def _transition(self, decide):
        """Apply `decide(current) -> (result, new_state)` atomically; returns (result, new state if changed)."""
        redis = get_redis()
        with redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self.state_key)
                    raw = pipe.get(self.state_key)
                    current = BreakerState(**json.loads(raw)) if raw else BreakerState()
                    result, new = decide(current)
                    if new == current:
                        pipe.unwatch()
                        return result, None
                    pipe.multi()
                    if new.state == CLOSED:
                        pipe.delete(self.state_key)
                        self.calls.clear(pipe=pipe)  # a fresh start after recovery
                    else:
                        pipe.set(self.state_key, json.dumps(asdict(new)), ex=3600)
                    pipe.execute()
                    return result, (new if new.state != current.state else None)
                except WatchError:
                    continue
