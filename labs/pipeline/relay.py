"""The outbox relay (lesson: transactional-outbox).

`publish_due` steps:
1. Claim a batch of due, unpublished outbox rows, urgent lane first. On PostgreSQL
   the rows are locked with FOR UPDATE SKIP LOCKED, so several relays can share the
   work; on SQLite a single relay holds a lease (see `hold_lease`).
2. Publish each row's message (delivery id and generation) to its queue.
3. Mark the rows published. A crash between 2 and 3 publishes those rows again:
   at-least-once, which is why the worker's claim drops a copy whose generation has
   moved on. The relay never writes a delivery's state: how many messages wait on the
   broker is read from the published rows.

`publish_saga_due` does steps 1-3 for the order saga's outbox (lab 7, labs/pipeline/saga.py).

`rescue_stranded` hands the state machine (labs/pipeline/deliveries.py) what the broker
or a dead worker has stranded: deliveries published long ago and never claimed (a Redis
restart drops what it held) are published again at the same generation; deliveries whose
worker has held them past the lease are taken over.
"""

import logging
import os
import random
import socket
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, IntegerField, Q, Value, When
from django.db.models.functions import Now
from django.utils import timezone

from config.celery import app
from config.redis_client import get_redis
from labs.models import OutboxRow, RelayLease, SagaMessage
from labs.pipeline import deliveries, events, faults, tally
from labs.pipeline.intake import URGENT_QUEUE
from labs.rows import array_text

log = logging.getLogger("faultline.relay")

DELIVER_TASK = "labs.deliver_task"
DELIVER_BATCH_TASK = "labs.deliver_batch_task"
SAGA_MESSAGE_TASK = "labs.saga_message_task"
CAMPAIGN_QUEUES = ("email", "sms", "push")  # in-app keeps per-message tasks for its per-user order
LEASE_SECONDS = 10
RELAY_ID = f"{socket.gethostname()}:{os.getpid()}"
_lease_expires = None  # when this process's lease runs out, while it holds one


def uses_skip_locked() -> bool:
    return connection.features.has_select_for_update_skip_locked


def hold_lease(now=None) -> bool:
    """Take or renew the single-relay lease (SQLite); always True where SKIP LOCKED is available."""
    if uses_skip_locked():
        return True
    global _lease_expires
    now = now or timezone.now()
    if _lease_expires is not None and _lease_expires - now > timedelta(seconds=LEASE_SECONDS / 2):
        return True  # renewed at half-life, so the lease is not one more write on every pass
    RelayLease.objects.get_or_create(pk=1)
    expires = now + timedelta(seconds=LEASE_SECONDS)
    taken = RelayLease.objects.filter(pk=1).filter(Q(holder=RELAY_ID) | Q(expires_at__lt=now)).update(holder=RELAY_ID, expires_at=expires)
    _lease_expires = expires if taken else None
    return taken == 1


def release_lease() -> None:
    global _lease_expires
    _lease_expires = None
    if not uses_skip_locked():
        RelayLease.objects.filter(pk=1, holder=RELAY_ID).update(expires_at=timezone.now())


def publish_messages(messages: list[tuple[int, str, int]], batches=()) -> None:
    """Send one deliver task per (delivery id, queue, generation), and one batch task per
    (run id, queue, [[delivery id, generation], ...]), on one broker connection."""
    with app.producer_or_acquire() as producer:
        for delivery_id, queue, generation in messages:
            app.send_task(DELIVER_TASK, args=[delivery_id, generation], queue=queue, producer=producer, retry=False)
        for run_id, queue, items in batches:
            app.send_task(DELIVER_BATCH_TASK, args=[run_id, items], queue=queue, producer=producer, retry=False)


