"""The lab run's JSON API, authenticated by the run's API key (Authorization: Bearer ...).

Served at /api/; the OpenAPI schema is at /api/openapi.json and browsable at /api/docs.
Every error is JSON with a human `error` line and, for invalid input, `errors`
mapping each offending field to what is wrong with it.
"""

import logging
from datetime import time
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.db.models import Max, Prefetch
from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Header, NinjaAPI, Query, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer
from pydantic import AfterValidator, BaseModel, ConfigDict, FiniteFloat, StrictBool, StrictInt, field_validator
from redis.exceptions import RedisError

from config import ratelimits
from labs import runs
from labs.models import (
    TERMINAL,
    Channel,
    DeadLetter,
    Delivery,
    DeliveryAttempt,
    LabRun,
    NotificationIntent,
    Recipient,
    Template,
)
from labs.pipeline import audit, deadletters, defences, events, faults, intake, metrics, sync_chain, templating
from labs.pipeline.topology import PROVIDERS
from workshops import access

log = logging.getLogger(__name__)

ChannelName = Literal["email", "sms", "push", "inapp"]
# The columns these land in are 32-bit on some databases; a larger number can name nothing.
LARGEST_USER_ID = 2**31 - 1


def _no_nul(value: str) -> str:
    # PostgreSQL refuses NUL in text and JSON; saying so here keeps it from surfacing as a 500.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (\\u0000)")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
Locale = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,4})?$", description='e.g. "en", "fr", "pt-BR"')]


