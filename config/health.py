"""What /healthz reports: can we reach the database and Redis, and is each kind of process alive.

Essential: the database, Redis, a worker for the lanes, a worker for the urgent lane (the
bulkhead; a worker started without -Q serves it too) and the relay. Without one of them the
status is "down" (HTTP 503). The live process is not essential (lab pages fall back to the page
server, once a second): without it the status is "degraded" (HTTP 200).

Each process kind says how many instances beat lately and whether one started in the last
RESTARTED_LATELY_S (a process the supervisor restarted, or a deploy).

The details are for staff and for the machine itself; anyone else gets the status alone,
never an exception's text nor a host name.
"""

from django.db import DatabaseError, connection
from redis.exceptions import RedisError

from config.heartbeat import alive, redis_time, started
from config.redis_client import get_redis

ESSENTIAL = ("database", "redis", "worker", "urgent", "relay")
PROCESSES = ("worker", "urgent", "relay", "live")
RESTARTED_LATELY_S = 300


def check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True, "engine": connection.vendor}
    except DatabaseError as exc:
        return {"ok": False, "error": str(exc)}


def check_redis() -> dict:
    try:
        get_redis().ping()
        return {"ok": True}
    except RedisError as exc:
        return {"ok": False, "error": str(exc)}


def heartbeats(process: str) -> dict:
    """The instances of `process` alive now, their uptimes and whether one started lately. Raises RedisError."""
    instances = alive(process)
    starts = started(process)
    now = redis_time()
    up = {instance: round(now - starts[instance]) for instance in instances if instance in starts}
    return {"instances": instances, "up_s": up,
            "restarted_lately": any(seconds < RESTARTED_LATELY_S for seconds in up.values())}  # fmt: skip


def check_heartbeat(process: str) -> dict:
    try:
        found = heartbeats(process)
    except RedisError as exc:
        return {"ok": False, "error": f"cannot read heartbeats: {exc}"}
    if not found["instances"]:
        return {"ok": False, "error": f"no heartbeat: is the {process} process running?"}
    return {"ok": True, **found}


def report() -> dict:
    checks = {"database": check_database(), "redis": check_redis(), **{process: check_heartbeat(process) for process in PROCESSES}}
    if not all(checks[name]["ok"] for name in ESSENTIAL):
        status = "down"
    else:
        status = "ok" if all(check["ok"] for check in checks.values()) else "degraded"
    return {"status": status, "checks": checks}


def public(full: dict) -> dict:
    """What anybody may see: the verdict alone."""
    return {"status": full["status"]}
