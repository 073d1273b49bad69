"""A task loaded only by test workers (celery -I tests.probe_tasks)."""

from celery import shared_task
from django.contrib.auth.models import User

from config.redis_client import get_redis, key


@shared_task(name="tests.probe_user_task")
def probe_user_task(username: str, reply_key: str) -> None:
    """Report whether the worker sees `username` in its database: proves it reads the test's rows."""
    seen = User.objects.filter(username=username).exists()
    get_redis().set(key(reply_key), "found" if seen else "missing", ex=60)


@shared_task(name="tests.noop_task", ignore_result=True)
def noop_task() -> None:
    """Does nothing: the benchmark's baseline for what one Celery task per message costs."""