def _group(rows, chaos) -> tuple[list, list]:
    """First messages (generation 0: never claimed) on the campaign lanes travel in batches;
    everything else one by one."""
    from labs.pipeline.campaign import BATCH_SIZE

    singles, grouped = [], {}
    for _, run_id, delivery_id, queue, generation in rows:
        copies = 2 if random.random() < chaos[run_id].get("duplicate_delivery", 0.0) else 1  # the broker hands it over twice
        for _ in range(copies):
            if queue in CAMPAIGN_QUEUES and generation == 0:
                grouped.setdefault((run_id, queue), []).append([delivery_id, generation])
            else:
                singles.append((delivery_id, queue, generation))
    batches = [
        (run_id, queue, items[start : start + BATCH_SIZE])
        for (run_id, queue), items in grouped.items()
        for start in range(0, len(items), BATCH_SIZE)
    ]
    return singles, batches


def publish_due(limit: int | None = None) -> int:
    """Publish one batch; returns how many rows were published. Broker errors propagate, rows stay pending."""
    limit = limit or settings.LAB_RELAY_BATCH
    _note_broker_restart()
    due = (
        OutboxRow.objects.filter(published_at__isnull=True, available_at__lte=Now())
        .exclude(run_id__in=faults.paused_runs())
        .annotate(lane=Case(When(queue=URGENT_QUEUE, then=Value(0)), default=Value(1), output_field=IntegerField()))
        .order_by("lane", "id")
        .values_list("id", "run_id", "delivery_id", "queue", "generation")
    )
    if uses_skip_locked():
        # The rows stay locked from the read to the mark, so other relays skip them.
        with transaction.atomic():
            return _publish(list(due.select_for_update(skip_locked=True, of=("self",))[:limit]))
    # SQLite: the lease makes this the only relay, so it reads without taking the write lock
    # and holds it only to mark what it published.
    return _publish(list(due[:limit]))


def _publish(rows: list[tuple]) -> int:
    if not rows:
        return 0
    chaos = {run_id: found.get(faults.PIPELINE, {}) for run_id, found in faults.all_faults_of(list({r[1] for r in rows})).items()}
    singles, batches = _group(rows, chaos)
    publish_messages(singles, batches)
    for run_id, fault in chaos.items():
        if fault.get("relay_crash_after_publish"):
            # Once per setting. The setting is switched off by the relay that comes after the crash: this one
            # may be inside a transaction (PostgreSQL's locked batch) that dies with it, so a note in Redis
            # says the crash happened.
            if faults.relay_crash_spent(run_id):
                faults.set_fault(run_id, faults.PIPELINE, **{k: v for k, v in fault.items() if k != "relay_crash_after_publish"})
                continue
            faults.spend_relay_crash(run_id)
            events.emit(run_id, "relay_crashed", published=len(rows), marked=0)
            log.warning("relay: injected crash after publishing %d rows, before marking them", len(rows))
            os._exit(1)
    mark_published([r[0] for r in rows])
    # One event per message sent: a campaign batch is one line in the feed, not a hundred.
    by_run: dict[int, list] = {}
    run_of = {r[2]: r[1] for r in rows}
    for delivery_id, queue, generation in singles:
        by_run.setdefault(run_of[delivery_id], []).append(("published", {"delivery": delivery_id, "queue": queue, "generation": generation}))
    for run_id, queue, items in batches:
        by_run.setdefault(run_id, []).append(("published_batch", {"queue": queue, "count": len(items),
                                                                  "deliveries": [pk for pk, _ in items]}))  # fmt: skip
    for run_id, published in by_run.items():
        events.emit_many(run_id, published)
    return len(rows)


def publish_saga_due(limit: int | None = None) -> int:
    """Publish one batch of the order saga's outbox (lab 7), as `publish_due` does the pipeline's.

    A run's paused relay holds its saga messages too; its `duplicate_delivery` fault publishes
    that share of them twice, which is how a step's message reaches its service twice.
    """
    limit = limit or settings.LAB_RELAY_BATCH
    due = (
        SagaMessage.objects.filter(published_at__isnull=True, available_at__lte=Now())
        .exclude(run_id__in=faults.paused_runs())
        .order_by("id")
        .values_list("id", "run_id")
    )
    if uses_skip_locked():
        with transaction.atomic():
            return _publish_saga(list(due.select_for_update(skip_locked=True, of=("self",))[:limit]))
    return _publish_saga(list(due[:limit]))


