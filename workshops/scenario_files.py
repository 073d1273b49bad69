"""Scenario files: a workshop's timeline of steps, one YAML file each under workshops/scenarios/.

The format is in workshops/scenarios/FORMAT.md. `read_scenarios` reads every file and
collects every problem as "file:line: message", the line being the step's (or the key's)
own line in the file, so `check_content` can list them all; `scenarios()` is what the
player and the grid use, and raises `ScenarioFileError` with the first problem.

A step's fault, clear target, template and channels are checked against the engine itself
(`labs.pipeline.faults.validate`, the seeded templates, the channels of the topology), and
every number against the bounds the player keeps to, so a file that passes here plays.
"""

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from courseware.content_files import YamlDocument, display_name, parse_yaml
from courseware.content_report import ContentReport
from labs.catalogue import CATALOGUE
from labs.pipeline import faults
from labs.pipeline.topology import PROVIDERS
from labs.seeding import TEMPLATES, USERS_PER_RUN
from workshops.broadcasts import MAX_DURATION_S
from workshops.models import Announcement
from workshops.notices import duration_text

SCENARIOS_DIR = Path(__file__).resolve().parent / "scenarios"
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")

# Each step is a mapping with exactly one of these keys (what it does) and an optional `note`.
STEP_KINDS = ("announce", "fault", "clear", "burst", "poison", "send", "wait", "next")
CLEAR_ALL_FAULTS = "faults"  # `clear: faults` ends every broadcast in force; `clear: <target>` those on one target
CLEAR_ANNOUNCEMENT = "announcement"
MAX_STEPS = 60
MIN_FAULT_S = 5  # as on the grid's broadcast form
MAX_WAIT_S = 3600
MAX_BURST = 500  # per run: the relay sends a step's traffic itself, and a tick should not hold it for long
MAX_POISON = 20
ANNOUNCEMENT_LENGTH = Announcement._meta.get_field("text").max_length
TOP_KEYS = {"slug", "title", "summary", "brief", "labs", "steps"}
OPTIONAL_TOP_KEYS = {"labs"}


class ScenarioFileError(Exception):
    pass


@dataclass(frozen=True)
class ScenarioStep:
    number: int  # from 1
    kind: str  # one of STEP_KINDS
    line: int  # the step's line in its file
    text: str = ""  # announce: the banner; next: what the instructor does before pressing Next
    target: str = ""  # fault, clear
    fault: dict = field(default_factory=dict)  # fault: the settings, as faults.validate returns them
    seconds: int = 0  # fault: how long it lasts; wait: how long the timeline waits
    count: int = 0  # burst, poison, send: messages per run
    template: str = ""  # burst, send
    channels: tuple[str, ...] = ()  # send (empty: the template's own)
    note: str = ""  # a line for the instructor on the timeline

    @property
    def waits(self) -> bool:
        """Whether the timeline stays on this step: for its seconds (wait) or for the instructor (next)."""
        return self.kind in ("wait", "next")

    def describe(self) -> str:
        """The step in a line, for the timeline: "Inject email-primary down for 3 min"."""
        if self.kind == "announce":
            return f"Announce “{self.text}”"
        if self.kind == "fault":
            settings = ", ".join(name if value is True else f"{name} {value:g}" for name, value in self.fault.items())
            return f"Inject {self.target} {settings} for {duration_text(self.seconds)}"
        if self.kind == "clear":
            if self.target == CLEAR_ANNOUNCEMENT:
                return "Take the announcement down"
            return "End every fault injected" if self.target == CLEAR_ALL_FAULTS else f"End the faults on {self.target}"
        if self.kind == "burst":
            return f"Send a campaign of {self.count} × {self.template} into every run"
        if self.kind == "poison":
            return f"Send {self.count} poison message(s) into every run"
        if self.kind == "send":
            by = f" by {', '.join(self.channels)}" if self.channels else ""
            return f"Send {self.count} × {self.template}{by} into every run"
        if self.kind == "wait":
            return f"Wait {duration_text(self.seconds)}"
        return f"Wait for your Next: {self.text}"


@dataclass(frozen=True)
class Scenario:
    slug: str
    title: str
    summary: str
    brief: str  # Markdown the instructor reads before playing: what to watch, what to ask
    labs: tuple[str, ...]  # the labs it suits; empty: every lab
    steps: tuple[ScenarioStep, ...]
    source: str  # the file, for messages

    def suits(self, lab: str) -> bool:
        return not self.labs or lab in self.labs

    @property
    def waiting_s(self) -> int:
        """How long its wait steps last in all (the instructor's Next steps add their own time)."""
        return sum(step.seconds for step in self.steps if step.kind == "wait")

    @property
    def waiting_text(self) -> str:
        return duration_text(self.waiting_s)


