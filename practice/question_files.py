"""Read and validate the interview question files (practice/content/FORMAT.md).

`read_questions()` parses every `questions/<topic>/<id>.yaml` under the content
folder and returns the questions it could read with the errors and warnings it
found, each error naming the file and, where YAML tells us, the line. The
checker (`check_content`) reports them all; the loader (`load_content`) refuses to
load anything while one error remains.

The content folder is `settings.PRACTICE_CONTENT_DIR` when set (tests point it at
a temporary folder), else `practice/content/` in the checkout.
"""

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml
from django.conf import settings

# libyaml's parser when it is there: ten times faster, and the same documents.
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

from labs.catalogue import LABS

TOPICS = {
    "discovery": "Service discovery",
    "sync-vs-async": "Sync vs async",
    "rest-vs-grpc": "REST vs gRPC",
    "gateways": "API gateways",
    "queues-vs-streams": "Queues vs streams",
    "brokers": "Kafka, RabbitMQ, SQS",
    "retries": "Retries and backoff",
    "circuit-breakers": "Circuit breakers",
    "idempotency": "Idempotency",
    "outbox": "Transactional outbox",
    "dead-letters": "Dead letters",
    "sagas": "Sagas",
    "meshes": "Service meshes",
    "observability": "Observability",
    "security": "Security",
    "distributed-monolith": "Distributed monolith",
    "load-balancing": "Load balancing",
    "rate-limiting": "Rate limiting",
    "push": "Pushing to clients",
    "overload": "Overload",
    # Lessons 23–25 (events, logs and contracts).
    "kafka-in-depth": "Kafka in depth",
    "events-and-state": "Events and state",
    "contracts": "Evolving contracts",
    "design": "System design",
    "estimation": "Estimation",  # the estimation drills' topic (practice/drills.py), not a question folder
}
KINDS = ("concept", "compare", "failure", "design", "choice")
REQUIRED_KEYS = (
    "id", "title", "kind", "difficulty", "topics", "minutes", "prompt", "hints", "rubric",
    "model_answer", "follow_ups", "mistakes", "lessons", "labs",
)  # fmt: skip
OPTIONAL_KEYS = ("options",)
POINT_KEYS = ("point", "weight", "terms", "why")
# What a mock interviewer asks when the candidate's notes miss the point (practice/interviewer.py).
OPTIONAL_POINT_KEYS = ("follow_up",)
OPTION_KEYS = ("text", "explanation", "correct")
KEBAB = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# A whole-system design answer covers more ground than a concept answer.
MODEL_ANSWER_WORDS = {"concept": (120, 400), "compare": (120, 400), "failure": (120, 400), "design": (120, 700)}
MIN_CHOICE_QUESTIONS = 20
# A point's terms include the paraphrases candidates write (practice/rubric.py needs two signals).
MIN_TERMS, MAX_TERMS = 4, 14
MIN_QUESTIONS_PER_TOPIC = 3


def content_dir() -> Path:
    configured = getattr(settings, "PRACTICE_CONTENT_DIR", None)
    return Path(configured) if configured else Path(settings.BASE_DIR) / "practice" / "content"


def lessons_dir() -> Path:
    return Path(settings.BASE_DIR) / "courseware" / "content" / "lessons"


@cache
def lesson_titles(folder: Path | None = None) -> dict[str, str]:
    """Lesson slug → title, read from the lessons' front matter (the courseware's files)."""
    titles = {}
    for path in sorted((folder or lessons_dir()).glob("*.md")):
        text = path.read_text(encoding="utf-8")
        if not text.startswith("---"):
            continue
        front = yaml.safe_load(text.split("---", 2)[1]) or {}
        if isinstance(front, dict) and front.get("slug"):
            titles[str(front["slug"])] = str(front.get("title") or front["slug"])
    return titles


@dataclass
class QuestionFiles:
    """Everything read from the question files in one pass."""

    questions: list[dict] = field(default_factory=list)  # valid questions, each with `topic` and `source`
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: int = 0


class _Located:
    """Maps a key path inside one YAML document (("rubric", 2, "weight")) to its line number."""

    def __init__(self, label: str, node: yaml.Node):
        self.label = label
        self.lines: dict[tuple, int] = {}
        self._walk(node, ())

    def _walk(self, node: yaml.Node, path: tuple) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, key.value)
                self._walk(value, sub)
                self.lines[sub] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, (*path, index))

    def at(self, *path) -> str:
        """`file:line` for the deepest part of `path` that exists in the document."""
        while path and path not in self.lines:
            path = path[:-1]
        return f"{self.label}:{self.lines.get(path, 1)}"


def _label(path: Path) -> str:
    """How an error names a file: relative to the checkout when it is inside it."""
    base = Path(settings.BASE_DIR)
    return str(path.relative_to(base)) if base in path.parents else str(path)


