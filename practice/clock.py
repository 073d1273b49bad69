"""The practice app's notion of "now", in one place so tests can move it.

Everything that schedules, stamps or counts days calls `clock.now()` (never
`timezone.now()` directly). Tests monkeypatch `practice.clock.now`; the live
server runs in the test process, so the browser sees the moved clock too.
"""

from datetime import date, datetime

from django.utils import timezone


def now() -> datetime:
    return timezone.now()


def today() -> date:
    return timezone.localdate(now())
