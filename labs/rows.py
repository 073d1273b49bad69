"""Many rows in few statements, for the pipeline's hot paths: `insert_rows` inserts them without
building a model instance for each, and the `any` lookup names them by one array on PostgreSQL.

A campaign request writes a thousand intents, deliveries and outbox rows in one
transaction, and every campaign batch a hundred ledger rows and a hundred attempt
rows. Django's bulk_create builds every instance and prepares every value of every
row on its own: measured on the campaign bench, that was the largest share of the
web's and the workers' time, and on SQLite it is spent holding the one write lock.
`insert_rows` prepares each default and each shared value (the batch's timestamp)
once and leaves plain values as they are. On PostgreSQL every row goes in one
statement whatever the count, one array per column (`INSERT … SELECT * FROM unnest(…)`):
psycopg parses the %s placeholders in Python and caches only statements of at most 50
parameters, and the server parses and plans one short statement instead of a literal
VALUES list per hundred rows (measured on the campaign bench, the web's largest cost on
PostgreSQL). On SQLite, multi-row INSERTs short enough for sqlite3 to cache the prepared
statement.

Use it inside a transaction (on SQLite each statement would otherwise commit on its own).

`filter(pk__any=ids)` is `filter(pk__in=ids)` sent as `id = ANY(%s)` with one array parameter on
PostgreSQL: a hundred ids in `IN (%s, …)` are a hundred parameters, which psycopg parses and quotes
one by one in Python on every call (see above); one array keeps the statement the same text whatever
the count, so both psycopg and the server's prepared statements reuse it.

Both send each array as its text form, written here (`array_text`): psycopg adapts a list
element by element in Python, which was a fifth of a campaign worker's CPU on PostgreSQL
(py-spy, bench/pipeline.py), while joining the elements' text is a few C calls per row.
"""

import json
from datetime import date, datetime, time

from django.conf import settings
from django.db import connection, connections
from django.db.models import Model
from django.db.models.lookups import In

PASS_THROUGH = {int, str, type(None)}  # exact types: a str enum or a bool goes through its field
STATEMENT_CHARS = 3500  # SQLite: short statements, each cached by the driver as a prepared statement


