"""The order saga's auditor (lesson: sagas): reads each service's own rows, never the saga's log.

An order is *in flight* while a message of its saga is still to be handled (waiting in the
outbox, on the broker, or due as a retry). Once nothing is in flight, every order must be:

  confirmed     holding one reservation and one live authorisation, or
  fully compensated   cancelled, holding no stock and no live authorisation.

  orders_half_done  finished orders that are neither: pending with nothing left to move them
                    (a compensation gave up), or cancelled while still holding stock or a charge
  double_charges    live authorisations beyond one on a finished order
  stock_leaked      units held by finished orders beyond what a confirmed order needs, plus any
                    units missing from the stock count (available + held must equal the initial stock)
"""

from collections import Counter

from django.db.models import Count, F, Q, Sum

from labs.models import (
    LabRun,
    Order,
    OrderStatus,
    PaymentAuthorisation,
    SagaMessage,
    SagaMode,
    SagaStep,
    SagaStepName,
    SagaStepStatus,
    StockLevel,
    StockReservation,
)
from labs.pipeline.saga import COMPENSATION_STEPS

FACTS: dict[str, str] = {
    "orders": "orders placed",
    "orders_confirmed": "orders confirmed",
    "orders_cancelled": "orders cancelled",
    "orders_in_flight": "orders whose saga still has a message to handle",
    "orders_half_done": "finished orders neither confirmed nor fully compensated",
    "double_charges": "payment authorisations beyond one on an order",
    "stock_leaked": "units of stock held for nothing",
    "payments_declined": "payments declined",
    "saga_retries": "saga steps tried again after a temporary failure",
    "compensation_retries": "compensations tried again after failing",
    "compensations_run": "compensations done",
    "compensations_given_up": "compensations given up",
    "saga_duplicates_ignored": "copies of saga messages the services ignored",
    "steps_done_twice": "saga steps whose work was done more than once",
    "orchestrator_crashes": "orchestrator crashes after a transition",
    "choreographed_finished": "choreographed orders confirmed or cancelled",
}


def saga_facts(run: LabRun) -> dict:
    orders = list(Order.objects.filter(run=run).values_list("pk", "status", "quantity", "mode", "orchestrator_crashes"))
    if not orders:
        return dict.fromkeys(FACTS, 0)
    in_flight = set(SagaMessage.objects.filter(run=run, handled_at__isnull=True).values_list("order_id", flat=True).distinct())
    held = Counter(dict(
        StockReservation.objects.filter(run=run, released_at__isnull=True).values("order_id").annotate(n=Sum("quantity"))
        .values_list("order_id", "n")
    ))  # fmt: skip
    charges = Counter(dict(
        PaymentAuthorisation.objects.filter(run=run, voided_at__isnull=True).values("order_id").annotate(n=Count("id"))
        .values_list("order_id", "n")
    ))  # fmt: skip
    half_done = double = leaked = 0
    for pk, status, quantity, _, _ in orders:
        if pk in in_flight:
            continue
        if status == OrderStatus.CONFIRMED:
            double += max(0, charges[pk] - 1)
            leaked += max(0, held[pk] - quantity)
        else:
            leaked += held[pk]
            half_done += status == OrderStatus.PENDING or held[pk] > 0 or charges[pk] > 0
    stock = StockLevel.objects.filter(run=run).aggregate(initial=Sum("initial"), available=Sum("available"))
    missing = abs((stock["initial"] or 0) - (stock["available"] or 0) - sum(held.values()))
    statuses = Counter(status for _, status, *_ in orders)
    steps = SagaStep.objects.filter(order__run=run).aggregate(
        declined=Count("id", filter=Q(step=SagaStepName.AUTHORISE_PAYMENT, status=SagaStepStatus.FAILED)),
        compensated=Count("id", filter=Q(compensation=True, status=SagaStepStatus.SUCCEEDED)),
        gave_up=Count("id", filter=Q(status=SagaStepStatus.GAVE_UP)),
        ignored=Sum("duplicates_ignored"),
        twice=Sum(F("executions") - 1, filter=Q(executions__gt=1)),
    )
    retries = SagaMessage.objects.filter(run=run, attempt__gt=1).aggregate(
        all=Count("id"), compensations=Count("id", filter=Q(step__in=COMPENSATION_STEPS))
    )
    return {
        "orders": len(orders),
        "orders_confirmed": statuses[OrderStatus.CONFIRMED],
        "orders_cancelled": statuses[OrderStatus.CANCELLED],
        "orders_in_flight": len(in_flight),
        "orders_half_done": half_done,
        "double_charges": double,
        "stock_leaked": leaked + missing,
        "payments_declined": steps["declined"],
        "saga_retries": retries["all"],
        "compensation_retries": retries["compensations"],
        "compensations_run": steps["compensated"],
        "compensations_given_up": steps["gave_up"],
        "saga_duplicates_ignored": steps["ignored"] or 0,
        "steps_done_twice": steps["twice"] or 0,
        "orchestrator_crashes": sum(crashes for *_, crashes in orders),
        "choreographed_finished": sum(1 for pk, status, _, mode, _ in orders
                                      if mode == SagaMode.CHOREOGRAPHY and status != OrderStatus.PENDING and pk not in in_flight),  # fmt: skip
    }
