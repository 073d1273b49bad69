"""`{% load site %}`: links and static files that every page shows, worked out once per process.

base.html renders on every page, and its `{% url %}` and `{% static %}` tags cost a reverse()
or a storage lookup each (about 25 µs apiece on our machine, a tenth of a trivial page's whole
time); a lesson or question page adds a few more with arguments. Their answers never change
while the process runs (the URLconf, the script prefix a proxy gives and the static storage are
fixed), so these tags remember them.
"""

from functools import lru_cache

from django import template
from django.contrib.staticfiles.storage import staticfiles_storage
from django.urls import get_script_prefix, reverse

register = template.Library()


@register.simple_tag
def site_url(view_name: str, *args, **kwargs) -> str:
    """`{% url %}`: a link's path depends only on the view's name, its arguments and the script prefix."""
    return _reverse(view_name, get_script_prefix(), args, tuple(sorted(kwargs.items())))


@register.simple_tag
def site_static(path: str) -> str:
    """`{% static %}`."""
    return _static(path)


@lru_cache(maxsize=4096)  # a page links a few hundred things at most; a process sees a few thousand
def _reverse(view_name: str, script_prefix: str, args: tuple, kwargs: tuple) -> str:
    return reverse(view_name, args=args, kwargs=dict(kwargs))  # reverse() reads the same prefix: it is part of the key


@lru_cache(maxsize=256)
def _static(path: str) -> str:
    return staticfiles_storage.url(path)
