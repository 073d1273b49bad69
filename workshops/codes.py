"""Join codes and the join link's QR code.

A code is read aloud in a room and typed on a phone, so it has no characters that look
or sound alike (no 0/O, no 1/I/L), is case-insensitive, and is shown in two groups of
three ("K7M-P2Q"); typing it with or without the dash, spaces or lower case works.
"""

import secrets

import segno
from django.utils.safestring import SafeString, mark_safe

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # digits and capitals, less 0 O 1 I L
LENGTH = 6


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def normalise(typed: str) -> str:
    """What a learner typed, as a code is stored: capitals, without dashes or spaces."""
    return "".join(ch for ch in typed.upper() if not ch.isspace() and ch != "-")


def is_well_formed(code: str) -> bool:
    return len(code) == LENGTH and all(ch in ALPHABET for ch in code)


def shown(code: str) -> str:
    """The code as people read it: "K7MP2Q" -> "K7M-P2Q"."""
    return f"{code[:3]}-{code[3:]}"


def qr_svg(url: str) -> SafeString:
    """The join link as an inline SVG QR code, drawn here (nothing leaves the server)."""
    svg = segno.make(url, error="m").svg_inline(scale=5, border=2, dark="#000", light="#fff", title="QR code of the join link")
    return mark_safe(svg)  # noqa: S308 - segno writes the markup; the URL is ours
