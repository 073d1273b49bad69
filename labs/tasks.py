from celery import shared_task

from labs.pipeline.worker import deliver


@shared_task(name="labs.deliver_task", ignore_result=True)
def deliver_task(delivery_id: int, expected_attempts: int) -> None:
    """Deliver one message; the id and attempt count are all it carries (the rest is in the database)."""
    deliver(delivery_id, expected_attempts)