class RunKey(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> LabRun | None:
        run = LabRun.for_api_key(token)
        if run is not None:
            limited = ratelimits.take(
                request, "api-key", str(run.pk), settings.RATELIMIT_API_PER_KEY, "Too many requests with this API key."
            )
            if limited is not None:
                raise ratelimits.RateLimited(limited)
            if request.method not in ("GET", "HEAD"):
                refuse_if_frozen(run)
            runs.touch(run)
            request.run = run
        return run


def refuse_if_frozen(run: LabRun) -> None:
    """A run of an ended workshop is read-only: reading it works, changing it is refused with why."""
    if access.is_frozen(run.pk):
        raise HttpError(409, access.FROZEN_MESSAGE)


api = NinjaAPI(
    title="Faultline lab API",
    version="1",
    description="Drive your lab run's notification pipeline. Every call needs `Authorization: Bearer <your run's API key>`.",
    auth=RunKey(),
    urls_namespace="labs-api",
)


# --- Errors -----------------------------------------------------------------------------


_UNION_TAGS = {"str", "int", "float", "bool", "none", "list", "dict"}
_SOURCES = ("body", "header", "path", "query")


def _is_tag(part) -> bool:
    """A union member's tag, such as "int" or "function-after[_no_nul(), str]"; "[key]" marks a wrong dictionary key."""
    return part in _UNION_TAGS or (isinstance(part, str) and part.endswith("]") and "[" in part)


def _field_name(loc: tuple) -> str:
    """("body", "payload", "notifications", 3, "user_id") -> "notifications[3].user_id"."""
    if loc and loc[0] in _SOURCES:
        loc = loc[1:]
        if loc and loc[0] == "payload":  # every endpoint's body parameter
            loc = loc[1:]
    parts = [p for p in loc if not _is_tag(p)]
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


@api.exception_handler(ValidationError)
def invalid_input(request, exc: ValidationError):
    found: dict[str, list[str]] = {}
    for problem in exc.errors:
        if problem.get("type") == "json_invalid":
            return api.create_response(request, {"error": "the body is not valid JSON", "errors": {"body": "not valid JSON"}}, status=400)
        found.setdefault(_field_name(tuple(problem.get("loc", ()))), []).append(problem.get("msg", "invalid"))
    errors = {}
    for name, messages in found.items():
        # A value that fits none of a union's types yields one message per type: say it once.
        kinds = list(dict.fromkeys(m.removeprefix("Input should be ").removeprefix("a valid ").removeprefix("a ") for m in messages))
        if len(messages) > 1 and len(kinds) > 1:
            kinds = [("an " if kind[0] in "aeiou" else "a ") + kind for kind in kinds]
            errors[name] = "Input should be " + ", ".join(kinds[:-1]) + " or " + kinds[-1]
        else:
            errors[name] = messages[0]
    summary = "; ".join(f"{name}: {message}" for name, message in errors.items())
    return api.create_response(request, {"error": f"invalid request: {summary}", "errors": errors}, status=422)


@api.exception_handler(intake.IntakeError)
def rejected_intent(request, exc: intake.IntakeError):
    return api.create_response(request, {"error": str(exc), "errors": exc.errors}, status=exc.status)


@api.exception_handler(intake.SimulatedCrash)
def simulated_crash(request, exc):
    return api.create_response(
        request, {"error": f"{exc} (injected fault: the notification is saved but was never published)"}, status=500
    )


@api.exception_handler(sync_chain.ServiceUnavailable)
def service_unavailable(request, exc: sync_chain.ServiceUnavailable):
    return api.create_response(request, {"error": f"a service this request needs did not answer: {exc}"}, status=503)


@api.exception_handler(RequestDataTooBig)
def too_big(request, exc):
    return api.create_response(request, {"error": "the request body is too large (2 MB at most)"}, status=413)


@api.exception_handler(AuthenticationError)
def unauthenticated(request, exc):
    return api.create_response(
        request, {"error": "missing or unknown API key: send `Authorization: Bearer <your run's API key>` "
                  "(under /api/workshops/, the workshop's key)"}, status=401
    )


@api.exception_handler(ratelimits.RateLimited)
def too_many_requests(request, exc: ratelimits.RateLimited):
    limited = exc.limited
    response = api.create_response(request, {"error": f"{limited.message} Try again in {limited.wait}."}, status=429)
    return ratelimits.with_retry_after(response, limited)


@api.exception_handler(RedisError)
def redis_down(request, exc):
    # Faults, breakers and the event feed live in Redis; the notifications themselves do not.
    return api.create_response(
        request, {"error": f"Redis is unreachable, so this part of the lab is down for now ({type(exc).__name__}); try again shortly"},
        status=503,
    )


@api.exception_handler(Http404)
def not_found(request, exc):
    return api.create_response(request, {"error": "not found in this run"}, status=404)


@api.exception_handler(HttpError)
def http_error(request, exc: HttpError):
    return api.create_response(request, {"error": str(exc)}, status=exc.status_code)


@api.exception_handler(Exception)
def unexpected(request, exc: Exception):
    # The API promises JSON errors: without this, Django would answer with its HTML error page.
    log.exception("unexpected error in %s %s", request.method, request.path)
    return api.create_response(
        request, {"error": f"internal error ({type(exc).__name__}): nothing you sent caused it; it is logged for us to fix"},
        status=500,
    )


class Error(Schema):
    """Every error the API answers: a sentence, and for invalid input each offending field."""

    error: str = Field(..., description="What went wrong, in a sentence.")
    errors: dict[str, str] | None = Field(None, description="For invalid input: each offending field and what is wrong with it.")


# 400 the body is not JSON · 404 not in this run · 409 an idempotency key reused with another body ·
# 413 the body is over 2 MB · 422 a field is invalid · 500 only the injected "publish_crash" fault.
# Every call may also get 401 (a missing or unknown key), 429 (over the key's rate) and 503 (Redis down).
def answers(ok: dict, *errors: int) -> dict:
    """An endpoint's documented responses: what it returns, the errors it gives, and those every call may get."""
    return {**ok, **dict.fromkeys(sorted({*errors, 401, 429, 503}), Error)}


BODY = (400, 413, 422)  # what any endpoint that reads a JSON body may answer


def _bad_field(name: str, message: str, status: int = 422):
    raise intake.IntakeError(status, {name: message})


# --- Schemas ---------------------------------------------------------------------------


# Plain pydantic models, as BatchIn and its items (a comment, not a docstring: pydantic would publish a docstring
# in the API's schema): django-ninja's Schema validates each object through a wrapper that reads every field by
# getattr in Python, which was three tenths of the web process's time on a 1,000-message campaign request (py-spy,
# bench/pipeline.py); the payload is JSON, never a model instance.
class NotificationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: StrictInt = Field(..., ge=1, le=LARGEST_USER_ID, examples=[7], description="A user of this run (GET /api/runs/current lists them).")
    template: Text = Field(..., min_length=1, max_length=64, examples=["password_reset"])
    channels: list[ChannelName] | None = Field(None, min_length=1, max_length=4, description="Default: the user's preferred channels among the template's.")
    priority: Literal["transactional", "marketing"] | None = Field(None, description="Default: from the template's category.")
    data: dict[Text, Text | int | FiniteFloat | bool | None] = Field(
        default_factory=dict, description=f"Values for the template's placeholders; at most {templating.MAX_DATA_BYTES} bytes as JSON."
    )

    @field_validator("data")
    @classmethod
    def data_fits_a_template(cls, value: dict) -> dict:
        templating.check_data(value)
        return value

    def to_request(self, idempotency_key: str) -> intake.IntentRequest:
        return intake.IntentRequest(idempotency_key, self.user_id, self.template, self.priority, self.channels, self.data)


class BatchItem(NotificationIn):
    idempotency_key: Text = Field(..., min_length=1, max_length=200)


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    notifications: list[BatchItem] = Field(..., min_length=1, max_length=1000)


class QuietHours(Schema):
    start: time = Field(..., description="Local wall-clock time in the user's timezone, without an offset.")
    end: time = Field(..., description="Local wall-clock time in the user's timezone, without an offset.")

    @field_validator("start", "end")
    @classmethod
    def local_time(cls, value: time) -> time:
        # Quiet hours follow the user's `timezone` (daylight saving included); a fixed offset would contradict it.
        if value.tzinfo is not None:
            raise ValueError("give a local time without an offset, such as 22:00: the user's timezone says where")
        return value


class PreferencesIn(Schema):
    model_config = ConfigDict(extra="forbid")

    channels: dict[ChannelName, StrictBool] | None = None
    quiet_hours: QuietHours | None = Field(None, description="null removes quiet hours.")
    timezone: Text | None = Field(None, min_length=1, max_length=48)
    locale: Locale | None = None


class TemplateBody(Schema):
    model_config = ConfigDict(extra="forbid")

    subject: Text = Field("", max_length=200)
    body: Text = Field(..., min_length=1, max_length=2000)


class TemplateIn(Schema):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    category: Literal["security", "transactional", "marketing"] | None = None
    channels: list[ChannelName] | None = Field(None, min_length=1, max_length=4, description="Required for a new template.")
    bodies: dict[Locale, TemplateBody] = Field(
        ..., min_length=1, max_length=20,
        description='Per locale; "en" is required (the fallback). Placeholders are `{name}` only; `{{` and `}}` are literal braces.',
    )  # fmt: skip


class FaultsIn(Schema):
    model_config = ConfigDict(extra="forbid")

    faults: dict[Text, dict[Text, bool | int | FiniteFloat]] = Field(
        ..., description='Per target (a provider such as "sms-primary", or "pipeline"), e.g. {"sms-primary": {"error_rate": 0.5}}.'
    )


class DefencesIn(Schema):
    model_config = ConfigDict(extra="forbid")

    outbox: StrictBool | None = None
    idempotency: StrictBool | None = None
    jitter: StrictBool | None = None
    circuit_breaker: StrictBool | None = None
    dead_letter_queue: StrictBool | None = None
    priority_lane: StrictBool | None = None


class DeadLetterGroupIn(Schema):
    group: Text = Field(..., min_length=1, max_length=64)


# --- Presenting ------------------------------------------------------------------------------


def intent_status(deliveries: list[Delivery]) -> str:
    statuses = {d.status for d in deliveries}
    if not statuses.issubset(TERMINAL):
        return "in_flight"
    return statuses.pop() if len(statuses) == 1 else "completed"


def _attempt_json(a: DeliveryAttempt) -> dict:
    return {
        "number": a.number, "provider": a.provider, "outcome": a.outcome, "error": a.error,
        "started_at": a.started_at, "finished_at": a.finished_at, "latency_ms": a.latency_ms,
        "backoff_ms": a.backoff_ms, "backoff_cap_ms": a.backoff_cap_ms, "worker": a.worker,
    }  # fmt: skip


def intent_json(intent: NotificationIntent, with_attempts: bool = False) -> dict:
    deliveries = list(intent.deliveries.all())
    body = {
        "id": intent.pk,
        "status": intent_status(deliveries),
        "user_id": intent.recipient.number,
        "template": intent.template.name,
        "template_version": intent.template.version,
        "priority": intent.priority,
        "idempotency_key": intent.idempotency_key,
        "created_at": intent.created_at,
        "deliveries": [],
    }
    for d in deliveries:
        delivery = {
            "channel": d.channel, "queue": d.queue, "status": d.status, "attempts": d.attempts,
            "max_attempts": intent.run.max_attempts, "next_attempt_at": d.next_attempt_at, "provider": d.provider,
            "last_error": d.last_error, "replays": d.replays, "duplicates_suppressed": d.duplicates_suppressed,
        }  # fmt: skip
        if with_attempts:
            delivery["attempt_history"] = [_attempt_json(a) for a in d.attempt_rows.all()]
        body["deliveries"].append(delivery)
    return body


def _intents(run: LabRun):
    return NotificationIntent.objects.filter(run=run).select_related("recipient", "template", "run")


def preferences_json(r: Recipient) -> dict:
    return {
        "user_id": r.number,
        "channels": {c: r.opted_in(c) for c in Channel.values},
        "quiet_hours": {"start": r.quiet_start, "end": r.quiet_end} if r.quiet_start else None,
        "timezone": r.timezone,
        "locale": r.locale,
    }


def _placeholders(text: str) -> list[str]:
    """The names a stored template asks for ([] for a row written before templates were checked)."""
    try:
        return sorted(templating.placeholders(text))
    except templating.TemplateError:
        return []


# --- Endpoints ------------------------------------------------------------------------------


def link_to(operation: str, **parameters: str) -> dict:
    """An OpenAPI link: where an answer's ids lead (clients and the fuzz test's stateful sequences follow them)."""
    return {"operationId": f"labs_api_{operation}", "parameters": parameters}


@api.post(
    "/notifications", tags=["notifications"], summary="Send a notification",
    response=answers({200: dict, 202: dict}, *BODY, 409, 500),
    openapi_extra={"responses": {code: {"links": {"GetNotification": link_to("get_notification", intent_id="$response.body#/id")}}
                                 for code in (200, 202)}},
)
def send_notification(request, payload: NotificationIn, idempotency_key: Text = Header(..., alias="Idempotency-Key", min_length=1, max_length=200)):
    """Writes the intent and its outbox rows in one transaction. Repeating a key with the same body returns the first intent (200).
    In lab 9's runs it first asks the preferences and template services (503 when one fails and nothing stands in)."""
    result = sync_chain.accept_one(request.run, payload.to_request(idempotency_key))
    intent = _intents(request.run).prefetch_related("deliveries").get(pk=result.intent.pk)
    return Status(200 if result.replayed else 202, {**intent_json(intent), "replayed": result.replayed})


@api.post(
    "/notifications/batch", tags=["notifications"], summary="Send a campaign (up to 1,000)",
    response=answers({202: dict}, *BODY, 409, 500),
    openapi_extra={"responses": {202: {"links": {
        "GetFirstNotification": link_to("get_notification", intent_id="$response.body#/notifications/0/id")}}}},
)
def send_batch(request, payload: BatchIn):
    """All or nothing: one invalid item rejects the batch, naming the item and field."""
    results = intake.accept(
        request.run, [item.to_request(item.idempotency_key) for item in payload.notifications], field_prefix="notifications"
    )
    return Status(202, {
        "accepted": sum(1 for r in results if not r.replayed),
        "replayed": sum(1 for r in results if r.replayed),
        "notifications": [
            {"id": r.intent.pk, "idempotency_key": r.intent.idempotency_key, "replayed": r.replayed} for r in results
        ],
    })


@api.get(
    "/notifications/{intent_id}", tags=["notifications"], summary="Status and every delivery attempt",
    response=answers({200: dict}, 404, 422)
)
def get_notification(request, intent_id: int):
    attempts = Prefetch("deliveries", queryset=Delivery.objects.prefetch_related("attempt_rows"))
    intent = get_object_or_404(_intents(request.run).prefetch_related(attempts), pk=intent_id)
    return intent_json(intent, with_attempts=True)


@api.get("/users/{user_id}/notification-preferences", tags=["users"], response=answers({200: dict}, 404, 422))
def get_preferences(request, user_id: int):
    return preferences_json(get_object_or_404(Recipient, run=request.run, number=user_id))


@api.put("/users/{user_id}/notification-preferences", tags=["users"], response=answers({200: dict}, *BODY, 404))
def put_preferences(request, user_id: int, payload: PreferencesIn):
    recipient = get_object_or_404(Recipient, run=request.run, number=user_id)
    if payload.timezone is not None:
        try:
            ZoneInfo(payload.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            _bad_field("timezone", f"{payload.timezone!r} is not an IANA time zone such as Europe/Paris")
        recipient.timezone = payload.timezone
    for channel, enabled in (payload.channels or {}).items():
        setattr(recipient, f"{channel}_opt_in", enabled)
    if "quiet_hours" in payload.model_fields_set:
        if payload.quiet_hours and payload.quiet_hours.start == payload.quiet_hours.end:
            _bad_field("quiet_hours", "start and end must differ")
        recipient.quiet_start = payload.quiet_hours.start if payload.quiet_hours else None
        recipient.quiet_end = payload.quiet_hours.end if payload.quiet_hours else None
    if payload.locale is not None:
        recipient.locale = payload.locale
    recipient.save()
    return preferences_json(recipient)


@api.post(
    "/templates", tags=["templates"], summary="Create a template, or a new version of one",
    response=answers({201: dict}, *BODY)
)
def create_template(request, payload: TemplateIn):
    if "en" not in payload.bodies:
        _bad_field("bodies.en", "an English body is required: it is the fallback for other locales")
    for locale, body in payload.bodies.items():
        for part in ("subject", "body"):
            try:
                templating.check(getattr(body, part))
            except templating.TemplateError as exc:
                _bad_field(f"bodies.{locale}.{part}", f"is not a valid template: {exc}")
    run = request.run
    with transaction.atomic():
        previous = Template.objects.filter(run=run, name=payload.name).order_by("-version").first()
        if previous is None and payload.category is None:
            _bad_field("category", "required for a new template: security, transactional or marketing")
        if previous is None and payload.channels is None:
            _bad_field("channels", "required for a new template: one or more of email, sms, push, inapp")
        version = (Template.objects.filter(run=run, name=payload.name).aggregate(v=Max("version"))["v"] or 0) + 1
        template = Template.objects.create(
            run=run,
            name=payload.name,
            version=version,
            category=payload.category or previous.category,
            channels=payload.channels or previous.channels,
            bodies={locale: body.model_dump() for locale, body in payload.bodies.items()},
        )
    return Status(201, {"name": template.name, "version": template.version, "category": template.category,
                        "channels": template.channels, "locales": sorted(template.bodies)})  # fmt: skip


@api.get("/runs/current", tags=["runs"], summary="Your run: its users and templates", response=answers({200: dict}))
def current_run(request):
    run = request.run
    latest: dict[str, Template] = {}
    for t in run.templates.order_by("name", "version"):
        latest[t.name] = t
    return {
        "run": run.pk,
        "users": [preferences_json(r) | {"name": r.name} for r in run.recipients.order_by("number")],
        "templates": [
            {"name": t.name, "version": t.version, "category": t.category, "channels": t.channels,
             "locales": sorted(t.bodies), "placeholders": _placeholders(t.bodies["en"]["body"])}
            for t in latest.values()
        ],  # fmt: skip
        "channels": Channel.values,
        "providers": PROVIDERS,
        "retry_policy": {"base_ms": run.retry_base_ms, "cap_ms": run.retry_cap_ms, "max_attempts": run.max_attempts},
    }


@api.get(
    "/runs/current/audit", tags=["runs"], summary="Reconciliation: nothing lost, nothing sent twice",
    response=answers({200: dict})
)
def current_audit(request):
    return audit.audit(request.run)


@api.get(
    "/runs/current/metrics", tags=["runs"], response=answers({200: dict}),
    summary="The run's figures: provider calls (failed ones included), delivered, bounced, latency, dead letters",
)
def current_metrics(request):
    """Named as on the lab page. `provider_calls` counts every call to a provider, failed ones included;
    what the providers really sent, which never counts a failure, is `provider_sends` in the audit."""
    return metrics.run_metrics(request.run)


@api.get(
    "/runs/current/events", tags=["runs"], summary="The run's events after an event id",
    response=answers({200: dict}, 422)
)
def current_events(request, after: str = Query("-", description="An event id; - for the oldest kept."),
                   limit: int = Query(200, ge=1, le=1000)):  # fmt: skip
    if after != "-":
        try:
            events.check_event_id(after)
        except ValueError as exc:
            _bad_field("after", str(exc))
    return {"events": events.recent(request.run.pk, after=after, count=limit)}


@api.post("/runs/current/reset", tags=["runs"], summary="Start the run again from its seed", response=answers({200: dict}))
def reset_current(request):
    runs.reset_run(request.run)
    return {"run": request.run.pk, "reset": True}


@api.get(
    "/runs/current/faults", tags=["faults"], summary="The faults in force, and every fault you can inject",
    response=answers({200: dict})
)
def get_faults(request):
    return {
        "faults": faults.all_faults(request.run.pk),
        "available": {
            "provider": {name: getattr(kind, "__name__", kind) for name, kind in faults.PROVIDER_FAULTS.items()},
            "pipeline": {name: getattr(kind, "__name__", kind) for name, kind in faults.PIPELINE_FAULTS.items()},
            "service": {name: getattr(kind, "__name__", kind) for name, kind in faults.SERVICE_FAULTS.items()},
            "instance": {name: getattr(kind, "__name__", kind) for name, kind in faults.INSTANCE_FAULTS.items()},
            "ranges": {name: {"min": low, "max": high} for name, (low, high) in faults.WHOLE_NUMBER_RANGES.items()},
            "targets": list(faults.TARGETS),
            "instance_targets": list(faults.INSTANCE_TARGETS),  # with the run's service discovery on
        },
    }


@api.put(
    "/runs/current/faults", tags=["faults"], summary="Replace every fault of the run",
    response=answers({200: dict}, *BODY)
)
def put_faults(request, payload: FaultsIn):
    """All or nothing: one invalid setting rejects the request and changes nothing."""
    checked = {}
    for target, chosen in payload.faults.items():
        try:
            checked[target] = faults.validate(target, chosen)
        except ValueError as exc:
            _bad_field(f"faults.{target}", str(exc))
    faults.clear_faults(request.run.pk)
    for target, chosen in checked.items():
        if chosen:
            faults.set_fault(request.run.pk, target, **chosen)
    return get_faults(request)


@api.delete("/runs/current/faults", tags=["faults"], summary="Stop every fault at once", response=answers({200: dict}))
def delete_faults(request):
    faults.clear_faults(request.run.pk)
    return get_faults(request)


@api.get("/runs/current/defences", tags=["defences"], response=answers({200: dict}))
def get_defences(request):
    return defences.all_defences(request.run)


@api.put(
    "/runs/current/defences", tags=["defences"], summary="Switch defences on or off (omitted ones stay as they are)",
    response=answers({200: dict}, *BODY)
)
def put_defences(request, payload: DefencesIn):
    return defences.set_defences(request.run, **payload.model_dump(exclude_none=True))


@api.get(
    "/dead-letters", tags=["dead letters"], summary="Open dead letters, grouped by error",
    response=answers({200: dict}),
    openapi_extra={"responses": {200: {"links": {
        "ReplayFirst": link_to("replay_one", dead_letter_id="$response.body#/dead_letters/0/id"),
        "DiscardFirst": link_to("discard_one", dead_letter_id="$response.body#/dead_letters/0/id"),
    }}}},
)
def list_dead_letters(request):
    letters = (
        DeadLetter.objects.filter(run=request.run, resolution=DeadLetter.Resolution.OPEN)
        .select_related("delivery")
        .order_by("error_group", "id")[:1000]
    )
    return {
        "groups": deadletters.open_groups(request.run),
        "dead_letters": [
            {"id": d.pk, "intent": d.delivery.intent_id, "channel": d.delivery.channel, "group": d.error_group,
             "error": d.error, "attempts": d.attempts, "replayed_before": d.was_replayed, "created_at": d.created_at}
            for d in letters
        ],  # fmt: skip
    }


@api.post("/dead-letters/{dead_letter_id}/replay", tags=["dead letters"], response=answers({200: dict}, 404, 422))
def replay_one(request, dead_letter_id: int):
    get_object_or_404(DeadLetter, run=request.run, pk=dead_letter_id, resolution=DeadLetter.Resolution.OPEN)
    return {"replayed": deadletters.replay(request.run, [dead_letter_id])}


@api.post(
    "/dead-letters/replay", tags=["dead letters"], summary="Replay every open dead letter of a group",
    response=answers({200: dict}, *BODY)
)
def replay_group(request, payload: DeadLetterGroupIn):
    return {"replayed": deadletters.replay_group(request.run, payload.group)}


@api.post("/dead-letters/{dead_letter_id}/discard", tags=["dead letters"], response=answers({200: dict}, 404, 422))
def discard_one(request, dead_letter_id: int):
    get_object_or_404(DeadLetter, run=request.run, pk=dead_letter_id, resolution=DeadLetter.Resolution.OPEN)
    return {"discarded": deadletters.discard(request.run, [dead_letter_id])}
