"""The order saga (lab 7) end to end: orders placed in this process, a real relay publishing the
saga's outbox and a real Celery worker running the services and the orchestrator, on the test
database and a real Redis. What a learner would notice is read from the services' own rows
through the auditor (labs.pipeline.saga_audit) and from the notifications the providers sent.
"""

import uuid

import pytest

from labs.models import (
    Order,
    OrderStatus,
    PaymentAuthorisation,
    ProviderSend,
    Recipient,
    SagaMode,
    SagaState,
    SagaStep,
    SagaStepName,
    SagaStepStatus,
    StockLevel,
)
from labs.pipeline import audit, defences, faults, saga
from labs.pipeline.saga_audit import saga_facts
from labs.runs import create_run
from labs.seeding import PRODUCT_STOCK
from tests.harness import wait_for

Step = SagaStepName


@pytest.fixture
def run(transactional_db, django_user_model, worker_and_relay):
    owner = django_user_model.objects.create_user(f"shopper-{uuid.uuid4().hex[:6]}", password="not-used-1234")
    lab = create_run(owner, retry_base_ms=100, retry_cap_ms=1000, max_attempts=4)
    Recipient.objects.filter(run=lab).update(quiet_start=None, quiet_end=None, email_opt_in=True)
    yield lab
    faults.clear_faults(lab.pk)


def settled(run, timeout: float = 60) -> dict:
    """The auditor's figures once no order has a saga message left to handle and every email is out."""

    def done():
        found = saga_facts(run)
        return found["orders_in_flight"] == 0 and audit.audit(run)["in_flight"] == 0 and found

    return wait_for(done, timeout, "every order's saga and its notifications to finish")


def emails(run, template: str) -> int:
    return ProviderSend.objects.filter(run=run, template=template).count()


def test_orchestrated_orders_reserve_authorise_confirm_and_notify_once(run):
    saga.place_orders(run, 5)

    found = settled(run)
    assert found["orders_confirmed"] == 5 and found["orders_half_done"] == 0
    assert found["double_charges"] == 0 and found["stock_leaked"] == 0
    assert StockLevel.objects.get(run=run).available == PRODUCT_STOCK - 5
    assert PaymentAuthorisation.objects.filter(run=run, voided_at__isnull=True).count() == 5
    assert set(Order.objects.filter(run=run).values_list("saga_state", flat=True)) == {SagaState.CONFIRMED}
    assert emails(run, "order_confirmed") == 5  # through the notification pipeline, to the provider
    steps = SagaStep.objects.filter(order__run=run)
    assert {s.step for s in steps} == set(saga.FORWARD) and all(s.status == SagaStepStatus.SUCCEEDED for s in steps)


def test_a_declined_payment_releases_the_reserved_stock_and_cancels_the_order(run):
    faults.set_fault(run.pk, faults.PIPELINE, payment_decline=1.0)
    saga.place_orders(run, 3)

    found = settled(run)
    assert found["orders_cancelled"] == 3 and found["payments_declined"] == 3
    assert found["orders_half_done"] == 0 and found["stock_leaked"] == 0
    assert StockLevel.objects.get(run=run).available == PRODUCT_STOCK  # reserved, then released
    assert found["compensations_run"] == 6  # a release and a cancellation per order
    assert emails(run, "order_cancelled") == 3 and emails(run, "order_confirmed") == 0
    order = Order.objects.filter(run=run).first()
    assert [s.step for s in order.steps.all()] == [Step.RESERVE_INVENTORY, Step.AUTHORISE_PAYMENT, Step.RELEASE_INVENTORY, Step.CANCEL_ORDER]


def test_inventory_down_retries_the_reservation_then_gives_up_and_cancels(run):
    faults.set_fault(run.pk, faults.PIPELINE, inventory_down=True)
    saga.place_orders(run, 2)

    found = settled(run)
    assert found["orders_cancelled"] == 2 and found["orders_half_done"] == 0
    assert found["saga_retries"] == 2 * 3  # attempts 2, 3 and 4 of each reservation
    reserve = SagaStep.objects.filter(order__run=run, step=Step.RESERVE_INVENTORY).first()
    assert reserve.status == SagaStepStatus.FAILED and reserve.attempts == 4 and reserve.retries == 3
    assert "gave up after 4 attempts" in reserve.last_error


