"""Read settings from the environment.

Every helper raises ImproperlyConfigured naming the variable, so a bad value stops
start-up with a message a newcomer can act on instead of a traceback deep in Django.
"""

import os
import re
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: use 1/0, true/false, yes/no or on/off.")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_url(name: str, default: str, *, schemes: set[str]) -> str:
    """A URL whose scheme is one of `schemes` and that names a host or a path."""
    raw = (os.environ.get(name) or default).strip()  # set but empty means "use the default"
    parsed = urlparse(raw)
    if parsed.scheme not in schemes:
        allowed = ", ".join(sorted(f"{s}://" for s in schemes))
        raise ImproperlyConfigured(f"{name}={raw!r} is not a URL this project can use: it must start with {allowed}.")
    if not (parsed.netloc or parsed.path):
        raise ImproperlyConfigured(f"{name}={raw!r} names no host or path.")
    try:
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} has a port that is not a number.") from None
    return raw


_RATE = re.compile(r"[1-9][0-9]*/([1-9][0-9]*)?[smhd]")  # as django-ratelimit reads it: a count per (n) s, m, h or d


def env_rate(name: str, default: str) -> str:
    """A rate limit such as "5/m" (5 a minute), "30/10m" or "600/h"."""
    raw = os.environ.get(name, "").strip() or default
    if not _RATE.fullmatch(raw):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a rate: write a count per period, such as 5/m, 30/10m or 600/h.")
    return raw
