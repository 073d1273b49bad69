"""Running counts of a run's history, kept as the pipeline moves, so the lab page's panels read
a few rows instead of the run's whole history (lesson: observability).

A lab page asks for its panels about once a second. Counted from the rows, "delivered", the
providers' sends, the attempts by outcome and the dead letters ever written grow with the run's
history: with a hundred pages open they kept both web workers busy. Instead, the code that writes
a row adds to its run's counts in the same transaction (`add`, one multi-row upsert), so a count
is exactly what the committed rows say, whatever crashes. The counts are rows in the database, not
Redis keys: a Redis restart loses none of them.

Who counts what (each writer counts only what it writes):
  intake (labs.pipeline.intake)        intents; the newest transactional delivery (last_alert)
  the state machine (deliveries)       deliveries entering or leaving a final status; attempts by
                                       outcome; dead letters written
  triage (deadletters)                 dead letters replayed
  the worker                           second copies suppressed
  the providers (providers)            their own ledger: sends per provider, duplicate sends,
                                       in-app sends out of per-user order, sends in quiet hours
  the relay                            the longest a due outbox row waited to be published

The auditor (labs.pipeline.audit) still reads the rows and stays the source of truth for the
invariants; its `counts_from_rows` computes every count from the rows, the tests hold it equal to
the running counts after real pipeline runs, and the migration that added the counts filled them with it.
"""

import threading
from contextlib import contextmanager
from datetime import timedelta

from django.db import connection

from labs.models import AttemptOutcome, RunCount

PROVIDER_CALLS = (AttemptOutcome.SUCCEEDED, AttemptOutcome.FAILED, AttemptOutcome.REJECTED, AttemptOutcome.TIMEOUT)
FAILED_CALLS = (AttemptOutcome.FAILED, AttemptOutcome.TIMEOUT)  # labs.pipeline.metrics.FAILED_OUTCOMES
POISON_GROUP = "template_data_missing"  # labs.pipeline.worker.PoisonMessage.group (the worker imports this module)


def status(name: str) -> str:
    return f"status:{name}"


def sent(provider: str) -> str:
    return f"sent:{provider}"


def add(counts: dict[tuple[int, str], int]) -> None:
    """Add to (run id, count name) counts; call it inside the writer's transaction.

    Inside `counting()` the counts wait for the end of the block and go in one statement, the
    transaction's last; otherwise they go at once.
    """
    _pending("add", counts, lambda old, new: old + new)


def raise_to(counts: dict[tuple[int, str], int]) -> None:
    """Raise (run id, name) counts that keep the highest value written (publish_wait_us, last_alert)."""
    _pending("max", counts, max)


_local = threading.local()


def _pending(kind: str, counts: dict, combine) -> None:
    batch = getattr(_local, "batch", None)
    if batch is None:
        _write({kind: counts})
        return
    waiting = batch[kind]
    for name, value in counts.items():
        waiting[name] = combine(waiting[name], value) if name in waiting else value


@contextmanager
def counting():
    """Collect the counts added inside the block and write them when it ends: one upsert per kind,
    rows in (run, name) order, the sums before the highest values. Every transaction that counts
    takes the count rows' locks last and in that one order, so two of them never deadlock on
    them. Wrap it inside the transaction: `with transaction.atomic(), tally.counting():`.
    A nested block joins the outer one."""
    if getattr(_local, "batch", None) is not None:
        yield
        return
    _local.batch = {"add": {}, "max": {}}
    try:
        yield
        batch = _local.batch
    finally:
        _local.batch = None
    _write(batch)


def _write(batch: dict) -> None:
    _upsert({k: v for k, v in batch.get("add", {}).items() if v}, "{table}.value + excluded.value")
    highest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    _upsert({k: v for k, v in batch.get("max", {}).items() if v is not None}, f"{highest}({{table}}.value, excluded.value)")


def _upsert(counts: dict[tuple[int, str], int], update: str) -> None:
    if not counts:
        return
    table = connection.ops.quote_name(RunCount._meta.db_table)
    rows = sorted(counts.items())
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (run_id, name, value) VALUES {', '.join(['(%s, %s, %s)'] * len(rows))} "
            f"ON CONFLICT (run_id, name) DO UPDATE SET value = {update.format(table=table)}",
            [part for (run_id, name), value in rows for part in (run_id, name, value)],
        )


def upsert_select(select_sql: str, params: list, run_id: int) -> tuple[str, list]:
    """PostgreSQL: the statement that adds to `run_id`'s counts the (name, value) rows `select_sql`
    finds, rows in name order as `counting` writes them, to run inside a larger statement (a
    transition done in one: labs.pipeline.deliveries.finish_many)."""
    table = connection.ops.quote_name(RunCount._meta.db_table)
    return (f"INSERT INTO {table} (run_id, name, value) SELECT %s, name, value FROM ({select_sql}) AS counts (name, value) "
            f"WHERE value <> 0 ORDER BY name ON CONFLICT (run_id, name) DO UPDATE SET value = {table}.value + excluded.value",
            [run_id, *params])  # fmt: skip


def of_run(run_id: int, counts: dict[str, int]) -> dict[tuple[int, str], int]:
    return {(run_id, name): value for name, value in counts.items()}


def read(run_id: int) -> dict[str, int]:
    """Every count of the run; a name never written is missing (zero, or none yet for a highest value)."""
    return dict(RunCount.objects.filter(run_id=run_id).values_list("name", "value"))


ATTEMPT_FIELDS = ("outcome", "provider", "backoff_ms", "instance", "resolved_by", "instance_unhealthy", "stale_answer")
# Lab 8's calls through service discovery: to an instance a lookup found, to one that was unhealthy by
# how it was found, and to one the registry had already dropped (a cached answer sent them).
DISCOVERY_CALLS = ("instance_calls", "dns_bad_calls", "registry_bad_calls", "stale_calls")


def instance_calls(instance: str, failed: bool = False) -> str:
    """The count of an instance's calls (lab 8's discovery panel), or of those that failed."""
    return f"{'failed' if failed else 'calls'}:{instance}"


def attempt_counts(attempts) -> dict[str, int]:
    """What attempt rows (dicts or DeliveryAttempts) add: by outcome, the calls that reached a provider,
    the retries they scheduled, and the calls service discovery routed (DISCOVERY_CALLS)."""
    counts: dict[str, int] = {}

    def count(name: str) -> None:
        counts[name] = counts.get(name, 0) + 1

    for attempt in attempts:
        get = attempt.get if isinstance(attempt, dict) else lambda name, default=None, a=attempt: getattr(a, name, default)
        outcome = get("outcome")
        count(f"attempts:{outcome}")
        if outcome in PROVIDER_CALLS and get("provider"):
            count("provider_calls")
        if get("backoff_ms") is not None:
            count("retries")
        if get("instance", ""):
            count("instance_calls")
            count(instance_calls(get("instance")))
            if outcome in FAILED_CALLS:
                count(instance_calls(get("instance"), failed=True))
        if get("instance_unhealthy", False) and get("resolved_by", ""):
            count(f"{get('resolved_by')}_bad_calls")
        if get("stale_answer", False):
            count("stale_calls")
    return counts


def forget(run_id: int) -> None:
    """The run starts again from its seed (inside the reset's transaction)."""
    RunCount.objects.filter(run_id=run_id).delete()


def microseconds(duration: timedelta) -> int:
    return duration // timedelta(microseconds=1)
