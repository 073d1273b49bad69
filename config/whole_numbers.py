"""Whole numbers typed by anyone into a form: ASCII digits only, bounded before `int()` sees them.

`str.isdigit()` is true for "²" (which `int()` refuses) and for "٣" (which it reads as 3), and
`int()` of a few thousand digits raises: each of these was an HTTP 500.
"""

LARGEST_ROW_ID = 2**63 - 1  # a BigAutoField's range


def whole_number(text: str, maximum: int) -> int | None:
    """`text` as a number from 0 to `maximum`, or None when it is anything else."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(maximum)):
        return None
    value = int(text)
    return value if value <= maximum else None
