"""The live view of a lab run: the event feed, streamed to the page as server-sent events.

How a state change reaches the page (measured by bench/live_view.py):
1. Every change in the pipeline is an entry in the run's Redis stream (labs.pipeline.events).
2. The page opens an EventSource on `live:stream` (/live/…), served by the live process
   (uvicorn, config/asgi.py; behind a reverse proxy on the pages' own origin), which waits on that stream with XREAD BLOCK and sends each batch of new
   events as one frame: rows rendered from labs/event_row.html, plus what the page needs to
   decide what else to refresh. An idle page costs nothing but an open connection.
3. The page puts the rows in the feed at once and asks gunicorn for its heavy panels
   (labs.panels) at most about once a second.
4. A hidden page closes its stream; a dropped one reopens with a growing, jittered delay
   and resumes after the last event id it saw, so nothing is missed (the stream keeps 5,000).

Who may listen: the run's owner (or an instructor dropping in on it), from the site's own pages (a page of another origin is refused,
so no other site can read the stream with the learner's cookies), for as long as their session
lasts: the stream asks at every heartbeat whether the session still exists and still belongs to
the run's owner, and ends when it does not (logging out in another tab closes it).

Pages are served by gunicorn's sync workers, which cannot hold hundreds of open
connections; the live process can. Served over WSGI (`labs:stream`, the page's fallback
while the live process is down), the same view answers once with what is new and tells the page to come back
in a second: slower, but live.
"""

import asyncio
import hashlib
import json
import time
from datetime import datetime
from datetime import timezone as dt_timezone

from importlib import import_module
from types import SimpleNamespace
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.core import signing
from django.http import HttpRequest
from django.http.request import split_domain_port
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.translation import ngettext

from config.redis_client import get_redis
from labs import pace
from labs.models import LabRun
from labs.pipeline import events, faults

FEED_SIZE = 60  # events shown when the page opens, and at most per frame
TOKEN_SALT = "labs.live.stream"
TOKEN_MAX_AGE = 12 * 3600
RETRY_MS = 1000  # when a one-shot answer (WSGI) tells the page to come back

# --- The event feed ----------------------------------------------------------------------------

