"""Simulated providers: two per channel, each with its own ledger of what it really sent.

The worker talks to them through `send`, as it would through an HTTP client with a
timeout. They honour idempotency keys the way many payment APIs do (most e-mail, SMS and
push APIs do not): a call with a key they have already accepted returns the first send
instead of sending again. Switching the idempotency defence off shows a provider that does not.
"""

import random
import time
import zlib
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from labs.models import ProviderSend, Template, TemplateCategory
from labs.pipeline import discovery, faults, tally
from labs.pipeline.quiet_hours import sent_inside
from labs.rows import array_text, insert_rows, rows_for_each


class ProviderError(Exception):
    """A call that did not deliver. `temporary` errors are retried; others go to the dead letters."""

    temporary = True
    group = "provider_error"


class ProviderUnavailable(ProviderError):
    group = "provider_unavailable"


class InstanceUnreachable(ProviderUnavailable):
    """The instance the caller picked is not there (its process is dead or restarting): connection refused."""

    group = "instance_unreachable"


class NoInstance(ProviderUnavailable):
    """The lookup returned no instance of the provider."""

    group = "no_instance"


class ProviderTimeout(ProviderError):
    group = "provider_timeout"


class ProviderRateLimited(ProviderError):
    group = "provider_rate_limited"


class ProviderRejected(ProviderError):
    temporary = False
    group = "provider_rejected"


@dataclass(frozen=True)
class OutgoingMessage:
    run_id: int
    channel: str
    address: str
    subject: str
    body: str
    idempotency_key: str
    intent_id: int
    recipient_number: int
    sequence: int | None
    template: str
    quiet_hours: str = ""  # metadata: the user's quiet hours the sender applied ("22:00-07:00"), and their time zone
    time_zone: str = ""


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    already_sent: bool  # the provider recognised the idempotency key and did not send again


def visit_instance(run_id: int, instance: str, timeout_ms: int) -> None:
    """What reaching one instance of a provider costs (labs.pipeline.discovery): refused at once when its
    process is dead or restarting, the instance's own delay when it is slow; nothing when it is well."""
    fault = faults.fault_for(run_id, instance)
    if not fault:
        return
    state = discovery.condition(fault, time.time())
    if state in (discovery.DEAD, discovery.RESTARTING):
        raise InstanceUnreachable(f"{instance} refused the connection (its process is {state})")
    slow_ms = fault.get("slow_ms", 0)
    if slow_ms:
        time.sleep(min(slow_ms, timeout_ms) / 1000)
        if slow_ms > timeout_ms:
            raise ProviderTimeout(f"{instance} did not answer within {timeout_ms} ms")


def send(provider: str, message: OutgoingMessage, timeout_ms: int, instance: str = "") -> SendResult:
    """One call to `provider`, through `instance` when the run's discovery picked one."""
    if instance:
        visit_instance(message.run_id, instance, timeout_ms)
    fault = faults.fault_for(message.run_id, provider)
    if not fault:
        return _record_send(provider, message)
    call_number = faults.count_call(message.run_id, provider)
    jitter = fault.get("latency_jitter_ms", 0)
    latency_ms = max(0, fault.get("latency_ms", 0) + (random.randint(-jitter, jitter) if jitter else 0))
    if latency_ms:
        time.sleep(min(latency_ms, timeout_ms) / 1000)
        if latency_ms > timeout_ms:
            raise ProviderTimeout(f"{provider} did not answer within {timeout_ms} ms")
    if fault.get("reject"):
        raise ProviderRejected(f"{provider} rejected the address {message.address!r} (400)")
    if random.random() < fault.get("rate_limited", 0.0):
        raise ProviderRateLimited(f"{provider} answered 429 Too Many Requests")
    if (
        fault.get("down")
        or call_number <= fault.get("fail_first", 0)
        or random.random() < fault.get("error_rate", 0.0)
    ):
        raise ProviderUnavailable(f"{provider} answered 503 Service Unavailable")
    result = _record_send(provider, message)
    if random.random() < fault.get("lost_ack", 0.0):
        # The provider did its job; only the answer went missing on the way back.
        raise ProviderTimeout(f"{provider} accepted the message but its response was lost")
    return result


