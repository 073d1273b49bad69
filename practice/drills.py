"""Estimation drills: back-of-the-envelope sums with one numeric answer (practice/content/FORMAT.md).

A drill file lives in `practice/content/drills/<id>.yaml`. `read_drills` validates the
files; `load_questions` stores each drill as a Question of kind "estimate", so drills
share the bank, the attempts and the spaced-repetition cards with the questions.

Checking an answer:
1. `parse_estimate` reads what the candidate typed: a number with thousands separators
   ("1,200", "1 200"), a decimal point, an exponent ("1.2e3") or a multiplier word
   ("1.2k", "3 million", "2bn"), then any unit words ("/s", "per second", "rps"),
   which are ignored, except data sizes: "2 TB" for a drill answered in GB counts
   as 2,000 GB, and bits convert to bytes (decimal units, 1 GB = 1,000 MB).
2. `check_estimate` accepts the value when it is within the drill's relative
   tolerance of the answer, and says how far off it is.
"""

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from practice.question_files import KEBAB, _is_text, _is_text_list, _label, _parse, content_dir, keys_checked, lesson_titles

DRILL_TOPIC = "estimation"
REQUIRED_KEYS = ("id", "title", "difficulty", "minutes", "prompt", "inputs", "answer", "unit", "tolerance", "solution", "lessons")
OPTIONAL_KEYS = ("hints", "mistakes")
MAX_TOLERANCE = 0.5

MULTIPLIERS = {
    "k": 1e3, "thousand": 1e3, "m": 1e6, "mn": 1e6, "mio": 1e6, "million": 1e6, "millions": 1e6,
    "bn": 1e9, "billion": 1e9, "billions": 1e9,
}  # fmt: skip
# Decimal data units in bytes; a lower-case "b" after a prefix ("Mb", "Gbit", "Mbps") means bits.
_DATA_PREFIX = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15}
_DATA_UNIT = re.compile(r"^(?P<prefix>[kKmMgGtTpP]?)(?P<kind>B|b|bytes?|bits?|bps)(?:/s|ps)?$")
_NUMBER = re.compile(
    r"^\s*(?:~|≈|about|around|roughly|approx\.?|approximately)?\s*"
    r"(?P<number>\d{1,3}(?:[,_\u00a0\u202f ]\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?:\s*[eE](?P<exponent>[+-]?\d+))?"
)
_MULTIPLIER = re.compile(r"(?i)(thousand|millions?|mn|mio|m|k|billions?|bn)(?![A-Za-z])")
_BILLION = re.compile(r"(?i)(b)(?![A-Za-z])")  # "2B users": a billion, unless the drill counts bytes
EXAMPLES = "like 1200, 1,200 or 1.2k"


class NotAnEstimate(ValueError):
    """What the candidate typed is not one number; the message says how to write it."""


def data_unit_bytes(word: str) -> float | None:
    """Bytes in one of `word` ("GB", "Mbit/s", "kB"), or None when it is not a data unit."""
    match = _DATA_UNIT.match(word)
    if not match:
        return None
    bits = match["kind"] in ("b", "bit", "bits", "bps")
    if match["kind"] == "B" and match["prefix"] == "" and word != "B":
        return None
    return _DATA_PREFIX[match["prefix"].lower()] / (8 if bits else 1)


def parse_estimate(text: str, unit: str) -> float:
    """The value of a typed estimate, in the drill's `unit`; NotAnEstimate for anything else."""
    text = text.strip()
    if not text:
        raise NotAnEstimate(f"Write your estimate as a number, {EXAMPLES}.")
    match = _NUMBER.match(text)
    rest = text[match.end() :].strip() if match else ""
    if not match or re.search(r"\d", rest):
        raise NotAnEstimate(f"“{text[:40]}” is not one number: write your estimate {EXAMPLES} ({unit}).")
    value = float(re.sub(r"[,_\u00a0\u202f ]", "", match["number"])) * 10 ** int(match["exponent"] or 0)
    target = data_unit_bytes(unit.split()[0])
    multiplier = _MULTIPLIER.match(rest) or (None if target is not None else _BILLION.match(rest))
    if multiplier:
        value *= MULTIPLIERS.get(multiplier[1].lower(), 1e9)
        rest = rest[multiplier.end() :].strip()
    written_unit = re.match(r"[A-Za-z]+(?:/s)?", rest)
    given = data_unit_bytes(written_unit[0]) if written_unit else None
    if target is not None and given is not None:
        value = value * given / target
    if not math.isfinite(value):
        raise NotAnEstimate(f"That number is too large: write your estimate {EXAMPLES}.")
    return value


@dataclass(frozen=True)
class Verdict:
    right: bool
    value: float
    off_by: float  # (value - answer) / answer

    def describe(self, answer: float, unit: str, tolerance: float) -> str:
        shown = f"{format_number(self.value)} {unit}"
        if self.right:
            return f"{shown} is within {tolerance:.0%} of {format_number(answer)} {unit}."
        if self.value > 0 and not 0.5 < self.value / answer < 2:
            ratio = self.value / answer
            how = f"{ratio:.1f}× too high" if ratio > 1 else f"{1 / ratio:.1f}× too low"
            return f"{shown} is {how}: the answer is about {format_number(answer)} {unit}."
        side = "high" if self.off_by > 0 else "low"
        return f"{shown} is {abs(self.off_by):.0%} too {side}: the answer is about {format_number(answer)} {unit}."


