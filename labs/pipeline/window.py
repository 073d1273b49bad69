"""Counts over the last few seconds, kept in Redis (used by the circuit breaker and the retry budget;
lessons: circuit-breakers-bulkheads, retries-backoff-jitter).

Each second is a small hash of its own (e.g. {"ok": 12, "fail": 3}) that expires by itself once it
has left the window, so memory stays bounded however long traffic flows, and a reading touches
only the window's own buckets.
"""

import time

from config.redis_client import get_redis, key


class SlidingWindow:
    def __init__(self, window_s: int, *name: str):
        self.window_s = window_s
        self.prefix = key(*name)

    def _bucket(self, second: int) -> str:
        return f"{self.prefix}:{second}"

    def _seconds(self, now: float) -> range:
        return range(int(now) - self.window_s + 1, int(now) + 1)

    def add(self, counts: dict[str, int], now: float | None = None, pipe=None) -> None:
        """Count `counts` in the current second's bucket; queued on `pipe` when one is given."""
        now = time.time() if now is None else now
        second = int(now)
        bucket = self._bucket(second)
        target = pipe if pipe is not None else get_redis().pipeline(transaction=False)
        for field, count in counts.items():
            if count:
                target.hincrby(bucket, field, count)
        # Gone two seconds after it leaves the window (Redis's clock may differ from ours a little).
        target.expireat(bucket, second + self.window_s + 2)
        if pipe is None:
            target.execute()

    def totals(self, now: float | None = None) -> dict[str, int]:
        """Every field summed over the last `window_s` seconds."""
        now = time.time() if now is None else now
        with get_redis().pipeline(transaction=False) as pipe:
            for second in self._seconds(now):
                pipe.hgetall(self._bucket(second))
            buckets = pipe.execute()
        totals: dict[str, int] = {}
        for bucket in buckets:
            for field, count in bucket.items():
                totals[field.decode()] = totals.get(field.decode(), 0) + int(count)
        return totals

    def clear(self, now: float | None = None, pipe=None) -> None:
        now = time.time() if now is None else now
        names = [self._bucket(s) for s in range(int(now) - self.window_s - 2, int(now) + 2)]
        (pipe if pipe is not None else get_redis()).delete(*names)