def _publish_saga(rows: list[tuple[int, int]]) -> int:
    if not rows:
        return 0
    chaos = {run_id: found.get(faults.PIPELINE, {}) for run_id, found in faults.all_faults_of(list({r[1] for r in rows})).items()}
    with app.producer_or_acquire() as producer:
        for message_id, run_id in rows:
            for _ in range(2 if random.random() < chaos[run_id].get("duplicate_delivery", 0.0) else 1):
                app.send_task(SAGA_MESSAGE_TASK, args=[message_id], queue=settings.LAB_SAGA_QUEUE, producer=producer, retry=False)
    SagaMessage.objects.filter(pk__in=[message_id for message_id, _ in rows]).update(published_at=Now())
    return len(rows)


def mark_published(ids: list[int]) -> None:
    """Mark the rows published (the database's clock), and raise each run's longest wait for the relay
    to this batch's longest (a running count the panels read: computing it from the rows would read
    every row the run ever published). One UPDATE … RETURNING and one upsert that keeps the highest.
    (Remembering the highest in this process to skip the upsert went wrong: a reset run starts its
    counts again from nothing, and the memory did not.)"""
    table = connection.ops.quote_name(OutboxRow._meta.db_table)
    with transaction.atomic(), tally.counting(), connection.cursor() as cursor:
        longest: dict[int, int] = {}
        if connection.vendor == "postgresql":
            # The ids as one array (see labs.rows.AnyOf), and each run's longest wait worked out by the server:
            # a row back per run, not per message with two timestamps for the driver to read.
            cursor.execute(f"WITH moved AS (UPDATE {table} SET published_at = {_NOW_SQL['postgresql']} WHERE id = ANY(%s::bigint[]) "
                           "RETURNING run_id, published_at - available_at AS waited) "
                           "SELECT run_id, (EXTRACT(EPOCH FROM MAX(waited)) * 1000000)::bigint FROM moved GROUP BY run_id",
                           [array_text(ids)])  # fmt: skip
            longest = dict(cursor.fetchall())
        else:
            cursor.execute(f"UPDATE {table} SET published_at = {_NOW_SQL['sqlite']} WHERE id IN ({', '.join(['%s'] * len(ids))}) "
                           "RETURNING run_id, published_at, available_at", ids)  # fmt: skip
            for run_id, published_at, available_at in cursor.fetchall():
                waited = tally.microseconds(_aware(published_at) - _aware(available_at))
                longest[run_id] = max(waited, longest.get(run_id, waited))
        # (SQLite's clock here counts milliseconds: a row published at once can show a wait of 0 or just below.)
        tally.raise_to({(run_id, "publish_wait_us"): waited for run_id, waited in longest.items() if waited > 0})


_NOW_SQL = {"postgresql": "STATEMENT_TIMESTAMP()", "sqlite": "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now')"}


