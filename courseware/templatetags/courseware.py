import re

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


@register.filter
def inline_code(text: str) -> SafeString:
    """Escape `text` and show its `backticked` parts as code, as check questions and options use them."""
    return mark_safe(re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text)))
