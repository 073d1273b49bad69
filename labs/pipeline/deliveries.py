"""The delivery state machine: the only code that changes a delivery's status (lessons:
transactional-outbox, delivery-guarantees-idempotency, dead-letter-queues).

Every transition is one conditional UPDATE on (pk, generation) that moves the generation
up by one, and a transition that needs a message writes its outbox row, carrying the new
generation, in the same transaction. A message claims only the generation it carries, so a
copy that arrives late (a broker redelivery, a relay that published twice, a rescue) finds
the delivery moved on and does nothing. Times that another process compares (a claim's
lease, a publish's age) are the database's clock (`Now()`), never a process's.

    accept (intake) ─► pending ─┐
                   retry_scheduled ─┤  claim (worker, with the message of this generation)
                          deferred ─┤
                                    ▼
                                 sending ── dispatch (worker): names the provider, counts the attempt
        ┌─────────┬─────────┬───────┼────────┬─────────────────┬─────────────────┐
        ▼         ▼         ▼       ▼        ▼                 ▼                 ▼
    delivered  bounced  suppressed  dead_   retry_          deferred         waiting_turn
                                   lettered scheduled      (quiet hours,    (an earlier in-app
          replay (triage) → pending ◄─┤                      open breaker)    message is unfinished;
          discard (triage) → discarded◄┘                                      no message: its
                                                                              predecessor's final
                                                                              transition wakes it)
    sending whose lease ran out ── take over (relay) ─► retry_scheduled, with a crashed attempt
                                                         that names the provider it was sent to
    waiting, message published long ago ── rescue (relay) ─► the same generation published again
"""

import functools
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import Now
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from config.celery import node_name
from labs.models import (
    TERMINAL,
    WAITING,
    AttemptOutcome,
    DeadLetter,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    NotificationIntent,
    OutboxRow,
    Recipient,
)
from labs.pipeline import tally
from labs.rows import Statement, array_text, insert_rows, read_timestamps_in_c, row_loader, unnest_insert

S = DeliveryStatus


def _locks() -> bool:
    return connection.features.has_select_for_update


def _step(delivery: Delivery, from_states, **changes) -> bool:
    """The one conditional UPDATE: move `delivery` on from the generation its holder knows."""
    moved = Delivery.objects.filter(pk=delivery.pk, generation=delivery.generation, status__in=from_states).update(
        generation=delivery.generation + 1, updated_at=Now(), **changes
    )
    if moved:
        delivery.generation += 1
    return bool(moved)


def _message(delivery: Delivery, available_at: datetime | None = None) -> None:
    """The outbox row that carries the delivery's current generation to a worker."""
    OutboxRow.objects.create(run_id=delivery.run_id, delivery_id=delivery.pk, queue=delivery.queue,
                             generation=delivery.generation, available_at=available_at or timezone.now())  # fmt: skip


def deadline(delivery: Delivery) -> datetime:
    """How long a message may wait for an open breaker before it is given up on."""
    return delivery.created_at + timedelta(seconds=settings.LAB_MESSAGE_DEADLINE)


def attempts_left(delivery: Delivery, max_attempts: int) -> int:
    """Attempts left in the budget; a replay starts a fresh one (attempts themselves never go down)."""
    return max_attempts - (delivery.attempts - delivery.replayed_at_attempt)


# --- Claiming: a worker takes the delivery ---------------------------------------------------


def claim(delivery_id: int, generation: int) -> int | None:
    """Take a waiting delivery with the message of `generation`; the generation now held, or None
    when the delivery has moved on (this message is a late copy)."""
    taken = Delivery.objects.filter(pk=delivery_id, generation=generation, status__in=WAITING).update(
        status=S.SENDING, generation=generation + 1, claimed_at=Now(), claimed_by=node_name(), provider="", updated_at=Now()
    )
    return generation + 1 if taken else None


def claim_any(delivery_id: int) -> int | None:
    """Without the idempotency defence: any copy of the message takes the delivery, whatever
    state it is in. That is how a redelivery turns into a second send."""
    with transaction.atomic(), tally.counting():
        rows = Delivery.objects.filter(pk=delivery_id)
        if _locks():
            rows = rows.select_for_update()
        found = rows.values_list("generation", "status", "run_id", "channel", "replays").first()
        if found is None:
            return None
        current, status, run_id, channel, replays = found
        rows.update(status=S.SENDING, generation=current + 1, claimed_at=Now(), claimed_by=node_name(), provider="", updated_at=Now())
        if status in TERMINAL:  # a finished delivery taken again: it leaves its final count
            delivered = status == S.DELIVERED
            tally.add(tally.of_run(run_id, {tally.status(status): -1, "delivered_inapp": -int(delivered and channel == "inapp"),
                                            "delivered_after_replay": -int(delivered and replays > 0)}))  # fmt: skip
    return current + 1


