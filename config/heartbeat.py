"""Heartbeats: long-running processes say they are alive by refreshing a Redis entry.

Each kind of process (worker, urgent, relay, live) has one sorted set; every running
instance keeps its own member ("host:pid") scored with the time of its last beat. An
instance counts as alive while its beat is younger than HEARTBEAT_TTL, so a killed
process shows as down within that time and a clean stop removes itself at once.
Several workers on several machines each keep their own member. A second hash keeps
when each instance first beat, so /healthz can say that a process restarted lately.
"""

import os
import socket
import time

from django.conf import settings

from config.redis_client import get_redis, key


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


STARTS_KEPT_FOR_S = 24 * 3600


def beat(process: str, instance: str | None = None) -> None:
    now = time.time()
    name, member = key("heartbeat", process), instance or instance_name()
    with get_redis().pipeline() as pipe:
        pipe.zadd(name, {member: now})
        pipe.zremrangebyscore(name, "-inf", now - settings.HEARTBEAT_TTL)
        pipe.expire(name, settings.HEARTBEAT_TTL)
        pipe.hsetnx(key("heartbeat", process, "started"), member, now)
        pipe.expire(key("heartbeat", process, "started"), STARTS_KEPT_FOR_S)
        pipe.execute()


def clear(process: str, instance: str | None = None) -> None:
    member = instance or instance_name()
    with get_redis().pipeline() as pipe:
        pipe.zrem(key("heartbeat", process), member)
        pipe.hdel(key("heartbeat", process, "started"), member)
        pipe.execute()


def started(process: str) -> dict[str, float]:
    """{"host:pid": when it first beat}, for the instances seen lately (alive or not)."""
    return {member.decode(): float(at) for member, at in get_redis().hgetall(key("heartbeat", process, "started")).items()}


def alive(process: str) -> dict[str, float]:
    """Instances of `process` that beat within HEARTBEAT_TTL: {"host:pid": seconds since their last beat}."""
    now = time.time()
    members = get_redis().zrangebyscore(key("heartbeat", process), now - settings.HEARTBEAT_TTL, "+inf", withscores=True)
    return {member.decode(): round(now - at, 2) for member, at in members}
