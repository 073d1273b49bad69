"""The lessons' full-text index, in each database's own kind (see courseware/search.py).

SQLite: an FTS5 table whose rowid is the lesson's id; the porter stemmer joins "retries" and
"retry" as PostgreSQL's English configuration does. PostgreSQL: the lesson's id with a weighted
tsvector, and the lessons' prose cut into overlapping passages for snippets, each with a GIN
index. None is a Django model and none has a foreign key, so Django's flush and table rebuilds
never trip over them; `load_content` rebuilds them whole after writing the lessons.
"""

from django.db import migrations

TABLE, PASSAGES = "courseware_lesson_search", "courseware_lesson_passage"

CREATE = {
    "sqlite": [
        f"CREATE VIRTUAL TABLE {TABLE} USING fts5("
        "title, summary, body_text, search_text, tokenize = 'porter unicode61 remove_diacritics 2')"
    ],
    "postgresql": [
        f"CREATE TABLE {TABLE} (lesson_id bigint PRIMARY KEY, document tsvector NOT NULL)",
        f"CREATE INDEX {TABLE}_document ON {TABLE} USING gin (document)",
        f"CREATE TABLE {PASSAGES} (lesson_id bigint, n integer, text text NOT NULL, document tsvector NOT NULL, PRIMARY KEY (lesson_id, n))",
        f"CREATE INDEX {PASSAGES}_document ON {PASSAGES} USING gin (document)",
    ],
}


def create_index(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor not in CREATE:
        raise RuntimeError(f"lesson search supports SQLite and PostgreSQL, not {vendor}")
    for statement in CREATE[vendor]:
        schema_editor.execute(statement)
    # Lessons loaded before this migration become searchable without another load_content.
    from courseware.search import rebuild_index

    rebuild_index()


def drop_index(apps, schema_editor):
    schema_editor.execute(f"DROP TABLE IF EXISTS {TABLE}")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP TABLE {PASSAGES}")


class Migration(migrations.Migration):
    dependencies = [("courseware", "0001_initial")]

    operations = [migrations.RunPython(create_index, drop_index)]
