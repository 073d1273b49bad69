"""What a workshop's learners are told on their lab pages: announcements, the instructor's faults, a stop.

Each change is also a "classroom" event in the stream of every run it concerns, so it shows
in the learner's event feed, and their page redraws its classroom bar at once (labs/live.py
streams the event; labs.js fires "lab-classroom", which the bar listens for).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from config.redis_client import get_redis, key
from labs.live import settings_text
from labs.pipeline import events
from workshops.access import being_watched
from workshops.models import Announcement, Broadcast, EmergencyStop, Seat, Workshop

POLL_S = 60  # the classroom bar's own redraw (Classroom.poll_s)
POLL_WHILE_LOOKED_AT_S = 15
STOP_SHOWN_FOR = timedelta(minutes=10)  # how long a learner's page mentions an emergency stop
GRID_OPEN_FOR_S = 10  # the grid polls every few seconds; past this without a poll it is closed


def tell(run_ids: list[int], text: str) -> None:
    events.emit_each([(run_id, "classroom", {"text": text}) for run_id in run_ids])


def bar_url(request, seat) -> str:
    """Where a learner's classroom bar asks for itself again: the live process when it shares the page's origin
    (behind a reverse proxy), as the instructor's lane does. A broadcast or a stop sends every learner's page a
    classroom event at once, and a hundred bars asking the page server together waited seconds behind the lab
    pages' panel refreshes (bench/workshop.py); else the page server."""
    from django.urls import reverse

    from labs.live import live_base

    return reverse("live:workshop_classroom" if live_base(request) == "" else "workshops:classroom", args=[seat.pk])


def describe(broadcast: Broadcast) -> str:
    """The fault in words: "email-primary down", "sms-primary error_rate 0.5"."""
    return f"{broadcast.target} {settings_text(broadcast.fault)}"


def runs_text(count: int) -> str:
    """3 -> "3 runs", 1 -> "1 run"."""
    return f"{count} run" + ("" if count == 1 else "s")


def duration_text(seconds: int) -> str:
    """90 -> "1 min 30 s", 120 -> "2 min", 45 -> "45 s"."""
    minutes, rest = divmod(seconds, 60)
    return " ".join(part for part in (f"{minutes} min" if minutes else "", f"{rest} s" if rest or not minutes else "") if part)


def announce(workshop: Workshop, by, text: str) -> Announcement:
    announcement = Announcement.objects.create(workshop=workshop, made_by=by, text=text)
    tell(run_ids(workshop), f"Announcement from your instructor: {text}")
    return announcement


def take_down(workshop: Workshop) -> int:
    taken = Announcement.objects.filter(workshop=workshop, taken_down_at__isnull=True).update(taken_down_at=timezone.now())
    if taken:
        tell(run_ids(workshop), "Your instructor took the announcement down")
    return taken


def current_announcement(workshop: Workshop) -> Announcement | None:
    return workshop.announcements.filter(taken_down_at__isnull=True).first()


def note_grid_open(workshop: Workshop) -> None:
    get_redis().set(_grid_key(workshop), 1, ex=GRID_OPEN_FOR_S)


def grid_open(workshop: Workshop) -> bool:
    return bool(get_redis().exists(_grid_key(workshop)))


def _grid_key(workshop: Workshop) -> str:
    return key("workshop", str(workshop.pk), "grid-open")


def run_ids(workshop: Workshop) -> list[int]:
    return list(workshop.seats.filter(run__isnull=False).values_list("run_id", flat=True))


@dataclass
class InstructorFault:
    text: str
    ends_at: datetime

    @property
    def seconds_left(self) -> int:
        return max(0, round((self.ends_at - timezone.now()).total_seconds()))

    @property
    def time_left(self) -> str:
        """"1:45", or "1:02:03" past an hour."""
        minutes, seconds = divmod(self.seconds_left, 60)
        hours, minutes = divmod(minutes, 60)
        return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


@dataclass
class Classroom:
    """What a learner's classroom bar shows."""

    seat: Seat
    announcement: Announcement | None
    instructor_faults: list[InstructorFault]
    stop: EmergencyStop | None
    watched: bool  # the grid is open
    looked_at: bool  # an instructor is looking at this run now (dropped in)

    @property
    def poll_s(self) -> int:
        """How often the bar redraws by itself. Every change an instructor makes comes as a "classroom" event and
        redraws it at once; the poll only catches what ends without one: a look (WATCHING_SHOWN_FOR after the last)
        and the grid closing. A hundred bars polling every 15 s cost the page server more than their panels."""
        return POLL_WHILE_LOOKED_AT_S if self.looked_at else POLL_S


def classroom(seat: Seat) -> Classroom:
    workshop = seat.workshop
    in_force = Broadcast.objects.filter(runs=seat.run_id, ended_at__isnull=True).order_by("ends_at") if seat.run_id else []
    stop = workshop.stops.filter(at__gte=max(seat.joined_at, timezone.now() - STOP_SHOWN_FOR)).first()
    return Classroom(
        seat=seat,
        announcement=current_announcement(workshop),
        instructor_faults=[InstructorFault(describe(b), b.ends_at) for b in in_force],
        stop=stop,
        watched=grid_open(workshop),
        looked_at=being_watched(seat),
    )
