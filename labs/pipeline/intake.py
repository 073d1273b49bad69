"""Accept notification requests (lesson: transactional-outbox).

Steps, all inside one database transaction:
1. Look up every idempotency key: a key seen before with the same body is a replay
   and returns the first intent; with another body it is a conflict (409).
2. Check every request against the run: the user, the template, the channels.
   Any error rejects the whole request and nothing is written.
3. Write the intents, one delivery per channel, and one outbox row per delivery.
   The relay publishes the outbox rows later, so a crash after the commit loses
   nothing and a crash before it leaves nothing half-written.
"""

import hashlib
import json
import random
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from labs.models import (
    Channel,
    Delivery,
    LabRun,
    NotificationIntent,
    OutboxRow,
    Priority,
    Recipient,
    Template,
    TemplateCategory,
)
from labs.pipeline import defences, events, faults, tally
from labs.rows import insert_rows, rows_for_each

URGENT_QUEUE = "urgent"
CHANNELS = frozenset(Channel.values)


@dataclass
class IntentRequest:
    idempotency_key: str
    user_id: int
    template: str
    priority: str | None = None
    channels: list[str] | None = None
    data: dict = field(default_factory=dict)

    def fingerprint(self) -> str:
        body = {"user_id": self.user_id, "template": self.template, "priority": self.priority,
                "channels": self.channels, "data": self.data}  # fmt: skip
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class IntakeError(Exception):
    """A request the run cannot accept; `errors` maps a field (e.g. "notifications[3].user_id") to a message."""

    def __init__(self, status: int, errors: dict[str, str]):
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.status = status
        self.errors = errors


@dataclass
class Accepted:
    intent: NotificationIntent
    replayed: bool


class SimulatedCrash(Exception):
    """The injected crash between the commit and the publish (outbox defence off)."""


def queue_for(priority: str, channel: str, priority_lane: bool = True) -> str:
    return URGENT_QUEUE if priority_lane and priority == Priority.TRANSACTIONAL else channel


def accept(run: LabRun, requests: list[IntentRequest], field_prefix: str = "", release_at: list[datetime] | None = None) -> list[Accepted]:
    """Accept the requests (all or none). `release_at`, one time per request, holds each one's outbox row
    until then (scheduled sends; with the outbox switched off they are published at once)."""

    def name(index: int, attribute: str) -> str:
        return f"{field_prefix}[{index}].{attribute}" if field_prefix else attribute

    try:
        with transaction.atomic(), tally.counting():
            results = _accept(run, requests, name, release_at)
    except IntegrityError:
        # Another request with one of these keys committed first (PostgreSQL only;
        # SQLite's IMMEDIATE transactions queue instead). Its result is now visible.
        with transaction.atomic(), tally.counting():
            results = _accept(run, requests, name, release_at)
    if not defences.enabled(run, "outbox"):
        _publish_after_commit(run, [r.intent for r in results if not r.replayed])
    return results


def _publish_after_commit(run: LabRun, intents: list[NotificationIntent]) -> None:
    """The dual write the outbox exists to avoid: the rows are committed, now publish and hope."""
    from labs.pipeline.relay import publish_messages  # the relay owns the broker's message format

    deliveries = list(Delivery.objects.filter(intent__in=intents).values_list("id", "queue"))
    if not deliveries:
        return
    if random.random() < faults.fault_for(run.pk, faults.PIPELINE).get("publish_crash", 0.0):
        raise SimulatedCrash("the API process crashed after its commit and before publishing")
    publish_messages([(pk, queue, 0) for pk, queue in deliveries])
    # A note of what went out (published already, so the relay skips it): without it nothing
    # would tell a message on the broker from one the crash above lost.
    now = timezone.now()
    with transaction.atomic():
        insert_rows(OutboxRow, [{"run_id": run.pk, "delivery_id": pk, "queue": queue, "generation": 0, "available_at": now,
                                 "published_at": now, "created_at": now} for pk, queue in deliveries])  # fmt: skip


