"""Faults an instructor puts into many runs at once for a while, and the emergency stop.

A broadcast's fault is set with the engine's own `labs.pipeline.faults.set_fault`, run by
run, so it is validated, shown and cleared exactly like a fault the learner set.

Why the relay ends a broadcast (on `labs.signals.relay_tick`, about once a second) rather
than Redis key expiry or a delayed Celery task:
- A run's faults are one Redis hash, and neither the Redis 7.0 we run on nor the embedded 6.2
  can expire one field of a hash. An expiring key of our own would tell nobody: no event for
  the learner's page, and the relay's set of paused runs left behind, unless some process
  listened for expirations, which Redis drops while nobody is subscribed.
- On a Redis broker a Celery task due later than the visibility timeout (60 s) is handed out
  again, and lab faults kill workers on purpose.
- The relay is a long-running process every deployment runs, restarted when it dies. The
  rows say what is due (`ends_at`, `ended_at`), so a relay that was down ends an overdue
  broadcast the moment it is back, and claims keep several relays from ending one twice.

`end_due` steps:
1. Find broadcasts in force whose `ends_at` has passed.
2. Claim each with a conditional UPDATE (`ended_at IS NULL`); a relay that loses the claim moves on.
3. Lift its fault from each of its runs, unless the learner has changed that target's fault
   since, or a newer broadcast in force covers the same target on that run.
4. Tell every run's page (a "classroom" event).
"""

import time
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from labs.pipeline import faults
from workshops import notices
from workshops.models import Broadcast, EmergencyStop, ScenarioPlay, Seat, Workshop

MIN_DURATION_S = 5  # the shortest the grid's form and the workshop API offer
MAX_DURATION_S = 4 * 3600


def start(workshop: Workshop, by, target: str, settings: dict, duration_s: int, seats: list[Seat] | None = None) -> Broadcast:
    """Put `target`'s fault `settings` into the runs of `seats` (None: every seat) for `duration_s` seconds.

    ValueError, with nothing changed, when the fault is not one the engine takes or no seat has a run.
    """
    if workshop.ended:
        raise ValueError("This workshop has ended: its runs are read-only.")
    fault = faults.validate(target, settings)
    if not fault:
        raise ValueError(f"Choose what goes wrong with {target}: tick a fault or give it a number.")
    if not 1 <= duration_s <= MAX_DURATION_S:
        raise ValueError(f"A broadcast lasts from 1 second to {MAX_DURATION_S // 3600} hours.")
    chosen = workshop.seats.filter(run__isnull=False)
    if seats is not None:
        chosen = chosen.filter(pk__in=[seat.pk for seat in seats])
    run_ids = list(chosen.values_list("run_id", flat=True))
    if not run_ids:
        raise ValueError("No learner of this workshop has a run yet: there is nothing to inject into.")
    now = timezone.now()
    with transaction.atomic():
        broadcast = Broadcast.objects.create(workshop=workshop, started_by=by, target=target, fault=fault,
                                             started_at=now, ends_at=now + timedelta(seconds=duration_s))  # fmt: skip
        broadcast.runs.set(run_ids)
    faults.set_fault_of(run_ids, target, **fault)
    notices.tell(run_ids, f"Injected by your instructor: {notices.describe(broadcast)} for {notices.duration_text(duration_s)}")
    return broadcast


def end_due(now=None) -> int:
    """End every broadcast whose time has run out (steps in the module docstring); returns how many."""
    now = now or timezone.now()
    ended = 0
    for broadcast in Broadcast.objects.filter(ended_at__isnull=True, ends_at__lte=now):
        if _claim(broadcast, Broadcast.Ending.EXPIRED, now):
            _lift(broadcast, "its time ran out")
            ended += 1
    return ended


def end_due_on_tick(sender, **kwargs) -> None:
    end_due()


def end_now(broadcast: Broadcast) -> bool:
    """The instructor ends a broadcast before its time; False if it had ended already."""
    if not _claim(broadcast, Broadcast.Ending.ENDED, timezone.now()):
        return False
    _lift(broadcast, "your instructor ended it")
    return True


def withdraw(broadcast: Broadcast, why: str) -> None:
    """Lift a broadcast's fault even when something ended it first: an emergency stop that came while it was being injected."""
    _claim(broadcast, Broadcast.Ending.STOPPED, timezone.now())
    _lift(broadcast, why)


def in_force(workshop: Workshop):
    return workshop.broadcasts.filter(ended_at__isnull=True).order_by("ends_at", "id")


def _claim(broadcast: Broadcast, ending: str, now) -> bool:
    claimed = Broadcast.objects.filter(pk=broadcast.pk, ended_at__isnull=True).update(ended_at=now, ending=ending)
    return claimed == 1


def _lift(broadcast: Broadcast, why: str) -> None:
    run_ids = list(broadcast.runs.values_list("pk", flat=True))
    still_covered = set(
        Broadcast.runs.through.objects.filter(broadcast__target=broadcast.target, broadcast__ended_at__isnull=True, labrun_id__in=run_ids)
        .exclude(broadcast_id=broadcast.pk)
        .values_list("labrun_id", flat=True)
    )
    current = faults.all_faults_of(run_ids)
    faults.set_fault_of([run_id for run_id in run_ids if run_id not in still_covered and current[run_id].get(broadcast.target) == broadcast.fault],
                        broadcast.target)  # fmt: skip
    notices.tell(run_ids, f"Your instructor's fault ended ({why}): {notices.describe(broadcast)}")


def emergency_stop(workshop: Workshop, by) -> EmergencyStop:
    """Stop a playing scenario, clear every fault of every run of the workshop now, end every broadcast, and record who did it."""
    started = time.monotonic()
    at = timezone.now()
    # First, so the relay begins no further step; a step it is injecting right now withdraws its own fault (scenario_player).
    ScenarioPlay.objects.filter(workshop=workshop, state__in=ScenarioPlay.IN_PROGRESS).update(
        state=ScenarioPlay.State.STOPPED, ended_at=at, note="Emergency stop")
    Broadcast.objects.filter(workshop=workshop, ended_at__isnull=True).update(ended_at=at, ending=Broadcast.Ending.STOPPED)
    run_ids = list(workshop.seats.filter(run__isnull=False).values_list("run_id", flat=True))
    faults.clear_faults_of(run_ids)
    took_ms = round((time.monotonic() - started) * 1000)
    stop = EmergencyStop.objects.create(workshop=workshop, stopped_by=by, at=at, runs_cleared=len(run_ids), took_ms=took_ms)
    notices.tell(run_ids, f"Emergency stop: your instructor cleared every fault at {at:%H:%M:%S} UTC")
    return stop
