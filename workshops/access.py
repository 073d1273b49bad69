"""Who may see a workshop and its learners' runs.

- A workshop's instructors are its owner and the co-instructors the owner added. They see its
  grid, drop in on its learners' runs (read-only) and drive it; only the owner adds or removes
  co-instructors and ends the workshop.
- An instructor watches a learner's run only while that run sits in a seat of a workshop they
  teach: not the learner's other runs, not another workshop's.
Everyone else gets 404, so a workshop's or run's existence stays private.
"""

from datetime import timedelta

from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone

from workshops.models import Seat, Workshop


def taught_by(user) -> QuerySet[Workshop]:
    """The workshops `user` owns or co-teaches."""
    if not user.is_authenticated:
        return Workshop.objects.none()
    co_taught = Workshop.co_instructors.through.objects.filter(user_id=user.pk).values("workshop_id")
    return Workshop.objects.filter(Q(owner_id=user.pk) | Q(pk__in=co_taught))


def workshop_for_instructor(user, workshop_id: int) -> Workshop:
    workshop = taught_by(user).filter(pk=workshop_id).select_related("owner").first()
    if workshop is None:
        raise Http404("Not found")
    return workshop


def workshop_for_owner(user, workshop_id: int) -> Workshop:
    workshop = workshop_for_instructor(user, workshop_id)
    if workshop.owner_id != user.pk:
        raise Http404("Not found")  # a co-instructor sees the workshop, but this action is not theirs
    return workshop


def watched_seat(user, run_id: int) -> Seat | None:
    """The seat holding run `run_id`, if `user` teaches its workshop; None otherwise."""
    if not user.is_authenticated:
        return None
    return Seat.objects.filter(run_id=run_id, workshop__in=taught_by(user)).select_related("workshop", "learner").first()


def is_frozen(run_id: int) -> bool:
    """A run in a seat of an ended workshop is read-only."""
    return Seat.objects.filter(run_id=run_id, workshop__ended_at__isnull=False).exists()


WATCHING_SHOWN_FOR = timedelta(seconds=30)  # the learner's bar says "looking now" this long after the last look


def note_watching(seat: Seat) -> None:
    """An instructor looked at the seat's run: the learner's classroom bar says so (written at most every few seconds).
    A look that starts is a "classroom" event in the run's stream, so the bar says so at once, not at its next poll."""
    from labs.pipeline import events

    now = timezone.now()
    if seat.watched_at is None or now - seat.watched_at > timedelta(seconds=5):
        Seat.objects.filter(pk=seat.pk).update(watched_at=now)
        if seat.run_id and not being_watched(seat):
            events.emit(seat.run_id, "classroom", text="Your instructor is looking at your run (read-only)")
        seat.watched_at = now


def being_watched(seat: Seat) -> bool:
    return seat.watched_at is not None and timezone.now() - seat.watched_at < WATCHING_SHOWN_FOR


FROZEN_MESSAGE = "This run is read-only: its workshop has ended. Your experiment cards stay in your lab history."


def refuse_if_frozen(run_id: int) -> None:
    if is_frozen(run_id):
        raise PermissionDenied(FROZEN_MESSAGE)
