"""A workshop's debrief: what the instructor injected, what the cohort's runs did meanwhile, each learner's steps.

It reads rows only (broadcasts, stops and announcements; deliveries, dead letters and the
providers' ledger; the learners' experiment cards), never Redis, so it reads the same during
the session and long after it, when the runs' live state has gone.

`build` steps:
1. The timeline: an entry per thing the instructor did to the cohort, from each source in
   TIMELINE_SOURCES (broadcast faults as windows; emergency stops and announcements as moments).
2. The cohort's moments over the seats' runs, one query each: deliveries delivered, dead
   letters written, duplicate sends, and invariant breaches (the auditor's breaches that have
   a moment: a send duplicated, sent in quiet hours, or out of per-user order).
3. The span the charts cover: from the first seat taken (or entry) to the last thing that
   happened, or to now while the session goes on; cut into at most MAX_BINS buckets of a
   round number of seconds.
4. Per learner and lab step: the experiment cards written since they joined: the goes, the
   prediction of the latest card (the latest recorded one, if any), what was pressed, the
   observed facts before and after, the step's checks on the recorded facts, the time it took.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count
from django.utils import timezone

from labs import checks
from labs.catalogue import CATALOGUE
from labs.lab_files import Lab, Step
from labs.models import DeadLetter, Delivery, DeliveryStatus, Experiment
from labs.pipeline import audit
from workshops import broadcasts, notices, scenario_files
from workshops.models import Seat, Workshop

MAX_BINS = 240
ROUND_BUCKETS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
SHORTEST_SPAN = timedelta(seconds=60)
LIVE_FOR = timedelta(minutes=10)  # something happened this recently: the session is on, the charts run to now


# --- 1. The timeline ---------------------------------------------------------------------------


@dataclass
class TimelineEntry:
    kind: str  # "fault", "stop", "announcement", "scenario"
    at: datetime
    title: str
    detail: str = ""
    until: datetime | None = None  # a window's end (a fault's); None for a moment

    @property
    def is_window(self) -> bool:
        return self.until is not None


def _fault_entries(workshop: Workshop) -> list[TimelineEntry]:
    entries = []
    for b in workshop.broadcasts.annotate(run_count=Count("runs")).select_related("started_by"):
        until = b.ended_at or b.ends_at
        ending = b.get_ending_display().lower() if b.ending else "in force"
        detail = f"into {notices.runs_text(b.run_count)} for {notices.duration_text(round((until - b.started_at).total_seconds()))}; {ending}"
        entries.append(TimelineEntry("fault", b.started_at, notices.describe(b), detail, until))
    return entries


def _stop_entries(workshop: Workshop) -> list[TimelineEntry]:
    return [
        TimelineEntry("stop", s.at, "Emergency stop",
                      f"by {s.stopped_by.get_username() if s.stopped_by else 'someone'}: {notices.runs_text(s.runs_cleared)} cleared in {s.took_ms} ms")
        for s in workshop.stops.select_related("stopped_by")
    ]  # fmt: skip


def _announcement_entries(workshop: Workshop) -> list[TimelineEntry]:
    return [
        TimelineEntry("announcement", a.made_at, a.text, f"taken down at {a.taken_down_at:%H:%M:%S} UTC" if a.taken_down_at else "")
        for a in workshop.announcements.all()
    ]


def _scenario_entries(workshop: Workshop) -> list[TimelineEntry]:
    """Each scenario played, as a window; the faults it injected are broadcasts, drawn as such."""
    titles = {slug: scenario.title for slug, scenario in scenario_files.scenarios().items()}
    return [
        TimelineEntry("scenario", play.started_at, f"Scenario: {titles.get(play.scenario, play.scenario)}",
                      f"{play.get_state_display().lower()} at step {play.step}" + (f"; {play.note}" if play.note else ""),
                      play.ended_at or timezone.now())
        for play in workshop.scenario_plays.all()
    ]  # fmt: skip


def _end_entries(workshop: Workshop) -> list[TimelineEntry]:
    if not workshop.ended:
        return []
    by = workshop.ended_by.get_username() if workshop.ended_by else "someone"
    return [TimelineEntry("stop", workshop.ended_at, "Workshop ended", f"by {by}: every run read-only")]


# Where the timeline's entries come from: each source takes the workshop and returns entries.
TIMELINE_SOURCES = [_fault_entries, _stop_entries, _announcement_entries, _scenario_entries, _end_entries]


def timeline(workshop: Workshop) -> list[TimelineEntry]:
    return sorted((entry for source in TIMELINE_SOURCES for entry in source(workshop)), key=lambda e: (e.at, e.kind))


# --- 2 and 3. The cohort's moments, over a span --------------------------------------------------


@dataclass
class Span:
    start: datetime
    end: datetime
    bucket_s: int

    @property
    def bins(self) -> int:
        return max(1, -(-int((self.end - self.start).total_seconds()) // self.bucket_s))

    def index(self, at: datetime) -> int | None:
        if not self.start <= at <= self.end:
            return None
        return min(self.bins - 1, int((at - self.start).total_seconds() // self.bucket_s))

    def bucket_start(self, index: int) -> datetime:
        return self.start + timedelta(seconds=index * self.bucket_s)


@dataclass
class Series:
    name: str
    label: str
    column: str
    counts: list[int]  # per bucket of the span
    per_second: bool  # shown as a rate: the bucket's count over its seconds
    bucket_s: int

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def values(self) -> list[float]:
        return [count / self.bucket_s for count in self.counts] if self.per_second else [float(c) for c in self.counts]


SERIES = (  # name, the chart's label, the learners' table's column, shown per second
    ("delivered", "delivered per second", "delivered", True),
    ("dead_letters", "dead letters written", "dead letters", False),
    ("duplicates", "duplicate sends", "duplicate sends", False),
    ("breaches", "invariant breaches (duplicate, in quiet hours, out of order)", "invariant breaches", False),
)


def cohort_moments(run_ids: list[int], since: datetime) -> dict[str, list[tuple[int, datetime]]]:
    """(run id, when) of every delivery delivered, dead letter written, duplicate send and invariant breach."""
    if not run_ids:
        return {name: [] for name, *_ in SERIES}
    duplicates = [m for m in audit.duplicate_sends(run_ids) if m[1] >= since]
    breaches = duplicates + [m for m in audit.sends_in_quiet_hours(run_ids) + audit.sends_out_of_order(run_ids) if m[1] >= since]
    return {
        "delivered": list(Delivery.objects.filter(run_id__in=run_ids, status=DeliveryStatus.DELIVERED, finished_at__gte=since)
                          .values_list("run_id", "finished_at")),  # fmt: skip
        "dead_letters": list(DeadLetter.objects.filter(run_id__in=run_ids, created_at__gte=since).values_list("run_id", "created_at")),
        "duplicates": duplicates,
        "breaches": sorted(breaches, key=lambda m: m[1]),
    }


def span_of(start: datetime, moments: list[datetime], entries: list[TimelineEntry], live: bool, now: datetime) -> Span:
    """From `start` to the last thing that happened, or to now while the session goes on."""
    ends = [*moments, *(e.at for e in entries), *(min(e.until, now) for e in entries if e.until)]
    latest = max(ends, default=start)
    end = now if live or now - latest <= LIVE_FOR else latest + timedelta(seconds=5)
    end = max(end, start + SHORTEST_SPAN)
    seconds = (end - start).total_seconds()
    bucket_s = next((b for b in ROUND_BUCKETS_S if seconds / b <= MAX_BINS), 3600 * -(-int(seconds) // (3600 * MAX_BINS)))
    return Span(start, end, bucket_s)


def binned(span: Span, moments: list[tuple[int, datetime]]) -> list[int]:
    counts = [0] * span.bins
    for _, at in moments:
        index = span.index(at)
        if index is not None:
            counts[index] += 1
    return counts


# --- 4. Each learner's steps ---------------------------------------------------------------------


@dataclass
class StepRow:
    number: int
    title: str
    status: str = "not started"  # "predicted", "ran", "recorded"
    goes: int = 0
    prediction: str = ""
    actions: list[str] = field(default_factory=list)
    changes: list[tuple[str, object, object]] = field(default_factory=list)  # (fact, before, after)
    checks_passed: int | None = None  # None: no outcome recorded
    checks_total: int = 0
    started_at: datetime | None = None
    recorded_at: datetime | None = None

    @property
    def completed(self) -> bool:
        return self.status == "recorded"

    @property
    def seconds(self) -> int | None:
        """From the step's first prediction to its recorded outcome."""
        if self.started_at is None or self.recorded_at is None:
            return None
        return max(0, round((self.recorded_at - self.started_at).total_seconds()))


