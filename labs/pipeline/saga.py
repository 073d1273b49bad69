"""The order saga (lesson: sagas): reserve inventory → authorise payment → confirm the order →
notify the customer, each step with its compensation (release inventory, void the
authorisation, cancel the order and notify).

Every step is a local transaction of one service (labs/pipeline/saga_services.py) that writes
its next message to the saga's outbox (SagaMessage) in the same transaction; the relay
publishes the outbox (`relay.publish_saga_due`) and a worker hands each message to `handle`.

Steps of `handle(message_id)`, in one transaction:
1. Take the message. With idempotent steps on, a conditional update of `handled_at`: a copy
   (the relay published it twice, the broker redelivered it after a crash) finds it set and
   is dropped. Off, every copy is acted on.
2. A reply goes to the orchestrator (`on_reply`): it moves the order's `saga_state` on from the
   step it waited for, with a conditional update, and writes the next command. A reply for
   another step is late or a copy, and changes nothing.
3. A command or an event runs its step at its service. A temporary failure (a service down, a
   compensation failing) writes the same message again, due after a full-jitter backoff:
   forward steps up to the run's maximum attempts, then the step counts as failed; the
   customer's notification (after the pivot) and compensations (with compensation retries on)
   until they succeed; with compensation retries off, a failed compensation gives up at once
   and the order is left half-done.
4. The step's outcome leaves as the next message: a reply to the orchestrator (orchestration),
   or an event to each service subscribed to it (choreography, `SUBSCRIBERS`).

After the commit: the events for the page, and the `orchestrator_crash` fault, which kills the
worker after the orchestrator's transition is committed and before the broker has its ack.
"""

import logging
import os
import random
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Max
from django.db.models.functions import Now
from django.utils import timezone

from labs.models import (
    LabRun,
    Order,
    SagaMessage,
    SagaMessageKind,
    SagaMode,
    SagaState,
    SagaStep,
    SagaStepName,
    SagaStepStatus,
)
from labs.pipeline import defences, events, faults, saga_services
from labs.pipeline.backoff import backoff_ceiling_ms, full_jitter_ms
from labs.seeding import PRODUCT_PRICE_CENTS, PRODUCT_SKU, USERS_PER_RUN, seed_stock

log = logging.getLogger(__name__)

Step = SagaStepName
Kind = SagaMessageKind
SUCCEEDED, FAILED, GAVE_UP = "succeeded", "failed", "gave_up"

FORWARD = (Step.RESERVE_INVENTORY, Step.AUTHORISE_PAYMENT, Step.CONFIRM_ORDER, Step.NOTIFY_CUSTOMER)
PIVOT = Step.CONFIRM_ORDER  # after it the saga only goes forward
# Compensations in the order they run, each with the forward step it undoes (cancelling undoes placing the order).
COMPENSATIONS = (
    (Step.VOID_AUTHORISATION, Step.AUTHORISE_PAYMENT),
    (Step.RELEASE_INVENTORY, Step.RESERVE_INVENTORY),
    (Step.CANCEL_ORDER, None),
)
COMPENSATION_STEPS = tuple(step for step, _ in COMPENSATIONS)

