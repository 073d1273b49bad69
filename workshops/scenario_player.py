"""The scenario player: a scenario's timeline, played on the server by the relay.

A play is a row (`ScenarioPlay`): which step it is on, since when, and its state. Only the
relay begins a step, on `labs.signals.relay_tick` (about once a second), for the reasons
workshops/broadcasts.py gives for ending broadcasts there: the relay is a long-running
process every deployment runs and restarts, and the rows say what is due. So a scenario
plays on with no browser open, and through a restart of the web process. The instructor's
buttons only change the row: pause, resume, move on (Skip, or Next on a step that waits for
it), stop.

`advance` steps, for a play in the "playing" state:
1. The current step is done when it is the start (step 0), an instant step (announce,
   fault, clear, burst, poison, send), a wait whose seconds have passed (paused time not
   counted), or the step the instructor moved on from (`released_step`).
2. Claim the next step with a conditional UPDATE on (pk, step, state); a relay or a button
   that got there first wins, and the loser does nothing. Past the last step, the play is
   finished instead.
3. Do what the claimed step says, once: the claim comes first, so a relay that dies between
   the two leaves that step undone rather than doing it twice. A step that cannot happen
   (nobody has a run yet, a crash the lab's own faults cause) says so in the play's note.
4. Repeat while the play is still playing: instant steps follow each other in one tick; a
   wait step, or a Next step (which puts the play in the "waiting" state), ends the tick.

A fault step that sees its play stopped right after injecting (the instructor's stop or the
emergency stop came in between) withdraws that fault, so a stop is final.
"""

from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from labs.models import LabRun
from labs.pipeline import intake, traffic
from workshops import broadcasts, notices
from workshops.models import ScenarioPlay, Workshop
from workshops.scenario_files import CLEAR_ALL_FAULTS, CLEAR_ANNOUNCEMENT, Scenario, ScenarioStep, scenarios

State = ScenarioPlay.State


def start(workshop: Workshop, by, slug: str) -> ScenarioPlay:
    """Start playing scenario `slug` in `workshop`; the relay begins its first step within a second.

    ValueError, with nothing written, when the scenario does not suit the workshop's lab, nobody
    has a run to play it to, or another scenario is in progress there.
    """
    if workshop.ended:
        raise ValueError("This workshop has ended: its runs are read-only.")
    scenario = scenarios().get(slug)
    if scenario is None or not scenario.suits(workshop.lab):
        raise ValueError(f"No scenario {slug!r} suits this workshop's lab.")
    if not workshop.seats.filter(run__isnull=False).exists():
        raise ValueError("No learner of this workshop has a run yet: there is nobody to play the scenario to.")
    try:
        with transaction.atomic():
            return ScenarioPlay.objects.create(workshop=workshop, scenario=slug, started_by=by)
    except IntegrityError:  # the partial unique constraint: one play in progress per workshop
        raise ValueError("A scenario is already playing in this workshop: stop it before you play another.") from None


def in_progress(workshop: Workshop) -> ScenarioPlay | None:
    return workshop.scenario_plays.filter(state__in=ScenarioPlay.IN_PROGRESS).first()


# --- The relay's side ------------------------------------------------------------------------------


def advance_due(now: datetime | None = None) -> int:
    """Move every playing scenario on as far as its timeline allows; returns how many steps began."""
    began = 0
    for play in ScenarioPlay.objects.filter(state=State.PLAYING).select_related("workshop", "started_by"):
        began += advance(play, now)
    return began


def advance_due_on_tick(sender, **kwargs) -> None:
    advance_due()


def advance(play: ScenarioPlay, now: datetime | None = None) -> int:
    """Steps 1-4 of the module docstring for one play; returns how many steps began."""
    scenario = scenarios().get(play.scenario)
    if scenario is None:  # its file was renamed or deleted since it started
        _end(play, State.STOPPED, f"Stopped: the scenario {play.scenario!r} is no longer in workshops/scenarios/")
        return 0
    began = 0
    while play.state == State.PLAYING:
        now = now or timezone.now()
        if not _current_step_done(play, scenario, now) or not _claim_next(play, scenario, now):
            break
        if play.state == State.FINISHED:
            break
        step = scenario.steps[play.step - 1]
        note = _perform(play, step)
        # Unless a stop came meanwhile: its note says why the play ended.
        ScenarioPlay.objects.filter(pk=play.pk).exclude(state=State.STOPPED).update(note=f"Step {step.number}: {note}")
        began += 1
    return began


def _current_step_done(play: ScenarioPlay, scenario: Scenario, now: datetime) -> bool:
    if play.step == 0 or play.released_step == play.step:
        return True
    step = scenario.steps[play.step - 1]
    if step.kind == "wait":
        return (now - play.step_started_at).total_seconds() >= step.seconds
    return not step.waits


def _claim_next(play: ScenarioPlay, scenario: Scenario, now: datetime) -> bool:
    """Claim the step after the current one (or the end); False when a relay or a button got there first."""
    number = play.step + 1
    if number > len(scenario.steps):
        changes = {"state": State.FINISHED, "ended_at": now, "note": "Finished: every step played"}
    else:
        waits_for_next = scenario.steps[number - 1].kind == "next"
        changes = {"step": number, "state": State.WAITING if waits_for_next else State.PLAYING, "step_started_at": now,
                   "paused_at": None, "released_step": None}  # fmt: skip
    claimed = ScenarioPlay.objects.filter(pk=play.pk, step=play.step, state=State.PLAYING).update(**changes)
    if claimed != 1:
        return False
    for name, value in changes.items():
        setattr(play, name, value)
    return True