def _accept(run: LabRun, requests: list[IntentRequest], name, release_at: list[datetime] | None = None) -> list[Accepted]:
    keys = [r.idempotency_key for r in requests]
    existing = {i.idempotency_key: i for i in rows_for_each(NotificationIntent, "idempotency_key", keys, run_id=run.pk)}
    recipients = {r.number: r for r in Recipient.objects.filter(run=run, number__in={r.user_id for r in requests})}
    templates: dict[str, Template] = {}
    for template in Template.objects.filter(run=run, name__in={r.template for r in requests}).order_by("name", "version"):
        templates[template.name] = template  # the latest version wins

    errors: dict[str, str] = {}
    results: list[Accepted | None] = []
    new: list[tuple[int, IntentRequest, Recipient, Template, str, list[str], str]] = []
    seen_in_request: dict[str, tuple[int, str]] = {}
    for index, request in enumerate(requests):
        fingerprint = request.fingerprint()
        earlier = existing.get(request.idempotency_key)
        if earlier is not None:
            if earlier.fingerprint != fingerprint:
                raise IntakeError(409, {name(index, "Idempotency-Key"): (
                    f"key {request.idempotency_key!r} was already used for intent {earlier.pk} with a different body")})
            results.append(Accepted(earlier, replayed=True))
            continue
        if request.idempotency_key in seen_in_request:
            first_index, first_fingerprint = seen_in_request[request.idempotency_key]
            if first_fingerprint != fingerprint:
                raise IntakeError(409, {name(index, "idempotency_key"): (
                    f"key {request.idempotency_key!r} is used by item {first_index} with a different body")})
            results.append(None)  # filled with the first item's intent below
            continue
        seen_in_request[request.idempotency_key] = (index, fingerprint)
        recipient = recipients.get(request.user_id)
        template = templates.get(request.template)
        if recipient is None:
            errors[name(index, "user_id")] = f"this run has no user {request.user_id} (GET /api/runs/current lists them)"
        if template is None:
            errors[name(index, "template")] = f"this run has no template {request.template!r}"
        if recipient is None or template is None:
            results.append(None)
            continue
        if request.channels is not None:
            channels = list(dict.fromkeys(request.channels))
            unknown = [c for c in channels if c not in CHANNELS]
            if unknown or not channels:
                errors[name(index, "channels")] = f"choose from {', '.join(Channel.values)}"
                results.append(None)
                continue
        else:
            preferred = [c for c in template.channels if recipient.opted_in(c)]
            # Nothing preferred: keep the template's channels, so the opt-out shows as suppressed.
            channels = preferred or list(template.channels)
        priority = request.priority or (
            Priority.MARKETING if template.category == TemplateCategory.MARKETING else Priority.TRANSACTIONAL
        )
        new.append((index, request, recipient, template, priority, channels, fingerprint))
        results.append(None)
    if errors:
        raise IntakeError(422, errors)

    created = _write(run, new, release_at)
    for index, intent in created.items():
        results[index] = Accepted(intent, replayed=False)
    for index, request in enumerate(requests):
        if results[index] is None:  # a repeat of an earlier item in this same request
            first_index = seen_in_request[request.idempotency_key][0]
            results[index] = Accepted(results[first_index].intent, replayed=True)
    if created:
        transaction.on_commit(lambda: _announce(run.pk, list(created.values())))
    return results


