"""A retry budget per run and channel (lesson: retries-backoff-jitter).

Retries may add at most RATIO of the first attempts of the last WINDOW_S seconds,
plus a small floor so a quiet run can still retry. Past the budget a retry is not
dropped: it waits the longest backoff instead, which takes pressure off a provider
that is already failing.
"""

from labs.pipeline.window import SlidingWindow

WINDOW_S = 10
RATIO = 0.5
FLOOR = 20


def _window(run_id: int, channel: str) -> SlidingWindow:
    return SlidingWindow(WINDOW_S, "run", str(run_id), "budget", channel)


def record_attempt(run_id: int, channel: str, attempt: int, count: int = 1) -> None:
    _window(run_id, channel).add({"first" if attempt == 1 else "retry": count})


def retry_allowed(run_id: int, channel: str) -> bool:
    counts = _window(run_id, channel).totals()
    return counts.get("retry", 0) < FLOOR + RATIO * counts.get("first", 0)
