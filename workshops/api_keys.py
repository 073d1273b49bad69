"""A workshop's API key: made with `secrets`, kept only as its SHA-256, shown once.

Why a hash and not the key: a database backup or a leaked row must not hand over control of
a cohort's runs. A plain SHA-256 is enough (no salt, no slow hash) because the key is 32
random bytes, not a password a person chose: nothing can be guessed from the digest, and the
API finds the workshop with one indexed lookup of the digest. The key itself is printed by
`create_workshop` and shown once on the grid when the instructor makes a new one; making a
new one retires the old.
"""

import hashlib
import secrets

from django.utils import timezone

from workshops.models import Workshop, WorkshopKey

PREFIX = "flw_"  # lab runs' keys start "flk_": a key says which API it opens


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(workshop: Workshop, by) -> str:
    """A fresh key for the workshop (the previous one stops working); returns the key, which is not kept."""
    key = PREFIX + secrets.token_urlsafe(32)
    WorkshopKey.objects.update_or_create(workshop=workshop, defaults={"key_hash": digest(key), "made_by": by, "made_at": timezone.now()})
    return key


def key_for(key: str) -> WorkshopKey | None:
    """The stored key whose hash matches, with its workshop; None for a key nobody holds."""
    return WorkshopKey.objects.filter(key_hash=digest(key)).select_related("workshop__owner", "made_by").first()
