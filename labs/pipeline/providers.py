"""Simulated providers: two per channel, each with its own ledger of what it really sent.

The worker talks to them through `send`, as it would through an HTTP client with a
timeout. They honour idempotency keys like real providers do: a call with a key they
have already accepted returns the first send instead of sending again.
"""

import random
import time
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from labs.models import ProviderSend
from labs.pipeline import faults



class ProviderError(Exception):
    """A call that did not deliver. `temporary` errors are retried; others go to the dead letters."""

    temporary = True
    group = "provider_error"


class ProviderUnavailable(ProviderError):
    group = "provider_unavailable"


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


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    already_sent: bool  # the provider recognised the idempotency key and did not send again


def send(provider: str, message: OutgoingMessage, timeout_ms: int) -> SendResult:
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


def _record_send(provider: str, message: OutgoingMessage) -> SendResult:
    # The ledger is the provider's, not the pipeline's: it commits on its own,
    # whatever happens to the worker's bookkeeping afterwards.
    try:
        with transaction.atomic():
            sent = ProviderSend.objects.create(
                run_id=message.run_id,
                provider=provider,
                idempotency_key=message.idempotency_key,
                channel=message.channel,
                intent_id=message.intent_id,
                recipient_number=message.recipient_number,
                sequence=message.sequence,
                template=message.template,
            )
        return SendResult(f"{provider}-{sent.pk}", already_sent=False)
    except IntegrityError:
        first = ProviderSend.objects.get(provider=provider, idempotency_key=message.idempotency_key)
        return SendResult(f"{provider}-{first.pk}", already_sent=True)
