"""Faultline's own figures, as its code has them, for the lessons and lab guides that state them.

A lesson or a lab guide states a figure of the pipeline (a threshold, a batch size, a lease, a
number of attempts, a timeout, a status code) with a marker that keeps the number readable in
the file:

    the breaker opens once the last {{ faultline.breaker_window_s = 10 }} seconds hold ...

The page shows the number as written ("10"). `manage.py check_content` compares every stated
number with the code's and fails, naming the file, the line and where the code keeps the
figure, when they differ: a change to the code then sends someone to reread the sentence
around the number (which often depends on it), instead of the page quietly showing a new
number in an old argument.

Each figure is read from where the code keeps it. Settings are read as the defaults written in
config/settings.py, not from this deployment's environment: the course describes what Faultline
ships. The live view's timings in the browser are read from static/js/labs.js, where each is a
`var NAME = N;`. The API's status codes live in its handlers rather than in constants, so they are listed
here and tests/test_figures.py checks that the API answers each of them.
"""

import ast
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

# {{ faultline.NAME = 1,000 }}: a name, and the number as the text states it.
MARKER = re.compile(r"\{\{\s*faultline\.(?P<name>[a-z][a-z0-9_]*)\s*=\s*(?P<value>-?[0-9][0-9,]*(?:\.[0-9]+)?)\s*\}\}")
# Anything that opens like a marker, to report one that is misspelt instead of showing it raw.
ANY_MARKER = re.compile(r"\{\{\s*faultline\b[^}]*\}\}|\{\{\s*faultline\b")

# What the API answers (labs/api.py, labs/pipeline/intake.py, config/ratelimits.py);
# tests/test_figures.py sends each request and checks the status.
API_STATUSES = {
    "status_accepted": 202,  # a new notification: recorded, not yet sent
    "status_replayed": 200,  # the same key and body again: the first intent
    "status_key_reused": 409,  # the same key with another body
    "status_invalid": 422,  # a field is invalid (named in the answer)
    "status_rate_limited": 429,  # over the run key's rate, with Retry-After
}


@dataclass(frozen=True)
class Figure:
    source: str  # where the code keeps it, for the error message
    read: Callable[[], float]


@functools.cache
def _settings_defaults() -> dict[str, object]:
    """`NAME = env_int("NAME", default, ...)` (or a plain constant) in config/settings.py: the default."""
    tree = ast.parse((Path(settings.BASE_DIR) / "config" / "settings.py").read_text())
    found: dict[str, object] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        value = node.value
        if isinstance(value, ast.Call) and len(value.args) >= 2 and isinstance(value.args[1], ast.Constant):
            found[node.targets[0].id] = value.args[1].value
        elif isinstance(value, ast.Constant):
            found[node.targets[0].id] = value.value
    return found


def _setting(name: str, scale: float = 1) -> Figure:
    return Figure(f"the default of {name} in config/settings.py", lambda: _settings_defaults()[name] / scale)


def _rate(name: str, period: str) -> Figure:
    """A django-ratelimit rate in config/settings.py, written per minute ("600/m") or per hour ("3/h")."""

    def read() -> float:
        count, _, written = str(_settings_defaults()[name]).partition("/")
        if written != period:
            raise ValueError(f"{name} is no longer a rate per {_PERIODS[period]} ({count}/{written})")
        return float(count)

    return Figure(f"the default of {name} in config/settings.py", read)


_PERIODS = {"m": "minute", "h": "hour"}


def _cache_socket_timeout_s() -> float:
    """The socket timeout of Django's cache in Redis (the rate limits' counters): redis_cache() in config/settings.py."""
    from config.settings import redis_cache

    return redis_cache("redis://127.0.0.1:6379/0", "")["default"]["OPTIONS"]["socket_timeout"]


def _api_batch_max() -> float:
    """How many notifications one `POST /api/notifications/batch` may carry (BatchIn in labs/api.py)."""
    from labs.api import BatchIn

    return BatchIn.model_json_schema()["properties"]["notifications"]["maxItems"]


