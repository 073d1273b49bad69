"""Lab 9's simulated services, over real HTTP: a user-preferences service and a template service
(lessons: network-calls, circuit-breakers-bulkheads).

The live process serves them, as async views under /live/services/: a slow answer is an
`asyncio.sleep`, so a hundred calls held open cost it nothing, and they never occupy the web
process's workers, which serve every learner's pages (a web worker calling a service on its own
web process could also wait for itself). The API's synchronous path (labs.pipeline.sync_chain)
calls them at LAB_SERVICES_URL.

Each service works on at most CAPACITY requests of a run at a time; the others wait their turn,
in order, and that wait is part of their latency, as in a real server's backlog. A request's turn:
1. If its deadline (X-Deadline-Ms) passed while it waited, it is dropped: 504, no work done.
2. The run's fault for the service applies (labs.pipeline.faults): down answers 503 at once,
   without waiting its turn; error_rate answers 503 after the usual work; latency_ms, give or
   take latency_jitter_ms, is added to the work.
3. The work takes WORK_MS plus that latency, cut short at the deadline if there is one. The
   template service also asks the preferences service for the user's locale, with the run's call
   policy: a chain of two hops.
4. Work that finishes after its caller gave up (X-Caller-Timeout-Ms, what a trace would show) is
   counted as wasted: nobody was waiting for it.
Like most services, these do not notice a caller hanging up: the work goes on (asyncio.shield)
unless a deadline stops it.
"""

import asyncio
import random
import time
from dataclasses import dataclass, replace

import httpx
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, JsonResponse
from django.utils.crypto import constant_time_compare

from labs.models import Channel, LabRun, Recipient, Template
from labs.pipeline import faults, sync_chain, sync_load
from labs.pipeline.topology import PREFERENCES_SERVICE, TEMPLATE_SERVICE

CAPACITY = 4  # requests of one run a service works on at once
WORK_MS = 20  # a healthy answer's work
FAULT_READ_S = 0.25
# The template service leaves itself this long, out of its caller's deadline, to answer after its own call.
ANSWER_MARGIN_S = 0.05

# Per (run, service), in this process (one process, one event loop): the queue, and the fault as last read.
_capacity: dict[tuple[int, str], asyncio.Semaphore] = {}
_faults: dict[tuple[int, str], tuple[float, dict]] = {}
_client: httpx.AsyncClient | None = None


@dataclass(frozen=True)
class Incoming:
    """What a call tells the service besides its path."""

    run_id: int
    service: str
    load: int
    arrived: float  # monotonic
    deadline_at: float | None  # when the caller stops waiting, if it said (a propagated deadline)
    gives_up_at: float | None  # when the caller gives up, for the wasted-work count only

    @classmethod
    def of(cls, request: HttpRequest, run_id: int, service: str) -> "Incoming":
        now = time.monotonic()

        def at(header: str) -> float | None:
            raw = request.headers.get(header, "")
            return now + int(raw) / 1000 if raw.isdigit() else None

        load = request.headers.get(sync_chain.LOAD_HEADER, "0")
        return cls(run_id, service, int(load) if load.isdigit() else 0, now,
                   at(sync_chain.DEADLINE_HEADER), at(sync_chain.CALLER_TIMEOUT_HEADER))  # fmt: skip


class DeadlinePassed(Exception):
    pass


async def _serve(request: HttpRequest, run_id: int, service: str, work) -> JsonResponse:
    if not isinstance(request, ASGIRequest):
        return JsonResponse({"error": "lab services are served by the live process"}, status=404)
    if not constant_time_compare(request.headers.get(sync_chain.TOKEN_HEADER, ""), sync_chain.run_token(run_id)):
        return JsonResponse({"error": "this service answers its run's own callers only"}, status=403)
    incoming = Incoming.of(request, run_id, service)
    # Shielded: a caller that hangs up does not stop the work (only a deadline does).
    return await asyncio.shield(asyncio.ensure_future(_turn(incoming, work)))


async def _fault(run_id: int, service: str, fresh: bool = False) -> dict:
    """The service's fault: `fresh` for a new call; work in progress rereads it at most every FAULT_READ_S."""
    now = time.monotonic()
    read_at, fault = _faults.get((run_id, service), (0.0, {}))
    if fresh or now - read_at >= FAULT_READ_S:
        fault = await sync_to_async(faults.fault_for, thread_sensitive=False)(run_id, service)
        _faults[run_id, service] = (now, fault)
    return fault


async def _turn(incoming: Incoming, work) -> JsonResponse:
    run_id, service = incoming.run_id, incoming.service
    fault = await _fault(run_id, service, fresh=True)
    if fault.get("down"):
        await _counted(incoming, "received", "failed")
        return JsonResponse({"error": f"{service} is down"}, status=503)
    async with _capacity.setdefault((run_id, service), asyncio.Semaphore(CAPACITY)):
        try:
            if incoming.deadline_at is not None and time.monotonic() >= incoming.deadline_at:
                raise DeadlinePassed
            left = None if incoming.deadline_at is None else incoming.deadline_at - time.monotonic()
            response = await asyncio.wait_for(_work(incoming, work), timeout=left)
        except (DeadlinePassed, TimeoutError):
            await _counted(incoming, "received", "dropped")
            return JsonResponse({"error": "deadline exceeded: the caller has stopped waiting"}, status=504)
    finished = time.monotonic()
    wasted = incoming.gives_up_at is not None and finished > incoming.gives_up_at
    await _counted(incoming, "received", "served", *(["wasted"] if wasted else []), *(["failed"] if response.status_code >= 500 else []))
    return response


