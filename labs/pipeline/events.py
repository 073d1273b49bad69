"""Every state change of a run goes to that run's event stream (a Redis stream).

A stream rather than plain pub/sub: a browser that reconnects asks for what it
missed since the last event id it saw, and nothing in between is lost. The stream
is capped, so an old run's history does not grow without bound.

Events are best-effort: when Redis is unreachable they are dropped with a warning,
and the pipeline carries on (its state lives in the database).
"""

import json
import logging
import re
import time

from redis.exceptions import RedisError

from config.redis_client import get_redis, key

log = logging.getLogger(__name__)

STREAM_LENGTH = 5000
# A stream id is two 64-bit numbers, "<milliseconds>-<sequence>", in ASCII digits (`\d` would also take "٣").
EVENT_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
ID_PART_MAX = 2**64 - 1


def stream_key(run_id: int) -> str:
    return key("run", str(run_id), "events")


def emit(run_id: int, kind: str, **fields) -> None:
    emit_many(run_id, [(kind, fields)])


def emit_many(run_id: int, events: list[tuple[str, dict]]) -> None:
    """Append events to the run's stream in one round trip."""
    emit_each([(run_id, kind, fields) for kind, fields in events])


def emit_each(events: list[tuple[int, str, dict]]) -> None:
    """Append (run id, kind, fields) events to their runs' streams in one round trip."""
    if not events:
        return
    now = f"{time.time():.3f}"
    try:
        with get_redis().pipeline(transaction=False) as pipe:
            for run_id, kind, fields in events:
                pipe.xadd(
                    stream_key(run_id),
                    {"kind": kind, "at": now, "data": json.dumps(fields, default=str)},
                    maxlen=STREAM_LENGTH,
                    approximate=True,
                )
            pipe.execute()
    except RedisError as exc:
        log.warning("%d event(s) of run(s) %s dropped, Redis is unreachable (%s)", len(events), sorted({e[0] for e in events}), exc)


def check_event_id(value: str) -> str:
    """`value` if it is an event id that events can follow; otherwise ValueError saying what one looks like.

    Redis would refuse anything else with "Invalid stream ID", and nothing follows the last possible id.
    """
    match = EVENT_ID.fullmatch(value)
    parts = (int(match[1]), int(match[2])) if match else None
    if parts is None or max(parts) > ID_PART_MAX or parts == (ID_PART_MAX, ID_PART_MAX):
        raise ValueError("must be an event id such as 1700000000000-0 (the id of an event you were sent)")
    return value


def last_id(run_id: int) -> str:
    """The id of the run's newest event ("0-0" when there is none, or Redis cannot be reached)."""
    try:
        newest = get_redis().xrevrange(stream_key(run_id), count=1)
    except RedisError:
        return "0-0"
    return newest[0][0].decode() if newest else "0-0"


def recent(run_id: int, after: str = "-", count: int = 200) -> list[dict]:
    """Events after the id `after` ("-" for the oldest kept), oldest first."""
    start = "-" if after == "-" else f"({after}"
    entries = get_redis().xrange(stream_key(run_id), min=start, count=count)
    return [
        {"id": entry_id.decode(), "kind": f[b"kind"].decode(), "at": float(f[b"at"]), **json.loads(f[b"data"])}
        for entry_id, f in entries
    ]
