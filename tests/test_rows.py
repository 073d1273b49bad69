"""labs/rows.py: the multi-row inserts on the pipeline's hot paths, on the suite's database."""

from datetime import datetime, timezone

import pytest
from django.db import IntegrityError, transaction

from labs.models import Delivery, NotificationIntent, OutboxRow, ProviderSend, Recipient, Template
from labs.rows import insert_rows
from labs.runs import create_run


@pytest.fixture
def run(db, django_user_model):
    return create_run(django_user_model.objects.create_user("rows", password="not-used-1234"))


def intents(run, count: int, at: datetime) -> list[dict]:
    recipient = Recipient.objects.filter(run=run).first()
    template = Template.objects.filter(run=run, name="weekly_digest").first()
    return [
        {"run_id": run.pk, "recipient_id": recipient.pk, "template_id": template.pk, "priority": "marketing",
         "data": {"count": n, "note": "ünïcode"}, "idempotency_key": f"k{n}", "fingerprint": f"f{n}", "created_at": at}
        for n in range(count)
    ]  # fmt: skip


def test_ids_come_back_in_the_order_of_the_rows_across_several_statements(run):
    at = datetime(2026, 11, 22, 8, 30, 15, 123456, tzinfo=timezone.utc)
    with transaction.atomic():
        ids = insert_rows(NotificationIntent, intents(run, 250, at), return_ids=True)  # more than one statement holds

    assert len(ids) == len(set(ids)) == 250
    saved = NotificationIntent.objects.in_bulk(ids)
    assert [saved[pk].idempotency_key for pk in ids] == [f"k{n}" for n in range(250)]
    assert saved[ids[7]].data == {"count": 7, "note": "ünïcode"}  # a JSON field, prepared row by row
    assert saved[ids[7]].created_at == at  # a shared datetime, prepared once, reads back the same


def test_fields_not_given_take_their_defaults(run):
    with transaction.atomic():
        [intent_id] = insert_rows(NotificationIntent, intents(run, 1, datetime.now(timezone.utc)), return_ids=True)
        [delivery_id] = insert_rows(Delivery, [{"run_id": run.pk, "intent_id": intent_id, "recipient_id": Recipient.objects.filter(run=run).first().pk,
                                                "channel": "email", "queue": "email"}], return_ids=True)  # fmt: skip
        insert_rows(OutboxRow, [{"run_id": run.pk, "delivery_id": delivery_id, "queue": "email", "generation": 0}])

    delivery = Delivery.objects.get(pk=delivery_id)
    assert (delivery.status, delivery.attempts, delivery.last_error, delivery.finished_at) == ("pending", 0, "", None)
    row = OutboxRow.objects.get(delivery_id=delivery_id)
    assert row.published_at is None and row.available_at is not None


def test_ignore_conflicts_keeps_the_first_row_and_without_it_the_conflict_is_an_error(run):
    sent = {"run_id": run.pk, "provider": "email-primary", "channel": "email", "intent_id": 1, "recipient_number": 1,
            "sequence": None, "template": "weekly_digest"}  # fmt: skip
    with transaction.atomic():
        insert_rows(ProviderSend, [{**sent, "idempotency_key": "a"}])
        insert_rows(ProviderSend, [{**sent, "idempotency_key": "a"}, {**sent, "idempotency_key": "b"}], ignore_conflicts=True)
    assert sorted(ProviderSend.objects.values_list("idempotency_key", flat=True)) == ["a", "b"]

    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows(ProviderSend, [{**sent, "idempotency_key": "b"}])


def test_a_field_the_model_does_not_have_is_refused(run):
    with pytest.raises(AssertionError, match="OutboxRow has no field delivery"), transaction.atomic():
        insert_rows(OutboxRow, [{"run_id": run.pk, "delivery": 1, "queue": "email", "generation": 0}])


AWKWARD = ['say "hi"', "back\\slash", "NULL", "", "a,b {c}", "  spaced  ", "it's", "ünïcode"]


def test_text_that_looks_like_array_syntax_or_null_reads_back_as_written(run):
    # On PostgreSQL each column travels as the text of one array (labs.rows.array_text): quotes,
    # backslashes, braces, commas and the word NULL must come back as the learner's own text.
    at = datetime(2026, 11, 22, 8, 30, 15, 123456, tzinfo=timezone.utc)
    rows = [{**row, "idempotency_key": key, "data": {"note": key, "nested": [key, None]}}
            for row, key in zip(intents(run, len(AWKWARD), at), AWKWARD, strict=True)]  # fmt: skip
    with transaction.atomic():
        ids = insert_rows(NotificationIntent, rows, return_ids=True)

    saved = NotificationIntent.objects.in_bulk(ids)
    assert [saved[pk].idempotency_key for pk in ids] == AWKWARD
    assert [saved[pk].data for pk in ids] == [{"note": key, "nested": [key, None]} for key in AWKWARD]
    found = NotificationIntent.objects.filter(run=run, idempotency_key__any=["NULL", 'say "hi"', "back\\slash", "missing"])
    assert sorted(found.values_list("idempotency_key", flat=True)) == sorted(["NULL", 'say "hi"', "back\\slash"])
    assert set(NotificationIntent.objects.filter(pk__any=ids[:3]).values_list("pk", flat=True)) == set(ids[:3])


