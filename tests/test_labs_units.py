"""Pure pieces of the pipeline: backoff, the breaker's decisions, percentiles."""

import random

from labs.pipeline.backoff import backoff_ceiling_ms, full_jitter_ms
from labs.pipeline.breaker import CLOSED, HALF_OPEN, OPEN, BreakerPolicy, BreakerState, admit, after_call
from labs.pipeline.metrics import percentile

POLICY = BreakerPolicy(window_s=10, min_calls=5, error_rate=0.5, open_for_s=5)


def test_the_backoff_ceiling_doubles_until_the_cap():
    assert [backoff_ceiling_ms(n, 100, 1000) for n in range(1, 7)] == [100, 200, 400, 800, 1000, 1000]


def test_full_jitter_draws_between_zero_and_the_ceiling():
    rng = random.Random(7)
    delays = [full_jitter_ms(4, 100, 10_000, rng) for _ in range(1000)]

    assert min(delays) >= 0 and max(delays) <= 800
    assert min(delays) < 100 and max(delays) > 700  # the whole window is used


def test_the_breaker_stays_closed_below_the_minimum_number_of_calls():
    assert after_call(BreakerState(), False, successes=0, failures=4, now=1.0, policy=POLICY).state == CLOSED


def test_the_breaker_opens_when_the_error_rate_reaches_the_threshold():
    assert after_call(BreakerState(), False, successes=3, failures=3, now=1.0, policy=POLICY).state == OPEN
    assert after_call(BreakerState(), False, successes=4, failures=2, now=1.0, policy=POLICY).state == CLOSED


def test_an_open_breaker_refuses_until_the_cool_down_then_lets_one_trial_through():
    opened = BreakerState(OPEN, changed_at=100.0)

    assert admit(opened, 104.0, POLICY) == (False, opened)
    allowed, trial = admit(opened, 105.5, POLICY)
    assert allowed and trial.state == HALF_OPEN
    assert admit(trial, 106.0, POLICY)[0] is False  # one trial at a time


def test_the_trial_closes_the_breaker_on_success_and_reopens_it_on_failure():
    trial = BreakerState(HALF_OPEN, changed_at=105.0, trial_started_at=105.0)

    assert after_call(trial, True, 0, 0, 106.0, POLICY).state == CLOSED
    reopened = after_call(trial, False, 0, 1, 106.0, POLICY)
    assert reopened.state == OPEN and reopened.changed_at == 106.0


def test_percentiles_use_the_nearest_rank():
    values = list(range(1, 101))

    assert (percentile(values, 0.5), percentile(values, 0.95), percentile([], 0.5)) == (50, 95, None)


def test_the_panels_gap_divides_the_servers_share_among_the_pages_open():
    from labs.pace import MAX_GAP_MS, MIN_GAP_MS, gap_ms

    assert gap_ms(0.020, pages=1, share=0.5) == MIN_GAP_MS  # one page: as often as the page itself asks
    assert gap_ms(0.020, pages=100, share=0.5) == 4000  # 100 pages × 20 ms every 4 s = half a core
    assert gap_ms(0.020, pages=100, share=1.0) == 2000
    assert gap_ms(0.200, pages=1000, share=0.5) == MAX_GAP_MS  # never staler than this
