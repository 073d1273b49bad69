"""Sessions kept in the database as Django's `db` engine keeps them, read with one plain SELECT.

Every signed-in page reads its session first. Django's store builds that query through the ORM
on every request (0.36 ms of CPU on our 2-core machine, where a whole trivial page takes about
0.25 ms in the process); the query never changes, so here it is compiled once and run on
config/prepared.py's lean path (0.05 ms with the decoding). Saving, deleting and expiring sessions are Django's own code, unchanged.

Decoding a session (checking its signature, then parsing its JSON) took a fifth of a signed-in
page's own time, for the same few strings again and again: a signed-in learner's session holds only
their id, backend and password hash. So the decoded form of such a session is remembered by its
exact signed text, which only Django's signer, with this site's key, could have produced; a
session holding anything mutable (a visitor's practice, messages) is decoded every time, since
the request may change it in place.
"""

from functools import lru_cache

from datetime import UTC, datetime

from django.contrib.sessions.backends import db
from django.contrib.sessions.models import Session
from django.utils import timezone

from config.prepared import Prepared


class SessionStore(db.SessionStore):
    def _get_session_from_db(self):
        """The live session row with this key (only its data is read), or None: the key is then forgotten,
        as Django's store forgets a key it does not find."""
        found = _SESSION_DATA(key=self.session_key, now=timezone.now())
        if not found:
            self._session_key = None
            return None
        return self.model(session_key=self.session_key, session_data=found[0])

    def decode_uncached(self, session_data):
        return super().decode(session_data)

    def decode(self, session_data):
        """Django's decoding, remembered for a short session of plain values (a copy each time: the request may add keys)."""
        kept = _decoded(session_data) if len(session_data) <= SHORT_SESSION else None
        return dict(kept) if kept is not None else super().decode(session_data)


# Compiled once (config/prepared.py); the placeholders are a key and a moment no request brings.
_SESSION_DATA = Prepared(lambda key, now: Session.objects.filter(session_key=key, expire_date__gt=now).values_list("session_data", flat=True),
                         key="\0", now=datetime(1901, 1, 1, tzinfo=UTC))  # fmt: skip

SHORT_SESSION = 1024  # characters: a signed-in learner's is about 250; a visitor's practice can be far longer


@lru_cache(maxsize=4096)  # one entry per signed-in learner seen lately
def _decoded(session_data: str) -> dict | None:
    """The session, if it decodes to plain values; None otherwise (and for one that does not decode, which
    Django's decode then reports each time)."""
    decoded = SessionStore().decode_uncached(session_data)
    plain = all(isinstance(value, str | int | float | bool | None) for value in decoded.values())
    return decoded if decoded and plain else None
