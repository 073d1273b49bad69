"""The one Redis connection pool of a process, and the project's key names."""

import functools

import redis
from django.conf import settings


@functools.cache
def _client_for(url: str) -> redis.Redis:
    # Short timeouts: a health check or a heartbeat must fail fast when Redis is gone.
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=15)


def get_redis() -> redis.Redis:
    return _client_for(settings.REDIS_URL)


def key(*parts: str) -> str:
    """A key under this deployment's prefix: key("heartbeat", "relay") -> "faultline:heartbeat:relay"."""
    return settings.REDIS_KEY_PREFIX + ":".join(parts)
