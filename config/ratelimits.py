"""Rate limits: counters shared by every web process, kept in Redis through Django's cache.

The counting is django-ratelimit's: a rate such as "5/m" allows 5 in each one-minute window
(fixed windows, each key's offset by a hash of the key, so they do not all end at once); a
window's counter expires with it. Callers name what they count (a group) and whose it is (a
value: an account, an address, an API key's run) and get back either None or a `Limited`
that says how long to wait.

Refusing is the caller's job, in the caller's format: an HTML page shows the message in its
form and marks the request (`refuse`), and `TooManyRequestsMiddleware` then sends that page
as 429 with Retry-After; an API raises `RateLimited` and its exception handler answers JSON.

When Redis is unreachable nothing is limited: logging in, the lessons and the practice pages
work without Redis (config/middleware.py), and a limiter that failed closed would lock every
learner out for as long as Redis is down. It is logged, so an operator sees it.
"""

import ipaddress
import logging
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django_ratelimit.core import get_usage
from redis.exceptions import RedisError

log = logging.getLogger("faultline")


@dataclass(frozen=True)
class Limited:
    """A refusal: what was refused, in a sentence, and the seconds until the window ends."""

    message: str
    retry_after: int

    @property
    def wait(self) -> str:
        seconds = self.retry_after
        return f"{seconds} second{'s' * (seconds != 1)}" if seconds < 120 else f"{round(seconds / 60)} minutes"


class RateLimited(Exception):
    def __init__(self, limited: Limited):
        super().__init__(limited.message)
        self.limited = limited


def client_address(request: HttpRequest) -> str:
    """The client's address, an IPv6 one as its /64 (one machine usually holds the whole block).

    Behind a reverse proxy every request comes from the proxy; CLIENT_ADDRESS_HEADER names the
    header in which the proxy puts the client's address (it must overwrite what a client sent).
    """
    header = settings.CLIENT_ADDRESS_HEADER
    raw = (request.headers.get(header, "") if header else "") or request.META.get("REMOTE_ADDR", "")
    try:
        address = ipaddress.ip_address(raw.strip())
    except ValueError:
        return raw[:64]  # a value the limits still count by, whatever it is
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False).network_address)
    return str(address)


def _usage(request: HttpRequest, group: str, value: str, rate: str, increment: bool) -> dict | None:
    try:
        return get_usage(request, group=group, key=lambda _group, _request: value, rate=rate, increment=increment)
    except RedisError as exc:
        log.warning("rate limit %s not applied: Redis is unreachable (%s: %s)", group, type(exc).__name__, exc)
        return None


def _limited(usage: dict, message: str) -> Limited:
    # A counter that vanished between two steps comes back with time_left -1: wait one second.
    return Limited(message, max(1, usage["time_left"]))


def used_up(request: HttpRequest, group: str, value: str, rate: str, message: str) -> Limited | None:
    """Has `value` already used all of `rate` in this window? Counts nothing (pair it with `count`)."""
    usage = _usage(request, group, value, rate, increment=False)
    if usage is None or usage["count"] < usage["limit"]:
        return None
    return _limited(usage, message)


def count(request: HttpRequest, group: str, value: str, rate: str) -> None:
    """Count one (a failed log-in, say) against `value`'s rate."""
    _usage(request, group, value, rate, increment=True)


def take(request: HttpRequest, group: str, value: str, rate: str, message: str) -> Limited | None:
    """Count this request and say whether it went over: for limits on every request, not only failures."""
    usage = _usage(request, group, value, rate, increment=True)
    if usage is None or not usage["should_limit"]:
        return None
    return _limited(usage, message)


def refuse(request: HttpRequest, limited: Limited) -> Limited:
    """Mark an HTML request as refused; the page it renders goes out as 429 (TooManyRequestsMiddleware)."""
    request.rate_limited = limited
    return limited


def with_retry_after(response: HttpResponse, limited: Limited) -> HttpResponse:
    response.status_code = 429
    response["Retry-After"] = str(limited.retry_after)
    return response


class TooManyRequestsMiddleware:
    """A page re-rendered because of a rate limit (its form says so) goes out as 429 with Retry-After."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        limited = getattr(request, "rate_limited", None)
        if limited is not None and response.status_code == 200:
            with_retry_after(response, limited)
        return response
