"""The classroom bar a learner's lab page shows when its run sits in a workshop seat, and the grid's "how long ago"."""

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

from workshops import notices
from workshops.models import Seat

register = template.Library()


@register.inclusion_tag("workshops/classroom_bar.html", takes_context=True)
def classroom_bar(context, run) -> dict:
    seat = Seat.objects.filter(run=run).select_related("workshop__owner").first() if run else None
    request = context.get("request")
    return {"classroom": notices.classroom(seat) if seat else None, "csrf_token": context.get("csrf_token"),
            "bar_url": notices.bar_url(request, seat) if seat and request else ""}  # fmt: skip


@register.filter
def ago(moment) -> str:
    """ "just now" under a minute, else "3 minutes ago": a tile is read at a glance."""
    if moment is None:
        return ""
    if (timezone.now() - moment).total_seconds() < 60:
        return "just now"
    return f"{timesince(moment, depth=1)} ago"