@dataclass
class LearnerDebrief:
    seat: Seat
    steps: list[StepRow]
    totals: dict[str, int]  # per series, in this learner's run

    @property
    def name(self) -> str:
        return self.seat.learner.get_username()

    @property
    def steps_completed(self) -> int:
        return sum(row.completed for row in self.steps)


def step_row(lab: Lab, step: Step, cards: list[Experiment]) -> StepRow:
    row = StepRow(step.number, step.title, checks_total=len(lab.checks_of(step)))
    if not cards:
        return row
    recorded = [card for card in cards if card.recorded_at]
    chosen = recorded[-1] if recorded else cards[-1]
    row.status = "recorded" if chosen.recorded_at else "ran" if chosen.acted_at else "predicted"
    row.goes = len(cards)
    row.prediction = chosen.prediction
    row.actions = [action.get("label", "") for action in chosen.actions]
    row.started_at, row.recorded_at = cards[0].created_at, chosen.recorded_at
    if chosen.before and chosen.after:
        row.changes = checks.changes(chosen.before, chosen.after, step.observe)
    if chosen.after is not None:
        results = checks.evaluate(lab, chosen.after)
        row.checks_passed = sum(results[check.id].passed for check in lab.checks_of(step))
    return row


def learners(workshop: Workshop, lab: Lab | None, moments: dict[str, list[tuple[int, datetime]]]) -> list[LearnerDebrief]:
    seats = list(Seat.objects.filter(workshop=workshop).select_related("learner"))
    joined = {seat.learner_id: seat.joined_at for seat in seats}
    cards: dict[tuple[int, int], list[Experiment]] = {}
    for card in Experiment.objects.filter(lab=workshop.lab, owner_id__in=list(joined)).order_by("created_at", "id"):
        if card.created_at >= joined[card.owner_id]:  # from before the workshop: not the instructor's to see
            cards.setdefault((card.owner_id, card.step), []).append(card)
    per_run = {name: Counter(run_id for run_id, _ in found) for name, found in moments.items()}
    found = []
    for seat in seats:
        rows = [step_row(lab, step, cards.get((seat.learner_id, step.number), [])) for step in (lab.steps if lab else [])]
        totals = {name: counts.get(seat.run_id, 0) if seat.run_id else 0 for name, counts in per_run.items()}
        found.append(LearnerDebrief(seat, rows, totals))
    return sorted(found, key=lambda learner: learner.name.lower())


