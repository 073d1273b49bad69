"""The cohort grid: a tile per learner, read in a fixed number of queries whatever the cohort's size.

A refresh (the grid polls every POLL_SECONDS) reads:
1. The seats with their learners, runs and RunLab rows: one query; the roster's names: one more.
2. Every run's experiments of the current go (since the run was started or reset, and since
   the learner joined): one query, for the current step, predictions written and last progress.
3. Outbox backlog and open dead letters of every run: one GROUP BY query each.
4. From Redis, in two round trips: every fault and breaker of every run, each run's latest
   event id, and the measures kept from earlier refreshes.
5. Checks passed and the auditor's invariants come from the labs' own code (labs.checks.facts,
   about 25 queries a run; a check passed during its step stays passed, labs.steps.hold_passed): too heavy for 100 runs every few seconds. So a refresh measures
   at most FACTS_PER_REFRESH runs within FACTS_BUDGET_S, first those never measured, then
   those whose pipeline moved since their last measure, then the oldest measures, and keeps
   the results in Redis for the next refresh. A tile says how old its measure is.
"""

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, F
from django.utils import timezone

from config.redis_client import get_redis, key
from labs import checks, panels, steps
from labs.catalogue import CATALOGUE
from labs.models import DeadLetter, Experiment, OutboxRow, RunLab
from labs.pipeline import events, faults
from labs.pipeline.breaker import CLOSED, BreakerState, ProviderBreaker
from labs.pipeline.topology import ALL_PROVIDERS
from workshops import roster
from workshops.models import Seat, Workshop

POLL_SECONDS = 2
FACTS_PER_REFRESH = 4
FACTS_BUDGET_S = 0.25
MEASURE_AGAIN_AFTER_S = 60  # even when nothing moved: some facts ("lost") depend on the clock
MEASURES_KEPT_FOR_S = 24 * 3600

SORTS = {"name": "name", "step": "step", "stuck": "stuck first"}
SHOWS = ("all", "stuck", "hands")  # and "step-N"


@dataclass
class Tile:
    seat: Seat
    step: int = 0  # the step of the learner's latest prediction; 0: not started
    step_title: str = ""
    predictions: int = 0
    outbox: int = 0
    dead_letters: int = 0
    breakers: dict[str, str] = field(default_factory=dict)  # providers whose breaker is not closed
    faults: dict[str, dict] = field(default_factory=dict)
    last_progress: datetime | None = None
    last_activity: datetime | None = None
    checks_passed: int | None = None  # None: not measured yet
    checks_total: int = 0
    invariants: list = field(default_factory=list)  # [name, holds, detail]
    measured_at: float | None = None
    stuck: bool = False
    real_name: str = ""  # from the workshop's roster, when the learner's e-mail or username is on it

    @property
    def name(self) -> str:
        return self.seat.learner.get_username()

    @property
    def hand(self) -> bool:
        return self.seat.hand_raised_at is not None

    @property
    def done(self) -> bool:
        return self.checks_passed is not None and self.checks_passed == self.checks_total > 0

    @property
    def invariants_hold(self) -> bool | None:
        return all(holds for _, holds, _ in self.invariants) if self.invariants else None

    @property
    def measure_age_s(self) -> int | None:
        return None if self.measured_at is None else max(0, round(time.time() - self.measured_at))


@dataclass
class Cohort:
    tiles: list[Tile]  # sorted and filtered as asked
    seats: int  # all tiles, before the filter
    by_step: list[tuple[str, int]]  # ("Not started", 3), ("Step 1", 5), ...
    stuck: int
    hands: int
    done: int