def _aware(value):
    """A timestamp as the driver returns it (SQLite: text without a zone, in UTC) as an aware datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt_timezone.utc)


RESCUE_BATCHES = 10  # a Redis restart can strand thousands of messages: republish them ten batches at a time
_broker_run_id: str | None = None  # the broker's identity when last seen; it changes when Redis restarts
_lost_before = None  # set when the broker restarted: every message published before then is gone


def broker_depths(queues: list[str] | None = None) -> dict[str, int]:
    """How many messages wait on each lab queue of the broker (Redis lists; kombu's passive
    queue_declare does not see a prefixed Redis queue, so this asks the channel for the size)."""
    queues = queues or settings.LAB_QUEUES
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        if not hasattr(channel, "_size"):  # another transport, or a kombu without it: treat every lane as idle
            return dict.fromkeys(queues, 0)
        return {queue: channel._size(queue) for queue in queues}


def _note_broker_restart() -> None:
    """A Redis restart (without persistence) drops every message it held: remember the moment,
    so the rescue republishes at once what was published before it, instead of waiting
    LAB_REDELIVER_AFTER for each. (Redis's run_id is new on every start.)

    `publish_due` asks first, before it publishes anything: this relay is the only publisher, so
    every row published before the moment went to the old broker, and none published after it
    is republished (it would sit on the new broker twice)."""
    global _broker_run_id, _lost_before
    current = get_redis().info("server").get("run_id")
    if _broker_run_id is not None and current != _broker_run_id:
        _lost_before = timezone.now()
        log.warning("relay: the broker restarted; republishing what it held")
    _broker_run_id = current


def rescue_saga_messages(limit: int, lost_before=None) -> int:
    """The order saga's messages (lab 7) the broker lost, by the deliveries' rule: published and never
    taken, either before the broker restarted (at once) or LAB_REDELIVER_AFTER ago on an idle saga lane.
    They are unpublished again, so the next pass publishes them as they are; a copy that was only late
    finds `handled_at` set (with idempotent steps on) and is dropped."""
    if lost_before is None:
        if broker_depths([settings.LAB_SAGA_QUEUE])[settings.LAB_SAGA_QUEUE]:
            return 0  # a backlog: they are most likely waiting their turn
        lost_before = Now() - timedelta(seconds=settings.LAB_REDELIVER_AFTER)
    stranded = list(SagaMessage.objects.filter(handled_at__isnull=True, published_at__lt=lost_before).values_list("pk", flat=True)[:limit])
    if stranded:
        SagaMessage.objects.filter(pk__in=stranded, handled_at__isnull=True).update(published_at=None, available_at=Now())
        log.info("relay: %d saga messages published long ago and never taken go out again", len(stranded))
    return len(stranded)


def rescue_stranded() -> int:
    """Take over deliveries whose worker was lost, and publish again what the broker lost."""
    by_run: dict[int, list] = {}
    taken = deliveries.take_over_lost(settings.LAB_RELAY_BATCH)
    for run_id, delivery_id, provider in taken:
        pinned = f"; the retry goes only to {provider}, which may have sent it" if provider else ""
        by_run.setdefault(run_id, []).append(("republished", {"delivery": delivery_id, "reason": f"its worker was lost{pinned}"}))
    global _lost_before
    _note_broker_restart()
    limit = settings.LAB_RELAY_BATCH * RESCUE_BATCHES
    rescue_saga_messages(limit, _lost_before)
    if _lost_before is not None:
        unclaimed = deliveries.rescue_unclaimed(limit, published_before=_lost_before)
        if len(unclaimed) < limit:
            _lost_before = None  # all of it is on its way again
    else:
        # Only on a lane with nothing waiting on the broker. On a lane with a backlog, an unclaimed
        # message is most likely still waiting its turn, and a copy of it would be one more message
        # to get through: under load, when the backlog is older than any patience, every waiting
        # delivery would get a copy on every pass, the backlog would grow with the copies and drain
        # slower still (a retry storm of the relay's own making; `make chaos` on a loaded machine
        # found 7,000 messages queued for 2,000 deliveries). A message lost from a busy lane is
        # republished once the lane has drained; one lost with the broker, at once (above).
        idle = [queue for queue, waiting in broker_depths().items() if not waiting]
        unclaimed = deliveries.rescue_unclaimed(limit, queues=idle) if idle else []
    for run_id, delivery_id in unclaimed:
        by_run.setdefault(run_id, []).append(("republished", {"delivery": delivery_id, "reason": "published long ago and never claimed"}))
    for run_id, found in by_run.items():
        events.emit_many(run_id, found)
    if taken or unclaimed:
        log.info("relay: took over %d deliveries from lost workers, republished %d never claimed", len(taken), len(unclaimed))
    return len(taken) + len(unclaimed)