def send_batch(provider: str, messages: list[OutgoingMessage], timeout_ms: int, instance: str = "",
               fault: dict | None = None) -> list[SendResult | ProviderError]:  # fmt: skip
    """A bulk send (as email and SMS providers offer for campaigns): one result per message, in order.

    One call, so latency and a timeout apply to the batch as a whole; the share-based
    faults are drawn for each message. `fault`: the provider's faults, if the caller has just read them.
    """
    if not messages:
        return []
    run_id = messages[0].run_id
    if instance:
        try:
            visit_instance(run_id, instance, timeout_ms)
        except ProviderError as exc:
            return [exc for _ in messages]
    fault = faults.fault_for(run_id, provider) if fault is None else fault
    results: list[SendResult | ProviderError | None] = [None] * len(messages)
    if fault:
        first_call = faults.count_calls(run_id, provider, len(messages)) - len(messages) + 1
        jitter = fault.get("latency_jitter_ms", 0)
        latency_ms = max(0, fault.get("latency_ms", 0) + (random.randint(-jitter, jitter) if jitter else 0))
        if latency_ms:
            time.sleep(min(latency_ms, timeout_ms) / 1000)
            if latency_ms > timeout_ms:
                return [ProviderTimeout(f"{provider} did not answer within {timeout_ms} ms") for _ in messages]
        for index, message in enumerate(messages):
            if fault.get("reject"):
                results[index] = ProviderRejected(f"{provider} rejected the address {message.address!r} (400)")
            elif random.random() < fault.get("rate_limited", 0.0):
                results[index] = ProviderRateLimited(f"{provider} answered 429 Too Many Requests")
            elif (
                fault.get("down")
                or first_call + index <= fault.get("fail_first", 0)
                or random.random() < fault.get("error_rate", 0.0)
            ):
                results[index] = ProviderUnavailable(f"{provider} answered 503 Service Unavailable")
    accepted = [(i, m) for i, m in enumerate(messages) if results[i] is None]
    for (index, _), sent in zip(accepted, _record_sends(provider, [m for _, m in accepted]), strict=True):
        results[index] = sent
        if fault and random.random() < fault.get("lost_ack", 0.0):
            results[index] = ProviderTimeout(f"{provider} accepted the message but its response was lost")
    return results


def _record_sends(provider: str, messages: list[OutgoingMessage]) -> list[SendResult]:
    """The ledger rows for a bulk send (one channel), honouring idempotency keys like `_record_send`."""
    if not messages:
        return []
    with transaction.atomic(), tally.counting():
        _take_turns(messages)
        earlier = _earlier_sends(messages)
        seen = {key for _, sender, key, _ in earlier if sender == provider}
        now = timezone.now()
        new = [
            {"run_id": m.run_id, "provider": provider, "idempotency_key": m.idempotency_key, "channel": m.channel,
             "intent_id": m.intent_id, "recipient_number": m.recipient_number, "sequence": m.sequence, "template": m.template,
             "quiet_hours": m.quiet_hours, "time_zone": m.time_zone, "sent_at": now}
            for m in {m.idempotency_key: m for m in messages if m.idempotency_key not in seen}.values()
        ]  # fmt: skip
        _count(provider, new, {intent for *_, intent in earlier})
        insert_rows(ProviderSend, new)
    return [SendResult(f"{provider}-{m.idempotency_key}", already_sent=m.idempotency_key in seen) for m in messages]


