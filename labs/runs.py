"""Lab runs: create, reset, delete, and forget the ones nobody uses.

A run started for a lab (from its page, or by joining a workshop) is registered as the
learner's run of that lab (`RunLab`); `start_lab_run` and `restart_lab_run` are the one
place that starts one or starts it again.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from config.redis_client import get_redis, key
from labs.lab_files import Lab
from labs.models import LabRun, Recipient, RunLab, SagaMode
from labs.pipeline import defences, sync_chain, tally
from labs.seeding import seed

log = logging.getLogger(__name__)

TOUCH_EVERY = timedelta(seconds=60)


def create_run(owner, **policy) -> LabRun:
    """A new seeded run; its key's plaintext is in `run.api_key` for the caller to show once."""
    with transaction.atomic():
        run = LabRun.objects.create(owner=owner, **policy)
        seed(run)
    return run


def page_run_policy() -> dict:
    """The retry policy of a run started for a lab; tests make it faster with LAB_PAGE_RUN_POLICY."""
    return getattr(settings, "LAB_PAGE_RUN_POLICY", {})


def open_preferences(run: LabRun, lab: Lab) -> None:
    """Everyone accepts every channel, nobody has quiet hours: counts in the lab add up exactly."""
    # Opt-outs and quiet hours would skip or defer some messages (until the morning) and
    # blur what the lab is about; a lab about preferences keeps them.
    if not lab.keep_preferences:
        Recipient.objects.filter(run=run).update(
            quiet_start=None, quiet_end=None, email_opt_in=True, sms_opt_in=True, push_opt_in=True, inapp_opt_in=True
        )


def start_lab_run(owner, lab: Lab) -> RunLab:
    """A new run of `lab` for `owner`, registered as their run of it (IntegrityError if they have one)."""
    with transaction.atomic():
        run = create_run(owner, **page_run_policy())
        run_lab = RunLab.objects.create(run=run, owner=owner, lab=lab.slug)
        open_preferences(run, lab)
        if lab.sync_chain:
            sync_chain.turn_on(run)
    return run_lab


def restart_lab_run(run_lab: RunLab, lab: Lab) -> None:
    """Start the run of a lab again from its seed, every defence on; the learner's history is kept."""
    run = run_lab.run
    reset_run(run)
    defences.set_defences(run, **dict.fromkeys(defences.NAMES, True))
    open_preferences(run, lab)
    run_lab.started_at = run.last_activity_at  # experiments before it belong to an earlier go
    run_lab.save(update_fields=["started_at"])


def _forget_in_redis(run_id: int) -> None:
    redis = get_redis()
    names = list(redis.scan_iter(match=key("run", str(run_id), "*"), count=1000))
    if names:
        redis.delete(*names)


def reset_run(run: LabRun) -> LabRun:
    """Start the run again from its seed: same owner and API key, no traffic, no faults, every defence on, discovery off."""
    with transaction.atomic():
        run.intents.all().delete()  # deliveries, outbox rows, attempts and dead letters cascade
        run.orders.all().delete()  # the saga's steps, messages, reservations and authorisations cascade
        run.stock.all().delete()
        run.provider_sends.all().delete()
        run.sync_requests.all().delete()
        tally.forget(run.pk)
        run.recipients.all().delete()
        run.templates.all().delete()
        seed(run)
        run.last_activity_at = timezone.now()
        run.defences = {}  # every defence back on
        run.faults = {}  # and no fault
        run.saga_mode = SagaMode.ORCHESTRATION
        run.call_policy = {"chain": True} if sync_chain.chain_on(run) else {}  # lab 9's path stays, with the default policy
        run.discovery = {}  # providers called directly again
        run.save(update_fields=["last_activity_at", "defences", "faults", "saga_mode", "call_policy", "discovery"])
    _forget_in_redis(run.pk)
    return run


def delete_run(run: LabRun) -> None:
    run_id = run.pk
    with transaction.atomic():
        run.intents.all().delete()  # deliveries, outbox rows, attempts and dead letters cascade
        run.delete()
    _forget_in_redis(run_id)


def rotate_api_key(run: LabRun) -> str:
    """A new key for the run (the old one stops working); the plaintext, to be shown once."""
    key = run.issue_api_key()
    run.save(update_fields=["api_key_hash", "api_key_start"])
    return key


def touch(run: LabRun) -> None:
    """Note that the run is in use; written at most once a minute."""
    now = timezone.now()
    if now - run.last_activity_at > TOUCH_EVERY:
        LabRun.objects.filter(pk=run.pk).update(last_activity_at=now)
        run.last_activity_at = now


def delete_idle_runs(now=None) -> int:
    cutoff = (now or timezone.now()) - timedelta(minutes=settings.LAB_RUN_IDLE_MINUTES)
    # A run in a workshop seat is kept for the instructor's debrief; workshops.lifecycle deletes it after the workshop.
    idle = list(LabRun.objects.filter(last_activity_at__lt=cutoff, seat__isnull=True))
    for run in idle:
        delete_run(run)
    if idle:
        log.info("deleted %d lab run(s) idle for more than %d minutes", len(idle), settings.LAB_RUN_IDLE_MINUTES)
    return len(idle)
