"""How often a lab page asks for its panels: the page server's share for them, divided among the pages open.

A panels answer costs the page server CPU (labs.panels.run_state and its template). One page
asking about once a second costs little; a workshop's hundred pages each asking once a second
would take more CPU than a 2-core server has, and every other request (a page someone opens,
the instructor's grid) would wait behind them in gunicorn's queue. So each answer says when
to ask again (`data-next-ms`, read by static/js/labs.js):

    next = CPU one answer costs here × lab pages open ÷ the share of a core panels may take

never sooner than the page's own minimum (a second) and never later than MAX_GAP_MS. The CPU
is a moving average of this process's own answers; the pages open are the live streams, each
of which keeps itself in a Redis sorted set while it is open (labs.live.stream), so every web
process on every host divides the same share among the same pages. Meanwhile the strip's
figures move with the stream's events, at once, whatever the gap (labs.live.STRIP_MOVES).

This is the server pacing its clients, as an HTTP 503's Retry-After or a broker's flow control
do: the client that knows least (one page) is told by the one that sees the whole load.
"""

import time
import uuid

from django.conf import settings

from config.redis_client import get_redis, key

MIN_GAP_MS = 1000  # what static/js/labs.js asks at most (PANELS_MIN_MS)
MAX_GAP_MS = 15000  # however many pages share the server, the panels are never older than this
SMOOTHING = 0.2  # weight of the newest answer in the moving average of its cost


def open_pages_key() -> str:
    return key("live", "open-pages")


def _window_s() -> float:
    """A stream renews its entry every heartbeat: one not renewed for two and a bit is gone (its process died)."""
    return 2 * settings.LAB_STREAM_HEARTBEAT + 5


def new_page_entry(run_id: int) -> str:
    return f"{run_id}:{uuid.uuid4().hex[:12]}"


async def keep_open(client, entry: str) -> None:
    """Called by a live stream when it opens and at every heartbeat (an asyncio Redis client)."""
    now = time.time()
    async with client.pipeline(transaction=False) as pipe:
        pipe.zadd(open_pages_key(), {entry: now})
        pipe.zremrangebyscore(open_pages_key(), "-inf", now - _window_s())
        await pipe.execute()


async def closed(client, entry: str) -> None:
    await client.zrem(open_pages_key(), entry)


def open_pages() -> int:
    """Lab pages with a live stream open now, on every live process (at least the one asking)."""
    return max(1, get_redis().zcount(open_pages_key(), time.time() - _window_s(), "+inf"))


def gap_ms(answer_cpu_s: float, pages: int, share: float) -> int:
    """How long a page waits before asking again, so that `pages` pages together take `share` of a core."""
    wanted = answer_cpu_s * pages / share * 1000
    return int(min(MAX_GAP_MS, max(MIN_GAP_MS, wanted)))


class AnswerCost:
    """The CPU seconds one panels answer takes in this process, as a moving average."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def add(self, seconds: float) -> None:
        self.seconds = seconds if self.seconds == 0.0 else (1 - SMOOTHING) * self.seconds + SMOOTHING * seconds

    def next_gap_ms(self) -> int:
        return gap_ms(self.seconds, open_pages(), settings.LAB_PANELS_CPU_PERCENT / 100)


PANELS = AnswerCost()