def read(workshop: Workshop, sort: str = "name", show: str = "all", now=None) -> Cohort:
    now = now or timezone.now()
    lab = CATALOGUE.get(workshop.lab)
    seats = list(Seat.objects.filter(workshop=workshop).select_related("learner", "run"))
    on_roster = roster.names(workshop)
    tiles = [Tile(seat=seat, checks_total=len(lab.checks) if lab else 0, real_name=roster.name_of(seat.learner, on_roster)) for seat in seats]
    with_runs = [tile for tile in tiles if tile.seat.run_id]
    run_ids = [tile.seat.run_id for tile in with_runs]
    if run_ids:
        _read_progress(with_runs, lab, now)
        _read_backlogs(with_runs, run_ids, now)
        _read_redis(workshop, with_runs, lab, run_ids)
    stuck_after = timedelta(minutes=workshop.stuck_after_minutes)
    for tile in tiles:
        if tile.last_progress is None:
            tile.last_progress = tile.seat.joined_at
        tile.last_activity = max(tile.last_progress, tile.seat.run.last_activity_at if tile.seat.run else tile.last_progress)
        tile.stuck = not tile.done and now - tile.last_progress >= stuck_after
    counts = Counter(tile.step for tile in tiles)
    steps = [(0, "Not started")] + [(step.number, f"Step {step.number}") for step in (lab.steps if lab else [])]
    return Cohort(
        tiles=_sorted(_shown(tiles, show), sort),
        seats=len(tiles),
        by_step=[(label, counts.get(number, 0)) for number, label in steps],
        stuck=sum(tile.stuck for tile in tiles),
        hands=sum(tile.hand for tile in tiles),
        done=sum(tile.done for tile in tiles),
    )


def _read_progress(tiles: list[Tile], lab, now) -> None:
    by_run = {tile.seat.run_id: tile for tile in tiles}
    found = (
        Experiment.objects.filter(run_id__in=list(by_run), created_at__gte=F("run__lab__started_at"))
        .order_by("created_at", "id")
        .values_list("run_id", "step", "created_at", "acted_at", "recorded_at")
    )
    for run_id, step, created, acted, recorded in found:
        tile = by_run[run_id]
        if created < tile.seat.joined_at:
            continue  # from before the workshop: not the instructor's to see
        tile.step = step
        tile.predictions += 1
        tile.last_progress = max(t for t in (tile.last_progress, created, acted, recorded) if t is not None)
    for tile in tiles:
        lab_step = lab.step(tile.step) if lab and tile.step else None
        tile.step_title = lab_step.title if lab_step else ""


def _read_backlogs(tiles: list[Tile], run_ids: list[int], now) -> None:
    outbox = dict(
        OutboxRow.objects.filter(run_id__in=run_ids, published_at__isnull=True, available_at__lte=now)
        .values("run_id").annotate(n=Count("id")).values_list("run_id", "n")
    )  # fmt: skip
    letters = dict(
        DeadLetter.objects.filter(run_id__in=run_ids, resolution=DeadLetter.Resolution.OPEN)
        .values("run_id").annotate(n=Count("id")).values_list("run_id", "n")
    )  # fmt: skip
    for tile in tiles:
        tile.outbox = outbox.get(tile.seat.run_id, 0)
        tile.dead_letters = letters.get(tile.seat.run_id, 0)


def _measures_key(workshop: Workshop) -> str:
    return key("workshop", str(workshop.pk), "measures")


def _read_redis(workshop: Workshop, tiles: list[Tile], lab, run_ids: list[int]) -> None:
    fault_settings = faults.all_faults_of(run_ids)
    with get_redis().pipeline(transaction=False) as pipe:
        for run_id in run_ids:
            for provider in ALL_PROVIDERS:
                pipe.get(ProviderBreaker(run_id, provider).state_key)
            pipe.xrevrange(events.stream_key(run_id), count=1)
        pipe.hgetall(_measures_key(workshop))
        answers = pipe.execute()
    measures = {int(run_id): json.loads(raw) for run_id, raw in answers.pop().items()}
    per_run = len(ALL_PROVIDERS) + 1
    breakers_of, latest_event = {}, {}
    for index, run_id in enumerate(run_ids):
        raw_states, newest = answers[index * per_run : index * per_run + len(ALL_PROVIDERS)], answers[(index + 1) * per_run - 1]
        breakers_of[run_id] = {p: BreakerState(**json.loads(raw)).state if raw else CLOSED for p, raw in zip(ALL_PROVIDERS, raw_states, strict=True)}
        latest_event[run_id] = newest[0][0].decode() if newest else ""
    for tile in tiles:
        run_id = tile.seat.run_id
        tile.faults = fault_settings[run_id]
        tile.breakers = {p: state for p, state in breakers_of[run_id].items() if state != CLOSED}
    if lab is not None:
        _measure_some(workshop, tiles, lab, measures, latest_event, breakers_of, fault_settings)
    for tile in tiles:
        measure = measures.get(tile.seat.run_id)
        if measure:
            tile.checks_passed, tile.invariants, tile.measured_at = measure["passed"], measure["invariants"], measure["at"]


