"""Lab runs: create, reset, delete, and forget the ones nobody uses."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from config.redis_client import get_redis, key
from labs.models import LabRun, new_api_key
from labs.seeding import seed

log = logging.getLogger(__name__)

TOUCH_EVERY = timedelta(seconds=60)


def create_run(owner, **policy) -> LabRun:
    with transaction.atomic():
        run = LabRun.objects.create(owner=owner, **policy)
        seed(run)
    return run


def _forget_in_redis(run_id: int) -> None:
    redis = get_redis()
    names = list(redis.scan_iter(match=key("run", str(run_id), "*"), count=1000))
    if names:
        redis.delete(*names)


def reset_run(run: LabRun) -> LabRun:
    """Start the run again from its seed: same owner and API key, no traffic, no faults, every defence on."""
    with transaction.atomic():
        run.intents.all().delete()  # deliveries, outbox rows, attempts and dead letters cascade
        run.provider_sends.all().delete()
        run.recipients.all().delete()
        run.templates.all().delete()
        seed(run)
        run.last_activity_at = timezone.now()
        run.defences = {}  # every defence back on
        run.save(update_fields=["last_activity_at", "defences"])
    _forget_in_redis(run.pk)
    return run


def delete_run(run: LabRun) -> None:
    run_id = run.pk
    with transaction.atomic():
        run.intents.all().delete()  # the PROTECT on templates needs intents gone first
        run.delete()
    _forget_in_redis(run_id)


def rotate_api_key(run: LabRun) -> str:
    run.api_key = new_api_key()
    run.save(update_fields=["api_key"])
    return run.api_key


def touch(run: LabRun) -> None:
    """Note that the run is in use; written at most once a minute."""
    now = timezone.now()
    if now - run.last_activity_at > TOUCH_EVERY:
        LabRun.objects.filter(pk=run.pk).update(last_activity_at=now)
        run.last_activity_at = now


def delete_idle_runs(now=None) -> int:
    cutoff = (now or timezone.now()) - timedelta(minutes=settings.LAB_RUN_IDLE_MINUTES)
    idle = list(LabRun.objects.filter(last_activity_at__lt=cutoff))
    for run in idle:
        delete_run(run)
    if idle:
        log.info("deleted %d lab run(s) idle for more than %d minutes", len(idle), settings.LAB_RUN_IDLE_MINUTES)
    return len(idle)
