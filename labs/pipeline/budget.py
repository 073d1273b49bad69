"""A retry budget per run and channel (lesson: retries-backoff-jitter).

Retries may add at most RATIO of the first attempts of the last WINDOW_S seconds,
plus a small floor so a quiet run can still retry. Past the budget a retry is not
dropped: it waits the longest backoff instead, which takes pressure off a provider
that is already failing.
"""

import time

from config.redis_client import get_redis, key

WINDOW_S = 10
RATIO = 0.5
FLOOR = 20


def _key(run_id: int, channel: str) -> str:
    return key("run", str(run_id), "budget", channel)


def record_attempt(run_id: int, channel: str, attempt: int, count: int = 1) -> None:
    second = int(time.time())
    redis = get_redis()
    with redis.pipeline(transaction=False) as pipe:
        pipe.hincrby(_key(run_id, channel), f"{second}:{'first' if attempt == 1 else 'retry'}", count)
        pipe.expire(_key(run_id, channel), WINDOW_S * 3)
        pipe.execute()


def retry_allowed(run_id: int, channel: str) -> bool:
    oldest = int(time.time()) - WINDOW_S + 1
    firsts = retries = 0
    for field, count in get_redis().hgetall(_key(run_id, channel)).items():
        second, kind = field.decode().split(":")
        if int(second) >= oldest:
            if kind == "first":
                firsts += int(count)
            else:
                retries += int(count)
    return retries < FLOOR + RATIO * firsts
