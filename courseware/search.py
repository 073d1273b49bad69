"""Search across lessons with the database's own full-text index: FTS5 ranked by bm25 on SQLite,
a weighted tsvector ranked by ts_rank on PostgreSQL.

Both read one query language, PostgreSQL's web-search syntax: every word must appear (in any form
the stemmer joins, so "retries" finds "retry"), "quoted words" must appear together, `or` between
words accepts either side, and -word leaves out the lessons that have it. `parse_query` reads a
query once; SQLite gets it as an FTS5 expression, PostgreSQL as a tidied string for
`websearch_to_tsquery`, so both databases find the same lessons.

Ranking, in two tiers: when a query of plain words appears in a lesson as a phrase (those words, in
that order, side by side), that lesson comes before the lessons that only have the words apart,
and its snippet shows the phrase. Inside a tier the database ranks: a hit in the title counts
most, then the summary, then the prose, then code and checks.

The index is a table of its own, `courseware_lesson_search` (migration 0002): an FTS5 table on
SQLite, (lesson id, tsvector) with a GIN index on PostgreSQL. `load_content` rebuilds it after it
writes the lessons (`rebuild_index`); a query never reads the lessons' text in Python.
"""

import re
from dataclasses import dataclass

from django.db import connection
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from courseware.models import Lesson

INDEX_TABLE, PASSAGE_TABLE = "courseware_lesson_search", "courseware_lesson_passage"
MAX_QUERY, MAX_TERMS, MAX_RESULTS = 200, 8, 50
# Start and end of a hit in a snippet, later turned into <mark> once the text around is escaped.
HIT_START, HIT_END = "\x02", "\x03"
# A quoted phrase (maybe unclosed), or a run of anything else that is not a quote or a space.
TOKEN = re.compile(r'(-?)"([^"]*)"?|(-?)([^\s"]+)')


@dataclass(frozen=True)
class Term:
    text: str  # one word, or several that must appear together
    excluded: bool = False


@dataclass
class ParsedQuery:
    groups: list[list[Term]]  # any one group may match; inside a group every term must hold
    phrase: str | None  # the words of a plain query of two or more words, for the phrase tier

    def websearch(self) -> str:
        return " or ".join(" ".join(("-" if t.excluded else "") + f'"{t.text}"' for t in group) for group in self.groups)

    def any_word(self) -> str:
        return " or ".join(f'"{t.text}"' for group in self.groups for t in group if not t.excluded)

    def fts5(self) -> str:
        return " OR ".join(fts5_group(group) for group in self.groups)


@dataclass
class SearchResult:
    lesson: Lesson
    snippet: SafeString
    has_phrase: bool


def parse_query(query: str) -> ParsedQuery:
    """Read web-search syntax: words, "phrases", `or`, -excluded. A group with nothing to find is dropped."""
    groups: list[list[Term]] = [[]]
    plain, words = True, []
    for match in TOKEN.finditer(query[:MAX_QUERY]):
        minus, quoted, word_minus, word = match.groups()
        if quoted is None and word.lower() == "or":
            groups.append([])
            plain = False
            continue
        text = " ".join(re.findall(r"\w+", quoted if quoted is not None else word))
        if not text or len(words) == MAX_TERMS:
            continue
        excluded = (minus or word_minus) == "-"
        plain = plain and quoted is None and not excluded
        words.append(text)
        groups[-1].append(Term(text, excluded))
    groups = [group for group in groups if any(not term.excluded for term in group)]
    phrase = " ".join(words) if plain and len(words) > 1 else None
    return ParsedQuery(groups, phrase)


