"""What /healthz reports: can we reach the database and Redis, and are the worker and relay alive."""

from django.db import DatabaseError, connection
from redis.exceptions import RedisError

from config.heartbeat import alive
from config.redis_client import get_redis

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


def check_heartbeat(process: str) -> dict:
    try:
        instances = alive(process)
    except RedisError as exc:
        return {"ok": False, "error": f"cannot read heartbeats: {exc}"}
    if not instances:
        return {"ok": False, "error": f"no heartbeat: is the {process} running?"}
    return {"ok": True, "instances": instances}


def report() -> dict:
    checks = {
        "database": check_database(),
        "redis": check_redis(),
        "worker": check_heartbeat("worker"),
        "relay": check_heartbeat("relay"),
    }
    return {"status": "ok" if all(c["ok"] for c in checks.values()) else "down", "checks": checks}
