"""The classroom bar a learner's lab page shows when its run sits in a workshop seat."""

from django import template

from workshops import notices
from workshops.models import Seat

register = template.Library()


@register.inclusion_tag("workshops/classroom_bar.html", takes_context=True)
def classroom_bar(context, run) -> dict:
    seat = Seat.objects.filter(run=run).select_related("workshop__owner").first() if run else None
    return {"classroom": notices.classroom(seat) if seat else None, "csrf_token": context.get("csrf_token")}