def _parse(path: Path, label: str) -> tuple[dict | None, _Located | None, str | None]:
    text = path.read_text(encoding="utf-8")
    try:
        loader = SafeLoader(text)
        try:
            node = loader.get_single_node()  # parsed once: the node keeps line numbers,
            data = loader.construct_document(node) if node is not None else None  # the data is built from it
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(exc, "problem", None) or str(exc)
        return None, None, f"{label}:{line}: not valid YAML: {problem}"
    if node is None or not isinstance(data, dict):
        return None, None, f"{label}:1: a question file must be a YAML mapping (id, title, kind, ...)"
    return data, _Located(label, node), None


def _is_text(value) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _is_text_list(value, allow_empty: bool = False) -> bool:
    return isinstance(value, list) and (allow_empty or value) and all(_is_text(v) for v in value)


def _unknown_keys(mapping: dict, known: tuple, what: str, error, *path) -> None:
    """Report keys the format does not know: usually a typo that would otherwise be ignored."""
    for key in mapping:
        if key not in known:
            error(f"unknown {what} {key!r} (known: {', '.join(known)})", *path, key)


def keys_checked(data: dict, loc: _Located, required: tuple, optional: tuple) -> tuple[list[str], Callable]:
    """The errors for unknown and missing keys of one content file, and a reporter that adds more."""
    errors: list[str] = []

    def error(message: str, *path) -> None:
        errors.append(f"{loc.at(*path)}: {message}")

    _unknown_keys(data, required + optional, "key", error)
    for key in required:
        if key not in data:
            error(f"missing {key!r}")
    return errors, error


def _check_question(data: dict, loc: _Located, topic_folder: str, stem: str, lessons: dict) -> tuple[list, list]:
    warnings: list[str] = []
    errors, error = keys_checked(data, loc, REQUIRED_KEYS, OPTIONAL_KEYS)
    if errors:
        return errors, warnings

    if data["id"] != stem:
        error(f"id {data['id']!r} must equal the file name {stem!r}", "id")
    if not isinstance(data["id"], str) or not KEBAB.match(data["id"]):
        error("id must be kebab-case (lowercase letters, digits and hyphens)", "id")
    for key in ("title", "prompt", "model_answer"):
        if not _is_text(data[key]):
            error(f"{key} must be non-empty text", key)
    if data["kind"] not in KINDS:
        error(f"kind {data['kind']!r} is not one of {', '.join(KINDS)}", "kind")
    if data["difficulty"] not in (1, 2, 3):
        error("difficulty must be 1 (easy), 2 (medium) or 3 (hard)", "difficulty")
    if not isinstance(data["minutes"], int) or isinstance(data["minutes"], bool) or not 1 <= data["minutes"] <= 90:
        error("minutes (the time box) must be a whole number from 1 to 90", "minutes")

    topics = data["topics"]
    if not _is_text_list(topics):
        error("topics must be a list of topics", "topics")
    else:
        for i, topic in enumerate(topics):
            if topic not in TOPICS:
                error(f"unknown topic {topic!r} (see FORMAT.md for the list)", "topics", i)
        if topic_folder in TOPICS and topic_folder not in topics:
            error(f"topics must include {topic_folder!r}, the folder the file is in", "topics")

    for key in ("hints", "follow_ups", "mistakes"):
        if not _is_text_list(data[key]):
            error(f"{key} must be a non-empty list of text", key)

    _check_rubric(data, error, warnings, loc)
    _check_options(data, error)

    for key, known, what in (("lessons", lessons, "lesson"), ("labs", LABS, "lab")):
        value = data[key]
        if not isinstance(value, list) or (key == "lessons" and not value):
            error(f"{key} must be a list of {what} slugs" + (" (at least one)" if key == "lessons" else ""), key)
            continue
        for i, slug in enumerate(value):
            if slug not in known:
                error(f"unknown {what} slug {slug!r}", key, i)

    if data["kind"] in MODEL_ANSWER_WORDS and isinstance(data["model_answer"], str):
        low, high = MODEL_ANSWER_WORDS[data["kind"]]
        count = len(data["model_answer"].split())
        if not low <= count <= high:
            warnings.append(f"{loc.at('model_answer')}: the model answer has {count} words (aim for {low}–{high})")
    return errors, warnings