def test_a_failing_compensation_is_retried_until_it_succeeds(run):
    faults.set_fault(run.pk, faults.PIPELINE, payment_decline=1.0, compensation_fail_first=3)
    saga.place_orders(run, 1)

    found = settled(run)
    assert found["orders_cancelled"] == 1 and found["stock_leaked"] == 0 and found["orders_half_done"] == 0
    release = SagaStep.objects.get(order__run=run, step=Step.RELEASE_INVENTORY)
    assert release.attempts == 4 and release.retries == 3 and release.status == SagaStepStatus.SUCCEEDED


def test_without_compensation_retries_a_failed_release_leaves_the_order_half_done_and_the_stock_held(run):
    defences.set_defences(run, compensation_retries=False)
    faults.set_fault(run.pk, faults.PIPELINE, payment_decline=1.0, compensation_fail_first=1)
    saga.place_orders(run, 1)

    found = settled(run)
    assert found["orders_half_done"] == 1 and found["stock_leaked"] == 1 and found["compensations_given_up"] == 1
    order = Order.objects.get(run=run)
    assert order.status == OrderStatus.PENDING and order.saga_state == SagaState.STUCK


def test_duplicate_messages_are_ignored_with_idempotent_steps_and_charge_twice_without(run):
    faults.set_fault(run.pk, faults.PIPELINE, duplicate_delivery=1.0)
    saga.place_orders(run, 3)
    found = settled(run)
    assert found["saga_duplicates_ignored"] >= 3 * 4  # every command and reply came twice
    assert found["double_charges"] == 0 and found["stock_leaked"] == 0 and found["steps_done_twice"] == 0
    assert emails(run, "order_confirmed") == 3

    defences.set_defences(run, idempotent_steps=False)
    saga.place_orders(run, 3)
    found = settled(run)
    assert found["double_charges"] >= 1 and found["stock_leaked"] >= 1 and found["steps_done_twice"] >= 1
    assert found["orders_confirmed"] == 6
    assert not SagaStep.objects.filter(order__run=run, retries__gt=0).exists()  # a copy acted on is not a retry


def test_the_orchestrator_crashing_after_its_transitions_loses_no_order_and_repeats_nothing(run):
    faults.set_fault(run.pk, faults.PIPELINE, orchestrator_crash=0.5)
    saga.place_orders(run, 4)

    found = settled(run, timeout=120)
    assert found["orchestrator_crashes"] >= 1
    assert found["orders_confirmed"] == 4 and found["orders_half_done"] == 0
    assert found["double_charges"] == 0 and found["stock_leaked"] == 0
    assert emails(run, "order_confirmed") == 4


def test_choreographed_orders_reach_the_same_outcomes_through_events(run):
    saga.set_mode(run, SagaMode.CHOREOGRAPHY)
    saga.place_orders(run, 2)
    found = settled(run)
    assert found["choreographed_finished"] == 2 and found["orders_confirmed"] == 2
    assert emails(run, "order_confirmed") == 2

    faults.set_fault(run.pk, faults.PIPELINE, payment_decline=1.0)
    saga.place_orders(run, 2)
    found = settled(run)
    assert found["orders_cancelled"] == 2 and found["stock_leaked"] == 0 and found["orders_half_done"] == 0
    assert StockLevel.objects.get(run=run).available == PRODUCT_STOCK - 2
    assert set(Order.objects.filter(run=run).values_list("saga_state", flat=True)) == {SagaState.CHOREOGRAPHED}
    assert emails(run, "order_cancelled") == 2


def test_the_orchestrator_state_machine_compensates_what_was_done_in_reverse():
    """A pure function: which step follows, or how the saga ends."""
    assert saga.next_state(Step.RESERVE_INVENTORY, saga.SUCCEEDED) == Step.AUTHORISE_PAYMENT
    assert saga.next_state(Step.NOTIFY_CUSTOMER, saga.SUCCEEDED) == SagaState.CONFIRMED
    assert saga.next_state(Step.RESERVE_INVENTORY, saga.FAILED) == Step.CANCEL_ORDER  # nothing done to undo
    assert saga.next_state(Step.AUTHORISE_PAYMENT, saga.FAILED) == Step.RELEASE_INVENTORY
    assert saga.next_state(Step.CONFIRM_ORDER, saga.FAILED) == Step.VOID_AUTHORISATION
    assert saga.next_state(Step.VOID_AUTHORISATION, saga.SUCCEEDED) == Step.RELEASE_INVENTORY
    assert saga.next_state(Step.RELEASE_INVENTORY, saga.SUCCEEDED) == Step.CANCEL_ORDER
    assert saga.next_state(Step.CANCEL_ORDER, saga.SUCCEEDED) == SagaState.CANCELLED
    assert saga.next_state(Step.RELEASE_INVENTORY, saga.GAVE_UP) == SagaState.STUCK
