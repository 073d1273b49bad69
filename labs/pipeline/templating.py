"""The message templates' language: `{name}` placeholders and nothing else (lesson: dead-letter-queues).

Templates are written by learners through the API, so a template is input like any other.
Python's `str.format` would let one reach into its data (`{code.__class__}`, `{code[0]}`),
convert it (`{code!r}`) or pad it to any width (`{code:>100000000}` builds a string of a
hundred million characters): a worker rendering it would raise an error nobody expects,
or run out of memory, and the message would come back again and again as "worker lost".

So the language has three things only:
- `{name}` is replaced by the data's value for `name` (ASCII letters, digits and `_`, not
  starting with a digit), shown as `str(value)`;
- `{{` and `}}` are a literal `{` and `}`;
- anything else between braces is an error: no attribute or item access, no conversion,
  and no format spec at all (no width, no precision), so the work a template asks for is
  never more than its own length times the length of its data.

`check` runs when a template is created (the API answers 422 naming the field); `render`
checks again, because rows written before this language existed may hold anything, and the
worker turns its TemplateError into a poison message at once. `check_data` is the one rule
for the data a template is filled from, for the API and the lab page's send form alike.
"""

import json
import math
import re
from collections.abc import Mapping

MAX_DATA_BYTES = 4096
# A rendered subject or body longer than this is refused: no notification needs more, and it
# bounds the work of old rows whose data was never checked.
MAX_RENDERED_CHARS = 100_000

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|\{([^{}]*)\}?|\}")


class TemplateError(ValueError):
    """A template that is not in the language, or data that does not fit it."""


def _refusal(inside: str) -> str:
    """Why `{inside}` is not a placeholder, in the words a template writer needs."""
    if not inside.strip():
        return "an empty placeholder {} names no value: write {name}"
    if "!" in inside:
        return f"{{{inside}}}: conversions such as !r are not allowed, write {{name}}"
    if ":" in inside:
        return f"{{{inside}}}: format specs (widths, precision, alignment) are not allowed, write {{name}}"
    if "[" in inside or "]" in inside:
        return f"{{{inside}}}: item access is not allowed, write {{name}}"
    if "." in inside:
        return f"{{{inside}}}: attribute access is not allowed, write {{name}}"
    return f"{{{inside}}} is not a placeholder: a name is ASCII letters, digits and _, not starting with a digit"


def parse(text: str) -> list[tuple[str, str]]:
    """The template as ("text", literal) and ("name", placeholder) pieces; TemplateError if it is not valid."""
    pieces: list[tuple[str, str]] = []
    position = 0
    for match in _TOKEN.finditer(text):
        if match.start() > position:
            pieces.append(("text", text[position : match.start()]))
        position = match.end()
        token, name, inside = match[0], match[1], match[2]
        if token in ("{{", "}}"):
            pieces.append(("text", token[0]))
        elif name is not None:
            pieces.append(("name", name))
        elif token == "}":
            raise TemplateError(f"a }} at character {match.start() + 1} closes nothing: write }}}} for a literal brace")
        elif not token.endswith("}"):
            raise TemplateError(f"the {{ at character {match.start() + 1} is never closed: write {{{{ for a literal brace")
        else:
            raise TemplateError(_refusal(inside))
    if position < len(text):
        pieces.append(("text", text[position:]))
    return pieces


def check(text: str) -> None:
    """TemplateError if `text` is not a valid template."""
    parse(text)


def placeholders(text: str) -> set[str]:
    """The names a valid template asks its data for."""
    return {value for kind, value in parse(text) if kind == "name"}


def render(text: str, data: Mapping) -> str:
    """The template filled in from `data`; TemplateError for an invalid template, a missing value or a message too long."""
    out: list[str] = []
    length = 0
    for kind, value in parse(text):
        if kind == "name":
            if value not in data:
                raise TemplateError(f"template data has no value for {{{value}}}")
            value = str(data[value])
        length += len(value)
        if length > MAX_RENDERED_CHARS:
            raise TemplateError(f"the rendered message would be longer than {MAX_RENDERED_CHARS:,} characters")
        out.append(value)
    return "".join(out)


def check_data(data) -> None:
    """ValueError unless `data` can fill a template: a JSON object whose values are strings, finite
    numbers, booleans or null, with no NUL character, and at most MAX_DATA_BYTES as JSON."""
    if not isinstance(data, dict):
        raise ValueError('must be a JSON object, e.g. {"code": "271828"}')
    for name, value in data.items():
        if not isinstance(value, (str, int, float, bool, type(None))):
            raise ValueError(f"{name}: must be a string, a number, true, false or null (not a list or an object)")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name}: must be a finite number, not {value}")
        # PostgreSQL refuses NUL inside JSON text.
        if "\x00" in name or (isinstance(value, str) and "\x00" in value):
            raise ValueError(f"{name!r}: must not contain NUL characters (\\u0000)")
    try:
        size = len(json.dumps(data))
    except ValueError:  # an integer too long to write out
        size = MAX_DATA_BYTES + 1
    if size > MAX_DATA_BYTES:
        raise ValueError(f"must be at most {MAX_DATA_BYTES} bytes as JSON")