def _measure_some(workshop, tiles, lab, measures, latest_event, breakers_of, fault_settings) -> None:
    """Measure the runs most in need of it, within the refresh's budget, and keep what was found."""
    now = time.time()

    def need(tile: Tile):
        measure = measures.get(tile.seat.run_id)
        if measure is None:
            return (0, 0.0)
        if measure["event"] != latest_event[tile.seat.run_id]:
            return (1, measure["at"])
        return (2, measure["at"]) if now - measure["at"] >= MEASURE_AGAIN_AFTER_S else None

    due = [tile for tile in tiles if need(tile) is not None and not _measured_just_now(measures, tile, now)]
    due.sort(key=need)
    started = time.monotonic()
    fresh = {}
    for tile in due[:FACTS_PER_REFRESH]:
        run = tile.seat.run
        found = checks.facts(run, breakers_of[run.pk], fault_settings[run.pk])
        results = checks.evaluate(lab, found)
        run_lab = RunLab.objects.filter(run=run).first()
        if run_lab is not None:  # a check passed during its step stays passed, as on the learner's page
            results = steps.hold_passed(lab, results, steps.current_experiments(run_lab))
        fresh[run.pk] = measures[run.pk] = {
            "at": time.time(),
            "event": latest_event[run.pk],
            "passed": sum(result.passed for result in results.values()),
            "invariants": [list(row) for row in panels.invariants(found)],
        }
        if time.monotonic() - started > FACTS_BUDGET_S:
            break
    if fresh:
        with get_redis().pipeline(transaction=False) as pipe:
            pipe.hset(_measures_key(workshop), mapping={str(run_id): json.dumps(m) for run_id, m in fresh.items()})
            pipe.expire(_measures_key(workshop), MEASURES_KEPT_FOR_S)
            pipe.execute()


def _measured_just_now(measures: dict, tile: Tile, now: float) -> bool:
    """A run measured in the last POLL_SECONDS waits its turn: a busy run must not starve the others."""
    measure = measures.get(tile.seat.run_id)
    return measure is not None and now - measure["at"] < POLL_SECONDS


def _shown(tiles: list[Tile], show: str) -> list[Tile]:
    if show == "stuck":
        return [tile for tile in tiles if tile.stuck]
    if show == "hands":
        return [tile for tile in tiles if tile.hand]
    if show.startswith("step-") and show[5:].isdigit():
        return [tile for tile in tiles if tile.step == int(show[5:])]
    return tiles


def _sorted(tiles: list[Tile], sort: str) -> list[Tile]:
    if sort == "step":
        return sorted(tiles, key=lambda t: (-t.step, t.name.lower()))
    if sort == "stuck":
        return sorted(tiles, key=lambda t: (not t.hand, not t.stuck, t.last_progress, t.name.lower()))
    return sorted(tiles, key=lambda t: t.name.lower())


def show_options(workshop: Workshop) -> list[tuple[str, str]]:
    """The grid's filters: (value, label)."""
    lab = CATALOGUE.get(workshop.lab)
    steps = [(f"step-{step.number}", f"step {step.number}") for step in (lab.steps if lab else [])]
    return [("all", "everyone"), ("stuck", "stuck"), ("hands", "raised hands"), ("step-0", "not started"), *steps]