def insert_rows(model: type[Model], rows: list[dict], ignore_conflicts: bool = False, return_ids: bool = False) -> list[int]:
    """Rows map field attnames (`delivery_id`, not `delivery`) to values; every row names the
    same fields and the rest take their defaults. Returns the new ids, in the order of `rows`,
    when asked to."""
    if not rows:
        return []
    assert connection.in_atomic_block, "insert_rows belongs inside transaction.atomic()"
    fields, values = _prepared(model, rows)
    quote = connection.ops.quote_name
    head = f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
    tail = (" ON CONFLICT DO NOTHING" if ignore_conflicts else "") + (
        f" RETURNING {quote(model._meta.pk.column)}" if return_ids else ""
    )
    if connection.vendor == "postgresql":
        sql, params = unnest_insert(model, rows, prepared=(fields, values))
        with connection.cursor() as cursor:
            cursor.execute(f"{sql}{tail}", params)
            # In the order of the arrays, as PostgreSQL inserts an unnest's rows (bulk_create relies on the same for VALUES).
            return [row[0] for row in cursor.fetchall()] if return_ids else []
    head += "VALUES "
    one_row = f"({', '.join(['%s'] * len(fields))})"
    per_statement = max(1, min((STATEMENT_CHARS - len(head)) // (len(one_row) + 2), 999 // len(fields)))
    ids: list[int] = []
    with connection.cursor() as cursor:
        for start in range(0, len(values), per_statement):
            chunk = values[start : start + per_statement]
            cursor.execute(f"{head}{', '.join([one_row] * len(chunk))}{tail}", [v for row in chunk for v in row])
            if return_ids:
                ids += [row[0] for row in cursor.fetchall()]  # in the order of VALUES, as bulk_create relies on too
    return ids


def row_loader(model: type[Model], fields):
    """A function that makes an instance of `model` from its `fields`' columns as the driver returned
    them, converted as the ORM converts them (a JSON field's text decoded): for rows a hand-written
    statement returns. Asking each field for its converters costs more than converting, so it is
    asked once here, not once a row."""
    names = [f.attname for f in fields]
    converting = [(i, converters) for i, f in enumerate(fields) if (converters := f.get_db_converters(connection))]
    alias, real = connection.alias, connections[connection.alias]  # the wrapper itself, not the per-call proxy

    def load(values) -> Model:
        if converting:
            values = list(values)
            for index, converters in converting:
                if values[index] is not None:
                    for convert in converters:
                        values[index] = convert(values[index], None, real)
        return model.from_db(alias, names, values)

    return load


def read_timestamps_in_c(cursor) -> None:
    """PostgreSQL: this cursor reads `timestamptz` columns with psycopg's own loader, written in C.

    Django registers a loader of its own on every connection, a subclass of psycopg's pure-Python
    one, only to give each value the connection's time zone; the session's TimeZone, which Django
    sets to that zone, gives psycopg's loader the same one. Measured on a campaign worker (py-spy,
    bench/pipeline.py): Django's loader was a twelfth of a batch's time, in the claim's four
    timestamps a row; psycopg's reads 10,000 values in 7 ms instead of 90."""
    if settings.USE_TZ:
        from psycopg.types.datetime import TimestamptzLoader  # psycopg maps it to its C version

        cursor.cursor.adapters.register_loader("timestamptz", TimestamptzLoader)


def _prepared(model: type[Model], rows: list[dict]) -> tuple[list, list[list]]:
    """The fields to insert and each row's values for them, prepared for the database."""
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    given = rows[0].keys()
    unknown = set(given) - {f.attname for f in fields}
    assert not unknown, f"{model.__name__} has no field {', '.join(sorted(unknown))}"
    defaults = {f.attname: f.get_db_prep_save(f.get_default(), connection) for f in fields if f.attname not in given}
    shared: dict = {}

    def prepared(field, value):
        if type(value) in PASS_THROUGH:
            return value
        try:
            key = (field.attname, value)
            if key not in shared:  # a datetime or enum the whole batch shares: prepared once
                shared[key] = field.get_db_prep_save(value, connection)
            return shared[key]
        except TypeError:  # unhashable, a JSON field's dict: prepared row by row
            return field.get_db_prep_save(value, connection)

    return fields, [[prepared(f, row[f.attname]) if f.attname in given else defaults[f.attname] for f in fields] for row in rows]


def unnest_insert(model: type[Model], rows: list[dict], where: str = "", prepared=None) -> tuple[str, list]:
    """PostgreSQL: `insert_rows`' statement (and its parameters) as text, to run inside a larger one; the
    rows are `given` and `where` may pick some of them (`given.delivery_id IN (SELECT id FROM moved)`)."""
    fields, values = prepared or _prepared(model, rows)
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)
    sql = (f"INSERT INTO {quote(model._meta.db_table)} ({columns}) SELECT * FROM unnest({arrays}) AS given ({columns})"
           + (f" WHERE {where}" if where else ""))  # fmt: skip
    return sql, [array_text(column) for column in zip(*values)]


def rows_for_each(model: type[Model], key: str, values, fields: list[str] | None = None, **equal) -> list:
    """The rows of `model` whose `key` is one of `values` and whose other columns equal `equal` (attnames):
    `filter(key__in=values, **equal)`, as instances, or as tuples of `fields` (plain columns: read as the
    driver returns them).

    On PostgreSQL, one index lookup for each value, whatever the table's statistics say: with `key = ANY(…)`
    beside an equality on the run, the planner, told by statistics gathered when the run's rows were a few
    (autovacuum refreshes them a minute or more later), kept only the run in the index condition and read
    every row of the run to filter it (bench/pipeline.py). A join against the array's rows, fenced so it is
    not flattened back into a join the planner may hash (`OFFSET 0`), makes each value an equality on the index."""
    values = list(dict.fromkeys(values))  # each row once, as `in` finds it
    if connection.vendor != "postgresql":
        found = model.objects.filter(**{f"{key}__in": values}, **equal)
        return list(found.values_list(*fields) if fields else found)
    quote, meta = connection.ops.quote_name, model._meta
    key_field = meta.get_field(key)
    columns = [meta.get_field(name) for name in fields] if fields else meta.concrete_fields
    matches = " AND ".join([f"found.{quote(key_field.column)} = wanted.value",
                            *(f"found.{quote(meta.get_field(name).column)} = %s" for name in equal)])  # fmt: skip
    sql = (f"SELECT {', '.join(f'found.{quote(f.column)}' for f in columns)} FROM unnest(%s::{key_field.db_type(connection)}[]) AS wanted (value)"
           f" CROSS JOIN LATERAL (SELECT * FROM {quote(meta.db_table)} found WHERE {matches} OFFSET 0) AS found")  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql, [array_text(values), *equal.values()])
        rows = cursor.fetchall()
    if fields:
        return rows
    load = row_loader(model, columns)
    return [load(row) for row in rows]


