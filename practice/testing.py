"""Fixtures and helpers shared by the practice tests (tests/test_practice*.py import them)."""

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from practice import clock
from practice.loader import load_questions


@pytest.fixture
def questions(db):
    """The real question bank, loaded into the test database."""
    load_questions()


class MovableClock:
    """practice.clock, stopped at a chosen moment and moved by hand."""

    def __init__(self, monkeypatch, start: datetime):
        self.current = start
        monkeypatch.setattr(clock, "now", lambda: self.current)

    def advance(self, **delta) -> datetime:
        self.current += timedelta(**delta)
        return self.current

    def set(self, moment: datetime) -> datetime:
        self.current = moment
        return self.current


@pytest.fixture
def moved_clock(monkeypatch):
    from datetime import UTC

    return MovableClock(monkeypatch, datetime(2025, 3, 3, 9, 0, tzinfo=UTC))


def write_question(folder: Path, topic: str, qid: str, text: str) -> Path:
    path = folder / "questions" / topic / f"{qid}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
