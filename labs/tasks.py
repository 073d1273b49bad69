from celery import shared_task

from labs.pipeline import saga
from labs.pipeline.campaign import deliver_batch
from labs.pipeline.worker import deliver


@shared_task(name="labs.deliver_task", ignore_result=True)
def deliver_task(delivery_id: int, generation: int) -> None:
    """Deliver one message; the id and the delivery's generation are all it carries (the rest is in the database)."""
    deliver(delivery_id, generation)


@shared_task(name="labs.deliver_batch_task", ignore_result=True)
def deliver_batch_task(run_id: int, items: list[list[int]]) -> None:
    """Deliver a batch of campaign messages: [[delivery id, generation], ...]."""
    deliver_batch(run_id, [tuple(item) for item in items])


@shared_task(name="labs.saga_message_task", ignore_result=True)
def saga_message_task(message_id: int) -> None:
    """Hand one saga message (a command, a reply or an event) to its service or to the orchestrator."""
    saga.handle(message_id)