# --- Reading -----------------------------------------------------------------------------------


class _File:
    """One scenario file being read: its parsed YAML with lines, and the problems found so far."""

    def __init__(self, path: Path, doc: YamlDocument, errors: list[str]):
        self.name = display_name(path)
        self.doc = doc
        self.errors = errors

    def problem(self, where: tuple, message: str) -> None:
        self.errors.append(f"{self.name}:{self.doc.line(*where)}: {message}")

    def text(self, value, where: tuple, what: str, limit: int | None = None) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.problem(where, f"{what} must be non-empty text")
            return None
        if limit is not None and len(value.strip()) > limit:
            self.problem(where, f"{what} is {len(value.strip())} characters long; at most {limit}")
            return None
        return value.strip()

    def whole(self, value, where: tuple, what: str, low: int, high: int) -> int | None:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            self.problem(where, f"{what} must be a whole number from {low:,} to {high:,}, not {value!r}")
            return None
        return value

    def mapping(self, value, where: tuple, what: str, required: set[str], optional: set[str]) -> dict | None:
        if not isinstance(value, dict):
            self.problem(where, f"{what} must be a mapping with {', '.join(sorted(required | optional))}")
            return None
        found = True
        for key in sorted(required - value.keys()):
            self.problem(where, f"{what} is missing '{key}'")
            found = False
        for key in sorted(map(str, value.keys() - required - optional)):
            self.problem((*where, key), f"{what} has an unknown key '{key}' (expected {', '.join(sorted(required | optional))})")
            found = False
        return value if found else None


TEMPLATE_NAMES = tuple(name for name, *_ in TEMPLATES)


def _template(file: _File, value, where: tuple, label: str) -> str | None:
    if value not in TEMPLATE_NAMES:
        file.problem(where, f"{label}: no seeded template {value!r}; choose from {', '.join(TEMPLATE_NAMES)}")
        return None
    return value


def _read_step(file: _File, raw, number: int) -> ScenarioStep | None:
    where = ("steps", number - 1)
    label = f"step {number}"
    if not isinstance(raw, dict):
        file.problem(where, f"{label} must be a mapping with one of {', '.join(STEP_KINDS)}")
        return None
    kinds = [key for key in raw if key in STEP_KINDS]
    if len(kinds) != 1:
        file.problem(where, f"{label} must have exactly one of {', '.join(STEP_KINDS)} (found {', '.join(kinds) or 'none'})")
        return None
    kind = kinds[0]
    allowed = {kind, "note"} | ({"for"} if kind == "fault" else set())
    unknown = sorted(map(str, raw.keys() - allowed))
    for key in unknown:
        why = " ('for' belongs to a fault step)" if key == "for" else ""
        file.problem((*where, key), f"{label} ({kind}) has an unknown key '{key}'{why}")
    if unknown:
        return None
    note = file.text(raw["note"], (*where, "note"), f"{label}'s note", 200) if "note" in raw else ""
    if note is None:
        return None
    step = {"number": number, "kind": kind, "line": file.doc.line(*where), "note": note}
    value, at = raw[kind], (*where, kind)
    if kind in ("announce", "next"):
        text = file.text(value, at, f"{label}'s {kind}", ANNOUNCEMENT_LENGTH if kind == "announce" else 300)
        return ScenarioStep(**step, text=text) if text else None
    if kind == "wait":
        seconds = file.whole(value, at, f"{label}'s wait (seconds)", 1, MAX_WAIT_S)
        return ScenarioStep(**step, seconds=seconds) if seconds else None
    if kind == "clear":
        choices = (*faults.TARGETS, CLEAR_ALL_FAULTS, CLEAR_ANNOUNCEMENT)
        if value not in choices:
            file.problem(at, f"{label} clears {value!r}; choose a fault target, '{CLEAR_ALL_FAULTS}' or '{CLEAR_ANNOUNCEMENT}'")
            return None
        return ScenarioStep(**step, target=value)
    if kind == "fault":
        settings = file.mapping(value, at, f"{label}'s fault", {"target"}, set(faults.PROVIDER_FAULTS) | set(faults.PIPELINE_FAULTS))
        if "for" not in raw:
            file.problem(where, f"{label} needs 'for': how many seconds the fault lasts (the relay ends it then)")
            return None
        seconds = file.whole(raw["for"], (*where, "for"), f"{label}'s 'for' (seconds)", MIN_FAULT_S, MAX_DURATION_S)
        if settings is None or seconds is None:
            return None
        settings = dict(settings)
        target = settings.pop("target")
        try:
            fault = faults.validate(target, settings)
        except (ValueError, TypeError) as exc:
            file.problem(at, f"{label}: {exc}")
            return None
        if not fault:
            file.problem(at, f"{label}: say what goes wrong with {target} (a fault of labs.pipeline.faults)")
            return None
        return ScenarioStep(**step, target=target, fault=fault, seconds=seconds)
    if kind == "burst":
        burst = file.mapping(value, at, f"{label}'s burst", {"count"}, {"template"})
        if burst is None:
            return None
        count = file.whole(burst["count"], (*at, "count"), f"{label}'s count", 1, MAX_BURST)
        template = _template(file, burst.get("template", "weekly_digest"), (*at, "template"), label)
        return ScenarioStep(**step, count=count, template=template) if count and template else None
    if kind == "poison":
        poison = file.mapping(value, at, f"{label}'s poison", {"count"}, set())
        count = poison and file.whole(poison["count"], (*at, "count"), f"{label}'s count", 1, MAX_POISON)
        return ScenarioStep(**step, count=count) if count else None
    send = file.mapping(value, at, f"{label}'s send", {"template", "count"}, {"channels"})
    if send is None:
        return None
    count = file.whole(send["count"], (*at, "count"), f"{label}'s count (users 1 to count get one each)", 1, USERS_PER_RUN)
    template = _template(file, send["template"], (*at, "template"), label)
    channels = send.get("channels", [])
    if not isinstance(channels, list) or not set(channels) <= set(PROVIDERS):
        file.problem((*at, "channels"), f"{label}'s channels must be a list of {', '.join(PROVIDERS)}")
        return None
    return ScenarioStep(**step, count=count, template=template, channels=tuple(channels)) if count and template else None