def _breaker(field: str, scale: float = 1) -> Figure:
    from labs.pipeline.breaker import BreakerPolicy

    return Figure(f"BreakerPolicy.{field} in labs/pipeline/breaker.py", lambda: getattr(BreakerPolicy(), field) * scale)


def _constant(module: str, name: str, scale: float = 1) -> Figure:
    def read() -> float:
        import importlib

        return getattr(importlib.import_module(module), name) * scale

    return Figure(f"{name} in {module.replace('.', '/')}.py", read)


def _call_policy():
    from labs.pipeline.sync_chain import CallPolicy

    return CallPolicy()


def _run_default(field: str, scale: float = 1) -> Figure:
    def read() -> float:
        from labs.models import LabRun

        return LabRun._meta.get_field(field).default * scale

    return Figure(f"LabRun.{field}'s default in labs/models.py", read)


@functools.cache
def _procfile_options() -> dict[tuple[str, str], int]:
    """(process, option) -> number, for each `--option N` or `--option ${VAR:-N}` of a Procfile entry."""
    found = {}
    for line in (Path(settings.BASE_DIR) / "Procfile").read_text().splitlines():
        entry = re.match(r"^(\w+):", line)
        if entry:
            for option, number in re.findall(r"\s--([a-z-]+)\s+(?:\$\{\w+:-)?(\d+)(?:\}|\s|$)", line):
                found[entry[1], option] = int(number)
    return found


def _procfile(process: str, option: str) -> Figure:
    return Figure(f"the {process} process's --{option} in the Procfile", lambda: _procfile_options()[process, option])


# The lab page's live view keeps its timings as `var NAME = N;` at the top of this script.
LIVE_SCRIPT = Path("static") / "js" / "labs.js"


def _script_constant(name: str, scale: float = 1) -> Figure:
    def read() -> float:
        text = (Path(settings.BASE_DIR) / LIVE_SCRIPT).read_text(encoding="utf-8")
        match = re.search(rf"^\s*var {name} = (\d+(?:\.\d+)?);", text, re.MULTILINE)
        if match is None:
            raise ValueError(f"{LIVE_SCRIPT} no longer has `var {name} = <number>;`")
        return float(match[1]) * scale

    return Figure(f"{name} in {LIVE_SCRIPT.as_posix()}", read)


def _relay_idle_poll_ms() -> float:
    from labs.management.commands.relay import Command

    parser = Command().create_parser("manage.py", "relay")
    return parser.get_default("interval") * 1000


