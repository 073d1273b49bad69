"""Querysets compiled to SQL once per process and run again with other values.

Every signed-in page asks a few small questions about its learner (their session's user, the
lessons they read, their cards' due dates). Django builds and compiles each query anew on every
request, which on our 2-core machine costs about 0.25 ms of CPU, against 0.01 ms for SQLite to
answer it, and a whole trivial page costs 0.25 ms: those few questions were most of what a
signed-in page cost over a visitor's (profiled with cProfile, issue 15).

A `Prepared` query is built once, with a placeholder value for each parameter, by Django's own
compiler, so the SQL, its quoting and the conversion of each column are Django's. A call binds
the real values in the placeholders' places and converts the rows as the queryset would.
Only `values_list()` querysets: rows come back as tuples (or single values, with flat=True).
A placeholder may be an int, a str or an aware datetime (a moment no real call passes, say in 1901):
the compiled query holds a datetime as the database backend adapted it, and each call's datetime is
adapted the same way. A moment derived from another (`now - timedelta(...)`) needs a placeholder of its
own: the compiled query knows only the values it was built with.

Running the query takes the lean path too (`fetch_all`): Django's cursor machinery costs about forty
Python calls a statement (the connection looked up through a context-local, the cursor wrapped, errors
and thread sharing checked, the `%s` placeholders rewritten for SQLite), as many as a signed-in page's
whole session check. A prepared read goes to the driver's own cursor with the statement already in the
driver's placeholders, inside Django's error translation. Whatever watches queries (a test counting
them, `DEBUG`'s log, an execute wrapper) or a transaction that must be rolled back gets Django's own path.
"""

from collections.abc import Callable
from datetime import datetime

from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.query import FlatValuesListIterable
from django.utils.asyncio import async_unsafe


class Prepared:
    def __init__(self, build: Callable[..., QuerySet], **placeholders):
        """`build(**placeholders)` makes the queryset; each placeholder must be a value no real call passes
        (a negative id, say), so that it can be found among the compiled query's parameters."""
        self._build = build
        self._placeholders = placeholders
        self._compiled = None

    def _compile(self):
        queryset = self._build(**self._placeholders)
        compiler = queryset.query.get_compiler(queryset.db)
        sql, params = compiler.as_sql()
        adapt = connections[queryset.db].ops.adapt_datetimefield_value
        by_value = {adapt(value) if isinstance(value, datetime) else value: name for name, value in self._placeholders.items()}
        bound = [by_value.get(param, None) if isinstance(param, int | str | datetime) else None for param in params]
        missing = set(self._placeholders) - set(bound)
        if missing:
            raise ValueError(f"placeholders {sorted(missing)} are not parameters of: {sql}")
        fields = [column[0] for column in compiler.select[: compiler.col_count]]
        flat = queryset._iterable_class is FlatValuesListIterable
        times = {name for name, value in self._placeholders.items() if isinstance(value, datetime)}
        return queryset.db, sql, list(params), bound, compiler, compiler.get_converters(fields), flat, times, adapt, driver_sql(queryset.db, sql)

    def instances(self, model: type[Model], **values) -> list[Model]:
        """Model instances, as the ORM makes them, from a query of `values_list(*attnames(model))`."""
        rows = self(**values)
        return [model.from_db(self._compiled[0], attnames(model), row) for row in rows]

    def __call__(self, **values) -> list:
        if self._compiled is None:
            self._compiled = self._compile()
        db, sql, params, bound, compiler, converters, flat, times, adapt, raw_sql = self._compiled
        if times:
            values = {name: adapt(value) if name in times else value for name, value in values.items()}
        params = [values[name] if name is not None else param for name, param in zip(bound, params)]
        rows = fetch_all(db, sql, raw_sql, params)
        if converters:
            rows = compiler.apply_converters(rows, converters)
        return [row[0] for row in rows] if flat else [tuple(row) for row in rows]


def driver_sql(db: str, sql: str) -> str:
    """`sql` in the driver's own placeholders: SQLite's `?` (as Django's SQLite cursor rewrites `%s` on each
    execution), psycopg's `%s` as written."""
    if connections[db].vendor == "sqlite":
        from django.db.backends.sqlite3.base import FORMAT_QMARK_REGEX

        return FORMAT_QMARK_REGEX.sub("?", sql).replace("%%", "%")
    return sql


@async_unsafe
def fetch_all(db: str, sql: str, raw_sql: str, params: list) -> list:
    """Every row of one read, as `connections[db].cursor()` would fetch them (`sql` in Django's placeholders,
    `raw_sql` in the driver's), through the driver's cursor unless something watches or guards the queries."""
    connection = connections[db]
    if connection.queries_logged or connection.execute_wrappers or connection.needs_rollback:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    connection.close_if_health_check_failed()  # a request's first statement checks the connection, as Django's would
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        cursor = connection.connection.cursor()
        try:
            cursor.execute(raw_sql, params)
            return cursor.fetchall()
        finally:
            cursor.close()


def attnames(model: type[Model]) -> list[str]:
    """Every column of `model`, in its fields' order: what `Prepared.instances` expects the query to select."""
    return [field.attname for field in model._meta.concrete_fields]