# Choreography: what a step's outcome is called when it is published, and which service reacts to each event.
EVENT_OF = {
    (Step.RESERVE_INVENTORY, SUCCEEDED): "inventory_reserved",
    (Step.RESERVE_INVENTORY, FAILED): "inventory_unavailable",
    (Step.AUTHORISE_PAYMENT, SUCCEEDED): "payment_authorised",
    (Step.AUTHORISE_PAYMENT, FAILED): "payment_declined",
    (Step.CONFIRM_ORDER, SUCCEEDED): "order_confirmed",
    (Step.CONFIRM_ORDER, FAILED): "order_not_confirmed",
    (Step.NOTIFY_CUSTOMER, SUCCEEDED): "customer_notified",
    (Step.VOID_AUTHORISATION, SUCCEEDED): "authorisation_voided",
    (Step.RELEASE_INVENTORY, SUCCEEDED): "inventory_released",
    (Step.CANCEL_ORDER, SUCCEEDED): "order_cancelled",
}
ORDER_PLACED = "order_placed"
SUBSCRIBERS: dict[str, tuple[str, ...]] = {
    ORDER_PLACED: (Step.RESERVE_INVENTORY,),  # Inventory
    "inventory_reserved": (Step.AUTHORISE_PAYMENT,),  # Payments
    "inventory_unavailable": (Step.CANCEL_ORDER,),  # Orders
    "payment_authorised": (Step.CONFIRM_ORDER,),  # Orders
    "payment_declined": (Step.RELEASE_INVENTORY,),  # Inventory
    "order_confirmed": (Step.NOTIFY_CUSTOMER,),  # Orders
    "order_not_confirmed": (Step.VOID_AUTHORISATION,),  # Payments
    "authorisation_voided": (Step.RELEASE_INVENTORY,),  # Inventory
    "inventory_released": (Step.CANCEL_ORDER,),  # Orders
}


@dataclass
class Handled:
    """What handling one message did, for the page once it is committed."""

    notes: list[tuple[str, dict]] = field(default_factory=list)
    crash: bool = False  # the orchestrator_crash fault fired on this transition

    def note(self, kind: str, **fields) -> None:
        self.notes.append((kind, fields))


# --- Placing orders -----------------------------------------------------------------------------


def place_orders(run: LabRun, count: int) -> list[Order]:
    """`count` orders of one item each, to users 1, 2, ..., coordinated as the run's saga mode says.

    Placing an order is the Orders service's local transaction: the order, pending, and the
    saga's first message (a command to Inventory, or the event `order_placed`) in the outbox.
    """
    if not 1 <= count <= USERS_PER_RUN:
        raise ValueError(f"place between 1 and {USERS_PER_RUN} orders at a time")
    mode = run.saga_mode
    with transaction.atomic():
        seed_stock(run)
        first = (Order.objects.filter(run=run).aggregate(top=Max("number"))["top"] or 0) + 1
        recipients = {r.number: r for r in run.recipients.all()}
        orders = []
        for number in range(first, first + count):
            order = Order.objects.create(
                run=run, number=number, recipient=recipients[(number - 1) % USERS_PER_RUN + 1], sku=PRODUCT_SKU,
                amount_cents=PRODUCT_PRICE_CENTS, mode=mode,
                saga_state=SagaState.RESERVE_INVENTORY if mode == SagaMode.ORCHESTRATION else SagaState.CHOREOGRAPHED,
            )  # fmt: skip
            if mode == SagaMode.ORCHESTRATION:
                _write(order, Kind.COMMAND, Step.RESERVE_INVENTORY)
            else:
                _publish_event(order, ORDER_PLACED)
            orders.append(order)
    placed = f"Orders {orders[0].reference}–{orders[-1].reference}" if count > 1 else f"Order {orders[0].reference}"
    events.emit(run.pk, "orders_placed", count=count, orders=placed, mode=SagaMode(mode).label.lower())
    return orders


def set_mode(run: LabRun, mode: str) -> str:
    """Coordinate the run's next orders by `mode`; orders already placed finish as they started."""
    if mode not in SagaMode.values:
        raise ValueError(f"{mode!r} is not a saga mode; choose {' or '.join(SagaMode.values)}")
    run.saga_mode = mode
    run.save(update_fields=["saga_mode"])
    events.emit(run.pk, "saga_mode_changed", mode=SagaMode(mode).label.lower())
    return mode


# --- Handling a message ----------------------------------------------------------------------------


