"""CSRF secrets and masks drawn with one read of the system's random source, not one read per character.

Every page with a form asks for a CSRF token, and Django draws it with `secrets.choice` once per
character: 32 reads of os.urandom for the mask of each token, 32 more for a new visitor's secret.
On our 2-core machine that was 0.16 ms of CPU per page for a visitor without the cookie, as much as
a whole trivial page in the process (cProfile, issue 15). Here the same characters come from one
os.urandom call: each byte below 248 (4 × 62) picks one of the 62 characters, so every character is
as uniform and as unpredictable as Django's; bytes from 248 up are dropped and more are read.
Django's own code still decides when to draw, masks, compares and sets the cookie.
"""

import os

from django.middleware import csrf
from django.utils.crypto import get_random_string

ALPHABET = csrf.CSRF_ALLOWED_CHARS
_KEPT = len(ALPHABET) * (256 // len(ALPHABET))  # 248: bytes below it map evenly onto the alphabet
_TABLE = bytes(ord(ALPHABET[byte % len(ALPHABET)]) if byte < _KEPT else 0 for byte in range(256))
_DROPPED = bytes(range(_KEPT, 256))


def random_string(length: int, allowed_chars: str = ALPHABET) -> str:
    """`get_random_string(length, allowed_chars)`, from one os.urandom call for the CSRF alphabet."""
    if allowed_chars != ALPHABET:
        return get_random_string(length, allowed_chars)
    drawn = b""
    while len(drawn) < length:
        drawn += os.urandom(length + 8).translate(_TABLE, _DROPPED)  # 8 spare: 3% of bytes are dropped
    return drawn[:length].decode("ascii")


def install() -> None:
    """Make Django's CSRF module draw with `random_string` (its only use of get_random_string)."""
    csrf.get_random_string = random_string