def _write(run: LabRun, new, release_at: list[datetime] | None = None) -> dict[int, NotificationIntent]:
    """Insert the intents, their deliveries and the outbox rows (see labs/rows.py for why not bulk_create)."""
    if not new:
        return {}
    now = timezone.now()
    rows = [{"run_id": run.pk, "recipient_id": recipient.pk, "template_id": template.pk, "priority": priority, "data": request.data,
             "idempotency_key": request.idempotency_key, "fingerprint": fingerprint, "created_at": now}
            for _, request, recipient, template, priority, _, fingerprint in new]  # fmt: skip
    ids = insert_rows(NotificationIntent, rows, return_ids=True)
    intents = _loaded(run, rows, ids, new)
    priority_lane = defences.enabled(run, "priority_lane")
    next_sequence = _next_inapp_sequences(run, [recipient for _, _, recipient, _, _, channels, _ in new if "inapp" in channels])
    deliveries, available = [], []
    for pk, (index, _, recipient, _, priority, channels, _) in zip(ids, new, strict=True):
        for channel in channels:
            sequence = None
            if channel == "inapp":
                sequence = next_sequence[recipient.pk]
                next_sequence[recipient.pk] += 1
            deliveries.append({"run_id": run.pk, "intent_id": pk, "recipient_id": recipient.pk, "channel": channel,
                               "queue": queue_for(priority, channel, priority_lane), "sequence": sequence,
                               "created_at": now, "updated_at": now})  # fmt: skip
            available.append(release_at[index] if release_at else now)
    delivery_ids = insert_rows(Delivery, deliveries, return_ids=True)
    campaign_intents = {intent.pk for intent in intents if intent.priority == Priority.MARKETING}
    tally.add({(run.pk, "intents"): len(intents),
               (run.pk, "campaign_deliveries"): sum(1 for d in deliveries if d["intent_id"] in campaign_intents)})  # fmt: skip
    alert_intents = {intent.pk for intent in intents if intent.priority == Priority.TRANSACTIONAL}
    alerts = [pk for pk, d in zip(delivery_ids, deliveries, strict=True) if d["intent_id"] in alert_intents]
    if alerts:
        tally.raise_to({(run.pk, "last_alert"): max(alerts)})
    if defences.enabled(run, "outbox"):
        insert_rows(OutboxRow, [
            {"run_id": run.pk, "delivery_id": pk, "queue": d["queue"], "generation": 0, "available_at": at, "created_at": now}
            for pk, d, at in zip(delivery_ids, deliveries, available, strict=True)
        ])  # fmt: skip
    return {index: intent for intent, (index, *_) in zip(intents, new, strict=True)}


def _loaded(run: LabRun, rows: list[dict], ids: list[int], new) -> list[NotificationIntent]:
    """The inserted intents as instances, with their run, recipients and templates at hand. Built as a query's rows
    are (`from_db`, values in column order): keyword arguments and related objects made a campaign of 1,000
    cost 27 ms in `Model.__init__` against 11 (the web's largest share after the inserts, py-spy, bench/pipeline.py)."""
    fields = NotificationIntent._meta.concrete_fields
    names = [f.attname for f in fields]
    intents = [NotificationIntent.from_db(connection.alias, names, [pk if f.primary_key else row[f.attname] for f in fields])
               for pk, row in zip(ids, rows, strict=True)]  # fmt: skip
    of_run, recipient, template = (NotificationIntent.run.field, NotificationIntent.recipient.field,
                                   NotificationIntent.template.field)  # fmt: skip
    for intent, (_, _, its_recipient, its_template, *_) in zip(intents, new, strict=True):
        of_run.set_cached_value(intent, run)
        recipient.set_cached_value(intent, its_recipient)
        template.set_cached_value(intent, its_template)
    return intents


def _next_inapp_sequences(run: LabRun, recipients: list[Recipient]) -> dict[int, int]:
    ids = {r.pk for r in recipients}
    if not ids:
        return {}
    if connection.features.has_select_for_update:
        # Two requests for one user must not hand out the same place in line.
        list(Recipient.objects.select_for_update().filter(pk__in=ids).values_list("pk"))
    highest = dict(
        Delivery.objects.filter(recipient_id__in=ids, channel="inapp", sequence__isnull=False)  # the index holds only these
        .values("recipient_id")
        .annotate(top=Max("sequence"))
        .values_list("recipient_id", "top")
    )
    return {pk: (highest.get(pk) or 0) + 1 for pk in ids}


def _announce(run_id: int, intents: list[NotificationIntent]) -> None:
    if len(intents) == 1:
        [intent] = intents
        events.emit(run_id, "accepted", intent=intent.pk, user_id=intent.recipient.number, template=intent.template.name)
    else:  # a campaign is one line in the feed
        templates = ", ".join(sorted({i.template.name for i in intents}))
        events.emit(run_id, "accepted_batch", count=len(intents), templates=templates, intents=[i.pk for i in intents])