def claim_many(delivery_ids: list[int], generation: int) -> list[Delivery]:
    """`claim` for many deliveries whose messages carry one generation: the deliveries this caller
    took, loaded with their intents (what sending them needs), in one statement on PostgreSQL."""
    if not _locks():  # SQLite: one writer at a time
        waiting = Delivery.objects.filter(pk__any=delivery_ids, generation=generation, status__any=WAITING)
        taken = _update_returning_ids(waiting, **_claimed(generation + 1, node_name()))
        return list(Delivery.objects.select_related("intent").filter(pk__any=taken)) if taken else []
    sql, params = _CLAIM(ids=delivery_ids, generation=generation, next_generation=generation + 1, claimed_by=node_name())
    with connection.cursor() as cursor:
        read_timestamps_in_c(cursor)
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    load_delivery, load_intent, split = _claim_loaders()
    taken = []
    for row in rows:
        delivery = load_delivery(row[:split])
        delivery.intent = load_intent(row[split:])
        taken.append(delivery)
    return taken


def _claimed(next_generation: int, claimed_by: str) -> dict:
    return {"status": S.SENDING, "generation": next_generation, "claimed_at": Now(), "claimed_by": claimed_by,
            "provider": "", "updated_at": Now()}  # fmt: skip


def _claim_statement(ids, generation, next_generation, claimed_by) -> tuple[str, list]:
    """claim_many's statement on PostgreSQL. Lock in id order, so two workers holding copies of one batch
    queue up instead of deadlocking; the second finds the generation moved on. One statement, so no
    transaction of its own."""
    waiting = Delivery.objects.filter(pk__any=ids, generation=generation, status__any=WAITING)
    update = Delivery.objects.filter(pk__in=RawSQL('SELECT "pk" FROM locked', ())).filter(generation=generation, status__any=WAITING)
    locked, locked_params = waiting.order_by("pk").values("pk").query.sql_with_params()
    update_sql, update_params = _update_sql(update, _claimed(next_generation, claimed_by))
    quote = connection.ops.quote_name
    table, intents = quote(Delivery._meta.db_table), quote(NotificationIntent._meta.db_table)
    columns = ", ".join([*(f"claimed.{quote(f.column)}" for f in Delivery._meta.concrete_fields),
                         *(f"intent.{quote(f.column)}" for f in NotificationIntent._meta.concrete_fields)])  # fmt: skip
    return (f"WITH locked AS ({locked} FOR UPDATE), claimed AS ({update_sql} RETURNING {table}.*) "
            f"SELECT {columns} FROM claimed JOIN {intents} intent ON intent.id = claimed.intent_id",
            [*locked_params, *update_params])  # fmt: skip


# Built once per process (labs.rows.Statement): the placeholders are values no call passes, inside each
# column's range (Django drops a value out of an integer column's range from a query).
PLACEHOLDER_ID, PLACEHOLDER_GENERATION = 9_200_000_000_000_000_001, 2_147_000_001
_CLAIM = Statement(_claim_statement, ids=[PLACEHOLDER_ID], generation=PLACEHOLDER_GENERATION,
                   next_generation=PLACEHOLDER_GENERATION + 1, claimed_by="\0claimed by")  # fmt: skip


@functools.cache
def _claim_loaders():
    delivery_fields, intent_fields = Delivery._meta.concrete_fields, NotificationIntent._meta.concrete_fields
    return row_loader(Delivery, delivery_fields), row_loader(NotificationIntent, intent_fields), len(delivery_fields)


def dispatch(delivery: Delivery, provider: str) -> bool:
    """Name the provider and count the attempt, before calling it. False if the delivery was
    taken over meanwhile: calling now could send it twice."""
    if not _step(delivery, [S.SENDING], provider=provider, attempts=F("attempts") + 1):
        return False
    delivery.provider, delivery.attempts = provider, delivery.attempts + 1
    return True


