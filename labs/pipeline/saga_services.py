"""The order saga's three simulated services, one local transaction per step (lesson: sagas).

Each function is one service doing one step of one order, inside the transaction in which
labs/pipeline/saga.py also writes the step's next message. Each writes only its own service's
rows: Inventory its stock and reservations, Payments its authorisations, Orders its orders
(and the notifications it asks the pipeline for, through the API's own `intake.accept`, so a
notification leaves through the pipeline's outbox like any other).

A step is idempotent through a key: the same key twice finds the first result (a unique
constraint holds it) and does nothing more. With the `idempotent_steps` defence off, every
call makes a key of its own, as a service without keys would, and a copy does the work again.

A step returns a `Result` (done or failed for good: out of stock, card declined) or raises
`Unavailable`, a temporary failure the saga retries (the inventory service down, a compensation
that fails under the `compensation_fail_first` fault).
"""

import random
import uuid
from dataclasses import dataclass

from django.db.models import F
from django.utils import timezone

from labs.models import LabRun, Order, OrderStatus, PaymentAuthorisation, SagaStepName, StockLevel, StockReservation
from labs.pipeline import faults, intake

Step = SagaStepName


class Unavailable(Exception):
    """The service could not do the step now; the same message is tried again later."""


@dataclass(frozen=True)
class Result:
    ok: bool  # False: failed for good, and the saga compensates
    detail: str  # what happened, in words, for the page
    did_work: bool = True  # False when the key found the step already done


def step_key(order: Order, step: str, idempotent: bool) -> str:
    """The key a service files a step's effect under: one per order and step, or (defence off) one per call."""
    key = f"order{order.pk}-{step}"
    return key if idempotent else f"{key}-{uuid.uuid4().hex[:12]}"


def reserve_inventory(run: LabRun, order: Order, idempotent: bool, chaos: dict) -> Result:
    if chaos.get("inventory_down"):
        raise Unavailable("the inventory service is down")
    key = step_key(order, Step.RESERVE_INVENTORY, idempotent)
    if StockReservation.objects.filter(run=run, key=key).exists():
        return Result(True, "already reserved under this key", did_work=False)
    taken = StockLevel.objects.filter(run=run, sku=order.sku, available__gte=order.quantity).update(
        available=F("available") - order.quantity
    )
    if not taken:
        return Result(False, f"out of stock: no {order.quantity} × {order.sku} left")
    StockReservation.objects.create(run=run, order=order, key=key, sku=order.sku, quantity=order.quantity)
    return Result(True, f"{order.quantity} × {order.sku} reserved")


def authorise_payment(run: LabRun, order: Order, idempotent: bool, chaos: dict) -> Result:
    key = step_key(order, Step.AUTHORISE_PAYMENT, idempotent)
    if PaymentAuthorisation.objects.filter(run=run, key=key).exists():
        return Result(True, "already authorised under this key", did_work=False)
    if random.random() < chaos.get("payment_decline", 0.0):
        return Result(False, "the card issuer declined the payment")
    PaymentAuthorisation.objects.create(run=run, order=order, key=key, amount_cents=order.amount_cents)
    return Result(True, f"{order.amount_cents / 100:.2f} authorised")


def confirm_order(run: LabRun, order: Order, idempotent: bool, chaos: dict) -> Result:
    """The pivot: once the order is confirmed, the saga only goes forward."""
    if Order.objects.filter(pk=order.pk, status=OrderStatus.PENDING).update(status=OrderStatus.CONFIRMED):
        return Result(True, "order confirmed")
    status = Order.objects.filter(pk=order.pk).values_list("status", flat=True).first()
    if status == OrderStatus.CONFIRMED:
        return Result(True, "already confirmed", did_work=False)
    return Result(False, f"the order is {status} and cannot be confirmed")


def notify_customer(run: LabRun, order: Order, idempotent: bool, chaos: dict) -> Result:
    """After the pivot: tell the customer, through the notification pipeline's API."""
    sent = _notify(run, order, "order_confirmed", idempotent)
    Order.objects.filter(pk=order.pk, finished_at__isnull=True).update(finished_at=timezone.now())
    return sent


def void_authorisation(run: LabRun, order: Order, idempotent: bool, chaos: dict) -> Result:
    _compensation_fault(run, chaos)
    voided = PaymentAuthorisation.objects.filter(order=order, voided_at__isnull=True).update(voided_at=timezone.now())
    return Result(True, f"{voided} authorisation{'s' if voided != 1 else ''} voided", did_work=voided > 0)


def release_inventory(run: LabRun, order: Order, idempotent: bool, chaos: dict) -> Result:
    _compensation_fault(run, chaos)
    released = 0
    for reservation in StockReservation.objects.filter(order=order, released_at__isnull=True):
        # A conditional update per reservation: a copy of this message releases nothing twice.
        if StockReservation.objects.filter(pk=reservation.pk, released_at__isnull=True).update(released_at=timezone.now()):
            StockLevel.objects.filter(run=run, sku=reservation.sku).update(available=F("available") + reservation.quantity)
            released += reservation.quantity
    return Result(True, f"{released} × {order.sku} back in stock" if released else "nothing held to release", did_work=released > 0)


def cancel_order(run: LabRun, order: Order, idempotent: bool, chaos: dict) -> Result:
    """The last compensation: the order is cancelled and the customer told so."""
    _compensation_fault(run, chaos)
    cancelled = Order.objects.filter(pk=order.pk, status=OrderStatus.PENDING).update(
        status=OrderStatus.CANCELLED, finished_at=timezone.now()
    )
    if not cancelled:
        status = Order.objects.filter(pk=order.pk).values_list("status", flat=True).first()
        if status != OrderStatus.CANCELLED:
            return Result(False, f"the order is {status} and cannot be cancelled")
    sent = _notify(run, order, "order_cancelled", idempotent)
    return Result(True, f"order cancelled; {sent.detail}", did_work=bool(cancelled) or sent.did_work)


SERVICES = {
    Step.RESERVE_INVENTORY: reserve_inventory,
    Step.AUTHORISE_PAYMENT: authorise_payment,
    Step.CONFIRM_ORDER: confirm_order,
    Step.NOTIFY_CUSTOMER: notify_customer,
    Step.VOID_AUTHORISATION: void_authorisation,
    Step.RELEASE_INVENTORY: release_inventory,
    Step.CANCEL_ORDER: cancel_order,
}


def _notify(run: LabRun, order: Order, template: str, idempotent: bool) -> Result:
    """One notification through the API's intake: its intent and outbox row join this step's transaction."""
    request = intake.IntentRequest(step_key(order, template, idempotent), order.recipient.number, template,
                                   data={"order_id": order.reference})  # fmt: skip
    try:
        [accepted] = intake.accept(run, [request])
    except intake.IntakeError as exc:
        raise Unavailable(f"the notification API refused it: {exc}") from exc
    if accepted.replayed:
        return Result(True, f"notification {accepted.intent.pk} was already accepted", did_work=False)
    return Result(True, f"notification {accepted.intent.pk} accepted ({template})")


def _compensation_fault(run: LabRun, chaos: dict) -> None:
    """The `compensation_fail_first` fault: the next N compensations fail, then they succeed."""
    failing = chaos.get("compensation_fail_first", 0)
    if failing:
        call = faults.count_call(run.pk, faults.PIPELINE)
        if call <= failing:
            raise Unavailable(f"the compensation failed (call {call} of the {failing} set to fail)")
