"""Lesson search on the database's own full-text index (SQLite FTS5, PostgreSQL tsvector).

Every test here runs on whichever database the suite points at; run the module with
DATABASE_URL=postgres://... too (tests/environment.py).
"""

import re

import pytest
from django.db import connection

from courseware.loading import load_content
from courseware.search import ParsedQuery, Term, marked, parse_query, search_lessons
from tests.test_courseware import HTMX, replace_in, tmp_course  # noqa: F401 (a fixture)


@pytest.fixture
def course(db):
    """The real lessons, loaded inside the test's transaction: the session-wide load in
    test_courseware.py would leave them behind for its tests that start from an empty database."""
    load_content()


def slugs(query: str) -> list[str]:
    return [result.lesson.slug for result in search_lessons(query)]


def shown_text(snippet: str) -> str:
    return re.sub(r"</?mark>", "", snippet)


# --- Reading a query ----------------------------------------------------------------------------


def test_a_query_is_read_as_web_search_syntax_the_same_for_both_databases():
    parsed = parse_query('"dead letter" queue -kafka or SQS')

    assert parsed.groups == [[Term("dead letter"), Term("queue"), Term("kafka", excluded=True)], [Term("SQS")]]
    assert parsed.phrase is None
    assert parsed.websearch() == '"dead letter" "queue" -"kafka" or "SQS"'
    assert parsed.fts5() == '(("dead letter" AND "queue") NOT "kafka") OR (("SQS"))'


def test_plain_words_are_also_tried_as_a_phrase_and_punctuation_cannot_reach_the_query_syntax():
    assert parse_query("visibility timeout").phrase == "visibility timeout"
    assert parse_query("visibility").phrase is None
    assert parse_query('NEAR(a b) col:x "unclosed AND').fts5() == '(("NEAR a" AND "b" AND "col x" AND "unclosed AND"))'


def test_a_query_with_nothing_to_find_finds_nothing():
    assert parse_query("-kafka").groups == []
    assert parse_query('or "" ?!').groups == []
    assert search_lessons("-kafka") == []


def test_a_snippet_is_escaped_and_a_phrase_marked_once():
    assert marked("a <b> & \x02visibility\x03 \x02timeout\x03 end") == "a &lt;b&gt; &amp; <mark>visibility timeout</mark> end"
    assert marked("no hit here") == ""  # the page shows the lesson's summary instead
    assert marked(None) == ""


# --- Ranking and snippets, on a small course --------------------------------------------------


@pytest.fixture
def phrase_course(tmp_course):
    """Two lessons: one has "visibility" and "timeout" in its title and apart, often; one has the phrase once."""
    content, questions = tmp_course
    first = content / "lessons" / "01-first.md"
    replace_in(first, "title: Lesson first", "title: Visibility and timeout")
    first.write_text(first.read_text().replace("Another timeout later.", "Visibility matters. " * 5 + "Each timeout is long. " * 5))
    replace_in(content / "lessons" / "02-second.md", "Another timeout later.", "The broker hides a message for the visibility timeout.")
    load_content(content, questions)
    return content, questions


@pytest.mark.django_db
def test_the_lesson_with_the_phrase_ranks_first_although_the_other_has_the_words_in_its_title(phrase_course):
    results = search_lessons("visibility timeout")

    assert [r.lesson.slug for r in results] == ["second", "first"]
    assert [r.has_phrase for r in results] == [True, False]
    assert "<mark>visibility timeout</mark>" in results[0].snippet
    assert "hides a message for the" in shown_text(results[0].snippet)
    # Without a phrase to prefer, the title weighs most.
    assert slugs("visibility") == ["first", "second"]


@pytest.mark.django_db
def test_quotes_require_the_phrase_or_accepts_either_word_and_minus_leaves_a_lesson_out(phrase_course):
    assert slugs('"visibility timeout"') == ["second"]
    assert slugs('"timeout visibility"') == []
    assert set(slugs("hides or matters")) == {"first", "second"}
    assert slugs("visibility -hides") == ["first"]
    # The stemmer joins the forms of a word on both databases.
    assert slugs("hiding messages") == ["second"]


@pytest.mark.django_db
def test_loading_the_content_again_rebuilds_the_index(phrase_course):
    content, questions = phrase_course
    assert slugs("zebra") == []
    replace_in(content / "lessons" / "01-first.md", "Each timeout is long.", "A zebra crossing.")
    (content / "lessons" / "02-second.md").unlink()

    load_content(content, questions)

    assert slugs("zebra") == ["first"]
    assert slugs('"visibility timeout"') == []
    assert "<mark>zebra</mark> crossing" in search_lessons("zebra")[0].snippet


@pytest.mark.django_db
def test_the_index_is_a_table_in_the_database_own_kind(phrase_course):
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT sql FROM sqlite_master WHERE name = 'courseware_lesson_search'")
            assert "USING fts5" in cursor.fetchone()[0]
        else:
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'courseware_lesson_search'")
            assert any("USING gin (document)" in row[0] for row in cursor.fetchall())
        cursor.execute("SELECT count(*) FROM courseware_lesson_search")
        assert cursor.fetchone()[0] == 2


# --- The search page on the real lessons ------------------------------------------------------


@pytest.mark.django_db
def test_visibility_timeout_lists_the_lessons_with_the_phrase_first_and_shows_it(client, course):
    html = client.get("/lessons/search/", {"q": "visibility timeout"}, **HTMX).content.decode()

    items = re.findall(r'<li>\s*<a class="lesson-link" href="/lessons/([\w-]+)/">.*?<p>(.*?)</p>', html, re.DOTALL)
    shows_phrase = [bool(re.search(r"visibility[ _]timeout", shown_text(snippet), re.I)) and "<mark>" in snippet for _, snippet in items]
    assert items[0][0] == "kafka-rabbitmq-sqs"
    assert "<mark>visibility timeout</mark>" in items[0][1].lower()
    assert True in shows_phrase and False in shows_phrase, items
    assert shows_phrase == sorted(shows_phrase, reverse=True), f"a lesson without the phrase ranks above one with it: {items}"


@pytest.mark.django_db
def test_a_query_made_only_of_syntax_gets_an_empty_result_not_an_error(client, course):
    for query in ['"', "-", "or", "AND NOT", "*", "col:", "(", "'"]:
        response = client.get("/lessons/search/", {"q": query})
        assert response.status_code == 200, query
