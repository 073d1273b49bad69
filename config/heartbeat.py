"""Heartbeats: long-running processes say they are alive by refreshing a Redis entry.

Each kind of process (worker, urgent, relay, live) has one sorted set; every running
instance keeps its own member ("host:pid") scored with the time of its last beat. An
instance counts as alive while its beat is younger than HEARTBEAT_TTL, so a killed
process shows as down within that time and a clean stop removes itself at once.
Several workers on several machines each keep their own member. A second hash keeps
when each instance first beat, so /healthz can say that a process restarted lately.

Every time here is Redis's clock (its TIME command), never the machine's: a worker on a
host whose clock is a minute behind still counts as alive, and one a minute ahead does
not outlive its death.
"""

import os
import socket
import sys

from django.conf import settings
from redis.exceptions import RedisError

from config.redis_client import get_redis, key


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


STARTS_KEPT_FOR_S = 24 * 3600


def redis_time() -> float:
    """Now by Redis's clock: the one clock every machine's processes share for heartbeats."""
    seconds, microseconds = get_redis().time()
    return seconds + microseconds / 1_000_000


def beat(process: str, instance: str | None = None) -> None:
    now = redis_time()
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
    now = redis_time()
    members = get_redis().zrangebyscore(key("heartbeat", process), now - settings.HEARTBEAT_TTL, "+inf", withscores=True)
    return {member.decode(): round(now - at, 2) for member, at in members}


def alive_here(process: str) -> list[str]:
    """This host's instances of `process` that beat lately (a container's own processes)."""
    return [instance for instance in alive(process) if instance.rsplit(":", 1)[0] == socket.gethostname()]


def main(argv: list[str]) -> int:
    """`python -m config.heartbeat KIND`: exit 0 when a KIND process on this host beat within HEARTBEAT_TTL.

    A container's healthcheck (compose.production.yml): it reads Redis alone, without starting Django."""
    if len(argv) != 1 or argv[0] not in ("worker", "urgent", "relay", "live"):
        print("usage: python -m config.heartbeat worker|urgent|relay|live", file=sys.stderr)
        return 2
    try:
        found = alive_here(argv[0])
    except RedisError as exc:
        print(f"cannot read heartbeats: {exc}", file=sys.stderr)
        return 1
    if not found:
        print(f"no fresh {argv[0]} heartbeat from {socket.gethostname()}", file=sys.stderr)
        return 1
    print(f"{argv[0]} alive: {', '.join(found)}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.exit(main(sys.argv[1:]))
