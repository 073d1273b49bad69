"""Joining a workshop: a seat for the learner, and their run of the workshop's lab.

`join` steps:
1. Lock the workshop row (PostgreSQL: SELECT ... FOR UPDATE; SQLite's IMMEDIATE
   transactions already take the write lock), so two learners cannot take the last seat.
2. A learner who has a seat keeps it, even once joining is closed or the workshop is full.
   Anyone else is refused, with nothing written, when joining is closed, every seat is
   taken, or they are the instructor.
3. A seat without a run gets the learner's run of the lab, started again from its seed
   (it leaves any earlier seat), or a new run (see workshops.models for why). This is a
   transaction of its own, after the lock is released: a class joining at once queues on
   the lock only for taking seats.
"""

from django.db import IntegrityError, transaction

from labs import runs
from labs.catalogue import CATALOGUE
from labs.models import RunLab
from workshops import codes
from workshops.models import Seat, Workshop


class JoinRefused(Exception):
    """Why a learner may not join; the message is shown to them as it is."""


def find(typed_code: str) -> Workshop | None:
    code = codes.normalise(typed_code)
    if not codes.is_well_formed(code):
        return None
    return Workshop.objects.select_related("owner").filter(join_code=code).first()


def unknown_code_message(typed_code: str) -> str:
    shown = typed_code.strip()[:20] or "(empty)"
    return f"No workshop has the code {shown}. Check it with your instructor: codes have six letters and digits, such as K7M-P2Q."


def refusal(workshop: Workshop, user) -> str | None:
    """Why `user` (None: a visitor not signed in yet) may not take a new seat, or None."""
    if user is not None and user.is_authenticated:
        if user.pk == workshop.owner_id or workshop.co_instructors.filter(pk=user.pk).exists():
            return "You teach this workshop: your learners join it; you follow them on its grid."
        if Seat.objects.filter(workshop=workshop, learner=user).exists():
            return None
    if workshop.ended:
        return f"“{workshop.title}” has ended: it takes no new learners."
    if not workshop.joining_open:
        return f"Joining “{workshop.title}” is closed. Ask your instructor to reopen it."
    if workshop.seats.count() >= workshop.capacity:
        return f"“{workshop.title}” is full: all {workshop.capacity} seats are taken. Ask your instructor for a seat."
    return None


def join(workshop: Workshop, user) -> Seat:
    """The learner's seat, with a run; JoinRefused (nothing written) when they may not join."""
    seat = take_seat(workshop, user)
    give_run(seat)
    return seat


def take_seat(workshop: Workshop, user) -> Seat:
    """Steps 1 and 2: the learner's seat, taken under the workshop's lock (held only this long)."""
    with transaction.atomic():
        locked = Workshop.objects.select_for_update().get(pk=workshop.pk)
        seat = Seat.objects.filter(workshop=locked, learner=user).first()
        if seat is not None:
            return seat
        problem = refusal(locked, user)
        if problem:
            raise JoinRefused(problem)
        try:
            with transaction.atomic():
                return Seat.objects.create(workshop=locked, learner=user)
        except IntegrityError:  # a second click raced the first
            return Seat.objects.get(workshop=locked, learner=user)


def give_run(seat: Seat) -> None:
    """Step 3: a seat without a run gets one."""
    if seat.run_id is not None:
        return
    with transaction.atomic():
        seat.run = _run_for_seat(seat.workshop, seat.learner)
        seat.save(update_fields=["run"])


def _run_for_seat(workshop: Workshop, user):
    lab = CATALOGUE[workshop.lab]
    run_lab = RunLab.objects.filter(owner=user, lab=workshop.lab).select_related("run").first()
    if run_lab is None:
        return runs.start_lab_run(user, lab).run
    Seat.objects.filter(run=run_lab.run).update(run=None)  # it leaves the workshop it was in
    runs.restart_lab_run(run_lab, lab)
    return run_lab.run
