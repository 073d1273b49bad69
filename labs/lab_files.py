"""Lab files: each lab is a YAML file under labs/content/ (the format is in labs/content/FORMAT.md).

`load_labs` reads and checks the structure of every file, in lab order, and raises
`LabFileError` naming the file and the place inside it. It needs nothing but the files,
so the catalogue can load at import time; `pipeline_problems` checks what the files
refer to in the pipeline (fault targets and settings, defences, templates, facts), and
`check_labs` (for `manage.py check_content`) adds the Faultline figures a guide states
(`{{ faultline.NAME = N }}`, labs/figures.py).
"""

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import markdown
import yaml
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

from labs import figures

CONTENT_DIR = Path(__file__).resolve().parent / "content"

# What a step's button may do, in the order the file lists them.
OPERATIONS = ("fault", "clear_fault", "clear_faults", "defences", "discovery", "burst", "poison", "send", "saga_mode", "orders",
              "call_policy", "load")
COMPARISONS = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
}
CONDITION = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*(==|!=|>=|<=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")
SITE_LINK = re.compile(r"\]\((lesson|lab):([a-z0-9-]+)(#[a-z0-9-]+)?\)")


class LabFileError(Exception):
    pass


@dataclass(frozen=True)
class Condition:
    """`fact op number`, e.g. "dead_letters == 0"."""

    fact: str
    op: str
    value: float

    def holds(self, facts: dict) -> bool:
        actual = facts.get(self.fact)
        return actual is not None and COMPARISONS[self.op](actual, self.value)

    def __str__(self) -> str:
        return f"{self.fact} {self.op} {self.value:g}"


@dataclass(frozen=True)
class Check:
    id: str
    step: int | None
    text: str
    require: tuple[Condition, ...]


@dataclass(frozen=True)
class Action:
    label: str
    operations: tuple[tuple[str, object], ...]  # (operation, its argument), in file order


@dataclass(frozen=True)
class Step:
    number: int
    title: str
    body: str
    prediction: str
    actions: tuple[Action, ...]
    hints: tuple[str, ...]
    observe: tuple[str, ...]
    checks: tuple[str, ...]


@dataclass(frozen=True)
class Lab:
    slug: str
    title: str
    order: int
    minutes: int
    summary: str
    objective: str
    lessons: tuple[str, ...]
    background: str
    steps: tuple[Step, ...]
    checks: tuple[Check, ...]
    keep_preferences: bool  # keep the seeded users' opt-outs and quiet hours (the labs here clear them)
    sync_chain: bool = False  # the run's API calls its services synchronously (lab 9, labs.pipeline.sync_chain)

    @property
    def uses_discovery(self) -> bool:
        """Whether a step switches service discovery (the page then shows its panel and form from the start)."""
        return any(operation == "discovery" for step in self.steps for action in step.actions for operation, _ in action.operations)

    def step(self, number: int) -> Step | None:
        return self.steps[number - 1] if 1 <= number <= len(self.steps) else None

    def checks_of(self, step: Step) -> list[Check]:
        return [c for c in self.checks if c.id in step.checks]


# --- Reading -----------------------------------------------------------------------------


class _Reader:
    """Pulls typed values out of one parsed file, naming the place of any problem."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, message: str):
        raise LabFileError(f"{self.path.name}: {where}: {message}")

    def mapping(self, value, where: str, required: set[str], optional: set[str] = frozenset()) -> dict:
        if not isinstance(value, dict):
            self.fail(where, "expected a mapping")
        missing = required - value.keys()
        unknown = value.keys() - required - optional
        if missing:
            self.fail(where, f"missing {', '.join(sorted(missing))}")
        if unknown:
            self.fail(where, f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        return value

    def text(self, value, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(where, "expected non-empty text")
        return value.strip()

    def number(self, value, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            self.fail(where, "expected a whole number ≥ 1")
        return value

    def texts(self, value, where: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.fail(where, "expected a list")
        return tuple(self.text(item, f"{where}[{n}]") for n, item in enumerate(value))


def _read_condition(reader: _Reader, text, where: str) -> Condition:
    match = CONDITION.match(text) if isinstance(text, str) else None
    if match is None:
        reader.fail(where, f"{text!r} is not a condition like 'dead_letters == 0'")
    return Condition(match[1], match[2], float(match[3]))


def _read_action(reader: _Reader, raw, where: str) -> Action:
    raw = reader.mapping(raw, where, {"label"}, set(OPERATIONS))
    operations = tuple((name, value) for name, value in raw.items() if name != "label")
    if not operations:
        reader.fail(where, f"an action needs at least one of {', '.join(OPERATIONS)}")
    return Action(reader.text(raw["label"], f"{where}.label"), operations)


def _read_step(reader: _Reader, raw, number: int, check_ids: set[str]) -> Step:
    where = f"steps[{number - 1}]"
    raw = reader.mapping(raw, where, {"title", "body", "prediction", "actions"}, {"hints", "observe", "checks"})
    if not isinstance(raw["actions"], list) or not raw["actions"]:
        reader.fail(f"{where}.actions", "expected a non-empty list")
    checks = reader.texts(raw.get("checks", []), f"{where}.checks") if raw.get("checks") else ()
    for check in checks:
        if check not in check_ids:
            reader.fail(f"{where}.checks", f"no check with id {check!r} in this file")
    return Step(
        number=number,
        title=reader.text(raw["title"], f"{where}.title"),
        body=reader.text(raw["body"], f"{where}.body"),
        prediction=reader.text(raw["prediction"], f"{where}.prediction"),
        actions=tuple(_read_action(reader, a, f"{where}.actions[{n}]") for n, a in enumerate(raw["actions"])),
        hints=reader.texts(raw.get("hints", []), f"{where}.hints"),
        observe=reader.texts(raw.get("observe", []), f"{where}.observe"),
        checks=checks,
    )


def _read_check(reader: _Reader, raw, n: int) -> Check:
    where = f"checks[{n}]"
    raw = reader.mapping(raw, where, {"id", "text", "require"}, {"step"})
    if not isinstance(raw["require"], list) or not raw["require"]:
        reader.fail(f"{where}.require", "expected a non-empty list of conditions")
    return Check(
        id=reader.text(raw["id"], f"{where}.id"),
        step=reader.number(raw["step"], f"{where}.step") if "step" in raw else None,
        text=reader.text(raw["text"], f"{where}.text"),
        require=tuple(_read_condition(reader, c, f"{where}.require[{i}]") for i, c in enumerate(raw["require"])),
    )


def read_lab(path: Path) -> Lab:
    reader = _Reader(path)
    source = path.read_text(encoding="utf-8")
    for line, problem in figures.statements(source)[1]:
        reader.fail(f"line {line}", problem)
    try:
        raw = yaml.safe_load(figures.fill(source))  # the guide as a learner reads it
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}" if mark else "?"
        raise LabFileError(f"{path.name}: {line}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    required = {"slug", "title", "order", "minutes", "summary", "objective", "lessons", "background", "steps", "checks"}
    raw = reader.mapping(raw, "top level", required, {"keep_preferences", "sync_chain"})
    checks = tuple(_read_check(reader, c, n) for n, c in enumerate(raw["checks"] or []))
    ids = [c.id for c in checks]
    if len(ids) != len(set(ids)):
        reader.fail("checks", "check ids must be unique")
    if not isinstance(raw["steps"], list) or not raw["steps"]:
        reader.fail("steps", "expected a non-empty list")
    steps = tuple(_read_step(reader, s, n, set(ids)) for n, s in enumerate(raw["steps"], start=1))
    for check in checks:
        if check.step is not None and check.step > len(steps):
            reader.fail(f"checks.{check.id}.step", f"this lab has {len(steps)} steps")
    slug = reader.text(raw["slug"], "slug")
    if not re.fullmatch(r"[a-z0-9-]+", slug) or not path.stem.endswith(slug):
        reader.fail("slug", f"{slug!r} must be lowercase words with hyphens and end the file name")
    return Lab(
        slug=slug,
        title=reader.text(raw["title"], "title"),
        order=reader.number(raw["order"], "order"),
        minutes=reader.number(raw["minutes"], "minutes"),
        summary=reader.text(raw["summary"], "summary"),
        objective=reader.text(raw["objective"], "objective"),
        lessons=reader.texts(raw["lessons"], "lessons"),
        background=reader.text(raw["background"], "background"),
        steps=steps,
        checks=checks,
        keep_preferences=bool(raw.get("keep_preferences", False)),
        sync_chain=bool(raw.get("sync_chain", False)),
    )


def load_labs(directory: Path = CONTENT_DIR) -> dict[str, Lab]:
    """Every lab file in `directory`, by slug, in lab order."""
    labs = [read_lab(path) for path in sorted(directory.glob("*.yaml"))]
    slugs = [lab.slug for lab in labs]
    if len(slugs) != len(set(slugs)):
        raise LabFileError(f"{directory}: two lab files share a slug")
    return {lab.slug: lab for lab in sorted(labs, key=lambda lab: (lab.order, lab.slug))}


# --- What the files refer to ---------------------------------------------------------------


def pipeline_problems(lab: Lab) -> list[str]:
    """What in `lab` the pipeline would refuse: unknown faults, defences, templates or facts."""
    from labs.checks import FACTS
    from labs.models import SagaMode
    from labs.pipeline import defences, discovery, faults, sync_chain, sync_load
    from labs.seeding import TEMPLATES, USERS_PER_RUN
    from labs.steps import spread_seconds

    templates = {name for name, *_ in TEMPLATES}
    problems = []

    def problem(where: str, message: str):
        problems.append(f"{lab.slug}: {where}: {message}")

    for check in lab.checks:
        for condition in check.require:
            if condition.fact not in FACTS:
                problem(f"checks.{check.id}", f"unknown fact {condition.fact!r}")
    for step in lab.steps:
        for fact in step.observe:
            if fact not in FACTS:
                problem(f"steps[{step.number - 1}].observe", f"unknown fact {fact!r}")
        for n, action in enumerate(step.actions):
            where = f"steps[{step.number - 1}].actions[{n}]"
            for operation, argument in action.operations:
                try:
                    if operation == "fault":
                        settings = dict(argument)
                        faults.validate(settings.pop("target", None), settings)
                    elif operation == "clear_fault" and not faults.is_target(argument):
                        raise ValueError(f"{argument!r} is not a fault target")
                    elif operation == "defences":
                        unknown = set(argument) - set(defences.NAMES)
                        if unknown:
                            raise ValueError(f"unknown defence(s) {', '.join(sorted(unknown))}")
                    elif operation == "discovery":
                        discovery.validate(argument.get("mode"), argument.get("ttl_s", discovery.DEFAULT_TTL_S))
                    elif operation in ("burst", "send") and argument.get("template", "weekly_digest") not in templates:
                        raise ValueError(f"no seeded template {argument['template']!r}")
                    elif operation == "saga_mode" and argument not in SagaMode.values:
                        raise ValueError(f"{argument!r} is not a saga mode; choose {' or '.join(SagaMode.values)}")
                    elif operation == "orders" and (set(argument) != {"count"} or not 1 <= argument["count"] <= USERS_PER_RUN):
                        raise ValueError(f"write {{count: N}} with N from 1 to {USERS_PER_RUN}")
                    elif operation in ("call_policy", "load") and not lab.sync_chain:
                        raise ValueError("only a lab with `sync_chain: true` has a synchronous path")
                    elif operation == "call_policy":
                        sync_chain.validate_policy(argument)
                    elif operation == "load":
                        if set(argument) != {"rate", "seconds"}:
                            raise ValueError("a load is {rate: requests a second, seconds: how long}")
                        if not (1 <= argument["rate"] <= sync_load.MAX_RATE and 1 <= argument["seconds"] <= sync_load.MAX_SECONDS):
                            raise ValueError(f"rate 1 to {sync_load.MAX_RATE}, seconds 1 to {sync_load.MAX_SECONDS}")
                    if operation == "send" and "over_s" in argument:
                        spread_seconds(argument)
                except (ValueError, TypeError, AttributeError) as exc:
                    problem(where, f"{operation}: {exc}")
    return problems


def check_labs(directory: Path = CONTENT_DIR):
    """For `manage.py check_content`: every lab file's structure, what it names in the pipeline,
    and the Faultline figures it states."""
    from courseware.content_report import ContentReport

    errors: list[str] = []
    try:
        labs = load_labs(directory)
    except LabFileError as exc:
        return ContentReport("lab files checked: 1 error(s) (the first found)", [str(exc)], [])
    for lab in labs.values():
        errors += pipeline_problems(lab)
    for path in sorted(directory.glob("*.yaml")):
        errors += figures.problems(path.read_text(encoding="utf-8"), path.name)
    return ContentReport(f"{len(labs)} labs checked: {len(errors)} error(s)", errors, [])


# --- Rendering ---------------------------------------------------------------------------


def _site_url(match: re.Match) -> str:
    kind, slug, anchor = match[1], match[2], match[3] or ""
    name = "courseware:lesson" if kind == "lesson" else "labs:lab"
    return f"]({reverse(name, args=[slug])}{anchor})"


@functools.lru_cache(maxsize=256)
def render_markdown(text: str) -> SafeString:
    """Lab prose as HTML; `lesson:slug#anchor` and `lab:slug` links point at the site's pages."""
    # The files are the project's own content, reviewed in git, so their HTML is trusted.
    return mark_safe(markdown.markdown(SITE_LINK.sub(_site_url, text), extensions=["fenced_code", "tables"]))


@functools.lru_cache(maxsize=1024)
def render_inline(text: str) -> SafeString:
    """One line of lab prose (a hint, a prediction) as inline HTML, without the paragraph."""
    html = str(render_markdown(text))
    if html.startswith("<p>") and html.endswith("</p>") and html.count("<p>") == 1:
        html = html[3:-4]
    return mark_safe(html)
