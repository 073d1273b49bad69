"""The timeline of a timed mock interview, computed from what the server stored.

A mock interview stores when it started, how long each phase lasts and, for a
phase the candidate began early with "Next phase", when that happened. From
those and the current time this module tells which phase is running and how
long it has left, so a reload (or another tab) resumes exactly where the timer is.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import yaml

from practice.question_files import content_dir


@dataclass(frozen=True)
class Phase:
    slug: str
    title: str
    share: float
    prompts: tuple[str, ...]


def read_phases(folder: Path | None = None) -> list[Phase]:
    """The four phases from `mock_phases.yaml`; ValueError naming the file on bad content."""
    path = (folder or content_dir()) / "mock_phases.yaml"
    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8"))
        phases = [Phase(e["slug"], e["title"], float(e["share"]), tuple(e["prompts"])) for e in entries]
    except (OSError, yaml.YAMLError, TypeError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}:1: cannot read the mock interview phases: {exc}") from exc
    if not phases or abs(sum(p.share for p in phases) - 1) > 0.01:
        raise ValueError(f"{path}:1: the phases' shares must add up to 1")
    return phases


def phase_seconds(minutes: int, phases: list[Phase]) -> list[int]:
    """Split a time box into whole minutes per phase, at least one each, adding up to the box."""
    split = [max(1, round(minutes * p.share)) for p in phases]
    split[-1] = max(1, minutes - sum(split[:-1]))
    return [m * 60 for m in split]


@dataclass(frozen=True)
class Timeline:
    starts: list[datetime]  # when each phase began (or will begin)
    ends: list[datetime]
    current: int  # index of the running phase; len(starts) once time is up
    remaining: float  # seconds left in the running phase (0 when over)

    @property
    def over(self) -> bool:
        return self.current >= len(self.starts)


def timeline(started_at: datetime, seconds: list[int], advanced_at: list, now: datetime) -> Timeline:
    """Where a mock interview stands at `now`.

    Phase i starts when phase i-1 ends, unless the candidate moved on early, in which
    case `advanced_at[i]` (an aware datetime) is when it started.
    """
    starts, ends = [], []
    start = started_at
    for i, length in enumerate(seconds):
        early = advanced_at[i] if i < len(advanced_at) else None
        if early is not None and early < start:
            start = early
            if ends:
                ends[-1] = early
        starts.append(start)
        ends.append(start + timedelta(seconds=length))
        start = ends[-1]
    current = next((i for i, end in enumerate(ends) if now < end), len(ends))
    remaining = (ends[current] - now).total_seconds() if current < len(ends) else 0.0
    return Timeline(starts, ends, current, remaining)