def _check_rubric(data: dict, error, warnings: list, loc: _Located) -> None:
    rubric = data["rubric"]
    if not isinstance(rubric, list) or not rubric:
        error("rubric must be a non-empty list of key points", "rubric")
        return
    if data["kind"] == "choice" and len(rubric) != 1:
        error("a choice question's rubric has exactly one point", "rubric")
    for i, point in enumerate(rubric):
        if not isinstance(point, dict):
            error("each rubric entry must be a mapping with point, weight, terms and why", "rubric", i)
            continue
        _unknown_keys(point, POINT_KEYS + OPTIONAL_POINT_KEYS, "rubric key", error, "rubric", i)
        if "follow_up" in point and not _is_text(point["follow_up"]):
            error("follow_up must be non-empty text (the question an interviewer asks)", "rubric", i, "follow_up")
        elif data["kind"] == "design" and "follow_up" not in point:
            warnings.append(f"{loc.at('rubric', i)}: no follow_up: a mock interview asks a question made from the point itself")
        for key in POINT_KEYS:
            if key not in point:
                error(f"rubric point is missing {key!r}", "rubric", i)
        if "point" in point and not _is_text(point["point"]):
            error("point must be non-empty text", "rubric", i, "point")
        if "why" in point and not _is_text(point["why"]):
            error("why must be non-empty text", "rubric", i, "why")
        if "weight" in point and point["weight"] not in (1, 2, 3):
            error("weight must be 1, 2 or 3", "rubric", i, "weight")
        terms = point.get("terms")
        if "terms" in point and not _is_text_list([str(t) for t in terms] if isinstance(terms, list) else terms):
            error("terms must be a non-empty list of words and phrases", "rubric", i, "terms")
        elif isinstance(terms, list):
            if not MIN_TERMS <= len(terms) <= MAX_TERMS:
                warnings.append(f"{loc.at('rubric', i, 'terms')}: {len(terms)} terms (aim for {MIN_TERMS}–{MAX_TERMS})")
            for j, term in enumerate(terms):
                if not isinstance(term, str):
                    # YAML reads 409 or 2.5 as a number, which the rubric matcher cannot search for.
                    error(f"term {term!r} is not text: quote it (\"{term}\")", "rubric", i, "terms", j)
                elif term != term.lower():
                    warnings.append(f"{loc.at('rubric', i, 'terms', j)}: term {term!r} should be lowercase")


def _check_options(data: dict, error) -> None:
    options = data.get("options")
    if data["kind"] != "choice":
        if options is not None:
            error("only choice questions have options", "options")
        return
    if not isinstance(options, list) or len(options) < 2:
        error("a choice question needs a list of at least two options", "options")
        return
    correct = 0
    for i, option in enumerate(options):
        if not isinstance(option, dict):
            error("each option must be a mapping with text and explanation", "options", i)
            continue
        _unknown_keys(option, OPTION_KEYS, "option key", error, "options", i)
        if not _is_text(option.get("text")):
            error("option text must be non-empty text", "options", i)
        if not _is_text(option.get("explanation")):
            error("every option needs an explanation", "options", i)
        if option.get("correct") not in (None, True, False):
            error("correct must be true or left out", "options", i, "correct")
        correct += option.get("correct") is True
    if correct != 1:
        error(f"exactly one option must be correct: true (found {correct})", "options")


def read_questions(folder: Path | None = None) -> QuestionFiles:
    """Read every question file under `folder` (the content folder by default)."""
    root = folder or content_dir()
    found = QuestionFiles()
    questions_root = root / "questions"
    if not questions_root.is_dir():
        found.errors.append(f"{questions_root}: no questions folder")
        return found
    lessons = lesson_titles()
    seen: dict[str, str] = {}
    for path in sorted(questions_root.glob("*/*")):
        label = _label(path)
        if path.suffix not in (".yaml", ".yml"):
            found.warnings.append(f"{label}: ignored (question files end in .yaml)")
            continue
        found.files += 1
        topic_folder = path.parent.name
        if topic_folder not in TOPICS:
            found.errors.append(f"{label}:1: the folder {topic_folder!r} is not a topic (see FORMAT.md)")
        data, loc, problem = _parse(path, label)
        if problem:
            found.errors.append(problem)
            continue
        errors, warnings = _check_question(data, loc, topic_folder, path.stem, lessons)
        if isinstance(data.get("id"), str) and data["id"] in seen:
            errors.append(f"{loc.at('id')}: id {data['id']!r} is already used by {seen[data['id']]}")
        found.errors += errors
        found.warnings += warnings
        if not errors:
            seen[data["id"]] = label
            found.questions.append({**data, "topic": topic_folder, "source": label})
    found.warnings += _coverage_warnings(found.questions)
    return found


def _coverage_warnings(questions: list[dict]) -> list[str]:
    warnings = []
    per_topic = Counter(topic for q in questions for topic in q["topics"])
    for topic in TOPICS:
        if topic != "estimation" and per_topic[topic] < MIN_QUESTIONS_PER_TOPIC:
            warnings.append(f"topic {topic!r} has {per_topic[topic]} question(s) (aim for {MIN_QUESTIONS_PER_TOPIC}+)")
    kinds = Counter(q["kind"] for q in questions)
    for kind in KINDS:
        if not kinds[kind]:
            warnings.append(f"no {kind} questions yet")
    if questions and kinds["choice"] < MIN_CHOICE_QUESTIONS:
        warnings.append(f"{kinds['choice']} multiple-choice checks (aim for {MIN_CHOICE_QUESTIONS}+)")
    return warnings