def read_scenario(path: Path, errors: list[str]) -> Scenario | None:
    """The scenario in `path`, or None with its problems appended to `errors`."""
    name = display_name(path)
    doc = parse_yaml(path.read_text(encoding="utf-8"), name, 1, errors)
    if doc is None:
        return None
    file = _File(path, doc, errors)
    raw = file.mapping(doc.data, (), "a scenario file", TOP_KEYS - OPTIONAL_TOP_KEYS, OPTIONAL_TOP_KEYS)
    if raw is None:
        return None
    before = len(errors)
    slug = raw["slug"]
    if not isinstance(slug, str) or not SLUG.match(slug) or slug != path.stem:
        file.problem(("slug",), f"slug {slug!r} must be lowercase words joined by hyphens, and the file's name ({path.stem})")
    title = file.text(raw["title"], ("title",), "title", 120)
    summary = file.text(raw["summary"], ("summary",), "summary", 300)
    brief = file.text(raw["brief"], ("brief",), "brief")
    labs = raw.get("labs", [])
    if not isinstance(labs, list):
        file.problem(("labs",), "labs must be a list of lab slugs (leave it out: the scenario suits every lab)")
        labs = []
    for n, lab in enumerate(labs):
        if lab not in CATALOGUE:
            file.problem(("labs", n), f"unknown lab {lab!r}; choose from {', '.join(CATALOGUE)}")
    steps = raw["steps"]
    if not isinstance(steps, list) or not 1 <= len(steps) <= MAX_STEPS:
        file.problem(("steps",), f"steps must be a list of 1 to {MAX_STEPS} steps")
        return None
    read = [_read_step(file, step, number) for number, step in enumerate(steps, start=1)]
    if len(errors) > before:
        return None
    return Scenario(slug, title, summary, brief, tuple(labs), tuple(read), name)


def read_scenarios(directory: Path | None = None) -> tuple[dict[str, Scenario], list[str]]:
    """Every valid scenario in `directory` (SCENARIOS_DIR by default) by slug, in title order, and every problem found."""
    errors: list[str] = []
    found = [read_scenario(path, errors) for path in sorted((directory or SCENARIOS_DIR).glob("*.yaml"))]
    valid = sorted((s for s in found if s is not None), key=lambda s: s.title.lower())
    return {s.slug: s for s in valid}, errors


@functools.cache
def scenarios() -> dict[str, Scenario]:
    """The scenarios the player and the grid use; ScenarioFileError naming the file and line of any problem."""
    found, errors = read_scenarios()
    if errors:
        more = f" (and {len(errors) - 1} more: run manage.py check_content)" if len(errors) > 1 else ""
        raise ScenarioFileError(errors[0] + more)
    return found


def check_scenarios() -> ContentReport:
    """For `manage.py check_content`."""
    found, errors = read_scenarios()
    steps = sum(len(s.steps) for s in found.values())
    return ContentReport(f"{len(found)} scenarios ({steps} steps) checked: {len(errors)} error(s)", errors, [])