# kind -> (label, sentence, tone). The sentence is formatted with the event's fields.
EVENT_WORDING: dict[str, tuple[str, str, str]] = {
    "accepted": ("accepted", "Notification {intent} accepted: {template} to user {user_id}", "info"),
    "accepted_batch": ("accepted", "{count} {notifications} accepted in one request ({templates})", "info"),
    "published": ("published", "Relay published delivery {delivery} to the {queue} queue", "info"),
    "published_batch": ("published", "Relay published {count} {deliveries} to the {queue} queue as one batch message", "info"),
    "republished": ("republished", "Relay republished delivery {delivery}: {reason}", "warn"),
    "attempt_started": ("attempt", "Worker started attempt {attempt} of delivery {delivery} ({channel})", "info"),
    "attempt_succeeded": ("delivered", "Delivery {delivery} sent by {provider} in {latency_ms} ms", "ok"),
    "batch_started": ("attempt", "Worker took a batch of {count} {channel} {deliveries} (first attempts)", "info"),
    "batch_delivered": ("delivered", "{count} {channel} {deliveries} sent by {provider} in one bulk call ({latency_ms} ms)", "ok"),
    "attempt_failed": ("failed", "Attempt {attempt} of delivery {delivery} failed {where}: {error}", "bad"),
    "retry_scheduled": ("retry", "Delivery {delivery}: retry in {delay_ms} ms (drawn under {ceiling_ms} ms), attempt {next_attempt} of {max_attempts}", "warn"),
    "retry_budget_exhausted": ("budget", "Retry budget for {channel} spent: delivery {delivery} waits the longest backoff", "warn"),
    "deferred": ("deferred", "Delivery {delivery} deferred: {reason}", "info"),
    "suppressed": ("suppressed", "Delivery {delivery} suppressed: {reason}", "info"),
    "relay_crashed": ("relay crash", "The relay crashed after publishing {published} {messages}, before marking them published", "bad"),
    "bounced": ("bounced", "Delivery {delivery} bounced at {provider}: {error}", "bad"),
    "dead_lettered": ("dead letter", "Delivery {delivery} dead-lettered ({group}): {error}", "bad"),
    "replayed": ("replayed", "Delivery {delivery} replayed from the dead letters ({group})", "warn"),
    "discarded": ("discarded", "Delivery {delivery} discarded from the dead letters", "info"),
    "duplicate_suppressed": ("duplicate", "A second copy of delivery {delivery} was suppressed{by}", "ok"),
    "failover": ("failover", "Delivery {delivery} sent via {provider} instead of {instead_of}", "warn"),
    "breaker_changed": ("breaker", "The circuit breaker of {provider} is now {state}", "warn"),
    "load_started": ("load", "Load {load} started: {rate} requests a second for {seconds} s, on {workers} API workers", "info"),
    "load_finished": ("load", "Load {load} finished: {requests} requests answered", "info"),
    "call_policy_changed": ("policy", "Call policy: {policy_text}", "warn"),
    "fault_changed": ("fault", "{fault_text}", "warn"),
    "defences_changed": ("defences", "{defences_text}", "warn"),
    # The order saga (labs/pipeline/saga.py), lab 7.
    "orders_placed": ("order", "{orders} placed ({mode})", "info"),
    "saga_mode_changed": ("saga", "Orders placed from now on are {mode}", "warn"),
    "saga_step": ("saga step", "Order {order}: {step}: {detail}{again}", "ok"),
    "saga_retry": ("saga retry", "Order {order}: {step} failed ({error}); attempt {next_attempt} in {delay_ms} ms", "warn"),
    "saga_gave_up": ("gave up", "Order {order}: {step} gave up: {error}", "bad"),
    "saga_state": ("saga", "Order {order}: {state}", "ok"),
    "saga_duplicate": ("duplicate", "Order {order}: a second copy of {message} was ignored", "ok"),
    "saga_reply_ignored": ("late reply", "Order {order}: the orchestrator ignored {message}: it no longer waits for it", "info"),
    "saga_stuck": ("stuck", "Order {order}: {step} gave up and no service listens for {event}: the order stays half-done", "bad"),
    "orchestrator_crashed": ("crash", "The orchestrator crashed after moving order {order} to “{state}”, before acknowledging the reply", "bad"),
    "discovery_changed": ("discovery", "{text}", "warn"),
    "instance_dropped": ("registry", "The registry took {instance} out of rotation: its health checks failed", "bad"),
    "instance_readmitted": ("registry", "The registry put {instance} back in rotation: its health check passed", "ok"),
    "classroom": ("instructor", "{text}", "warn"),  # written by a workshop's instructor (the workshops app)
    "run_frozen": ("ended", "{text}", "warn"),  # the run's workshop ended: the page reloads, read-only
}
# Events a screen reader hears (summarised, at most every few seconds): the ones a learner acts on.
ANNOUNCED = {"fault_changed", "defences_changed", "discovery_changed", "instance_dropped", "breaker_changed", "dead_lettered",
             "failover", "classroom", "run_frozen", "saga_stuck", "orchestrator_crashed"}  # fmt: skip


class _Blank(dict):
    def __missing__(self, name):
        return "?"


# Nouns a sentence counts, by the event field holding the count: "1 delivery", "3 deliveries".
COUNTED = {
    "deliveries": ("count", "delivery", "deliveries"),
    "notifications": ("count", "notification", "notifications"),
    "messages": ("published", "message", "messages"),
}
# Reasons the worker records in a word, as the feed says them.
REASONS = {"opt_out": "the user opted out of this channel"}


def settings_text(settings: dict) -> str:
    """A fault's settings in words: "down, 300 ms a call" (labs.pipeline.faults.in_words)."""
    return faults.in_words(settings)


