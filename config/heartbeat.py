"""Heartbeats: long-running processes say they are alive by refreshing a Redis entry.

Each kind of process (worker, relay) has one sorted set; every running instance
keeps its own member ("host:pid") scored with the time of its last beat. An
instance counts as alive while its beat is younger than HEARTBEAT_TTL, so a
killed process shows as down within that time and a clean stop removes itself
at once. Several workers on several machines each keep their own member.
"""

import os
import socket
import time

from django.conf import settings

from config.redis_client import get_redis, key


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def beat(process: str, instance: str | None = None) -> None:
    now = time.time()
    name = key("heartbeat", process)
    with get_redis().pipeline() as pipe:
        pipe.zadd(name, {instance or instance_name(): now})
        pipe.zremrangebyscore(name, "-inf", now - settings.HEARTBEAT_TTL)
        pipe.expire(name, settings.HEARTBEAT_TTL)
        pipe.execute()


def clear(process: str, instance: str | None = None) -> None:
    get_redis().zrem(key("heartbeat", process), instance or instance_name())


def alive(process: str) -> dict[str, float]:
    """Instances of `process` that beat within HEARTBEAT_TTL: {"host:pid": seconds since their last beat}."""
    now = time.time()
    members = get_redis().zrangebyscore(key("heartbeat", process), now - settings.HEARTBEAT_TTL, "+inf", withscores=True)
    return {member.decode(): round(now - at, 2) for member, at in members}