def fts5_string(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def fts5_group(group: list[Term]) -> str:
    """One group as FTS5 syntax, whose NOT is binary: (a AND b) NOT c NOT d."""
    found = " AND ".join(fts5_string(t.text) for t in group if not t.excluded)
    left_out = "".join(f" NOT {fts5_string(t.text)}" for t in group if t.excluded)
    return f"(({found}){left_out})"


def marked(snippet: str | None) -> SafeString:
    """The snippet escaped, its hits in <mark>; "" when it holds no hit (the page shows the summary)."""
    if not snippet or HIT_START not in snippet:
        return mark_safe("")
    # PostgreSQL marks each word of a phrase; one mark around the phrase reads as SQLite's does.
    joined = re.sub(f"{HIT_END}(\\s+){HIT_START}", r"\1", snippet)
    return mark_safe(escape(joined).replace(HIT_START, "<mark>").replace(HIT_END, "</mark>"))


def search_lessons(query: str) -> list[SearchResult]:
    parsed = parse_query(query)
    if not parsed.groups:
        return []
    rows = _search_postgresql(parsed) if connection.vendor == "postgresql" else _search_sqlite(parsed)
    lessons = Lesson.objects.select_related("module").defer("html", "toc_html", "body_text", "search_text")
    found = lessons.in_bulk([lesson_id for lesson_id, _, _ in rows])
    # A lesson deleted since the index was built has no row any more: leave it out.
    return [SearchResult(found[lesson_id], marked(snippet), tier == 0) for lesson_id, tier, snippet in rows if lesson_id in found]


# SQLite: bm25 weights per column (title, summary, body_text, search_text); lower bm25 is better.
SQLITE_MATCHES = f"""
    SELECT rowid, %s AS tier, bm25({INDEX_TABLE}, 10.0, 4.0, 2.0, 1.0) AS rank,
           snippet({INDEX_TABLE}, 2, '{HIT_START}', '{HIT_END}', '…', 28) AS snippet
    FROM {INDEX_TABLE} WHERE {INDEX_TABLE} MATCH %s
"""


def _search_sqlite(parsed: ParsedQuery) -> list[tuple[int, int, str]]:
    expression = parsed.fts5()
    if parsed.phrase is None:
        sql, params = SQLITE_MATCHES, [1, expression]
    else:
        with_phrase = f"({expression}) AND {fts5_string(parsed.phrase)}"
        sql = f"{SQLITE_MATCHES} UNION ALL {SQLITE_MATCHES} AND rowid NOT IN (SELECT rowid FROM {INDEX_TABLE} WHERE {INDEX_TABLE} MATCH %s)"
        params = [0, with_phrase, 1, expression, with_phrase]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT rowid, tier, snippet FROM ({sql}) ORDER BY tier, rank LIMIT {MAX_RESULTS}", params)
        return cursor.fetchall()


# PostgreSQL: ts_rank weighs the title (A) most, then summary (B), prose (C), code and checks (D).
# The snippet comes from the lesson's best passage (one with the phrase, or with the most query
# words): ts_headline parses the text it is given, and a passage is a fiftieth of a lesson.
POSTGRESQL_MATCHES = f"""
    WITH asked AS (
        SELECT websearch_to_tsquery('english', %(query)s) AS query, websearch_to_tsquery('english', %(any_word)s) AS any_word,
               CASE WHEN %(phrase)s::text IS NULL THEN NULL ELSE phraseto_tsquery('english', %(phrase)s::text) END AS phrase
    ), matches AS (
        SELECT search.lesson_id, CASE WHEN search.document @@ asked.phrase THEN 0 ELSE 1 END AS tier,
               ts_rank(search.document, asked.query) AS rank
        FROM {INDEX_TABLE} search CROSS JOIN asked
        WHERE search.document @@ asked.query
        ORDER BY tier, rank DESC, search.lesson_id LIMIT {MAX_RESULTS}
    ), best AS (
        SELECT DISTINCT ON (matches.lesson_id) matches.*, passage.text,
               CASE WHEN matches.tier = 0 THEN asked.phrase ELSE asked.any_word END AS shown
        FROM matches CROSS JOIN asked LEFT JOIN {PASSAGE_TABLE} passage ON passage.lesson_id = matches.lesson_id
             AND passage.document @@ CASE WHEN matches.tier = 0 THEN asked.phrase ELSE asked.any_word END
        ORDER BY matches.lesson_id, ts_rank(passage.document, asked.any_word) DESC, passage.n
    )
    SELECT lesson_id, tier,
           '…' || ts_headline('english', text, shown, 'StartSel={HIT_START}, StopSel={HIT_END}, MaxFragments=1, MaxWords=30, MinWords=15') || '…'
    FROM best ORDER BY tier, rank DESC, lesson_id
"""


def _search_postgresql(parsed: ParsedQuery) -> list[tuple[int, int, str | None]]:
    with connection.cursor() as cursor:
        cursor.execute(POSTGRESQL_MATCHES, {"query": parsed.websearch(), "any_word": parsed.any_word(), "phrase": parsed.phrase})
        return cursor.fetchall()


POSTGRESQL_DOCUMENT = """
    setweight(to_tsvector('english', title), 'A') || setweight(to_tsvector('english', summary), 'B')
    || setweight(to_tsvector('english', body_text), 'C') || setweight(to_tsvector('english', search_text), 'D')
"""
# Passages of PASSAGE_WORDS words of prose, each starting PASSAGE_STEP words after the last: the
# overlap keeps any phrase of up to MAX_TERMS words whole in at least one passage.
PASSAGE_WORDS, PASSAGE_STEP = 40, 30
POSTGRESQL_PASSAGES = f"""
    SELECT lesson_id, n, text, to_tsvector('english', text) FROM (
        SELECT lesson.id AS lesson_id, chunk.n, string_agg(word.text, ' ' ORDER BY word.i) AS text
        FROM courseware_lesson lesson, regexp_split_to_table(lesson.body_text, '\\s+') WITH ORDINALITY AS word(text, i),
             LATERAL (VALUES ((word.i - 1) / {PASSAGE_STEP}), ((word.i - 1) / {PASSAGE_STEP} - 1)) AS chunk(n)
        WHERE chunk.n >= 0 AND (word.i - 1) - chunk.n * {PASSAGE_STEP} < {PASSAGE_WORDS}
        GROUP BY lesson.id, chunk.n
    ) passages
"""


def rebuild_index() -> None:
    """Make the search index hold exactly the lessons' current text (load_content calls it).

    Rebuilt whole on every load: a few milliseconds for the course, and the index can never drift
    from the rows, whatever emptied or restored the lesson table in between.
    """
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {INDEX_TABLE}")
        if connection.vendor == "postgresql":
            cursor.execute(f"INSERT INTO {INDEX_TABLE} (lesson_id, document) SELECT id, {POSTGRESQL_DOCUMENT} FROM courseware_lesson")
            cursor.execute(f"DELETE FROM {PASSAGE_TABLE}")
            cursor.execute(f"INSERT INTO {PASSAGE_TABLE} (lesson_id, n, text, document) {POSTGRESQL_PASSAGES}")
        else:
            cursor.execute(
                f"INSERT INTO {INDEX_TABLE} (rowid, title, summary, body_text, search_text) "
                "SELECT id, title, summary, body_text, search_text FROM courseware_lesson"
            )
