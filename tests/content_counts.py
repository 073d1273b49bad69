"""How much content the repository holds, counted straight from the files.

Tests that check "every lesson loaded" or "the bank lists every question" compare what the
site reports with these counts, so adding a lesson or a question does not mean editing the
tests, and a loader that skips a file still fails them. The counting here is deliberately
naive (files, fences, list items): it must not share code with the loaders it checks.
"""

from pathlib import Path

import yaml

from tests.harness import BASE_DIR

COURSE = Path(BASE_DIR) / "courseware" / "content"
QUESTIONS = Path(BASE_DIR) / "practice" / "content" / "questions"
DRILLS = Path(BASE_DIR) / "practice" / "content" / "drills"


def lesson_files() -> list[Path]:
    return sorted((COURSE / "lessons").glob("*.md"))


def lessons() -> int:
    return len(lesson_files())


def modules() -> int:
    return len(yaml.safe_load((COURSE / "modules.yaml").read_text(encoding="utf-8")))


def glossary_terms() -> int:
    return sum(len(yaml.safe_load(path.read_text(encoding="utf-8"))) for path in (COURSE / "glossary").glob("*.yaml"))


def inline_checks() -> int:
    return sum(path.read_text(encoding="utf-8").count("\n```check\n") for path in lesson_files())


def questions(kind: str | None = None) -> int:
    files = sorted(QUESTIONS.glob("*/*.yaml"))
    if kind is None:
        return len(files)
    return sum(f"\nkind: {kind}\n" in path.read_text(encoding="utf-8") for path in files)


def drills() -> int:
    return len(sorted(DRILLS.glob("*.yaml")))


def bank() -> int:
    """What the practice bank lists: the questions and the estimation drills."""
    return questions() + drills()
