"""Django's SQLite backend, remembering each statement's placeholders once converted.

SQLite takes `?` placeholders; Django writes `%s` and converts every statement on every execution
with a look-behind regex, 11 µs for the user query on our machine (timeit). A signed-in page runs
four to seven such statements, and the whole one-line trivial page costs about 150 µs in the
process (cProfile, issue 15). The statements are the same few hundred strings over and over, so
the conversion is remembered per statement text. Everything else is Django's backend unchanged:
`ENGINE = "config.sqlite"` (config/settings.py sets it for a sqlite:// DATABASE_URL).
"""

from functools import lru_cache

from django.db.backends.sqlite3 import base


@lru_cache(maxsize=4096)  # the site's statements; one with a long IN list is simply converted again
def _qmark(query: str) -> str:
    return base.FORMAT_QMARK_REGEX.sub("?", query).replace("%%", "%")


class SQLiteCursorWrapper(base.SQLiteCursorWrapper):
    def convert_query(self, query, *, param_names=None):
        if param_names is None:
            return _qmark(query)
        return super().convert_query(query, param_names=param_names)


class DatabaseWrapper(base.DatabaseWrapper):
    def create_cursor(self, name=None):
        return self.connection.cursor(factory=SQLiteCursorWrapper)
