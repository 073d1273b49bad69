from django import template
from django.utils.safestring import SafeString, mark_safe

from practice.question_files import TOPICS
from practice.rendering import render_markdown

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    """Markdown → sanitised HTML (practice/rendering.py)."""
    return render_markdown(text)


@register.filter
def inline_markdown(text: str) -> SafeString:
    """Markdown for a short phrase (an option, a hint): without the paragraph around it."""
    html = str(render_markdown(text)).strip()
    if html.startswith("<p>") and html.endswith("</p>") and html.count("<p>") == 1:
        html = html[3:-4]
    return mark_safe(html)  # already sanitised by render_markdown


@register.filter
def topic_label(slug: str) -> str:
    return TOPICS.get(slug, slug)


@register.filter
def clock(seconds: float) -> str:
    """Seconds as a countdown: 754 → "12:34"."""
    whole = max(0, int(seconds))
    return f"{whole // 60}:{whole % 60:02d}"
