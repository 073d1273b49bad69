"""The defences a learner can switch off, one run at a time, to watch an invariant break.

  outbox             off: the API publishes straight after its commit; a crash in between loses the message
  idempotency        off: the worker claims without checking the attempt and gives the provider a fresh key each time
  jitter             off: retries wait exactly base * 2**(attempt-1), so clients that failed together retry together
  circuit_breaker    off: every call goes to the primary provider, however sick it is
  dead_letter_queue  off: a message is retried for ever instead of being parked
  priority_lane      off: transactional messages share the channel queues with campaigns
  idempotent_steps   off: the order saga's services act on every copy of a message, each time under a new key
  compensation_retries  off: a saga compensation that fails is given up at once, leaving the order half-done
"""

from labs.models import LabRun
from labs.pipeline import events

NAMES = ("outbox", "idempotency", "jitter", "circuit_breaker", "dead_letter_queue", "priority_lane", "idempotent_steps",
         "compensation_retries")


def enabled(run: LabRun, name: str) -> bool:
    return run.defences.get(name, True)


def all_defences(run: LabRun) -> dict[str, bool]:
    return {name: enabled(run, name) for name in NAMES}


def set_defences(run: LabRun, **changes: bool) -> dict[str, bool]:
    unknown = set(changes) - set(NAMES)
    if unknown:
        raise ValueError(f"unknown defence(s): {', '.join(sorted(unknown))}; choose from {', '.join(NAMES)}")
    run.defences = {**run.defences, **{name: bool(on) for name, on in changes.items()}}
    run.save(update_fields=["defences"])
    events.emit(run.pk, "defences_changed", defences=all_defences(run))
    return all_defences(run)