def dispatch_many(deliveries: list[Delivery], provider: str) -> list[Delivery]:
    """`dispatch` for a batch; returns the deliveries this worker still held (and may now send)."""
    if _locks():  # the statement built once (PostgreSQL)
        held = _move_held(deliveries, statement=lambda ids, generation: _DISPATCH(
            ids=ids, generation=generation, next_generation=generation + 1, provider=provider))  # fmt: skip
    else:
        held = _move_held(deliveries, provider=provider, attempts=F("attempts") + 1)
    mine = [d for d in deliveries if d.pk in held]
    for delivery in mine:
        delivery.provider, delivery.attempts, delivery.generation = provider, delivery.attempts + 1, delivery.generation + 1
    return mine


def _move_held(deliveries: list[Delivery], statement=None, **changes) -> set[int]:
    """Move on, with `changes`, those of these deliveries still sending at the generation their
    holder knows; their ids. One UPDATE per generation, with no lock taken first: only the holder
    moves a batch's rows (a takeover moves one row at a time), so two batches never wait on each other.
    `statement(ids, generation)`, if given, is that UPDATE as (sql, params), built once (`_DISPATCH`)."""
    held: set[int] = set()
    for generation in {d.generation for d in deliveries}:
        ids = [d.pk for d in deliveries if d.generation == generation]
        if statement is not None:
            held |= _returned_ids(*statement(ids, generation))
            continue
        mine = Delivery.objects.filter(pk__any=ids, generation=generation, status=S.SENDING)
        held |= _update_returning_ids(mine, generation=generation + 1, updated_at=Now(), **changes)
    return held


def _update_returning_ids(rows, **changes) -> set[int]:
    """`rows.update(**changes)` that also says which rows it changed, in one statement
    (UPDATE … RETURNING, as QuerySet.update builds the UPDATE): a batch's transition reads
    nothing first."""
    return _returned_ids(*_update_sql(rows, changes))


def _update_sql(rows, changes: dict) -> tuple[str, list]:
    """The UPDATE QuerySet.update(**changes) would run, as (sql, params)."""
    query = rows.query.chain(UpdateQuery)
    query.add_update_values(changes)
    sql, params = query.get_compiler(rows.db).as_sql()
    return sql, list(params)


def _returned_ids(sql: str, params: list) -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {connection.ops.quote_name(Delivery._meta.pk.column)}", params)
        return {pk for (pk,) in cursor.fetchall()}


_DISPATCH = Statement(  # dispatch_many's UPDATE on PostgreSQL, built once
    lambda ids, generation, next_generation, provider: _update_sql(
        Delivery.objects.filter(pk__any=ids, generation=generation, status=S.SENDING),
        {"generation": next_generation, "updated_at": Now(), "provider": provider, "attempts": F("attempts") + 1}),
    ids=[PLACEHOLDER_ID], generation=PLACEHOLDER_GENERATION, next_generation=PLACEHOLDER_GENERATION + 1, provider="\0provider")  # fmt: skip


# --- Outcomes: the holder moves the delivery on ----------------------------------------------


def _lock_turns(delivery: Delivery) -> None:
    """In-app order: waiting for a turn and ending one are decided one at a time per user
    (on SQLite the write transaction already serialises them)."""
    if delivery.channel == "inapp" and _locks():
        list(Recipient.objects.select_for_update().filter(pk=delivery.recipient_id).values_list("pk"))


def _wake_next_turn(delivery: Delivery) -> None:
    """The in-app message after this one may go now, if it is waiting for its turn."""
    following = (
        Delivery.objects.filter(recipient_id=delivery.recipient_id, channel="inapp", sequence__gt=delivery.sequence)
        .exclude(status__in=TERMINAL)
        .order_by("sequence")
        .only("pk", "run_id", "queue", "generation", "status")
        .first()
    )
    if following is not None and following.status == S.WAITING_TURN and _step(following, [S.WAITING_TURN], status=S.PENDING):
        _message(following)


def _save_attempt(attempt: DeliveryAttempt | None) -> None:
    """Write an attempt row and count it (inside the transition's transaction)."""
    if attempt is None:
        return
    attempt.save()
    tally.add(tally.of_run(attempt.run_id, tally.attempt_counts([attempt])))