FIGURES: dict[str, Figure] = {
    # The circuit breaker (one per provider and run, shared through Redis).
    "breaker_window_s": _breaker("window_s"),
    "breaker_min_calls": _breaker("min_calls"),
    "breaker_error_rate_pct": _breaker("error_rate", 100),
    "breaker_open_for_s": _breaker("open_for_s"),
    # Service discovery (labs.pipeline.discovery).
    "instances_per_provider": _constant("labs.pipeline.topology", "INSTANCES_PER_PROVIDER"),
    "dns_ttl_s": _constant("labs.pipeline.discovery", "DEFAULT_TTL_S"),
    "registry_check_every_s": _constant("labs.pipeline.discovery", "CHECK_EVERY_S"),
    "registry_check_timeout_ms": _constant("labs.pipeline.discovery", "CHECK_TIMEOUT_MS"),
    "registry_failures_to_drop": _constant("labs.pipeline.discovery", "FAILURES_TO_DROP"),
    "registry_heartbeat_lease_s": _constant("labs.pipeline.discovery", "HEARTBEAT_LEASE_S"),
    "error_window_gap_s": _constant("labs.pipeline.discovery", "EPISODE_GAP_S"),
    # Retries.
    "max_attempts": _run_default("max_attempts"),
    "retry_base_ms": _run_default("retry_base_ms"),
    "retry_base_s": _run_default("retry_base_ms", 1 / 1000),
    "retry_cap_ms": _run_default("retry_cap_ms"),
    "retry_cap_s": _run_default("retry_cap_ms", 1 / 1000),
    "retry_budget_window_s": _constant("labs.pipeline.budget", "WINDOW_S"),
    "retry_budget_ratio_pct": _constant("labs.pipeline.budget", "RATIO", 100),
    "retry_budget_floor": _constant("labs.pipeline.budget", "FLOOR"),
    # Time limits.
    "provider_timeout_ms": _setting("LAB_PROVIDER_TIMEOUT_MS"),
    "provider_timeout_s": _setting("LAB_PROVIDER_TIMEOUT_MS", 1000),
    "sending_lease_s": _setting("LAB_SENDING_LEASE"),
    "redeliver_after_s": _setting("LAB_REDELIVER_AFTER"),
    "message_deadline_s": _setting("LAB_MESSAGE_DEADLINE"),
    "message_deadline_min": _setting("LAB_MESSAGE_DEADLINE", 60),
    "visibility_timeout_s": _setting("CELERY_VISIBILITY_TIMEOUT"),
    "prefetch_multiplier": _setting("CELERY_WORKER_PREFETCH_MULTIPLIER"),
    # The relay and the workers.
    "relay_batch": _setting("LAB_RELAY_BATCH"),
    "relay_lease_s": _constant("labs.pipeline.relay", "LEASE_SECONDS"),
    "relay_idle_poll_ms": Figure("the relay command's --interval default (labs/management/commands/relay.py)", _relay_idle_poll_ms),
    "campaign_batch": _constant("labs.pipeline.campaign", "BATCH_SIZE"),
    "worker_processes": _procfile("worker", "concurrency"),
    "urgent_worker_processes": _procfile("urgent", "concurrency"),
    "users_per_run": _constant("labs.seeding", "USERS_PER_RUN"),
    "saga_stock": _constant("labs.seeding", "PRODUCT_STOCK"),
    # Rate limits (config/ratelimits.py, accounts/limits.py).
    "api_requests_per_minute": _rate("RATELIMIT_API_PER_KEY", "m"),
    "login_failures_per_account_per_minute": _rate("RATELIMIT_LOGIN_PER_ACCOUNT", "m"),
    "login_failures_per_address_per_minute": _rate("RATELIMIT_LOGIN_PER_ADDRESS", "m"),
    "signups_per_address_per_hour": _rate("RATELIMIT_SIGNUP_PER_ADDRESS", "h"),
    "password_resets_per_account_per_hour": _rate("RATELIMIT_RESET_PER_ACCOUNT", "h"),
    "password_resets_per_address_per_hour": _rate("RATELIMIT_RESET_PER_ADDRESS", "h"),
    "cache_socket_timeout_s": Figure("redis_cache()'s socket_timeout in config/settings.py", _cache_socket_timeout_s),
    "api_batch_max": Figure("BatchIn.notifications' max_length in labs/api.py", _api_batch_max),
    # The web process.
    "web_workers": _procfile("web", "workers"),
    "web_graceful_timeout_s": _procfile("web", "graceful-timeout"),
    # The live view (labs/live.py, static/js/labs.js).
    "event_stream_length": _constant("labs.pipeline.events", "STREAM_LENGTH"),
    "stream_heartbeat_s": _setting("LAB_STREAM_HEARTBEAT"),
    "stream_retry_ms": _constant("labs.live", "RETRY_MS"),
    "live_fair_share": _constant("labs.live", "FAIR_SHARE"),
    "live_panels_gap_ms": _script_constant("PANELS_MIN_MS"),
    "live_panels_max_gap_ms": _script_constant("PANELS_MAX_GAP_MS"),
    "panels_cpu_percent": _setting("LAB_PANELS_CPU_PERCENT"),
    "panels_paced_max_gap_s": _constant("labs.pace", "MAX_GAP_MS", 1 / 1000),
    "live_reconnect_min_ms": _script_constant("RECONNECT_MIN_MS"),
    "live_reconnect_base_ms": _script_constant("RECONNECT_BASE_MS"),
    "live_reconnect_cap_s": _script_constant("RECONNECT_CAP_MS", 1 / 1000),
    "live_fallback_after_failures": _script_constant("FALLBACK_AFTER_FAILURES"),
    "live_fallback_again_ms": _script_constant("FALLBACK_AGAIN_MS"),
    "live_retry_every_s": _script_constant("LIVE_RETRY_EVERY_MS", 1 / 1000),
    # Lab 9's synchronous path (labs/pipeline/sync_chain.py, sync_load.py, labs/services.py).
    "sync_client_timeout_s": _constant("labs.pipeline.sync_chain", "CLIENT_TIMEOUT_MS", 1 / 1000),
    "sync_api_workers": _constant("labs.pipeline.sync_load", "API_WORKERS"),
    "sync_service_capacity": _constant("labs.services", "CAPACITY"),
    "sync_service_work_ms": _constant("labs.services", "WORK_MS"),
    "sync_answer_margin_ms": _constant("labs.services", "ANSWER_MARGIN_S", 1000),
    "sync_default_timeout_ms": Figure("CallPolicy.timeout_ms in labs/pipeline/sync_chain.py", lambda: _call_policy().timeout_ms),
    "sync_default_retries": Figure("CallPolicy.retries in labs/pipeline/sync_chain.py", lambda: _call_policy().retries),
    # The API's answers.
    **{name: Figure("API_STATUSES in labs/figures.py, checked against the API by tests/test_figures.py", lambda code=code: code)
       for name, code in API_STATUSES.items()},
}  # fmt: skip


