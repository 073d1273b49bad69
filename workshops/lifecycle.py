"""Ending a workshop, and cleaning up after it.

`end` steps:
1. Claim the end (a conditional UPDATE on ended_at IS NULL), so two clicks end it once.
2. Emergency stop: every fault of every run cleared, every broadcast ended, a playing scenario
   stopped (workshops.broadcasts); no new broadcast or scenario starts after this.
3. Joining closes; every seated run becomes read-only (workshops.access.is_frozen), which the
   lab pages and the API enforce, and each learner's page is told and reloads read-only.
The runs stay for the debrief; the relay's tick deletes them `WORKSHOP_KEEP_DAYS` after the end
(experiment cards are the learner's and stay in their history: labs.runs.delete_run keeps them).
"""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from labs import runs
from labs.models import LabRun
from labs.pipeline import events
from workshops import broadcasts, notices
from workshops.models import Workshop

CLEANUP_EVERY_S = 60


def end(workshop: Workshop, by) -> bool:
    """False if it had ended already."""
    now = timezone.now()
    if Workshop.objects.filter(pk=workshop.pk, ended_at__isnull=True).update(ended_at=now, ended_by=by, joining_open=False) != 1:
        return False
    broadcasts.emergency_stop(workshop, by)
    workshop.refresh_from_db()
    for run_id in notices.run_ids(workshop):
        events.emit(run_id, "run_frozen", text=f"Your instructor ended “{workshop.title}”: this run is read-only now and is "
                                                f"deleted on {workshop.runs_deleted_on:%Y-%m-%d}. Your experiment cards stay in your history.")
    return True


def delete_expired_runs(now=None) -> int:
    """Delete the runs of workshops that ended more than WORKSHOP_KEEP_DAYS ago; the seats stay, without runs."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.WORKSHOP_KEEP_DAYS)
    expired = list(LabRun.objects.filter(seat__workshop__ended_at__lt=cutoff))
    for run in expired:
        runs.delete_run(run)
    return len(expired)


_last_cleanup = 0.0


def cleanup_on_tick(sender, **kwargs) -> None:
    """The relay ticks every second; looking for expired runs once a minute is plenty."""
    global _last_cleanup
    now = timezone.now().timestamp()
    if now - _last_cleanup >= CLEANUP_EVERY_S:
        _last_cleanup = now
        delete_expired_runs()
