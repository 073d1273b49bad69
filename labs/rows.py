"""Insert many rows without building a model instance for each (the pipeline's hot paths).

A campaign request writes a thousand intents, deliveries and outbox rows in one
transaction, and every campaign batch a hundred ledger rows and a hundred attempt
rows. Django's bulk_create builds every instance and prepares every value of every
row on its own: measured on the campaign bench, that was the largest share of the
web's and the workers' time, and on SQLite it is spent holding the one write lock.
`insert_rows` prepares each default once, leaves plain values (int, str, None) as
they are, and sends as many rows per statement as the database allows.

Use it inside a transaction (on SQLite each statement would otherwise commit on its own).
"""

import sqlite3
from datetime import datetime

from django.db import connection
from django.db.models import Model

PASS_THROUGH = {int, str, type(None)}  # exact types: a str enum or a bool goes through its field


def db_datetime(value: datetime):
    """A datetime as the database takes it; adapt a value the whole batch shares once."""
    return connection.ops.adapt_datetimefield_value(value)


def insert_rows(model: type[Model], rows: list[dict], ignore_conflicts: bool = False, return_ids: bool = False) -> list[int]:
    """Rows map field attnames (`delivery_id`, not `delivery`) to values; every row names the
    same fields and the rest take their defaults. Values other than plain int, str and None
    (a JSON field's dict, a choices enum, a datetime) are prepared by their field, row by row.
    Returns the new ids, in the order of `rows`, when asked to."""
    if not rows:
        return []
    assert connection.in_atomic_block, "insert_rows belongs inside transaction.atomic()"
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    given = rows[0].keys()
    unknown = set(given) - {f.attname for f in fields}
    assert not unknown, f"{model.__name__} has no field {', '.join(sorted(unknown))}"
    defaults = {f.attname: f.get_db_prep_save(f.get_default(), connection) for f in fields if f.attname not in given}

    def prepared(field, value):
        return value if type(value) in PASS_THROUGH else field.get_db_prep_save(value, connection)

    values = [
        [prepared(f, row[f.attname]) if f.attname in given else defaults[f.attname] for f in fields] for row in rows
    ]
    quote = connection.ops.quote_name
    head = f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) VALUES "
    one_row = f"({', '.join(['%s'] * len(fields))})"
    tail = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
    with connection.cursor() as cursor:
        if not return_ids:
            cursor.executemany(head + one_row + tail, values)
            return []
        ids: list[int] = []
        per_statement = max(1, _max_parameters() // len(fields))
        for start in range(0, len(values), per_statement):
            chunk = values[start : start + per_statement]
            cursor.execute(
                f"{head}{', '.join([one_row] * len(chunk))}{tail} RETURNING {quote(model._meta.pk.column)}",
                [value for row in chunk for value in row],
            )
            ids += [row[0] for row in cursor.fetchall()]  # in the order of VALUES, as bulk_create relies on too
        return ids


def _max_parameters() -> int:
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        return connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return 65535  # PostgreSQL's limit on the parameters of one statement