def finish(delivery: Delivery, status: str, attempt: DeliveryAttempt | None = None, **changes) -> bool:
    """A final outcome: delivered, bounced, suppressed (and dead-lettered, through `dead_letter`)."""
    assert status in TERMINAL
    with transaction.atomic(), tally.counting():
        _lock_turns(delivery)
        if not _step(delivery, [S.SENDING], status=status, finished_at=Now(), next_attempt_at=None, **changes):
            return False
        _save_attempt(attempt)
        delivered = status == S.DELIVERED
        tally.add(tally.of_run(delivery.run_id, {tally.status(status): 1, "delivered_inapp": int(delivered and delivery.channel == "inapp"),
                                                 "delivered_after_replay": int(delivered and delivery.replays > 0)}))  # fmt: skip
        if delivery.channel == "inapp":
            _wake_next_turn(delivery)
    return True


def finish_many(deliveries: list[Delivery], provider: str, attempts: list[dict]) -> list[Delivery]:
    """Mark a batch delivered by `provider` (never in-app: batches carry campaign channels) with
    its attempt rows (`attempts`, one per delivery, as labs.rows.insert_rows takes them), counted
    with them; only the deliveries this worker still held move on and get their attempt: a takeover
    has already recorded the others. Returns those. On PostgreSQL one statement does it all."""
    assert not any(d.channel == "inapp" for d in deliveries)
    written = {attempt["delivery_id"]: attempt for attempt in attempts}
    moved = dict(status=S.DELIVERED, provider=provider, finished_at=Now(), next_attempt_at=None)
    if connection.vendor == "postgresql":
        held = _finish_in_one_statement(deliveries, moved, attempts)
    else:
        with transaction.atomic(), tally.counting():
            held = _move_held(deliveries, **moved)
            insert_rows(DeliveryAttempt, [written[d.pk] for d in deliveries if d.pk in held])
            tally.add(tally.of_run(deliveries[0].run_id, _finished_counts([d for d in deliveries if d.pk in held],
                                                                          [written[d.pk] for d in deliveries if d.pk in held])))  # fmt: skip
    mine = [d for d in deliveries if d.pk in held]
    for delivery in mine:
        delivery.generation += 1
    return mine


def _finished_counts(finished: list[Delivery], attempts: list[dict]) -> dict[str, int]:
    return {tally.status(S.DELIVERED): len(finished), "delivered_after_replay": sum(1 for d in finished if d.replays > 0),
            **tally.attempt_counts(attempts)}  # fmt: skip


def _finish_in_one_statement(deliveries: list[Delivery], changes: dict, attempts: list[dict]) -> set[int]:
    """`finish_many` on PostgreSQL: the conditional UPDATE, the attempt rows of the deliveries it moved
    and their running counts, as one statement per generation held (no transaction of its own to begin
    and commit: a statement is one). The counts go last and in (run, name) order, as labs.pipeline.tally's
    rule says."""
    run_id, held = deliveries[0].run_id, set()
    for generation in {d.generation for d in deliveries}:
        ids = {d.pk for d in deliveries if d.generation == generation}
        update_sql, update_params = _FINISH(ids=ids, generation=generation, next_generation=generation + 1, status=changes["status"],
                                            provider=changes["provider"])  # fmt: skip
        insert_sql, insert_params = unnest_insert(DeliveryAttempt, [a for a in attempts if a["delivery_id"] in ids],
                                                  where='given."delivery_id" IN (SELECT "id" FROM moved)')  # fmt: skip
        # Each attempt's counts (labs.pipeline.tally.attempt_counts), one (delivery, name) pair per unit.
        pairs = [(attempt["delivery_id"], name) for attempt in attempts if attempt["delivery_id"] in ids
                 for name, value in tally.attempt_counts([attempt]).items() for _ in range(value)]  # fmt: skip
        counts_sql, counts_params = tally.upsert_select(
            "SELECT name, SUM(value) FROM ("
            ' SELECT counted.name, COUNT(*) AS value FROM unnest(%s::bigint[], %s::text[]) AS counted ("delivery_id", name)'
            '  WHERE counted."delivery_id" IN (SELECT "id" FROM moved) GROUP BY counted.name'
            " UNION ALL SELECT %s, COUNT(*) FROM moved"
            " UNION ALL SELECT 'delivered_after_replay', COUNT(*) FILTER (WHERE replays > 0) FROM moved"
            ") AS found GROUP BY name",
            [array_text([pk for pk, _ in pairs]), array_text([name for _, name in pairs]), tally.status(S.DELIVERED)], run_id)
        table = connection.ops.quote_name(Delivery._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f'WITH moved AS ({update_sql} RETURNING {table}."id", {table}."replays"), written AS ({insert_sql}), '
                f'counted AS ({counts_sql}) SELECT "id" FROM moved',
                (*update_params, *insert_params, *counts_params),
            )
            held |= {pk for (pk,) in cursor.fetchall()}
    return held


