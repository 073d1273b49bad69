"""config/prepared.py: a query compiled once answers as its queryset does, with each call's own values."""

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config.prepared import Prepared, attnames
from practice.loader import load_questions
from practice.models import Question, ReviewCard

DUE = Prepared(lambda user_id: ReviewCard.objects.filter(user_id=user_id).order_by("due").values_list("question_id", "due"), user_id=-1)
CARD = Prepared(lambda user_id, question_id: ReviewCard.objects.filter(user_id=user_id, question_id=question_id)
                .values_list(*attnames(ReviewCard)), user_id=-1, question_id="\0")  # fmt: skip


@pytest.fixture
def cards(db, django_user_model):
    load_questions()
    questions = list(Question.objects.order_by("pk")[:3])
    users = [django_user_model.objects.create_user(name) for name in ("ada", "grace")]
    now = timezone.now().replace(microsecond=0)
    for n, question in enumerate(questions):
        ReviewCard.objects.create(user=users[0], question=question, due=now + timedelta(days=n), state={"n": n}, reviews=n)
    ReviewCard.objects.create(user=users[1], question=questions[0], due=now, state={}, reviews=7)
    return users


def test_each_call_binds_its_own_values_and_converts_columns_as_the_orm_does(cards):
    ada, grace = cards
    for user in (ada, grace):
        orm = list(ReviewCard.objects.filter(user=user).order_by("due").values_list("question_id", "due"))
        assert DUE(user_id=user.pk) == orm
    assert DUE(user_id=0) == []


def test_instances_are_the_rows_the_orm_loads(cards):
    ada, _ = cards
    card = ReviewCard.objects.filter(user=ada).order_by("due").last()

    [prepared] = CARD.instances(ReviewCard, user_id=ada.pk, question_id=card.question_id)

    assert (prepared.pk, prepared.due, prepared.state, prepared.reviews) == (card.pk, card.due, card.state, card.reviews)
    prepared.reviews += 1
    prepared.save()
    assert ReviewCard.objects.get(pk=card.pk).reviews == card.reviews + 1


def test_a_placeholder_the_query_does_not_use_is_refused(db):
    unused = Prepared(lambda user_id: ReviewCard.objects.values_list("pk", flat=True), user_id=-1)

    with pytest.raises(ValueError, match="user_id"):
        unused(user_id=1)


def test_a_moment_is_bound_as_the_database_adapts_it(cards):
    ada, _ = cards
    placeholder = datetime(1901, 1, 1, tzinfo=dt_timezone.utc)
    due_from = Prepared(lambda user_id, since: ReviewCard.objects.filter(user_id=user_id, due__gte=since).order_by("due")
                        .values_list("reviews", flat=True), user_id=-1, since=placeholder)  # fmt: skip
    first = ReviewCard.objects.filter(user=ada).order_by("due").first().due

    for since in (first, first + timedelta(hours=12), first + timedelta(days=1), first + timedelta(days=5)):
        assert due_from(user_id=ada.pk, since=since) == list(ReviewCard.objects.filter(user=ada, due__gte=since)
                                                             .order_by("due").values_list("reviews", flat=True))  # fmt: skip
    assert due_from(user_id=ada.pk, since=first + timedelta(days=1)) == [1, 2]


def test_the_lean_path_reads_what_djangos_cursor_reads_and_whatever_counts_queries_still_sees_them(cards):
    ada, _ = cards
    lean = DUE(user_id=ada.pk)  # nothing watches: the driver's own cursor

    with CaptureQueriesContext(connection) as seen:
        watched = DUE(user_id=ada.pk)

    assert lean == watched and len(lean) == 3
    assert [q["sql"] for q in seen.captured_queries if "practice_reviewcard" in q["sql"]], seen.captured_queries


def test_inside_a_transaction_marked_for_rollback_a_read_is_refused_as_django_refuses_it(cards):
    ada, _ = cards
    with transaction.atomic():
        with pytest.raises(IntegrityError):
            with transaction.atomic(savepoint=False):
                ReviewCard.objects.create(user=ada, question_id=ReviewCard.objects.filter(user=ada).first().question_id, due=timezone.now(), state={})
        with pytest.raises(TransactionManagementError):
            DUE(user_id=ada.pk)