def describe(event: dict) -> tuple[str, str, str]:
    label, sentence, tone = EVENT_WORDING.get(event["kind"], (event["kind"], event["kind"].replace("_", " "), "info"))
    fields = _Blank(event)
    for noun, (count_field, one, many) in COUNTED.items():
        fields[noun] = ngettext(one, many, event.get(count_field) or 0)
    if event.get("reason") in REASONS:
        fields["reason"] = REASONS[event["reason"]]
    if event.get("instance"):  # with the run's service discovery on, the instance called says more than its provider
        fields["provider"] = event["instance"]
    if event["kind"] == "attempt_failed":
        # A poison message fails while its template is rendered, before any provider is called.
        fields["where"] = f"at {fields['provider']}" if event.get("provider") else "before any provider was called"
    elif event["kind"] == "retry_scheduled":
        fields["next_attempt"] = event.get("attempt", 0) + 1
    elif event["kind"] == "duplicate_suppressed":
        fields["by"] = f" by the {event['by']}" if event.get("by") else " by the worker's claim"
    elif event["kind"] == "fault_changed":
        target, fault = event.get("target"), event.get("fault") or {}
        if target == "*":
            fields["fault_text"] = "Every fault stopped"
        elif fault:
            fields["fault_text"] = f"Fault on {target}: {settings_text(fault)}"
        else:
            fields["fault_text"], tone = f"Fault on {target} cleared", "ok"
    elif event["kind"] in ("saga_step", "saga_state") and not event.get("ok", True):
        tone = "bad"
    elif event["kind"] == "call_policy_changed":
        from labs.pipeline import sync_chain

        fields["policy_text"] = sync_chain.policy_text(sync_chain.CallPolicy(**(event.get("policy") or {})))
    elif event["kind"] == "defences_changed":
        off = [name.replace("_", " ") for name, on in (event.get("defences") or {}).items() if not on]
        fields["defences_text"] = f"Defences off: {', '.join(off)}" if off else "Every defence is on"
    return label, sentence.format_map(fields), tone


def event_rows(run_id: int, found: list[dict]) -> list[dict]:
    """The events as the feed shows them: wording, time, and a link to the message's lineage."""
    rows = []
    for event in found:
        label, text, tone = describe(event)
        link = None
        if event.get("intent"):
            link = reverse("labs:notification", args=[run_id, event["intent"]])
        elif event.get("delivery"):
            link = reverse("labs:delivery", args=[run_id, event["delivery"]])
        at = datetime.fromtimestamp(event["at"], dt_timezone.utc)
        clock = at.strftime("%H:%M:%S.") + f"{at.microsecond // 1000:03d}"
        rows.append({**event, "label": label, "text": text, "tone": tone, "link": link, "time": at, "clock": clock})
    return rows


# How events move the figures of the lab page's strip, so the page moves them as the events arrive rather
# than at the panels' next refresh: the strip's figure, and the event's field holding how many (None: one).
# Each is the event the state machine's writer emits after committing that change (labs/pipeline).
STRIP_MOVES: dict[str, tuple[str, str | None, int]] = {
    "accepted": ("accepted", None, 1),
    "accepted_batch": ("accepted", "count", 1),
    "attempt_succeeded": ("delivered", None, 1),
    "batch_delivered": ("delivered", "count", 1),
    "dead_lettered": ("dead-letters", None, 1),
    "replayed": ("dead-letters", None, -1),
    "discarded": ("dead-letters", None, -1),
}


def strip_moves(found: list[dict]) -> list[list]:
    """What these events add to the strip's figures, event by event: [[event id, figure, amount], …]."""
    moves = []
    for event in found:
        move = STRIP_MOVES.get(event["kind"])
        if move is not None:
            figure, count_field, sign = move
            moves.append([event["id"], figure, sign * (int(event.get(count_field, 0)) if count_field else 1)])
    return moves


# A stream that keeps its page busy (a run under 1,000-message campaigns) rests after each frame for this
# many times the CPU the frame took, so one run's flood takes at most 1/(1+FAIR_SHARE) of the live process
# and every other page's frames still go out at once. A frame of a few events costs about a millisecond.
FAIR_SHARE = 4
MAX_REST_S = 0.5


def timed_payload(run_id: int, after: str) -> tuple[dict | None, float]:
    """feed_payload, and the CPU seconds it took in this thread."""
    started = time.thread_time()
    payload = feed_payload(run_id, after)
    return payload, time.thread_time() - started