def test_a_claimed_batch_reads_back_as_the_orm_reads_it(run):
    # claim_many builds its deliveries and intents from a hand-written statement's rows (labs.rows.row_loader,
    # with psycopg's own timestamp loader on PostgreSQL): every field must come back as the ORM gives it.
    from labs.pipeline.deliveries import claim_many

    at = datetime(2026, 11, 22, 8, 30, 15, 123456, tzinfo=timezone.utc)
    with transaction.atomic():
        intent_ids = insert_rows(NotificationIntent, intents(run, 3, at), return_ids=True)
        recipient_id = Recipient.objects.filter(run=run).first().pk
        ids = insert_rows(Delivery, [{"run_id": run.pk, "intent_id": pk, "recipient_id": recipient_id, "channel": "email", "queue": "email",
                                      "created_at": at, "updated_at": at} for pk in intent_ids], return_ids=True)  # fmt: skip

    taken = {d.pk: d for d in claim_many(ids, 0)}

    assert sorted(taken) == sorted(ids)
    for delivery in Delivery.objects.select_related("intent").filter(pk__in=ids):
        claimed = taken[delivery.pk]
        for model, got, expected in ((Delivery, claimed, delivery), (NotificationIntent, claimed.intent, delivery.intent)):
            for field in model._meta.concrete_fields:
                value = getattr(got, field.attname)
                assert value == getattr(expected, field.attname), field.name
                if isinstance(value, datetime):
                    assert value.tzinfo == expected.created_at.tzinfo, field.name
    assert claimed.status == "sending" and claimed.generation == 1 and claimed.created_at == at
    assert claimed.intent.data["note"] == "ünïcode"


def test_rows_for_each_finds_what_the_orm_finds_and_looks_each_value_up_on_the_index(run, django_user_model):
    # The intake's idempotency check and the providers' ledger check read their rows with rows_for_each.
    from django.db import connection

    from labs.rows import rows_for_each

    other = create_run(django_user_model.objects.create_user("rows-other", password="not-used-1234"))
    at = datetime(2026, 11, 22, 8, 30, tzinfo=timezone.utc)
    with transaction.atomic():
        insert_rows(NotificationIntent, intents(run, 5, at))
        insert_rows(NotificationIntent, intents(other, 5, at))  # the same keys in another run

    wanted = ["k1", "k3", "k3", "missing"]
    found = rows_for_each(NotificationIntent, "idempotency_key", wanted, run_id=run.pk)
    expected = list(NotificationIntent.objects.filter(run=run, idempotency_key__in=wanted))
    assert sorted(i.pk for i in found) == sorted(i.pk for i in expected) and len(expected) == 2
    for got in found:
        mine = next(i for i in expected if i.pk == got.pk)
        assert [getattr(got, f.attname) for f in NotificationIntent._meta.concrete_fields] == [
            getattr(mine, f.attname) for f in NotificationIntent._meta.concrete_fields]
    assert found[0].data["note"] == "ünïcode"
    assert sorted(rows_for_each(NotificationIntent, "idempotency_key", ["k2", "k4"], ["id", "idempotency_key"], run_id=other.pk)) == sorted(
        NotificationIntent.objects.filter(run=other, idempotency_key__in=["k2", "k4"]).values_list("id", "idempotency_key"))

    if connection.vendor == "postgresql":
        # However few rows the statistics last saw, each value is an equality on the (run, intent, channel) index.
        captured = []

        def explain(execute, sql, params, many, context):
            with connection.cursor() as cursor:
                cursor.cursor.execute("EXPLAIN " + sql, params)
                captured.append("\n".join(row[0] for row in cursor.cursor.fetchall()))
            return execute(sql, params, many, context)

        with connection.execute_wrapper(explain):
            rows_for_each(ProviderSend, "intent_id", [1, 2, 3], ["id", "provider"], run_id=run.pk, channel="email")
        [plan] = captured
        assert "Nested Loop" in plan and "wanted.value" in plan and "Filter" not in plan, plan


def test_statements_built_once_bind_each_calls_values_where_the_orm_puts_them(db):
    # labs.rows.Statement: the batch UPDATEs of labs.pipeline.deliveries on PostgreSQL are compiled once and
    # bound again; what they run must be what the ORM builds for the same values.
    from django.db import connection

    from labs.pipeline import deliveries

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's statements (SQLite's IN lists change with the count)")
    for values in ({"ids": [5, 9, 12], "generation": 3, "next_generation": 4, "claimed_by": "celery@host-a"},
                   {"ids": [1], "generation": 0, "next_generation": 1, "claimed_by": "celery@host-b"}):  # fmt: skip
        assert deliveries._CLAIM(**values) == deliveries._claim_statement(**values)
    for statement, extra in ((deliveries._DISPATCH, {"provider": "email-primary"}),
                             (deliveries._FINISH, {"provider": "email-backup", "status": "delivered"})):  # fmt: skip
        values = {"ids": [7, 8], "generation": 2, "next_generation": 3, **extra}
        assert statement(**values) == statement._build(**values)