def _run_ids(workshop: Workshop) -> list[int]:
    return list(workshop.seats.filter(run__isnull=False).values_list("run_id", flat=True))


def _perform(play: ScenarioPlay, step: ScenarioStep) -> str:
    """Do what the step says in every run of the workshop; returns what happened, for the instructor."""
    workshop, by = play.workshop, play.started_by
    if step.kind == "announce":
        notices.announce(workshop, by, step.text)
        return "announced on every learner's page"
    if step.kind == "fault":
        try:
            broadcast = broadcasts.start(workshop, by, step.target, step.fault, step.seconds)
        except ValueError as exc:
            return f"nothing injected: {exc}"
        play.broadcasts.add(broadcast)
        if ScenarioPlay.objects.filter(pk=play.pk, state=State.STOPPED).exists():
            broadcasts.withdraw(broadcast, "your instructor stopped the scenario")
            return "withdrawn at once: the scenario was stopped while it was injected"
        return f"injected {notices.describe(broadcast)} into {notices.runs_text(broadcast.runs.count())} for {notices.duration_text(step.seconds)}"
    if step.kind == "clear":
        return _clear(workshop, step.target)
    if step.kind in ("burst", "poison", "send"):
        return _send_traffic(workshop, step)
    if step.kind == "next":
        return "waiting for your Next"
    return f"waiting {notices.duration_text(step.seconds)}"


def _clear(workshop: Workshop, target: str) -> str:
    if target == CLEAR_ANNOUNCEMENT:
        return "announcement taken down" if notices.take_down(workshop) else "no announcement to take down"
    chosen = broadcasts.in_force(workshop)
    if target != CLEAR_ALL_FAULTS:
        chosen = chosen.filter(target=target)
    ended = sum(broadcasts.end_now(broadcast) for broadcast in chosen)
    return f"ended {ended} fault(s) in force" + ("" if target == CLEAR_ALL_FAULTS else f" on {target}")


def _send_traffic(workshop: Workshop, step: ScenarioStep) -> str:
    """A burst, poison messages or single sends into every run; the learners' event feeds say so."""
    run_ids = _run_ids(workshop)
    crashed = 0
    for run in LabRun.objects.filter(pk__in=run_ids):
        try:
            if step.kind == "burst":
                traffic.send_burst(run, step.count, step.template)
            elif step.kind == "poison":
                traffic.send_poison(run, step.count)
            else:
                for user in range(1, step.count + 1):
                    traffic.send_one(run, user, step.template, channels=list(step.channels) or None)
        except intake.SimulatedCrash:
            crashed += 1  # the run's own publish_crash fault: the API "died" after its commit
    what = step.describe().removeprefix("Send ").removesuffix(" into every run")
    notices.tell(run_ids, f"Your instructor's scenario sent {what} into your run")
    return f"sent {what} into {notices.runs_text(len(run_ids))}" + (f"; the API crashed after its commit in {crashed}" if crashed else "")


# --- The instructor's buttons ------------------------------------------------------------------------


def pause(play: ScenarioPlay) -> bool:
    """Hold the timeline (a wait's clock stops); faults already injected run on. False unless it was playing."""
    return ScenarioPlay.objects.filter(pk=play.pk, state=State.PLAYING).update(state=State.PAUSED, paused_at=timezone.now()) == 1


def resume(play: ScenarioPlay) -> bool:
    """Play on from a pause; the current wait keeps the time it had left."""
    current = ScenarioPlay.objects.filter(pk=play.pk, state=State.PAUSED).values("paused_at", "step_started_at").first()
    if current is None:
        return False
    now = timezone.now()
    started = current["step_started_at"] + (now - current["paused_at"]) if current["step_started_at"] else None
    resumed = ScenarioPlay.objects.filter(pk=play.pk, state=State.PAUSED, paused_at=current["paused_at"])
    return resumed.update(state=State.PLAYING, paused_at=None, step_started_at=started) == 1


def move_on(play: ScenarioPlay, seen_step: int) -> bool:
    """Skip the step the instructor saw, or answer its Next; the relay begins the next one.

    Conditional on that step still being the current one, so a double click or a page that
    was a step behind moves the timeline on once, not twice.
    """
    moved = ScenarioPlay.objects.filter(pk=play.pk, step=seen_step, state__in=ScenarioPlay.IN_PROGRESS)
    return moved.update(state=State.PLAYING, released_step=seen_step, paused_at=None) == 1


def stop(play: ScenarioPlay) -> bool:
    """Stop the timeline and end the faults it injected that are still in force; False if it had ended."""
    if not _end(play, State.STOPPED, "Stopped by your instructor"):
        return False
    for broadcast in play.broadcasts.filter(ended_at__isnull=True):
        broadcasts.end_now(broadcast)
    return True


def _end(play: ScenarioPlay, state: str, note: str) -> bool:
    ended = ScenarioPlay.objects.filter(pk=play.pk, state__in=ScenarioPlay.IN_PROGRESS).update(
        state=state, ended_at=timezone.now(), note=note)  # fmt: skip
    if ended:
        play.state = state
    return ended == 1
