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
"""

from django.db import connection
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

    values = [[prepared(f, row[f.attname]) if f.attname in given else defaults[f.attname] for f in fields] for row in rows]
    quote = connection.ops.quote_name
    head = f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
    tail = (" ON CONFLICT DO NOTHING" if ignore_conflicts else "") + (
        f" RETURNING {quote(model._meta.pk.column)}" if return_ids else ""
    )
    if connection.vendor == "postgresql":
        arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)
        with connection.cursor() as cursor:
            cursor.execute(f"{head}SELECT * FROM unnest({arrays}){tail}", [list(column) for column in zip(*values)])
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


class AnyOf(In):
    """`field__any=values`: `IN (…)`, and on PostgreSQL `= ANY(%s)` with the values as one array
    (registered on every field by labs.apps)."""

    lookup_name = "any"

    def as_postgresql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        _, values = self.process_rhs(compiler, connection)  # prepared by the field, as for IN
        return f"{lhs} = ANY(%s)", (*lhs_params, list(values))