def feed_payload(run_id: int, after: str) -> dict | None:
    """What the page's poll gets: new events with their rendered rows, or None when nothing happened."""
    found = events.recent(run_id, after=after, count=1000)
    if not found:
        return None
    shown = found[-FEED_SIZE:]
    html = render_to_string("labs/event_row.html", {"rows": reversed(event_rows(run_id, shown))})
    announce = [describe(e)[1] for e in found if e["kind"] in ANNOUNCED][-3:]
    return {
        "last": found[-1]["id"],
        "count": len(found),
        "skipped": len(found) - len(shown),
        "html": html,
        "at": [e["at"] for e in shown],
        "kinds": sorted({e["kind"] for e in found}),
        "announce": announce,
        "moves": strip_moves(found),
    }


def opening_feed(run: LabRun) -> tuple[list[dict], str]:
    """The newest events for the page's first render, newest first, and the id to poll after."""
    newest = get_redis().xrevrange(events.stream_key(run.pk), count=FEED_SIZE)
    if not newest:
        return [], "0-0"
    found = events.recent(run.pk, after=_before(newest[-1][0].decode()), count=FEED_SIZE)
    return list(reversed(event_rows(run.pk, found))), newest[0][0].decode()


# --- Who may listen ------------------------------------------------------------------------------


def stream_token(run_id: int, session_key: str) -> str:
    """A signed note that this session may read this run's events, so opening the stream needs no query.

    It is handed only to the run's owner, inside their page, and is tied to their session
    cookie: logging out (a new session key) or TOKEN_MAX_AGE ends it.
    """
    return signing.dumps([run_id, _session_tag(session_key)], salt=TOKEN_SALT)


def stream_token_allows(token: str, run_id: int, session_key: str) -> bool:
    """The token was made for this run and this session, and the session is still the run's owner's."""
    if not token or not session_key:
        return False
    try:
        if signing.loads(token, salt=TOKEN_SALT, max_age=TOKEN_MAX_AGE) != [run_id, _session_tag(session_key)]:
            return False
    except signing.BadSignature:
        return False
    return session_owns_run(session_key, run_id)


def session_owns_run(session_key: str, run_id: int) -> bool:
    """Is this session still signed in as the run's owner, or as an instructor dropping in on it
    (workshops.access)? False once it logged out, expired or changed password, or the seat moved."""
    from workshops.access import watched_seat

    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = get_user(SimpleNamespace(session=session))  # what AuthenticationMiddleware would find, hash check included
    if not user.is_authenticated:
        return False
    return LabRun.objects.filter(pk=run_id, owner_id=user.pk).exists() or watched_seat(user, run_id) is not None


def _session_tag(session_key: str) -> str:
    return hashlib.sha256(session_key.encode()).hexdigest()[:24]


def _before(stream_id: str) -> str:
    """The stream id just before `stream_id`, so `recent(after=...)` includes it."""
    millis, sequence = (int(part) for part in stream_id.split("-"))
    return f"{millis}-{sequence - 1}" if sequence else f"{millis - 1}-{2**64 - 1}"


# --- The stream --------------------------------------------------------------------------------


def stream_position(after: str | None, last_event_id: str | None) -> str:
    """The stream id to resume after: the page's `after`, else the browser's Last-Event-ID, else "$" ("from now").

    ValueError naming the one that is not an event id: Redis would refuse it mid-stream.
    """
    for name, value in (("after", after), ("Last-Event-ID", last_event_id)):
        if value:
            try:
                return events.check_event_id(value)
            except ValueError as exc:
                raise ValueError(f"{name} {exc}") from None
    return "$"


def frame(payload: dict) -> str:
    """One server-sent event: the batch's last stream id, so a reconnect resumes after it."""
    return f"id: {payload['last']}\nevent: events\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"


def one_shot(run_id: int, after: str) -> str:
    """The whole answer of a server that cannot hold the connection: what is new, then "come back"."""
    payload = feed_payload(run_id, after) if after != "$" else None  # "$": only what comes from now on
    return f"retry: {RETRY_MS}\n\n" + (frame(payload) if payload else "") + "event: end\ndata: {}\n\n"


SIGNED_OUT = "event: end\ndata: {\"reason\": \"signed out\"}\n\n"


