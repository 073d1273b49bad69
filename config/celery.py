"""The Celery app, configured from Django settings (the CELERY_ namespace)."""

import gc
import logging
import os
import socket

from celery import Celery, bootsteps, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("faultline")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

log = logging.getLogger(__name__)

NODE_NAME_LENGTH = 120  # labs.models: Delivery.claimed_by and DeliveryAttempt.worker


def node_name() -> str:
    """Which worker is doing this work: the Celery node running the current task (`celery@host`,
    or what `--hostname` named it), so that with workers on several machines every claim and
    attempt says where it ran. Outside a task (the relay, a shell, a test) `host:pid`."""
    from celery import current_task

    name = current_task.request.hostname if current_task else None
    return (name or f"{socket.gethostname()}:{os.getpid()}")[:NODE_NAME_LENGTH]


class Heartbeat(bootsteps.StartStopStep):
    """Refresh the worker's heartbeat while its consumer is connected to the broker.

    A consumer step starts after the broker connection is up and stops when it is
    lost, so the heartbeat means "this worker can take tasks", not just "the process exists".
    """

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.tref = None
        self.kinds = ["worker"]  # "worker" for the lanes, "urgent" for the urgent lane (both for a worker taking all)

    def start(self, consumer):
        from django.conf import settings

        # A worker that takes only the urgent lane is the bulkhead: /healthz reports it apart.
        queues = {queue.name for queue in consumer.task_consumer.queues}
        self.kinds = ["urgent"] if queues == {"urgent"} else ["worker", "urgent"] if "urgent" in queues else ["worker"]
        self._beat()
        self.tref = consumer.timer.call_repeatedly(settings.HEARTBEAT_INTERVAL, self._beat)

    def stop(self, consumer):
        from config.heartbeat import clear

        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        try:
            for kind in self.kinds:
                clear(kind)
        except Exception:  # Redis may be the reason we are stopping
            log.warning("could not clear the worker heartbeat", exc_info=True)

    def _beat(self):
        from config.heartbeat import beat

        try:
            for kind in self.kinds:
                beat(kind)
        except Exception:
            log.warning("could not write the worker heartbeat", exc_info=True)


app.steps["consumer"].add(Heartbeat)


@signals.worker_init.connect
def yield_to_the_pages(sender=None, **kwargs) -> None:
    """A worker of the bulk lanes runs at a lower CPU priority (WORKER_NICENESS, 10 by default; 0 keeps it):
    on a small server a cohort's campaigns then wait for the CPU behind the pages and the live streams
    people are watching, instead of the other way round. The urgent lane's own worker keeps its priority,
    so a security alert does not wait behind anyone. Its pool processes inherit it."""
    from django.conf import settings

    consumes = set(sender.app.amqp.queues.consume_from or ()) if sender is not None else set()
    if consumes == {"urgent"} or not settings.WORKER_NICENESS:
        return
    os.nice(settings.WORKER_NICENESS)
    log.info("worker: CPU niceness %d (WORKER_NICENESS): the pages and live streams come first", os.nice(0))


@signals.worker_before_create_process.connect
def freeze_before_fork(**kwargs) -> None:
    """Keep what the worker loaded shared with its pool processes: the collector never scans frozen
    objects, so it never writes to their pages (measured with `make footprint`: the main worker,
    with its two pool processes, went from 137 to 99 MB proportional set size)."""
    gc.freeze()


def close_old_connections(**kwargs) -> None:
    """Around each task, as Django does around each request: close a database connection that failed
    or outlived CONN_MAX_AGE, and keep the others. (Celery's own Django fixup closes every connection
    around every task unless settings.CELERY_DB_REUSE_MAX says otherwise: on PostgreSQL that was a
    new server process per campaign batch, and no prepared statement outlived a task.)"""
    from django.db import close_old_connections

    close_old_connections()


signals.task_prerun.connect(close_old_connections)
signals.task_postrun.connect(close_old_connections)