_FINISH = Statement(  # _finish_in_one_statement's UPDATE, built once
    lambda ids, generation, next_generation, status, provider: _update_sql(
        Delivery.objects.filter(pk__any=ids, generation=generation, status=S.SENDING),
        {"generation": next_generation, "updated_at": Now(), "status": status, "provider": provider, "finished_at": Now(),
         "next_attempt_at": None}),
    ids=[PLACEHOLDER_ID], generation=PLACEHOLDER_GENERATION, next_generation=PLACEHOLDER_GENERATION + 1, status="\0status", provider="\0provider")  # fmt: skip


def dead_letter(delivery: Delivery, group: str, error: str, attempt: DeliveryAttempt | None = None, **changes) -> bool:
    """Park the delivery for a person to decide: poison, out of attempts, or past its deadline."""
    with transaction.atomic(), tally.counting():
        if not finish(delivery, S.DEAD_LETTERED, attempt, last_error=error[:300], **changes):
            return False
        DeadLetter.objects.create(run_id=delivery.run_id, delivery=delivery, error_group=group, error=error[:300],
                                  attempts=delivery.attempts - delivery.replayed_at_attempt,
                                  was_replayed=delivery.replays > 0)  # fmt: skip
        tally.add(tally.of_run(delivery.run_id, {"dead_letters": 1, "dead_letters_again": int(delivery.replays > 0),
                                                 "dead_letters_poison": int(group == tally.POISON_GROUP)}))  # fmt: skip
    return True


def schedule_retry(delivery: Delivery, at: datetime, attempt: DeliveryAttempt, error: str, **changes) -> bool:
    with transaction.atomic(), tally.counting():
        if not _step(delivery, [S.SENDING], status=S.RETRY_SCHEDULED, next_attempt_at=at, last_error=error[:300], **changes):
            return False
        _save_attempt(attempt)
        _message(delivery, at)
    return True


def defer(delivery: Delivery, until: datetime, attempt: DeliveryAttempt | None = None) -> bool:
    """Put the delivery back without using an attempt (quiet hours, an open breaker), due at `until`."""
    with transaction.atomic(), tally.counting():
        if not _step(delivery, [S.SENDING], status=S.DEFERRED, next_attempt_at=until):
            return False
        _save_attempt(attempt)
        _message(delivery, until)
    return True


def wait_turn(delivery: Delivery) -> bool:
    """In-app order: if an earlier message to this user is unfinished, wait for it (holding no
    message: its final transition wakes this one) and return True; False to go ahead now."""
    with transaction.atomic():
        _lock_turns(delivery)
        earlier = (
            Delivery.objects.filter(recipient_id=delivery.recipient_id, channel="inapp", sequence__lt=delivery.sequence)
            .exclude(status__in=TERMINAL)
            .exists()
        )
        if earlier:
            _step(delivery, [S.SENDING], status=S.WAITING_TURN, next_attempt_at=None)
    return earlier


# --- Triage: a person decides about a dead letter --------------------------------------------


def replay(deliveries: list[Delivery]) -> list[Delivery]:
    """Dead letters back to pending with a fresh attempt budget (call inside the triage's transaction)."""
    replayed = []
    for delivery in deliveries:
        if _step(delivery, [S.DEAD_LETTERED], status=S.PENDING, replayed_at_attempt=F("attempts"), replays=F("replays") + 1,
                 next_attempt_at=None, finished_at=None, last_error=""):  # fmt: skip
            _message(delivery)
            replayed.append(delivery)
            tally.add(tally.of_run(delivery.run_id, {tally.status(S.DEAD_LETTERED): -1}))
    return replayed


def discard(deliveries: list[Delivery]) -> None:
    for delivery in deliveries:
        if _step(delivery, [S.DEAD_LETTERED], status=S.DISCARDED):
            tally.add(tally.of_run(delivery.run_id, {tally.status(S.DEAD_LETTERED): -1, tally.status(S.DISCARDED): 1}))


# --- The relay's rescues: messages the broker lost, workers that died -------------------------