def handle(message_id: int) -> None:
    message = SagaMessage.objects.select_related("run", "order__recipient").filter(pk=message_id).first()
    if message is None:
        return  # the run was reset or deleted while the message waited
    run, order = message.run, message.order
    idempotent = defences.enabled(run, "idempotent_steps")
    chaos = faults.fault_for(run.pk, faults.PIPELINE)
    handled = Handled()
    with transaction.atomic():
        if not _take(message, idempotent):
            SagaStep.objects.filter(order=order, step=message.step).update(duplicates_ignored=F("duplicates_ignored") + 1)
            handled.note("saga_duplicate", order=order.reference, message=_message_words(message))
        elif message.kind == Kind.REPLY:
            on_reply(message, order, chaos, handled)
        else:
            run_step(message, run, order, idempotent, chaos, handled)
    events.emit_many(run.pk, handled.notes)
    if handled.crash:
        log.warning("order %s: injected orchestrator crash after its transition, before the ack", order.pk)
        os._exit(1)  # the reply is not acknowledged: the broker hands it to another worker process


def _take(message: SagaMessage, idempotent: bool) -> bool:
    """The consumer's claim on a message (idempotent steps on); off, every copy is taken."""
    fresh = SagaMessage.objects.filter(pk=message.pk, handled_at__isnull=True)
    if idempotent:
        return fresh.update(handled_at=Now()) == 1
    fresh.update(handled_at=Now())
    return True


def run_step(message: SagaMessage, run: LabRun, order: Order, idempotent: bool, chaos: dict, handled: Handled) -> None:
    step = message.step
    # Locked (PostgreSQL): with idempotent steps off, two copies of one message may run at once and both count.
    record, _ = SagaStep.objects.select_for_update().get_or_create(order=order, step=step,
                                                                   defaults={"compensation": step in COMPENSATION_STEPS})  # fmt: skip
    record.attempts += 1
    record.status = SagaStepStatus.RUNNING
    try:
        with transaction.atomic():  # the service's own writes: undone together if it fails
            result = saga_services.SERVICES[step](run, order, idempotent, chaos)
    except saga_services.Unavailable as exc:
        _retry_or_give_up(message, run, order, record, str(exc), handled)
        return
    except IntegrityError:
        # A copy of this step got there first and filed its effect under the same key.
        result = saga_services.Result(True, "already done under this key", did_work=False)
    record.executions += result.did_work
    record.status = SagaStepStatus.SUCCEEDED if result.ok else SagaStepStatus.FAILED
    record.last_error = "" if result.ok else result.detail[:200]
    record.finished_at = timezone.now()
    record.save()
    again = result.did_work and record.executions > 1
    handled.note("saga_step", order=order.reference, step=Step(step).label, ok=result.ok, detail=result.detail,
                 again=f" (done {record.executions} times)" if again else "")  # fmt: skip
    _after_step(message, order, SUCCEEDED if result.ok else FAILED, handled)


def _retry_or_give_up(message: SagaMessage, run: LabRun, order: Order, record: SagaStep, error: str, handled: Handled) -> None:
    step = message.step
    limit = attempt_limit(run, step)
    record.last_error = error[:200]
    if limit is None or message.attempt < limit:
        ceiling = backoff_ceiling_ms(message.attempt, run.retry_base_ms, run.retry_cap_ms)
        delay = full_jitter_ms(message.attempt, run.retry_base_ms, run.retry_cap_ms) if defences.enabled(run, "jitter") else ceiling
        _write(order, message.kind, step, outcome=message.outcome, event=message.event, attempt=message.attempt + 1,
               available_at=timezone.now() + timedelta(milliseconds=delay))  # fmt: skip
        record.status = SagaStepStatus.RETRYING
        record.retries += 1
        record.save()
        of = f" of {limit}" if limit else ""
        handled.note("saga_retry", order=order.reference, step=Step(step).label, error=error, delay_ms=delay,
                     next_attempt=f"{message.attempt + 1}{of}")  # fmt: skip
        return
    compensating = step in COMPENSATION_STEPS
    record.status = SagaStepStatus.GAVE_UP if compensating else SagaStepStatus.FAILED
    record.last_error = f"{error}; gave up after {message.attempt} attempt{'s' if message.attempt != 1 else ''}"[:200]
    record.finished_at = timezone.now()
    record.save()
    handled.note("saga_gave_up", order=order.reference, step=Step(step).label, error=record.last_error)
    _after_step(message, order, GAVE_UP if compensating else FAILED, handled)


