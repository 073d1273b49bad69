"""The scenario panel of a workshop's grid: choose a scenario, play it, and steer its timeline.

Every URL here is the workshop's instructor's (`views._get_workshop_for_instructor`: 404 for
anyone else). The buttons only change the play's row (workshops/scenario_player.py); the relay
begins each step, so what a step does reaches the learners within about a second, and the
panel, which polls every 2 s while a scenario plays, shows it. The grid page loads the panel
with htmx; without JavaScript it is a page of its own, and each button redirects back to it.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from labs.catalogue import CATALOGUE
from workshops import scenario_player
from workshops.models import ScenarioPlay, Workshop
from workshops.scenario_files import Scenario, ScenarioFileError, scenarios
from workshops.views import _get_workshop_for_instructor

POLL_SECONDS = 2


class PlayForm(forms.Form):
    scenario = forms.ChoiceField(label="Scenario")

    def __init__(self, choices: list[Scenario], *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["scenario"].choices = [(s.slug, s.title) for s in choices]


class MoveOnForm(forms.Form):
    step = forms.IntegerField(min_value=1)  # the step the page showed, so a double click moves the timeline on once


@dataclass
class WaitLeft:
    """The time left on the current wait step: counting down while playing, frozen while paused."""

    seconds: int
    ends_at: datetime | None  # None while paused

    @property
    def text(self) -> str:
        minutes, seconds = divmod(self.seconds, 60)
        return f"{minutes}:{seconds:02d}"


def _wait_left(play: ScenarioPlay, scenario: Scenario) -> WaitLeft | None:
    step = scenario.steps[play.step - 1] if play.step else None
    if step is None or step.kind != "wait" or play.step_started_at is None or play.released_step == play.step:
        return None
    ends_at = play.step_started_at + timedelta(seconds=step.seconds)
    now = play.paused_at or timezone.now()
    return WaitLeft(max(0, round((ends_at - now).total_seconds())), None if play.paused_at else ends_at)


def _panel_context(workshop: Workshop, **extra) -> dict:
    try:
        found = scenarios()
    except ScenarioFileError as exc:  # a broken file says where, and the grid keeps working
        return {"workshop": workshop, "broken": str(exc), **extra}
    play = scenario_player.in_progress(workshop)
    last = None if play else workshop.scenario_plays.first()
    scenario = found.get(play.scenario) if play else None
    return {
        "workshop": workshop,
        "lab": CATALOGUE.get(workshop.lab),
        "choices": [s for s in found.values() if s.suits(workshop.lab)],
        "play": play if scenario else None,
        "scenario": scenario,
        "wait_left": _wait_left(play, scenario) if scenario else None,
        "last": last,
        "last_title": found[last.scenario].title if last and last.scenario in found else (last.scenario if last else ""),
        "poll_seconds": POLL_SECONDS,
        **extra,
    }


def _panel_response(request: HttpRequest, workshop: Workshop, note: str = "", error: str = "") -> HttpResponse:
    if not request.htmx:
        if error:
            messages.error(request, error)
        elif note:
            messages.success(request, note)
        return redirect("workshops:scenarios", workshop.pk)
    return render(request, "workshops/scenarios.html#panel", _panel_context(workshop, note=note, error=error))


def _get_play(request: HttpRequest, workshop_id: int, play_id: int) -> tuple[Workshop, ScenarioPlay]:
    workshop = _get_workshop_for_instructor(request, workshop_id)
    return workshop, get_object_or_404(workshop.scenario_plays, pk=play_id)


@never_cache
@require_GET
def panel(request: HttpRequest, workshop_id: int) -> HttpResponse:
    workshop = _get_workshop_for_instructor(request, workshop_id)
    context = _panel_context(workshop)
    return render(request, "workshops/scenarios.html#panel" if request.htmx else "workshops/scenarios.html", context)


@require_POST
def play(request: HttpRequest, workshop_id: int) -> HttpResponse:
    workshop = _get_workshop_for_instructor(request, workshop_id)
    try:
        choices = [s for s in scenarios().values() if s.suits(workshop.lab)]
    except ScenarioFileError as exc:
        return _panel_response(request, workshop, error=str(exc))
    form = PlayForm(choices, request.POST)
    if not form.is_valid():
        return _panel_response(request, workshop, error=f"Scenario: {' '.join(form.errors['scenario'])}")
    try:
        started = scenario_player.start(workshop, request.user, form.cleaned_data["scenario"])
    except ValueError as exc:
        return _panel_response(request, workshop, error=str(exc))
    title = scenarios()[started.scenario].title
    return _panel_response(request, workshop, f"Playing “{title}”: the server plays it, with or without this page open.")


@require_POST
def pause(request: HttpRequest, workshop_id: int, play_id: int) -> HttpResponse:
    workshop, chosen = _get_play(request, workshop_id, play_id)
    if scenario_player.pause(chosen):
        return _panel_response(request, workshop, "Paused: the timeline waits for you. Faults already injected run on.")
    return _panel_response(request, workshop, error="Only a playing scenario can be paused.")


@require_POST
def resume(request: HttpRequest, workshop_id: int, play_id: int) -> HttpResponse:
    workshop, chosen = _get_play(request, workshop_id, play_id)
    if scenario_player.resume(chosen):
        return _panel_response(request, workshop, "Playing again.")
    return _panel_response(request, workshop, error="That scenario was not paused.")


@require_POST
def move_on(request: HttpRequest, workshop_id: int, play_id: int) -> HttpResponse:
    """Skip a step, or say Next to a step waiting for it: the same move, from the step the page showed."""
    workshop, chosen = _get_play(request, workshop_id, play_id)
    form = MoveOnForm(request.POST)
    if not form.is_valid():
        return _panel_response(request, workshop, error=f"Step: {' '.join(form.errors['step'])}")
    step = form.cleaned_data["step"]
    if scenario_player.move_on(chosen, step):
        return _panel_response(request, workshop, f"Moving on from step {step}.")
    return _panel_response(request, workshop, error=f"Step {step} is no longer the current step: the timeline had moved on.")


@require_POST
def stop(request: HttpRequest, workshop_id: int, play_id: int) -> HttpResponse:
    workshop, chosen = _get_play(request, workshop_id, play_id)
    if scenario_player.stop(chosen):
        return _panel_response(request, workshop, "Scenario stopped, and the faults it injected ended.")
    return _panel_response(request, workshop, error="That scenario had ended already.")