def take_over_lost(limit: int) -> list[tuple[int, int, str]]:
    """Deliveries whose worker has held them past the lease: the worker is presumed lost.

    Each is moved on to a retry due now, with a `crashed` attempt that names the provider it
    was dispatched to (or none if it never got that far: the attempt still counts, so a
    message that kills its worker cannot loop for ever). A slow worker that finishes first
    wins: the takeover's UPDATE then finds the generation moved on and writes nothing.
    Returns (run id, delivery id, provider) for each delivery taken over.
    """
    lease = Now() - timedelta(seconds=settings.LAB_SENDING_LEASE)
    lost = list(
        Delivery.objects.filter(status=S.SENDING, claimed_at__lt=lease)
        .only("pk", "run_id", "queue", "generation", "provider", "attempts", "claimed_at", "claimed_by")[:limit]
    )
    taken = []
    for delivery in lost:
        number = delivery.attempts if delivery.provider else delivery.attempts + 1
        with transaction.atomic(), tally.counting():
            if not _step(delivery, [S.SENDING], status=S.RETRY_SCHEDULED, attempts=number, next_attempt_at=Now(),
                         last_error="the worker was lost before it recorded the result"):  # fmt: skip
                continue
            _save_attempt(DeliveryAttempt(
                delivery_id=delivery.pk, run_id=delivery.run_id, number=number, provider=delivery.provider, outcome=AttemptOutcome.CRASHED,
                error="the worker was lost before it recorded the result", started_at=delivery.claimed_at,
                finished_at=timezone.now(), worker=delivery.claimed_by,
            ))  # fmt: skip
            _message(delivery)
        taken.append((delivery.run_id, delivery.pk, delivery.provider))
    return taken


def rescue_unclaimed(limit: int, published_before=None, queues: list[str] | None = None) -> list[tuple[int, int]]:
    """Waiting deliveries whose message was published more than LAB_REDELIVER_AFTER seconds ago
    (or before `published_before`: the moment the broker restarted) and never claimed, with no
    copy published since: the broker may have lost it (a Redis restart drops what it held).
    Publishes the same generation again; whichever copy arrives first claims, the other finds
    the generation moved on. `queues` limits it to those lanes. Returns (run id, delivery id)."""
    quiet_since = published_before or Now() - timedelta(seconds=settings.LAB_REDELIVER_AFTER)
    current = OutboxRow.objects.filter(delivery=OuterRef("pk"), generation=OuterRef("generation"))
    waiting = Delivery.objects.filter(status__in=WAITING)
    if queues is not None:
        waiting = waiting.filter(queue__in=queues)
    stranded = list(
        waiting
        .filter(Exists(current.filter(published_at__lt=quiet_since)))
        .exclude(Exists(current.filter(Q(published_at__isnull=True) | Q(published_at__gte=quiet_since))))
        .values_list("pk", "run_id", "queue", "generation")[:limit]
    )
    if stranded:
        now = timezone.now()
        with transaction.atomic():
            insert_rows(OutboxRow, [{"run_id": run_id, "delivery_id": pk, "queue": queue, "generation": generation,
                                     "available_at": now, "created_at": now}
                                    for pk, run_id, queue, generation in stranded])  # fmt: skip
    return [(run_id, pk) for pk, run_id, _, _ in stranded]


# --- Reading the state ------------------------------------------------------------------------


def on_broker(run_id: int):
    """The messages waiting on the broker: published rows of waiting deliveries at their current
    generation (the relay writes no delivery state, so the rows are the queue's depth). Read from
    the run's waiting deliveries, never from every row the run ever published."""
    waiting = Delivery.objects.filter(run_id=run_id, status__in=WAITING).values("pk")
    return OutboxRow.objects.filter(delivery_id__in=waiting, published_at__isnull=False, generation=F("delivery__generation"),
                                    delivery__status__in=WAITING)  # fmt: skip


def unreachable_condition() -> Q:
    """Of a run's deliveries, those nothing can move any more (see `unreachable`)."""
    current = OutboxRow.objects.filter(delivery=OuterRef("pk"), generation=OuterRef("generation"))
    earlier = Delivery.objects.filter(recipient_id=OuterRef("recipient_id"), channel="inapp",
                                      sequence__lt=OuterRef("sequence")).exclude(status__in=TERMINAL)  # fmt: skip
    return (Q(status__in=WAITING) & ~Exists(current)) | (Q(status=S.WAITING_TURN) & ~Exists(earlier))


def unreachable(run_id: int):
    """Unfinished deliveries nothing can move any more: waiting with no message of their
    generation (the publish after a commit never happened), or waiting their turn with no
    earlier in-app message left to wake them."""
    return Delivery.objects.filter(run_id=run_id).filter(unreachable_condition())
