"""The notification API's synchronous path in lab 9 (lessons: network-calls, circuit-breakers-bulkheads).

When a run's chain is on (`LabRun.call_policy["chain"]`), accepting one notification first asks
two services over HTTP (labs/services.py serves them, in the live process):
1. The preferences service: the user's channels and locale. A good answer is kept per user; with
   the fallback on, that kept answer stands in when the service cannot be reached.
2. The template service: is there such a template, on which channels. It asks the preferences
   service for the user's locale itself, through the same call policy: a chain of two hops.
3. Then the ordinary intake writes the intent and its outbox rows (labs.pipeline.intake).
Every call follows the run's call policy (`CallPolicy`), as a company's one client library would:
  - with the breaker on, a circuit breaker per caller and service (labs.pipeline.breaker), open for
    `cooldown_s` seconds, refuses a call at once;
  - each attempt has a timeout, and a failed attempt is retried at once, `retries` more times;
  - with the deadline on, the time the API's client has left caps each attempt and travels with
    the call (the X-Deadline-Ms header), so a service drops work nobody is waiting for.
Each request is recorded (`SyncRequest`) with its latency and outcome as its client saw them.
"""

import functools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields

import httpx
from django.conf import settings
from django.utils import timezone
from django.utils.crypto import salted_hmac

from config.redis_client import get_redis, key
from labs.models import LabRun, SyncOutcome, SyncRequest
from labs.pipeline import events, intake
from labs.pipeline.breaker import BreakerPolicy, ProviderBreaker
from labs.pipeline.topology import PREFERENCES_SERVICE, TEMPLATE_SERVICE

# The API's clients (an app, a gateway) give up on a request after this long.
CLIENT_TIMEOUT_MS = 3000
DEADLINE_HEADER = "X-Deadline-Ms"  # what the caller has left, in ms: the service may stop once it is spent
# When this attempt's caller gives up, in ms from sending. Only bookkeeping, as a trace would show it: the
# services count work that finished after it as wasted, and act on it only through DEADLINE_HEADER.
CALLER_TIMEOUT_HEADER = "X-Caller-Timeout-Ms"
LOAD_HEADER = "X-Load"  # which of the run's loads the call belongs to (0: none), for the lab's counts
TOKEN_HEADER = "X-Run-Token"
API = "api"  # the caller's name in breaker names: "api>preferences-service"
# A request counts as in progress for this long at most (a process that died mid-request leaves its entry behind).
IN_PROGRESS_TTL_S = 60


@dataclass(frozen=True)
class CallPolicy:
    timeout_ms: int = 1000
    retries: int = 2
    breaker: bool = False
    cooldown_s: int = 5
    fallback: bool = False
    deadline: bool = False

    @classmethod
    def of(cls, run: LabRun) -> "CallPolicy":
        stored = run.call_policy or {}
        return cls(**{f.name: stored[f.name] for f in fields(cls) if f.name in stored})


# Each whole-number setting's range: a timeout too short to reach the service at all, or retries and
# cooldowns long enough to keep a worker busy for minutes, teach nothing.
POLICY_RANGES = {"timeout_ms": (10, 10_000), "retries": (0, 5), "cooldown_s": (1, 120)}
POLICY_SWITCHES = ("breaker", "fallback", "deadline")


def validate_policy(changes: dict) -> dict:
    """The changes as typed values; ValueError naming the setting when one is wrong."""
    clean = {}
    for name, value in changes.items():
        if name in POLICY_SWITCHES:
            if not isinstance(value, bool):
                raise ValueError(f"call policy {name} must be true or false")
            clean[name] = value
        elif name in POLICY_RANGES:
            low, high = POLICY_RANGES[name]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"call policy {name} must be a whole number from {low:,} to {high:,}")
            clean[name] = value
        else:
            raise ValueError(f"{name!r} is not a call policy setting; choose from {', '.join([*POLICY_RANGES, *POLICY_SWITCHES])}")
    return clean


def chain_on(run: LabRun) -> bool:
    return bool((run.call_policy or {}).get("chain"))