class AnyOf(In):
    """`field__any=values`: `IN (…)`, and on PostgreSQL `= ANY(%s::type[])` with the values as one
    array (registered on every field by labs.apps)."""

    lookup_name = "any"

    def as_postgresql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        _, values = self.process_rhs(compiler, connection)  # prepared by the field, as for IN
        return f"{lhs} = ANY(%s::{self.lhs.output_field.db_type(connection)}[])", (*lhs_params, array_text(values))


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# How each type of value is written inside PostgreSQL's text form of an array (exact types: a
# subclass, such as a str enum, goes through `_element`).
_ELEMENT = {
    int: str,
    str: _quoted,
    type(None): lambda value: "NULL",
    bool: lambda value: "t" if value else "f",
    float: repr,
    datetime: lambda value: _quoted(value.isoformat()),
    date: lambda value: value.isoformat(),
    time: lambda value: value.isoformat(),
}


def _element(value) -> str:
    write = _ELEMENT.get(type(value))
    if write is not None:
        return write(value)
    if isinstance(value, str):
        return _quoted(str.__str__(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return str(int(value))
    if type(value).__name__ == "Jsonb" and type(value).__module__.startswith("psycopg"):
        # psycopg's JSON wrapper, named here rather than imported: on SQLite nothing loads psycopg (7 MB a process).
        return _quoted((value.dumps or json.dumps)(value.obj))
    raise TypeError(f"no array text for {type(value).__name__}")


def array_text(values) -> str | list:
    """PostgreSQL's text form of a one-dimensional array of `values` (`{1,2,"it's \\"x\\""}`), sent as
    one text parameter and cast by the statement (`%s::bigint[]`). A value of a type not listed
    above leaves the list to psycopg's own adapter."""
    try:
        return "{" + ",".join([_element(value) for value in values]) + "}"
    except TypeError:
        return list(values)


class Statement:
    """A statement Django builds as (sql, params), compiled once per process and bound again with other values:
    for the pipeline's batch statements on PostgreSQL, whose text never changes (compiling them through the
    ORM was about a seventh of a campaign worker's CPU; py-spy, bench/pipeline.py). As config.prepared's
    `Prepared`, for statements other than reads.

    `build(**placeholders)` returns the statement; each placeholder is a value no real call passes, found by
    its value among the parameters (a list by its array text, as the `any` lookup sends it). A call gives
    every placeholder's real value and gets (sql, params)."""

    def __init__(self, build, **placeholders):
        self._build = build
        self._placeholders = placeholders
        self._compiled = None

    def _compile(self):
        sql, params = self._build(**self._placeholders)
        by_value = {_param_form(value): name for name, value in self._placeholders.items()}
        bound = [by_value.get(param) if isinstance(param, int | str) else None for param in params]
        missing = set(self._placeholders) - set(bound)
        if missing:
            raise ValueError(f"placeholders {sorted(missing)} are not parameters of: {sql}")
        return sql, list(params), bound

    def __call__(self, **values) -> tuple[str, list]:
        if self._compiled is None:
            self._compiled = self._compile()
        sql, params, bound = self._compiled
        values = {name: _param_form(value) for name, value in values.items()}
        return sql, [values[name] if name is not None else param for name, param in zip(bound, params, strict=True)]


def _param_form(value):
    return array_text(list(value)) if isinstance(value, list | tuple | set | frozenset) else value
