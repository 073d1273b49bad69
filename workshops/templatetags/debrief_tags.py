"""The debrief's durations, and the grid's panel for the workshop API key (when the key was made; a button for a new one)."""

from django import template

from workshops import notices
from workshops.models import WorkshopKey

register = template.Library()


@register.inclusion_tag("workshops/api_key.html#key_panel", takes_context=True)
def api_key_panel(context, workshop) -> dict:
    return {"workshop": workshop, "made": WorkshopKey.objects.filter(workshop=workshop).first(), "csrf_token": context.get("csrf_token")}


@register.filter
def duration_text(seconds: int) -> str:
    """90 -> "1 min 30 s"."""
    return notices.duration_text(seconds)