def set_policy(run: LabRun, **changes) -> CallPolicy:
    """Change some of the run's call policy (the rest stays); it applies to the next call."""
    clean = validate_policy(changes)
    run.call_policy = {**(run.call_policy or {}), **clean}
    run.save(update_fields=["call_policy"])
    policy = CallPolicy.of(run)
    events.emit(run.pk, "call_policy_changed", policy=asdict(policy))
    return policy


def policy_text(policy: CallPolicy) -> str:
    """The policy in words: "timeout 250 ms, 2 retries, breaker off, no fallback, no deadline"."""
    retries = f"{policy.retries} {'retry' if policy.retries == 1 else 'retries'}"
    breaker = f"breaker on (cooldown {policy.cooldown_s} s)" if policy.breaker else "breaker off"
    return ", ".join([f"timeout {policy.timeout_ms} ms", retries, breaker, "fallback on" if policy.fallback else "no fallback",
                      "deadline passed on" if policy.deadline else "no deadline"])  # fmt: skip


def turn_on(run: LabRun) -> None:
    """Lab 9's runs: the synchronous path on, with the plain default policy."""
    run.call_policy = {"chain": True}
    run.save(update_fields=["call_policy"])


# --- Calls ---------------------------------------------------------------------------------


def run_token(run_id: int) -> str:
    """What a caller shows a service to speak for a run (the services answer only the run's own callers)."""
    return salted_hmac("labs.services", str(run_id)).hexdigest()


def service_url(run_id: int, service: str, path: str) -> str:
    return f"{settings.LAB_SERVICES_URL.rstrip('/')}/live/services/{run_id}/{service}/{path}"


def breaker_for(run_id: int, caller: str, service: str, policy: CallPolicy) -> ProviderBreaker:
    return ProviderBreaker(run_id, f"{caller}>{service}", BreakerPolicy(open_for_s=policy.cooldown_s))


class CallFailed(Exception):
    """No answer: every attempt failed, the breaker refused, or the deadline was spent."""

    def __init__(self, service: str, reason: str):
        super().__init__(f"{service}: {reason}")
        self.service = service
        self.reason = reason


class NotFound(Exception):
    """The service answered 404: the user or template does not exist (a healthy answer, never retried)."""


class Attempts:
    """The decisions of one call's retry loop, shared by the API (httpx, blocking) and the template
    service (httpx, async): whether another attempt may go, its timeout and headers, and what the
    breaker learns from each outcome."""

    def __init__(self, run_id: int, caller: str, service: str, policy: CallPolicy, deadline_at: float, load: int):
        self.run_id, self.caller, self.service, self.policy = run_id, caller, service, policy
        self.deadline_at, self.load = deadline_at, load
        self.breaker = breaker_for(run_id, caller, service, policy) if policy.breaker else None
        self.made = 0
        self.last_error = "no attempt made"

    def next_timeout(self) -> float:
        """The timeout (s) of the next attempt; CallFailed when none may be made."""
        if self.made > self.policy.retries:
            raise CallFailed(self.service, f"{self.last_error} ({self.made} attempts)" if self.made > 1 else self.last_error)
        timeout = self.policy.timeout_ms / 1000
        if self.policy.deadline:
            left = self.deadline_at - time.monotonic()
            if left <= 0.001:
                raise CallFailed(self.service, "the deadline passed before another attempt")
            timeout = min(timeout, left)
        if self.breaker is not None:
            allowed, changed = self.breaker.admit()
            self._announce(changed)
            if not allowed:
                raise CallFailed(self.service, "refused by the open circuit breaker")
        self.made += 1
        return timeout

    def headers(self, timeout: float) -> dict[str, str]:
        found = {TOKEN_HEADER: run_token(self.run_id), CALLER_TIMEOUT_HEADER: str(round(timeout * 1000)), LOAD_HEADER: str(self.load)}
        if self.policy.deadline:
            found[DEADLINE_HEADER] = str(round(timeout * 1000))
        return found

    def outcome(self, ok: bool, error: str = "") -> None:
        if not ok:
            self.last_error = error
        if self.breaker is not None:
            self._announce(self.breaker.record(ok))

    def _announce(self, changed) -> None:
        if changed is not None:
            events.emit(self.run_id, "breaker_changed", provider=f"{self.caller} → {self.service}", state=changed.state)