# --- The whole debrief ---------------------------------------------------------------------------


@dataclass
class Debrief:
    workshop: Workshop
    lab: Lab | None
    timeline: list[TimelineEntry]
    span: Span
    series: list[Series]
    learners: list[LearnerDebrief]
    built_at: datetime

    @property
    def windows(self) -> list[TimelineEntry]:
        """Faults in force, and scenarios playing: each drawn as a bar in the timeline's lanes."""
        return [entry for entry in self.timeline if entry.is_window]

    @property
    def fault_windows(self) -> list[TimelineEntry]:
        return [entry for entry in self.windows if entry.kind == "fault"]


def build(workshop: Workshop, now: datetime | None = None) -> Debrief:
    now = now or timezone.now()
    lab = CATALOGUE.get(workshop.lab)
    entries = timeline(workshop)
    first_seat = workshop.seats.order_by("joined_at").values_list("joined_at", flat=True).first()
    start = min([t for t in (first_seat, entries[0].at if entries else None) if t is not None], default=workshop.created_at)
    run_ids = list(workshop.seats.filter(run__isnull=False).values_list("run_id", flat=True))
    moments = cohort_moments(run_ids, start)
    live = broadcasts.in_force(workshop).exists()
    span = span_of(start, [at for found in moments.values() for _, at in found], entries, live, now)
    series = [Series(name, label, column, binned(span, moments[name]), per_second, span.bucket_s) for name, label, column, per_second in SERIES]
    return Debrief(workshop, lab, entries, span, series, learners(workshop, lab, moments), now)