def attempt_limit(run: LabRun, step: str) -> int | None:
    """How many times a step is tried before it counts as failed; None: until it succeeds."""
    if step in COMPENSATION_STEPS:
        return None if defences.enabled(run, "compensation_retries") else 1
    if step == Step.NOTIFY_CUSTOMER:
        return None  # after the pivot a step may not fail: it is retried until done
    return run.max_attempts


def _after_step(message: SagaMessage, order: Order, outcome: str, handled: Handled) -> None:
    """The step's outcome leaves through the outbox: a reply to the orchestrator, or an event."""
    if message.kind == Kind.COMMAND:
        _write(order, Kind.REPLY, message.step, outcome=outcome)
        return
    event = EVENT_OF.get((message.step, outcome), f"{message.step}_{outcome}")
    _publish_event(order, event)
    if not SUBSCRIBERS.get(event) and outcome == GAVE_UP:
        # Nobody listens for a compensation that gave up: in choreography the order just stays where it is.
        handled.note("saga_stuck", order=order.reference, step=Step(message.step).label, event=event)


def _publish_event(order: Order, event: str) -> None:
    for subscriber in SUBSCRIBERS.get(event, ()):
        _write(order, Kind.EVENT, subscriber, event=event)


def _write(order: Order, kind: str, step: str, **fields) -> SagaMessage:
    return SagaMessage.objects.create(run_id=order.run_id, order=order, kind=kind, step=step, **fields)


# --- The orchestrator ------------------------------------------------------------------------------


def next_state(step: str, outcome: str) -> str:
    """The orchestrator's state machine: after `step` ended with `outcome`, the step to run or how the saga ends."""
    if step in FORWARD:
        if outcome == SUCCEEDED:
            index = FORWARD.index(step)
            return FORWARD[index + 1] if index + 1 < len(FORWARD) else SagaState.CONFIRMED
        done = FORWARD[: FORWARD.index(step)]
        return next(comp for comp, undoes in COMPENSATIONS if undoes is None or undoes in done)
    if outcome == GAVE_UP:
        return SagaState.STUCK
    if step == Step.CANCEL_ORDER:
        return SagaState.CANCELLED
    return COMPENSATION_STEPS[COMPENSATION_STEPS.index(step) + 1]


def on_reply(message: SagaMessage, order: Order, chaos: dict, handled: Handled) -> None:
    """Move the saga on from the step it waited for; a reply for any other step is late or a copy."""
    following = next_state(message.step, message.outcome)
    crash = random.random() < chaos.get("orchestrator_crash", 0.0)
    changes = {"orchestrator_crashes": F("orchestrator_crashes") + 1} if crash else {}
    if not Order.objects.filter(pk=order.pk, saga_state=message.step).update(saga_state=following, **changes):
        handled.note("saga_reply_ignored", order=order.reference, message=_message_words(message))
        return
    if following in Step.values:
        _write(order, Kind.COMMAND, following)
    state = SagaState(following)
    if following not in Step.values or (following in COMPENSATION_STEPS and message.step in FORWARD):
        handled.note("saga_state", order=order.reference, state=state.label.lower(), ok=following == SagaState.CONFIRMED)
    if crash:
        handled.crash = True
        handled.note("orchestrator_crashed", order=order.reference, state=state.label.lower())


def _message_words(message: SagaMessage) -> str:
    step = Step(message.step).label.lower()
    if message.kind == Kind.REPLY:
        return f"the reply from “{step}” ({message.outcome.replace('_', ' ')})"
    if message.kind == Kind.EVENT:
        return f"the event {message.event} (for “{step}”)"
    return f"the command “{step}”"
