import functools
import re

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from courseware import content_cache

register = template.Library()


@register.simple_tag
def slot(kind: str, key: object = "") -> SafeString:
    """A slot in HTML kept per content version, filled for each request (courseware/content_cache.py)."""
    return content_cache.slot(kind, key)


@register.filter
@functools.lru_cache(maxsize=4096)  # check questions and options, the same few hundred on every lesson page
def inline_code(text: str) -> SafeString:
    """Escape `text` and show its `backticked` parts as code, as check questions and options use them."""
    return mark_safe(re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text)))