# --- Exports ----------------------------------------------------------------------------------------


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def step_json(row: StepRow) -> dict:
    return {
        "step": row.number, "title": row.title, "status": row.status, "completed": row.completed, "goes": row.goes,
        "prediction": row.prediction, "actions": row.actions,
        "what_happened": [{"fact": name, "before": before, "after": after} for name, before, after in row.changes],
        "checks_passed": row.checks_passed, "checks_total": row.checks_total,
        "started_at": _when(row.started_at), "recorded_at": _when(row.recorded_at), "seconds": row.seconds,
    }  # fmt: skip


def as_json(debrief: Debrief) -> dict:
    workshop, span = debrief.workshop, debrief.span
    return {
        "workshop": {"id": workshop.pk, "title": workshop.title, "lab": workshop.lab,
                     "lab_title": debrief.lab.title if debrief.lab else workshop.lab,
                     "instructor": workshop.owner.get_username(), "built_at": _when(debrief.built_at)},  # fmt: skip
        "timeline": [{"kind": e.kind, "at": _when(e.at), "until": _when(e.until), "title": e.title, "detail": e.detail}
                     for e in debrief.timeline],  # fmt: skip
        "cohort": {
            "from": _when(span.start), "to": _when(span.end), "bucket_s": span.bucket_s,
            "series": {s.name: {"label": s.label, "total": s.total, "per_second": s.per_second, "counts": s.counts} for s in debrief.series},
        },  # fmt: skip
        "learners": [
            {"username": learner.name, "seat": learner.seat.pk, "run": learner.seat.run_id, "joined_at": _when(learner.seat.joined_at),
             "steps_completed": learner.steps_completed, "totals": learner.totals, "steps": [step_json(row) for row in learner.steps]}
            for learner in debrief.learners
        ],  # fmt: skip
    }


CSV_COLUMNS = ("learner", "step", "step_title", "status", "goes", "prediction", "actions", "what_happened",
               "checks_passed", "checks_total", "started_at", "recorded_at", "seconds_on_step")  # fmt: skip


def _cell(value) -> str:
    """A text cell a spreadsheet will not run: a learner's prediction that starts with "=" stays text."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_rows(debrief: Debrief) -> list[list[str]]:
    """A header, then one row per learner per step of the lab."""
    rows = [list(CSV_COLUMNS)]
    for learner in debrief.learners:
        for row in learner.steps:
            happened = "; ".join(f"{name}: {_shown(before)} → {_shown(after)}" for name, before, after in row.changes)
            rows.append([_cell(v) for v in (learner.name, row.number, row.title, row.status, row.goes, row.prediction,
                                             "; ".join(row.actions), happened, row.checks_passed, row.checks_total,
                                             _when(row.started_at), _when(row.recorded_at), row.seconds)])  # fmt: skip
    return rows


def _shown(value) -> str:
    return "–" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
