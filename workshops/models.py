"""A workshop, the learners' seats in it, and what its instructor did to the cohort's runs.

A seat's run is the learner's own run of the workshop's lab (`labs.RunLab`: one run per
learner and lab), not a second run beside it. Every lab URL, the live stream and the checks
find a learner's run through `RunLab`; a second run of the same lab would need each of
them to learn which run a page is about. So joining hands the learner's run of that lab to
the seat, started again from its seed (their experiment history is kept, and nothing from
before the workshop shows on its grid), or starts one. A run sits in at most one seat:
joining another workshop of the same lab moves it there, and the earlier instructor no
longer sees it.
"""

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from labs.models import LabRun
from workshops import codes

MAX_CAPACITY = 500


class Workshop(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="workshops_taught")
    title = models.CharField(max_length=120)
    lab = models.CharField(max_length=64)  # a slug from labs.catalogue
    capacity = models.PositiveSmallIntegerField(default=30)  # seats
    starts_at = models.DateTimeField(null=True, blank=True)  # the schedule, shown to learners; it gates nothing
    ends_at = models.DateTimeField(null=True, blank=True)
    stuck_after_minutes = models.PositiveSmallIntegerField(default=5)  # no progress for this long: the tile says "stuck"
    join_code = models.CharField(max_length=codes.LENGTH, unique=True, default=codes.new_code)
    joining_open = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Teaching assistants the owner added: they see and drive the grid; only the owner adds or removes them, or ends it.
    co_instructors = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="workshops_co_taught")
    # Ended: every run of it is read-only, and the relay deletes them `WORKSHOP_KEEP_DAYS` later.
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.title

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    @property
    def runs_deleted_on(self):
        """When an ended workshop's runs are deleted (workshops.lifecycle); None while it runs."""
        return self.ended_at + timedelta(days=settings.WORKSHOP_KEEP_DAYS) if self.ended_at else None

    @property
    def shown_code(self) -> str:
        return codes.shown(self.join_code)


class Seat(models.Model):
    """A learner's place in a workshop, and the run they work in there."""

    workshop = models.ForeignKey(Workshop, on_delete=models.CASCADE, related_name="seats")
    learner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="workshop_seats")
    # Null when the learner deleted the run or took it to another workshop; joining again gives one.
    run = models.OneToOneField(LabRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="seat")
    joined_at = models.DateTimeField(default=timezone.now)
    hand_raised_at = models.DateTimeField(null=True, blank=True)  # "I need help", until lowered
    watched_at = models.DateTimeField(null=True, blank=True)  # an instructor last looked at this run (dropped in)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workshop", "learner"], name="one_seat_per_learner")]
        ordering = ["joined_at", "id"]


class Broadcast(models.Model):
    """A fault the instructor put into many runs at once, until `ends_at` (the relay ends it then)."""

    class Ending(models.TextChoices):
        EXPIRED = "expired", "Its time ran out"
        ENDED = "ended", "Ended early by the instructor"
        STOPPED = "stopped", "Emergency stop"

    workshop = models.ForeignKey(Workshop, on_delete=models.CASCADE, related_name="broadcasts")
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    target = models.CharField(max_length=32)  # a fault target of labs.pipeline.faults
    fault = models.JSONField()  # the settings, as labs.pipeline.faults.validate returned them
    runs = models.ManyToManyField(LabRun, related_name="workshop_broadcasts")
    started_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    ending = models.CharField(max_length=8, choices=Ending.choices, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["ends_at"], condition=Q(ended_at__isnull=True), name="broadcast_in_force")]


class EmergencyStop(models.Model):
    """Every fault of every run of the workshop cleared at once: who pressed it, when, how long it took."""

    workshop = models.ForeignKey(Workshop, on_delete=models.CASCADE, related_name="stops")
    stopped_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    at = models.DateTimeField(default=timezone.now)
    runs_cleared = models.PositiveIntegerField(default=0)
    took_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-at", "-id"]


class Announcement(models.Model):
    """A banner the instructor typed; the latest one not taken down shows on every learner's page."""

    workshop = models.ForeignKey(Workshop, on_delete=models.CASCADE, related_name="announcements")
    made_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    text = models.CharField(max_length=500)
    made_at = models.DateTimeField(default=timezone.now)
    taken_down_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-made_at", "-id"]


class RosterEntry(models.Model):
    """A person the instructor expects: the grid shows their real name on the tile of the account
    whose e-mail or username matches, and who has not joined yet."""

    workshop = models.ForeignKey(Workshop, on_delete=models.CASCADE, related_name="roster")
    name = models.CharField(max_length=120)
    email = models.EmailField(blank=True)  # matched without regard to case
    username = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name_plural = "roster entries"


class ScenarioPlay(models.Model):
    """A scenario (workshops/scenarios/) playing in a workshop: which step it is on, and since when.

    Only the relay begins a step (workshops/scenario_player.py), so it plays with no browser open
    and through a restart of the web process; the instructor's buttons change `state` and
    `released_step`, and every change is a conditional UPDATE on (step, state).
    """

    class State(models.TextChoices):
        PLAYING = "playing", "Playing"
        PAUSED = "paused", "Paused"
        WAITING = "waiting", "Waiting for your Next"
        FINISHED = "finished", "Finished"
        STOPPED = "stopped", "Stopped"

    IN_PROGRESS = (State.PLAYING, State.PAUSED, State.WAITING)

    workshop = models.ForeignKey(Workshop, on_delete=models.CASCADE, related_name="scenario_plays")
    scenario = models.CharField(max_length=64)  # a scenario's slug (its file's name)
    step = models.PositiveSmallIntegerField(default=0)  # the step in progress, from 1; 0 before the first
    state = models.CharField(max_length=10, choices=State.choices, default=State.PLAYING)
    step_started_at = models.DateTimeField(null=True, blank=True)  # moved on by a pause's length when resumed
    released_step = models.PositiveSmallIntegerField(null=True, blank=True)  # the step the instructor skipped or said Next to
    paused_at = models.DateTimeField(null=True, blank=True)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True)  # what the latest step did, or why the play ended
    broadcasts = models.ManyToManyField(Broadcast, blank=True, related_name="+")  # the faults it injected

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["workshop"], condition=Q(state__in=["playing", "paused", "waiting"]),
                                    name="one_scenario_in_progress_per_workshop"),
        ]  # fmt: skip


class WorkshopKey(models.Model):
    """The workshop API's key (workshops/api.py), kept as its SHA-256 only (workshops/api_keys.py says why)."""

    workshop = models.OneToOneField(Workshop, on_delete=models.CASCADE, related_name="api_key")
    key_hash = models.CharField(max_length=64, unique=True)  # hex SHA-256 of the key
    made_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    made_at = models.DateTimeField(default=timezone.now)
