"""Search across lessons, the same way on SQLite and PostgreSQL.

Each lesson keeps a lower-case `search_text` (title, summary, prose, code and checks). The
database keeps the lessons that contain every query word (or a simple variant of it: "retries"
also finds "retry"), and the few that match are ranked here: a hit in the title counts most,
then the summary, then each hit in the body. One code path on both databases keeps results
identical in development (SQLite) and in a self-hosted install (PostgreSQL).
"""

import re
from dataclasses import dataclass
from functools import reduce
from operator import or_

from django.db.models import Q
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from courseware.models import Lesson

MAX_WORDS = 8
TITLE_WEIGHT, SUMMARY_WEIGHT = 10, 4


@dataclass
class SearchResult:
    lesson: Lesson
    score: int
    snippet: SafeString


def variants(word: str) -> set[str]:
    """The spellings that count as `word`: itself and a stem for plurals and "y"/"ies"."""
    found = {word}
    if len(word) > 4 and word.endswith("ies"):
        found |= {word[:-3] + "y", word[:-3] + "i"}
    elif len(word) > 3 and word.endswith("y"):
        found.add(word[:-1] + "i")
    elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        found.add(word[:-1])
    return found


def query_words(query: str) -> list[set[str]]:
    words = re.findall(r"\w[\w'-]*", query.lower())
    return [variants(word) for word in dict.fromkeys(words)][:MAX_WORDS]


def hits(text: str, spellings: set[str]) -> int:
    # Count only the shortest spellings: "queue" already counts every "queues".
    shortest = [s for s in spellings if not any(other != s and other in s for other in spellings)]
    return sum(text.count(spelling) for spelling in shortest)


def snippet(text: str, words: list[set[str]], width: int = 220) -> SafeString:
    """A stretch of the lesson's prose around the first hit, hits marked, or "" when there is none."""
    spellings = sorted({s for group in words for s in group}, key=len, reverse=True)
    pattern = re.compile(r"\w*(?:" + "|".join(map(re.escape, spellings)) + r")\w*", re.IGNORECASE)
    first = pattern.search(text)
    if first is None:
        return mark_safe("")
    start = max(0, text.rfind(" ", 0, max(0, first.start() - 60)) + 1)
    end = text.find(" ", min(len(text), start + width))
    end = len(text) if end == -1 else end
    piece = text[start:end]
    marked = pattern.sub(lambda m: f"\0{m.group()}\1", piece)
    html = escape(marked).replace("\0", "<mark>").replace("\1", "</mark>")
    return mark_safe(("…" if start else "") + html + ("…" if end < len(text) else ""))


def search_lessons(query: str) -> list[SearchResult]:
    words = query_words(query)
    if not words:
        return []
    lessons = Lesson.objects.select_related("module").defer("html", "toc_html")
    for spellings in words:
        lessons = lessons.filter(reduce(or_, (Q(search_text__contains=s) for s in spellings)))
    results = []
    for lesson in lessons:
        title, summary = lesson.title.lower(), lesson.summary.lower()
        score = sum(
            TITLE_WEIGHT * hits(title, spellings) + SUMMARY_WEIGHT * hits(summary, spellings) + hits(lesson.search_text, spellings)
            for spellings in words
        )
        results.append(SearchResult(lesson, score, snippet(lesson.body_text, words)))
    return sorted(results, key=lambda r: (-r.score, r.lesson.position))