def _record_send(provider: str, message: OutgoingMessage) -> SendResult:
    # The ledger is the provider's, not the pipeline's: it commits on its own,
    # whatever happens to the worker's bookkeeping afterwards.
    with transaction.atomic(), tally.counting():
        _take_turns([message])
        earlier = _earlier_sends([message])
        first = next((pk for pk, sender, key, _ in earlier if (sender, key) == (provider, message.idempotency_key)), None)
        if first is not None:
            return SendResult(f"{provider}-{first}", already_sent=True)
        row = {"run_id": message.run_id, "provider": provider, "idempotency_key": message.idempotency_key, "channel": message.channel,
               "intent_id": message.intent_id, "recipient_number": message.recipient_number, "sequence": message.sequence,
               "template": message.template, "quiet_hours": message.quiet_hours, "time_zone": message.time_zone, "sent_at": timezone.now()}  # fmt: skip
        _count(provider, [row], {message.intent_id} if earlier else set())
        [pk] = insert_rows(ProviderSend, [row], return_ids=True)
    return SendResult(f"{provider}-{pk}", already_sent=False)


def _earlier_sends(messages: list[OutgoingMessage]) -> list[tuple[int, str, str, int]]:
    """The ledger rows of these messages' deliveries (one run, one channel), by any provider, as
    (id, provider, key, intent id). An idempotency key names one delivery, so these hold every row
    a key of theirs could match."""
    first = messages[0]
    return rows_for_each(ProviderSend, "intent_id", {m.intent_id for m in messages}, ["id", "provider", "idempotency_key", "intent_id"],
                         run_id=first.run_id, channel=first.channel)  # fmt: skip


# --- The provider's own counts (labs.pipeline.tally): what its dashboard would show ----------------


def _take_turns(messages: list[OutgoingMessage]) -> None:
    """Sends of one delivery (and in-app sends to one user) are written one at a time, so each
    finds the ones before it committed: a second send of a delivery counts as a duplicate, an
    in-app message below its user's highest sequence so far as out of order. On PostgreSQL a
    transaction lock per delivery or user, taken in one order; SQLite's IMMEDIATE transactions
    already write one at a time."""
    if connection.vendor != "postgresql":
        return
    turns = sorted({_turn(m) for m in messages})
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(turn) FROM unnest(%s::bigint[]) AS turn", [array_text(turns)])


def _turn(message: OutgoingMessage) -> int:
    """A 64-bit lock key: the run, and the user for in-app messages or else the delivery."""
    what = f"user-{message.recipient_number}" if message.channel == "inapp" else f"{message.intent_id}-{message.channel}"
    return (message.run_id % 2**31) << 32 | zlib.crc32(what.encode())


def _count(provider: str, rows: list[dict], earlier: set[int]) -> None:
    """Count new ledger rows (before they are inserted, under `_take_turns`): sends, duplicates of an
    earlier send of the same delivery (`earlier`: the intents of this channel already sent), in-app
    sends out of per-user order, sends in quiet hours. The auditor counts the same from the rows."""
    if not rows:
        return
    run_id = rows[0]["run_id"]
    duplicates = 0
    for row in rows:
        duplicates += row["intent_id"] in earlier
        earlier.add(row["intent_id"])
    out_of_order = 0
    for row in rows:
        if row["channel"] == "inapp" and row["sequence"] is not None:
            highest = ProviderSend.objects.filter(run_id=run_id, recipient_number=row["recipient_number"], channel="inapp",
                                                  sequence__isnull=False).aggregate(top=Max("sequence"))["top"]  # fmt: skip
            out_of_order += highest is not None and row["sequence"] < highest
    inside = [row for row in rows if sent_inside(row["quiet_hours"], row["time_zone"], row["sent_at"])]
    if inside:
        security = set(Template.objects.filter(run_id=run_id, name__in={r["template"] for r in inside}, category=TemplateCategory.SECURITY)
                       .values_list("name", flat=True))  # fmt: skip
        inside = [row for row in inside if row["template"] not in security]
    tally.add(tally.of_run(run_id, {tally.sent(provider): len(rows), "duplicate_sends": duplicates,
                                    "order_violations": out_of_order, "quiet_hours_violations": len(inside)}))  # fmt: skip