def read_answer(attempts: Attempts, response: httpx.Response) -> dict | None:
    """The answer's body if it is one, None to try again; NotFound for a 404 (a healthy answer)."""
    if response.status_code == 404:
        attempts.outcome(True)
        raise NotFound(response.json().get("error", "not found"))
    if response.status_code != 200:
        attempts.outcome(False, f"answered {response.status_code}")
        return None
    attempts.outcome(True)
    return response.json()


def timed_out(attempts: Attempts, timeout: float) -> None:
    attempts.outcome(False, f"no answer within {round(timeout * 1000)} ms")


def call(client: httpx.Client, attempts: Attempts, path: str) -> dict:
    """One call with its retries, blocking (the API's side)."""
    url = service_url(attempts.run_id, attempts.service, path)
    while True:
        timeout = attempts.next_timeout()
        try:
            response = client.get(url, headers=attempts.headers(timeout), timeout=timeout)
        except httpx.TimeoutException:
            timed_out(attempts, timeout)
            continue
        except httpx.TransportError as exc:
            attempts.outcome(False, f"unreachable ({type(exc).__name__})")
            continue
        answer = read_answer(attempts, response)
        if answer is not None:
            return answer


# --- The fallback: preferences kept from the last good answer --------------------------------------


def _kept_key(run_id: int, service: str) -> str:
    return key("run", str(run_id), "kept", service)


def keep_answer(run_id: int, service: str, name: str, answer: dict) -> None:
    """Keep a service's good answer about `name` (a user, a template), to stand in when the service fails."""
    get_redis().hset(_kept_key(run_id, service), name, json.dumps(answer))


def kept_answer(run_id: int, service: str, name: str) -> dict | None:
    raw = get_redis().hget(_kept_key(run_id, service), name)
    return json.loads(raw) if raw else None


def kept_preferences(run_id: int, user_id: int) -> dict | None:
    return kept_answer(run_id, PREFERENCES_SERVICE, str(user_id))


# --- Requests in progress: the busy API workers -------------------------------------------------


def _busy_key(run_id: int) -> str:
    return key("run", str(run_id), "api-busy")


@contextmanager
def in_progress(run_id: int, name: str) -> Iterator[int]:
    """Count a request as in progress on the synchronous path while the block runs; yields how many are, itself included."""
    redis = get_redis()
    now = time.time()
    with redis.pipeline() as pipe:
        pipe.zremrangebyscore(_busy_key(run_id), 0, now - IN_PROGRESS_TTL_S)
        pipe.zadd(_busy_key(run_id), {name: now})
        pipe.zcard(_busy_key(run_id))
        busy = pipe.execute()[-1]
    try:
        yield busy
    finally:
        redis.zrem(_busy_key(run_id), name)


def busy_workers(run_id: int) -> int:
    return get_redis().zcount(_busy_key(run_id), time.time() - IN_PROGRESS_TTL_S, "+inf")


# --- The synchronous path --------------------------------------------------------------------------


class ServiceUnavailable(Exception):
    """The API answers 503: a service it needs did not answer, and nothing could stand in."""


@dataclass
class Timing:
    """When a request arrived: `monotonic` for its deadline, `at` for the record."""

    monotonic: float
    at: object  # datetime

    @classmethod
    def now(cls) -> "Timing":
        return cls(time.monotonic(), timezone.now())