async def stream(run_id: int, after: str, session_key: str):
    """Frames for as long as the page listens and its session lasts: each batch of new events, or a keep-alive comment.

    Every heartbeat (LAB_STREAM_HEARTBEAT seconds; a keep-alive comment this often also keeps
    proxies from closing an idle stream) it checks that the session still owns the run, and
    ends the stream when it does not.
    """
    import redis.asyncio

    heartbeat = settings.LAB_STREAM_HEARTBEAT
    client = redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_timeout=heartbeat + 10)
    key = events.stream_key(run_id)
    render = sync_to_async(timed_payload, thread_sensitive=False)
    still_allowed = sync_to_async(session_owns_run, thread_sensitive=False)
    checked = time.monotonic()
    entry = pace.new_page_entry(run_id)  # counted among the pages open while it lasts (labs/pace.py)
    try:
        yield f"retry: {RETRY_MS}\n\n"
        await pace.keep_open(client, entry)
        if after == "$":
            newest = await client.xrevrange(key, count=1)
            after = newest[0][0].decode() if newest else "0-0"
        while True:
            if time.monotonic() - checked >= heartbeat:
                if not await still_allowed(session_key, run_id):
                    yield SIGNED_OUT
                    return
                await pace.keep_open(client, entry)
                checked = time.monotonic()
            payload, cost = await render(run_id, after)  # what came in while we were away or rendering
            if payload:
                after = payload["last"]
                yield frame(payload)
                await asyncio.sleep(min(MAX_REST_S, FAIR_SHARE * cost))  # events meanwhile go in the next frame
                continue
            woke = await client.xread({key: after}, count=1, block=int(heartbeat * 1000))
            if not woke:
                yield ": keep-alive\n\n"
    except asyncio.CancelledError:
        raise
    finally:
        try:
            await pace.closed(client, entry)
        except Exception:  # noqa: BLE001 - Redis gone: the entry ages out of the count by itself
            pass
        await client.aclose()


def site_origins(request: HttpRequest) -> set[str]:
    """The origins of the site's own pages, as seen from a request to the stream.

    - the stream's own origin: one origin for everything (a reverse proxy, or a server without
      the live process answering the stream itself);
    - CSRF_TRUSTED_ORIGINS: the origins an operator declared as the site's;
    - without LAB_LIVE_URL, the layout of `make run`: the pages on the same host, one port below.
    """
    own = f"{request.scheme}://{request.get_host()}"
    origins = {own, *settings.CSRF_TRUSTED_ORIGINS}
    if settings.LAB_LIVE_URL is None:
        host, port = split_domain_port(request.get_host())
        port = int(port or (443 if request.is_secure() else 80))
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        origins.add(f"{request.scheme}://{host}:{port - 1}")
    return origins


def origin_refused(request: HttpRequest) -> bool:
    """A browser names the page's origin in a cross-origin request; refuse any that is not the site's.

    A request without an Origin (the same origin, or not a browser) carries no other site's intent.
    """
    origin = request.headers.get("Origin")
    return origin is not None and origin not in site_origins(request)


def cross_origin_page(request: HttpRequest) -> str | None:
    """The site's page on another port that may read the stream with its cookies (CORS), if that is who asks."""
    origin = request.headers.get("Origin")
    own = f"{request.scheme}://{request.get_host()}"
    return origin if origin and origin != own and not origin_refused(request) else None


def live_base(request: HttpRequest) -> str:
    """Where the live process is: LAB_LIVE_URL if set ("" for "/", the page's own origin behind a proxy),
    else the live process of `make run` (this port + 1)."""
    base = getattr(settings, "LAB_LIVE_URL", None)
    if base is None:
        domain = split_domain_port(request.get_host())[0]
        host = f"[{domain}]" if ":" in domain else domain
        base = f"{request.scheme}://{host}:{int(request.get_port()) + 1}"
    return base.rstrip("/")


def live_origin(request: HttpRequest) -> str:
    """The live process's origin, which lab pages connect to (the Content-Security-Policy's connect-src);
    "" when it is the page's own ('self')."""
    parts = urlsplit(live_base(request))
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""


def stream_url(request: HttpRequest, run_id: int) -> str:
    """Where the page opens its stream: under /live/, which only the live process serves."""
    return live_base(request) + reverse("live:stream", args=[run_id])
