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
ships. The API's status codes live in its handlers rather than in constants, so they are listed
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


def _rate_per_minute(name: str) -> Figure:
    """A django-ratelimit rate written per minute ("600/m") in config/settings.py."""

    def read() -> float:
        count, _, period = str(_settings_defaults()[name]).partition("/")
        if period != "m":
            raise ValueError(f"{name} is no longer a rate per minute ({count}/{period})")
        return float(count)

    return Figure(f"the default of {name} in config/settings.py", read)


def _breaker(field: str, scale: float = 1) -> Figure:
    from labs.pipeline.breaker import BreakerPolicy

    return Figure(f"BreakerPolicy.{field} in labs/pipeline/breaker.py", lambda: getattr(BreakerPolicy(), field) * scale)


def _constant(module: str, name: str, scale: float = 1) -> Figure:
    def read() -> float:
        import importlib

        return getattr(importlib.import_module(module), name) * scale

    return Figure(f"{name} in {module.replace('.', '/')}.py", read)


def _run_default(field: str, scale: float = 1) -> Figure:
    def read() -> float:
        from labs.models import LabRun

        return LabRun._meta.get_field(field).default * scale

    return Figure(f"LabRun.{field}'s default in labs/models.py", read)


@functools.cache
def _procfile_concurrency() -> dict[str, int]:
    """Worker processes per Procfile entry: `--concurrency N` or `--concurrency ${VAR:-N}`."""
    found = {}
    for line in (Path(settings.BASE_DIR) / "Procfile").read_text().splitlines():
        match = re.match(r"^(\w+):.*--concurrency\s+(?:\$\{\w+:-)?(\d+)", line)
        if match:
            found[match[1]] = int(match[2])
    return found


def _concurrency(process: str) -> Figure:
    return Figure(f"the {process} process's --concurrency in the Procfile", lambda: _procfile_concurrency()[process])


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
    "worker_processes": _concurrency("worker"),
    "urgent_worker_processes": _concurrency("urgent"),
    "users_per_run": _constant("labs.seeding", "USERS_PER_RUN"),
    # Rate limits (config/ratelimits.py, accounts/limits.py).
    "api_requests_per_minute": _rate_per_minute("RATELIMIT_API_PER_KEY"),
    "login_failures_per_account_per_minute": _rate_per_minute("RATELIMIT_LOGIN_PER_ACCOUNT"),
    "login_failures_per_address_per_minute": _rate_per_minute("RATELIMIT_LOGIN_PER_ADDRESS"),
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
    actual = figure.read()
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
