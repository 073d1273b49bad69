"""The sliding window behind the breaker and the retry budget, against the test Redis."""

import time
import uuid

from config.redis_client import get_redis
from labs.pipeline.window import SlidingWindow


def test_only_the_last_seconds_count_and_older_buckets_leave_redis():
    window = SlidingWindow(10, "test-window", uuid.uuid4().hex)
    now = int(time.time())
    for second in range(now - 100, now + 1):  # 100 seconds of steady traffic, up to now
        window.add({"ok": 2, "fail": 1}, now=second)

    assert window.totals(now=now) == {"ok": 20, "fail": 10}
    buckets = list(get_redis().scan_iter(match=window.prefix + ":*"))
    assert len(buckets) <= 13, f"{len(buckets)} buckets kept for a 10-second window"


def test_a_cleared_window_starts_from_nothing():
    window = SlidingWindow(10, "test-window", uuid.uuid4().hex)
    window.add({"fail": 7})

    window.clear()

    assert window.totals() == {}


def test_the_breaker_opens_on_failures_in_its_window_and_forgets_old_ones():
    from labs.pipeline.breaker import BreakerPolicy, ProviderBreaker

    breaker = ProviderBreaker(10**9 + int(uuid.uuid4().int % 1000), "email-primary", BreakerPolicy(window_s=10, min_calls=5))
    now = time.time()
    breaker.calls.add({"fail": 10}, now=now - 30)  # a burst of failures long ago
    assert breaker.record(False, now=now) is None  # alone in the window: not enough calls to judge
    assert breaker.state().state == "closed"
    breaker.record_many(0, 4, now=now)
    assert breaker.state().state == "open"
