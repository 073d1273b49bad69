"""Whole pages rendered once per content version and kind of visitor, with each request's parts put in slots.

Rendering a page's templates (base.html's header, nav and footer included) cost 1.25–3.6 ms of CPU
per request against 0.71 ms for a whole one-line page (cProfile, issue 15), and it came out the
same for every visitor of a kind. So a kept page is rendered once per process, content version
(courseware/content_cache.py) and kind of visitor (signed in or not), and each request only
fills its slots by string substitution:

1. The page's templates render without the request: `request` is a `KeptRequest` that carries only
   the path and the resolved URL, `user` a `KeptVisitor` that says whether someone is signed in,
   and `csrf_token`, the username and the messages are slots. Nothing of the visitor whose request
   happened to build the page can get into it.
2. Each request fills the slots: its own CSRF token (masked afresh, as Django's tag does), its
   username escaped, its messages rendered (rare), and the page's own slots from `own`, escaped
   HTML for this learner (their progress, their last answers) by slot; a slot it leaves out stays
   empty, which is how a visitor's page shows no learner's parts.
3. A learner's part that many learners share (their next lesson, a count) is rendered once per
   content version for each value (`fragment`), keyed by everything it shows.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.messages import get_messages
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.template.loader import render_to_string
from django.urls import ResolverMatch
from django.utils.html import escape

from courseware import content_cache
from courseware.content_cache import SlottedHTML, slot


@dataclass(frozen=True)
class KeptRequest:
    """What a kept page's templates may read of the request: the same for everyone who opens the page."""

    path: str
    resolver_match: ResolverMatch


@dataclass(frozen=True)
class KeptVisitor:
    """What a kept page's templates may read of the visitor: signed in or not, and a slot for the name."""

    is_authenticated: bool

    def get_username(self):
        return slot("username")


def kept_page(request: HttpRequest, name: str, template: str, context: Callable[[], dict],
              own: dict[tuple[str, str], str] | None = None) -> HttpResponse:  # fmt: skip
    """The page `template` renders with `context()` for this kind of visitor, kept under `name` (which
    must name everything else the page depends on: its slug, say), with this request's parts filled in.
    `own` holds the page's own slots' escaped HTML by (kind, key); a slot it does not name stays empty."""
    signed_in = request.user.is_authenticated
    page = content_cache.cached(f"page:{name}:{signed_in}", lambda: SlottedHTML.render(template, {
        **context(), "request": KeptRequest(request.path, request.resolver_match), "user": KeptVisitor(signed_in),
        "csrf_token": slot("csrf"), "messages_slot": slot("messages")}))  # fmt: skip
    messages = list(get_messages(request))
    values = {
        ("csrf", ""): get_token(request),  # Django's own token: the cookie is set, the mask new
        ("messages", ""): render_to_string("base.html#messages", {"messages": messages}) if messages else "",
        **(own or {}),
    }
    if signed_in:
        values["username", ""] = escape(request.user.get_username())
    return HttpResponse(page.fill_from(values))


FRAGMENTS_KEPT = 4096  # per kind: a learner's part takes few values (a lesson, a count), but bound the memory anyway


def fragment(name: str, key: tuple, render: Callable[[], str]) -> str:
    """A learner's part of a kept page, rendered once per content version for each `key` (all it depends on):
    many learners share a few values (their next lesson, how many reviews are due), so most requests render nothing."""
    kept = content_cache.cached(f"fragments:{name}", dict)
    if key not in kept:
        if len(kept) >= FRAGMENTS_KEPT:
            kept.clear()
        kept[key] = render()
    return kept[key]