def check_estimate(value: float, answer: float, tolerance: float) -> Verdict:
    off_by = (value - answer) / answer
    return Verdict(abs(off_by) <= tolerance, value, off_by)


def format_number(value: float) -> str:
    """1157.4 → "1,157"; 2.5 → "2.5"; large values keep three significant figures' worth."""
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{round(value):,}"
    return f"{value:,.3g}" if abs(value) < 10 else f"{value:,.1f}".rstrip("0").rstrip(".")


# --- Files ---------------------------------------------------------------------------------


@dataclass
class DrillFiles:
    drills: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    files: int = 0


def _check_drill(data: dict, loc, stem: str, lessons: dict) -> list[str]:
    errors, error = keys_checked(data, loc, REQUIRED_KEYS, OPTIONAL_KEYS)
    if errors:
        return errors
    if data["id"] != stem or not isinstance(data["id"], str) or not KEBAB.match(data["id"]):
        error(f"id must be kebab-case and equal the file name {stem!r}", "id")
    for key in ("title", "prompt", "unit", "solution"):
        if not _is_text(data[key]):
            error(f"{key} must be non-empty text", key)
    if data["difficulty"] not in (1, 2, 3):
        error("difficulty must be 1 (easy), 2 (medium) or 3 (hard)", "difficulty")
    if not isinstance(data["minutes"], int) or isinstance(data["minutes"], bool) or not 1 <= data["minutes"] <= 30:
        error("minutes (the time box) must be a whole number from 1 to 30", "minutes")
    answer = data["answer"]
    if isinstance(answer, bool) or not isinstance(answer, int | float) or not answer > 0:
        error("answer must be a positive number, in the drill's unit", "answer")
    tolerance = data["tolerance"]
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not 0 < tolerance <= MAX_TOLERANCE:
        error(f"tolerance must be a share of the answer above 0 and at most {MAX_TOLERANCE} (0.15 accepts ±15%)", "tolerance")
    inputs = data["inputs"]
    if not isinstance(inputs, list) or not inputs:
        error("inputs must be a list of {name, value}", "inputs")
    else:
        for i, item in enumerate(inputs):
            if not isinstance(item, dict) or set(item) != {"name", "value"} or not all(_is_text(str(v)) for v in item.values()):
                error("each input is a mapping with a name and a value", "inputs", i)
    for key in OPTIONAL_KEYS:
        if key in data and not _is_text_list(data[key]):
            error(f"{key} must be a non-empty list of text", key)
    if not isinstance(data["lessons"], list) or not data["lessons"]:
        error("lessons must be a list of lesson slugs (at least one)", "lessons")
    else:
        for i, slug in enumerate(data["lessons"]):
            if slug not in lessons:
                error(f"unknown lesson slug {slug!r}", "lessons", i)
    return errors


def read_drills(folder: Path | None = None) -> DrillFiles:
    """Read and validate every `drills/*.yaml` under the content folder (no folder: no drills)."""
    found = DrillFiles()
    root = (folder or content_dir()) / "drills"
    lessons = lesson_titles()
    seen: dict[str, str] = {}
    for path in sorted(root.glob("*.yaml")):
        label = _label(path)
        found.files += 1
        data, loc, problem = _parse(path, label)
        if problem:
            found.errors.append(problem.replace("a question file", "a drill file"))
            continue
        errors = _check_drill(data, loc, path.stem, lessons)
        if not errors and data["id"] in seen:
            errors.append(f"{loc.at('id')}: id {data['id']!r} is already used by {seen[data['id']]}")
        found.errors += errors
        if not errors:
            seen[data["id"]] = label
            found.drills.append({**data, "source": label})
    return found


def question_fields(drill: dict) -> dict:
    """A drill as the fields of a Question row (kind "estimate"), for the loader."""
    tolerance, unit = float(drill["tolerance"]), drill["unit"].strip()
    inputs = "\n".join(f"- **{item['name']}:** {item['value']}" for item in drill["inputs"])
    return {
        "title": drill["title"], "kind": "estimate", "difficulty": drill["difficulty"], "topic": DRILL_TOPIC,
        "topics": [DRILL_TOPIC], "minutes": drill["minutes"], "prompt": f"{drill['prompt'].rstrip()}\n\n{inputs}\n",
        "hints": drill.get("hints", []), "options": [], "model_answer": drill["solution"], "follow_ups": [],
        "mistakes": drill.get("mistakes", []), "lessons": drill["lessons"], "labs": [], "source": drill["source"],
        "rubric": [{
            "point": f"An estimate within ±{tolerance:.0%} of {format_number(drill['answer'])} {unit}",
            "weight": 1, "terms": [], "why": "Sizing a system starts with numbers you can trust to the nearest order of magnitude.",
        }],
        "estimate": {"answer": float(drill["answer"]), "unit": unit, "tolerance": tolerance},
    }  # fmt: skip