async def _work(incoming: Incoming, work) -> JsonResponse:
    """WORK_MS, plus the fault's latency: the latency in force, so work in progress ends
    as soon as a slow service is mended (as a restart would end it)."""
    started = time.monotonic()
    draw = random.uniform(-1, 1)  # where in the jitter this request falls, kept if the fault changes
    while True:
        fault = await _fault(incoming.run_id, incoming.service)
        jitter = fault.get("latency_jitter_ms", 0)
        latency_s = (WORK_MS + max(0, fault.get("latency_ms", 0) + round(draw * jitter))) / 1000
        left = started + latency_s - time.monotonic()
        if left <= 0:
            break
        await asyncio.sleep(min(left, FAULT_READ_S))
    if random.random() < fault.get("error_rate", 0.0):
        return JsonResponse({"error": f"{incoming.service} failed (injected error rate)"}, status=503)
    return await work(incoming)


async def _counted(incoming: Incoming, *names: str) -> None:
    """Count what became of a call, once it is over (one trip to Redis)."""
    await sync_to_async(sync_load.count_service, thread_sensitive=False)(incoming.run_id, incoming.load, incoming.service, *names)


# --- The preferences service ---------------------------------------------------------------------


def _preferences_of(run_id: int, user_id: int) -> dict | None:
    recipient = Recipient.objects.filter(run_id=run_id, number=user_id).first()
    if recipient is None:
        return None
    return {"user_id": user_id, "channels": {c: recipient.opted_in(c) for c in Channel.values}, "locale": recipient.locale}


async def preferences(request: HttpRequest, run_id: int, user_id: int) -> JsonResponse:
    async def work(incoming: Incoming) -> JsonResponse:
        found = await sync_to_async(_preferences_of, thread_sensitive=False)(run_id, user_id)
        if found is None:
            return JsonResponse({"error": f"this run has no user {user_id}"}, status=404)
        return JsonResponse(found)

    return await _serve(request, run_id, PREFERENCES_SERVICE, work)


# --- The template service ------------------------------------------------------------------------


def _template_of(run_id: int, name: str) -> tuple[dict | None, sync_chain.CallPolicy]:
    template = Template.objects.filter(run_id=run_id, name=name).order_by("-version").first()
    run = LabRun.objects.filter(pk=run_id).only("call_policy").first()
    policy = sync_chain.CallPolicy.of(run) if run else sync_chain.CallPolicy()
    if template is None:
        return None, policy
    return {"name": name, "version": template.version, "channels": template.channels, "locales": sorted(template.bodies)}, policy


async def template(request: HttpRequest, run_id: int, name: str) -> JsonResponse:
    user = request.GET.get("user", "")

    async def work(incoming: Incoming) -> JsonResponse:
        found, policy = await sync_to_async(_template_of, thread_sensitive=False)(run_id, name)
        if found is None:
            return JsonResponse({"error": f"this run has no template {name!r}"}, status=404)
        if not user.isdigit():
            return JsonResponse(found)
        locale = await _locale_of(incoming, int(user), policy)
        if locale is None:
            return JsonResponse({"error": "the template service could not reach the preferences service"}, status=503)
        return JsonResponse({**found, "locale": locale if locale in found["locales"] else "en"})

    return await _serve(request, run_id, TEMPLATE_SERVICE, work)


async def _locale_of(incoming: Incoming, user_id: int, policy: sync_chain.CallPolicy) -> str | None:
    """The user's locale, from the preferences service: the second hop of the chain, with the run's call
    policy and what is left of the caller's deadline. With the fallback on, English stands in."""
    # Only a deadline the caller sent can be passed on; without one there is none to honour, and this
    # hop's timeout is as long as its caller's: the caller's fires first, and the fallback comes too late.
    policy = replace(policy, deadline=incoming.deadline_at is not None)
    deadline_at = (incoming.deadline_at or 0.0) - ANSWER_MARGIN_S
    attempts = sync_chain.Attempts(incoming.run_id, TEMPLATE_SERVICE, PREFERENCES_SERVICE, policy, deadline_at, incoming.load)
    url = sync_chain.service_url(incoming.run_id, PREFERENCES_SERVICE, f"users/{user_id}")
    decide = sync_to_async(attempts.next_timeout, thread_sensitive=False)
    while True:
        try:
            timeout = await decide()
        except sync_chain.CallFailed:
            return "en" if policy.fallback else None
        try:
            response = await _service_client().get(url, headers=attempts.headers(timeout), timeout=timeout)
        except httpx.TimeoutException:
            await sync_to_async(sync_chain.timed_out, thread_sensitive=False)(attempts, timeout)
            continue
        except httpx.TransportError as exc:
            await sync_to_async(attempts.outcome, thread_sensitive=False)(False, f"unreachable ({type(exc).__name__})")
            continue
        try:
            answer = await sync_to_async(sync_chain.read_answer, thread_sensitive=False)(attempts, response)
        except sync_chain.NotFound:
            return "en"
        if answer is not None:
            return answer["locale"]


def _service_client() -> httpx.AsyncClient:
    global _client
    if _client is None:
        _client = httpx.AsyncClient(limits=httpx.Limits(max_connections=200, max_keepalive_connections=20))
    return _client
