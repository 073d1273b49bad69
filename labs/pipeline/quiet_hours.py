"""Quiet hours: when a user's local clock says "do not disturb" (lesson: case-study-notification-system).

The worker defers a message that falls inside them and records the window in force with the
send; the providers and the auditor judge each send by that recorded window, so a user who
changes their quiet hours later does not rewrite what happened.
"""

from datetime import datetime, time, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo


def quiet_hours_end(recipient, now: datetime) -> datetime | None:
    """When the recipient's quiet hours end, if `now` falls inside them; else None."""
    if recipient.quiet_start is None or recipient.quiet_end is None:
        return None
    local = now.astimezone(ZoneInfo(recipient.timezone))
    start, end, clock = recipient.quiet_start, recipient.quiet_end, local.time()
    inside = (start <= clock < end) if start < end else (clock >= start or clock < end)
    if not inside:
        return None
    end_at = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if end_at <= local:
        end_at += timedelta(days=1)
    return end_at.astimezone(ZoneInfo("UTC"))


def quiet_window(recipient, now: datetime) -> tuple[str, time]:
    """The quiet hours in force ("22:00-07:00", or "" for none) and the user's local time at `now`:
    recorded on each attempt and handed to the provider, so the auditor judges the send by them."""
    local = now.astimezone(ZoneInfo(recipient.timezone)).time().replace(microsecond=0)
    if recipient.quiet_start is None or recipient.quiet_end is None:
        return "", local
    return f"{recipient.quiet_start:%H:%M}-{recipient.quiet_end:%H:%M}", local


def sent_inside(window: str, zone: str, at: datetime) -> bool:
    """Whether a send at `at` fell inside the recorded window ("22:00-07:00"; "" for none)."""
    if not window:
        return False
    start, end = (time.fromisoformat(part) for part in window.split("-"))
    return quiet_hours_end(SimpleNamespace(quiet_start=start, quiet_end=end, timezone=zone or "UTC"), at) is not None