@dataclass(frozen=True)
class Statement:
    """One figure as a text states it."""

    name: str
    stated: str  # as written, e.g. "30,000"
    line: int  # 1-based, within the text it was found in

    @property
    def number(self) -> float:
        return float(self.stated.replace(",", ""))


def fill(text: str) -> str:
    """The text as a reader sees it: each marker replaced by the number it states."""
    return MARKER.sub(lambda match: match["value"], text)


def statements(text: str) -> tuple[list[Statement], list[tuple[int, str]]]:
    """The figures a text states, and (line, problem) for markers that cannot be read.

    A marker may break across lines (a YAML tool that rewraps a file may break one); its line
    is the line it starts on."""
    found = [Statement(m["name"], m["value"], _line_of(text, m.start())) for m in MARKER.finditer(text)]
    blanked = MARKER.sub(lambda m: " " * len(m[0]), text)  # the same offsets, without the good markers
    malformed = [(_line_of(text, m.start()), f"'{m[0]}' is not a figure marker; write {{{{ faultline.NAME = NUMBER }}}}")
                 for m in ANY_MARKER.finditer(blanked)]  # fmt: skip
    return found, malformed


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def disagreement(statement: Statement) -> str | None:
    """Why the code does not have the stated figure, or None when it does."""
    figure = FIGURES.get(statement.name)
    if figure is None:
        return f"'{statement.name}' is not one of Faultline's figures (labs/figures.py lists them)"
    try:
        actual = figure.read()
    except (LookupError, ValueError, OSError) as exc:  # the code moved the figure: say where it was looked for
        return f"{statement.name} can no longer be read from the code ({figure.source}): {exc}"
    if abs(actual - statement.number) > 1e-9:
        return f"states {statement.name} = {statement.stated}, but the code has {actual:g} ({figure.source})"
    return None


def problems(text: str, where: str, first_line: int = 1) -> list[str]:
    """Every marker in `text` that cannot be read or that the code contradicts, as "where:line: problem"."""
    found, malformed = statements(text)
    reported = [f"{where}:{first_line + line - 1}: {problem}" for line, problem in malformed]
    for statement in found:
        problem = disagreement(statement)
        if problem:
            reported.append(f"{where}:{first_line + statement.line - 1}: {problem}")
    return reported
