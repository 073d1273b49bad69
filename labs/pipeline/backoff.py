"""Exponential backoff with full jitter (lesson: retries-backoff-jitter).

delay = random(0, min(cap, base * 2**attempt))

Full jitter spreads clients that failed together over the whole window, so their
retries do not arrive together and knock the recovering provider over again.
"""

import random


def backoff_ceiling_ms(attempt: int, base_ms: int, cap_ms: int) -> int:
    """The upper bound of the delay after the `attempt`-th failure (1-based)."""
    return min(cap_ms, base_ms * 2 ** (attempt - 1))


def full_jitter_ms(attempt: int, base_ms: int, cap_ms: int, rng: random.Random | None = None) -> int:
    ceiling = backoff_ceiling_ms(attempt, base_ms, cap_ms)
    return int((rng or random).uniform(0, ceiling))
