"""The workshop API: a script runs a workshop as its instructor does from the grid.

Served under /api/workshops/current by the lab API (config/urls.py adds this router to it), so
it shares its OpenAPI schema (/api/docs) and its errors: JSON with a human `error` line and,
for bad input, `errors` naming each field; a refused request writes nothing. A request
carries the workshop's key (`Authorization: Bearer flw_…`, workshops/api_keys.py), which
opens that workshop only. Every call goes through the code the grid's buttons use
(workshops.broadcasts, workshops.notices, workshops.debrief), so a fault injected here ends
on the server like any other, and the learners' pages show it the same way.
"""

from django.conf import settings
from django.http import HttpRequest
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError
from ninja.security import HttpBearer
from pydantic import ConfigDict, FiniteFloat, StrictInt

from config import ratelimits
from labs.api import BODY, Text, answers
from labs.pipeline import audit, faults, intake
from workshops import api_keys, broadcasts, cohort, debrief, notices
from workshops.models import MAX_CAPACITY, Announcement, Broadcast, EmergencyStop, Seat, Workshop


class WorkshopBearer(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Workshop | None:
        key = api_keys.key_for(token)
        if key is None:
            return None
        limited = ratelimits.take(request, "workshop-key", str(key.pk), settings.RATELIMIT_API_PER_KEY,
                                  "Too many requests with this workshop key.")  # fmt: skip
        if limited is not None:
            raise ratelimits.RateLimited(limited)
        request.workshop = key.workshop
        request.acting = key.made_by or key.workshop.owner  # recorded as who injected, stopped or announced
        return key.workshop


router = Router(auth=WorkshopBearer(), tags=["workshops"])


def _bad_field(name: str, message: str):
    raise intake.IntakeError(422, {name: message})


# --- Schemas ---------------------------------------------------------------------------------------


class BroadcastIn(Schema):
    model_config = ConfigDict(extra="forbid")

    target: Text = Field(..., max_length=32, description=f'A provider such as "email-primary", or "{faults.PIPELINE}".')
    fault: dict[Text, bool | int | FiniteFloat] = Field(..., description='The fault\'s settings, e.g. {"down": true} or {"error_rate": 0.5}.')
    duration_s: StrictInt = Field(..., ge=broadcasts.MIN_DURATION_S, le=broadcasts.MAX_DURATION_S,
                                  description="Seconds until the server ends it by itself.")  # fmt: skip
    runs: list[StrictInt] | None = Field(None, min_length=1, max_length=MAX_CAPACITY,
                                         description="Run ids of learners of this workshop (GET lists them); omitted: every learner.")  # fmt: skip


class AnnouncementIn(Schema):
    model_config = ConfigDict(extra="forbid")

    text: Text = Field(..., min_length=1, max_length=500, description="Shown at the top of every learner's lab page.")


# --- Presenting --------------------------------------------------------------------------------------


def broadcast_json(b: Broadcast) -> dict:
    return {"broadcast": b.pk, "target": b.target, "fault": b.fault, "described": notices.describe(b),
            "runs": sorted(b.runs.values_list("pk", flat=True)), "started_at": b.started_at, "ends_at": b.ends_at,
            "ended_at": b.ended_at, "ending": b.ending or None}  # fmt: skip


def stop_json(stop: EmergencyStop) -> dict:
    return {"stop": stop.pk, "at": stop.at, "runs_cleared": stop.runs_cleared, "took_ms": stop.took_ms}


def _learner_json(tile: cohort.Tile) -> dict:
    run = tile.seat.run
    return {
        "username": tile.name, "seat": tile.seat.pk, "run": tile.seat.run_id, "joined_at": tile.seat.joined_at,
        "hand_raised": tile.hand, "step": tile.step, "step_title": tile.step_title, "predictions": tile.predictions,
        "faults": tile.faults, "audit": audit.audit(run) if run else None,
    }  # fmt: skip


# --- Endpoints ------------------------------------------------------------------------------------------


@router.get("/current", summary="The workshop: its learners with their run ids, current step and audit", response=answers({200: dict}))
def current_workshop(request):
    workshop = request.workshop
    announcement = notices.current_announcement(workshop)
    return {
        "workshop": workshop.pk, "title": workshop.title, "lab": workshop.lab, "join_code": workshop.shown_code,
        "joining_open": workshop.joining_open, "announcement": announcement.text if announcement else None,
        "learners": [_learner_json(tile) for tile in cohort.read(workshop).tiles],
        "broadcasts_in_force": [broadcast_json(b) for b in broadcasts.in_force(workshop)],
    }  # fmt: skip


@router.put("/current/faults", summary="Inject a fault into every learner's run, or the listed runs, for a while",
            response=answers({201: dict}, *BODY, 409))
def put_faults(request, payload: BroadcastIn):
    """Checked like a fault on the lab API (the same names and ranges); one bad setting or run id rejects it all."""
    workshop = request.workshop
    if payload.target not in faults.TARGETS:
        _bad_field("target", f"{payload.target!r} is not a fault target; choose a provider or service "
                             f"({', '.join(faults.TARGETS[:-1])}) or {faults.PIPELINE!r}")  # fmt: skip
    try:
        checked = faults.validate(payload.target, payload.fault)
    except ValueError as exc:
        _bad_field("fault", str(exc))
    # What the grid's form would send for these settings: a box left unticked or a zero asks for nothing.
    fault = {name: value for name, value in checked.items() if value not in (None, False)}
    if not fault:
        _bad_field("fault", f"say what goes wrong with {payload.target}, e.g. {{\"down\": true}}")
    seats = None
    if payload.runs is not None:
        by_run = {seat.run_id: seat for seat in Seat.objects.filter(workshop=workshop, run_id__in=payload.runs)}
        for index, run_id in enumerate(payload.runs):
            if run_id not in by_run:
                _bad_field(f"runs[{index}]", f"run {run_id} is not the run of a learner in this workshop")
        seats = list(by_run.values())
    try:
        started = broadcasts.start(workshop, request.acting, payload.target, fault, payload.duration_s, seats)
    except ValueError as exc:
        raise HttpError(409, str(exc)) from exc
    return Status(201, broadcast_json(started))


@router.delete("/current/faults", summary="Emergency stop: clear every fault of every learner's run", response=answers({200: dict}))
def delete_faults(request):
    """The grid's "Stop every fault": ends every broadcast and clears the learners' own faults too."""
    return stop_json(broadcasts.emergency_stop(request.workshop, request.acting))


@router.post("/current/stop", summary="Emergency stop (the same as DELETE /workshops/current/faults)", response=answers({200: dict}))
def stop(request):
    return stop_json(broadcasts.emergency_stop(request.workshop, request.acting))


@router.post("/current/announcements", summary="Announce a banner on every learner's page", response=answers({201: dict}, *BODY))
def announce(request, payload: AnnouncementIn):
    text = payload.text.strip()
    if not text:
        _bad_field("text", "write something to announce")
    made: Announcement = notices.announce(request.workshop, request.acting, text)
    return Status(201, {"announcement": made.pk, "text": made.text, "made_at": made.made_at})


@router.get("/current/debrief", summary="The debrief: the timeline, the cohort's series, each learner's steps", response=answers({200: dict}))
def get_debrief(request):
    return debrief.as_json(debrief.build(request.workshop))
