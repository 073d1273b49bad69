"""Filters for the lab pages: lab prose as HTML, fact names in words, times of the experiment log."""

from datetime import datetime

from django import template

from labs.checks import FACTS
from labs.lab_files import render_inline, render_markdown
from labs.pipeline.faults import in_words

register = template.Library()


@register.filter
def lab_markdown(text: str):
    return render_markdown(text)


@register.filter
def lab_inline(text: str):
    return render_inline(text)


@register.filter
def fault_words(settings: dict) -> str:
    """A fault's settings as a learner reads them (labs.pipeline.faults.in_words)."""
    return in_words(settings)


@register.filter
def fact_help(name: str) -> str:
    return FACTS.get(name, name.replace("_", " "))


@register.filter
def iso_time(value: str) -> str:
    """An ISO timestamp from an experiment's log as HH:MM:SS."""
    try:
        return datetime.fromisoformat(value).strftime("%H:%M:%S")
    except (TypeError, ValueError):
        return ""


@register.filter
def coord(value) -> str:
    """A drawing's coordinate or a short duration with one decimal, as floatformat:1 writes it, for a tenth
    of its cost: a panels answer draws a few hundred of them (its retry chart's bars, the diagram's boxes)."""
    try:
        return f"{float(value):.1f}"
    except (TypeError, ValueError):
        return ""
