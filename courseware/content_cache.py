"""What pages build from content (lessons, questions), built once per content version and kept in each process.

Content rows change only when `manage.py load_content` runs (or an admin or a test writes
them). Each such write changes the token in the single ContentVersion row, in the same
transaction, so:

1. A page reads the token (one small query, once per request) and asks for what it needs under that token.
2. A process that has it already answers from memory; otherwise it builds it from the
   database and keeps it, dropping whatever it kept for older tokens.
3. A reload writes a new random token, so every process on every machine builds afresh on
   its next request: a reload shows at once. (Random, not a counter: a rolled-back write can
   never bring back a token that once named other content.)

Without the row (a database emptied by a test's flush) nothing is kept: every request builds.
Per-user parts (progress, due cards) are never kept here; pages fetch them apart, small.
"""

import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.core.signals import request_finished, request_started
from django.db import DEFAULT_DB_ALIAS
from django.db.models import signals
from django.template.loader import render_to_string
from django.utils.safestring import SafeString, mark_safe

from config import prepared
from courseware.models import ContentVersion

T = TypeVar("T")

_kept: dict[str, object] = {}
_kept_token: str | None = None
_lock = threading.Lock()  # gunicorn's threaded workers share the process


_request = threading.local()  # the token as this thread's request read it first; unset outside a request
_UNREAD = object()


def current_token() -> str | None:
    """The content version's token, or None when the row is missing: read once per request (a page asks
    for several kept things, and each read is a query), on every call outside a request."""
    token = getattr(_request, "token", None)
    if token is not None and token is not _UNREAD:
        return token
    rows = prepared.fetch_all(DEFAULT_DB_ALIAS, _TOKEN_SQL, _TOKEN_SQL, [])
    if token is _UNREAD and rows:
        _request.token = rows[0][0]
    return rows[0][0] if rows else None


_TOKEN_SQL = f"SELECT token FROM {ContentVersion._meta.db_table} WHERE id = 1"  # no placeholders: the same for every driver


def _request_started(**kwargs) -> None:
    _request.token = _UNREAD


def _request_finished(**kwargs) -> None:
    _request.__dict__.pop("token", None)


request_started.connect(_request_started, dispatch_uid="content-token-request-started")
request_finished.connect(_request_finished, dispatch_uid="content-token-request-finished")


def cached(name: str, build: Callable[[], T]) -> T:
    """`build()`'s result for the current content, built at most once per process and version."""
    global _kept_token
    token = current_token()
    if token is None:
        return build()
    with _lock:
        if _kept_token != token:
            _kept.clear()
            _kept_token = token
        if name in _kept:
            return _kept[name]
    value = build()  # outside the lock: two threads may both build once, and agree
    with _lock:
        if _kept_token == token:
            _kept[name] = value
    return value


def bump() -> None:
    """A new content version: what any process kept is stale from now on (inside the writer's transaction)."""
    if not ContentVersion.objects.filter(pk=1).update(token=uuid.uuid4().hex):
        ContentVersion.objects.create(pk=1, token=uuid.uuid4().hex)
    if hasattr(_request, "token"):  # a write inside a request: the rest of it reads the new token
        _request.token = _UNREAD


def _changed(sender, **kwargs) -> None:
    bump()


def watch(*models) -> None:
    """Bump the version whenever a row of these models is saved or deleted, or their many-to-many links change.

    Loaders that write with QuerySet.update() (no signal) call `bump()` themselves."""
    for model in models:
        signals.post_save.connect(_changed, sender=model, dispatch_uid=f"content-{model._meta.label}-save")
        signals.post_delete.connect(_changed, sender=model, dispatch_uid=f"content-{model._meta.label}-delete")
        for field in model._meta.local_many_to_many:
            signals.m2m_changed.connect(_changed, sender=field.remote_field.through,
                                        dispatch_uid=f"content-{model._meta.label}-{field.name}")  # fmt: skip


# --- Kept HTML with slots for each learner's parts -------------------------------------------

SLOT = re.compile(r"<!--slot:([a-z-]+):([\w-]*)-->")


def slot(kind: str, key: object = "") -> SafeString:
    """A place in kept HTML that each request fills: `kind` says what goes there, `key` for which item.
    An HTML comment, so nothing a content file holds (escaped on the way in) can look like one."""
    return mark_safe(f"<!--slot:{kind}:{key}-->")


@dataclass(frozen=True)
class SlottedHTML:
    """HTML rendered once per content version, with slots (`slot()`) for what differs per request."""

    pieces: tuple[str, ...]  # HTML, then kind and key of a slot, then HTML, ...

    @classmethod
    def render(cls, template_name: str, context: dict) -> "SlottedHTML":
        return cls(tuple(SLOT.split(render_to_string(template_name, context))))

    def fill_from(self, values: dict[tuple[str, str], str]) -> SafeString:
        """The HTML with every slot replaced by `values[kind, key]` (escaped HTML), or by nothing when it has none:
        a dictionary lookup a slot, where a course map has sixty slots and most stay empty."""
        pieces, get = self.pieces, values.get
        out = [pieces[0]]
        for at in range(1, len(pieces), 3):
            out += [get((pieces[at], pieces[at + 1]), ""), pieces[at + 2]]
        return mark_safe("".join(out))

    def fill(self, value: Callable[[str, str], str]) -> SafeString:
        """The HTML with every slot replaced by `value(kind, key)`, which must return escaped HTML."""
        pieces = self.pieces
        out = [pieces[0]]
        for at in range(1, len(pieces), 3):
            out += [value(pieces[at], pieces[at + 1]), pieces[at + 2]]
        return mark_safe("".join(out))
