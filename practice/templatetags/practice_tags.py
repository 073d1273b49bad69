import html

from django import template
from django.utils.html import strip_tags
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator

from practice.question_files import TOPICS
from practice.rendering import plain_text, render_markdown, render_question_text

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    """Markdown → sanitised HTML (practice/rendering.py)."""
    return render_markdown(text)


@register.filter
def question_markdown(text: str) -> SafeString:
    """The question files' own Markdown (a prompt, a model answer) → HTML, rendered once per text."""
    return render_question_text(text)


@register.filter
def inline_markdown(text: str) -> SafeString:
    """Markdown for a short phrase from the question files (an option, a hint): without the paragraph around it."""
    html = str(render_question_text(text)).strip()
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


@register.filter
def answer_excerpt(text: str, length: int = 90) -> str:
    """The start of an answer as plain text: rendered and sanitised first, like everything a candidate wrote."""
    if not text:
        return ""
    return Truncator(html.unescape(strip_tags(render_markdown(text)))).chars(length)


@register.filter(name="plain_text")
def plain_text_filter(text: str) -> str:
    """A sentence a candidate wrote, sanitised to plain text (practice/rendering.py)."""
    return plain_text(text)