def accept(run: LabRun, request: intake.IntentRequest, client: httpx.Client, arrived: Timing | None = None,
           load: int = 0, request_name: str = "") -> intake.Accepted:  # fmt: skip
    """Accept one notification through the synchronous path, and record how its client saw it.

    Raises ServiceUnavailable (503) or intake.IntakeError (4xx) as the API answers them."""
    arrived = arrived or Timing.now()
    deadline_at = arrived.monotonic + CLIENT_TIMEOUT_MS / 1000
    policy = CallPolicy.of(run)
    record = {"outcome": SyncOutcome.FAILED, "busy": 0, "calls": 0, "error": ""}
    try:
        if policy.deadline and time.monotonic() >= deadline_at:
            # The client gave up while the request waited for a worker: with deadlines, nobody starts it.
            record.update(outcome=SyncOutcome.SKIPPED, error="the client had given up before a worker was free")
            raise ServiceUnavailable(record["error"])
        with in_progress(run.pk, request_name or f"request-{time.monotonic_ns()}") as busy:
            record["busy"] = busy
            accepted = _accept(run, request, client, policy, deadline_at, load, record)
        record["outcome"] = SyncOutcome.FALLBACK if record.get("fallback") else SyncOutcome.ACCEPTED
        return accepted
    except intake.IntakeError as exc:
        record.update(outcome=SyncOutcome.REJECTED, error=str(exc))
        raise
    except ServiceUnavailable as exc:
        record["error"] = record["error"] or str(exc)
        raise
    finally:
        latency = time.monotonic() - arrived.monotonic
        outcome = record["outcome"]
        if outcome not in (SyncOutcome.SKIPPED,) and latency > CLIENT_TIMEOUT_MS / 1000:
            outcome = SyncOutcome.TOO_LATE  # whatever the API answered, its client had stopped waiting
        SyncRequest.objects.create(run=run, load=load, arrived_at=arrived.at, latency_ms=round(latency * 1000), outcome=outcome,
                                   busy_workers=record["busy"], service_calls=record["calls"], error=record["error"][:300])  # fmt: skip


def _accept(run: LabRun, request: intake.IntentRequest, client: httpx.Client, policy: CallPolicy, deadline_at: float,
            load: int, record: dict) -> intake.Accepted:  # fmt: skip
    ask = functools.partial(_ask_or_kept, run, client, policy, deadline_at, load, record)
    preferences = ask(PREFERENCES_SERVICE, f"users/{request.user_id}", str(request.user_id), "user_id")
    template = ask(TEMPLATE_SERVICE, f"templates/{request.template}?user={request.user_id}", request.template, "template")
    if request.channels is None:
        preferred = [channel for channel in template["channels"] if preferences["channels"].get(channel)]
        request.channels = preferred or template["channels"]  # nothing preferred: the opt-out shows as suppressed
    [accepted] = intake.accept(run, [request])
    return accepted


def _ask_or_kept(run: LabRun, client: httpx.Client, policy: CallPolicy, deadline_at: float, load: int, record: dict,
                 service: str, path: str, name: str, field: str) -> dict:  # fmt: skip
    """The service's answer about `name` (kept for later), or with the fallback on, the answer last kept.
    A 404 is the request's fault (422 naming `field`); no answer at all is a 503."""
    attempts = Attempts(run.pk, API, service, policy, deadline_at, load)
    try:
        answer = call(client, attempts, path)
    except NotFound as exc:
        raise intake.IntakeError(422, {field: str(exc)}) from None
    except CallFailed as exc:
        kept = kept_answer(run.pk, service, name) if policy.fallback else None
        if kept is None:
            more = " and no answer kept from before" if policy.fallback else ""
            raise ServiceUnavailable(f"the {service.replace('-', ' ')} did not answer: {exc.reason}{more}") from None
        record["fallback"] = True
        return kept
    finally:
        record["calls"] += attempts.made
    keep_answer(run.pk, service, name, answer)
    return answer


def accept_one(run: LabRun, request: intake.IntentRequest) -> intake.Accepted:
    """Accept one notification as the API does: through the synchronous path when the run has one."""
    if not chain_on(run):
        [accepted] = intake.accept(run, [request])
        return accepted
    with new_client() as client:
        return accept(run, request, client)


def new_client() -> httpx.Client:
    """A client for the services; its timeouts are set per attempt."""
    return httpx.Client(limits=httpx.Limits(max_connections=32, max_keepalive_connections=8))


# --- What the lab reads -------------------------------------------------------------------------


def breaker_names() -> list[tuple[str, str]]:
    """(caller, service) of every breaker on the path: the API's two, and the template service's."""
    return [(API, PREFERENCES_SERVICE), (API, TEMPLATE_SERVICE), (TEMPLATE_SERVICE, PREFERENCES_SERVICE)]


def breaker_states(run: LabRun) -> dict[str, str]:
    policy = CallPolicy.of(run)
    return {f"{caller} → {service}": breaker_for(run.pk, caller, service, policy).state().state for caller, service in breaker_names()}

