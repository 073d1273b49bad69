"""From self-grades to FSRS reviews, the due queue and the streak; the mock interview's timeline."""

from datetime import UTC, date, datetime, timedelta

import pytest

from practice import scheduling
from practice.mock import Phase, phase_seconds, read_phases, timeline
from practice.models import Rating, ReviewCard

MONDAY_9AM = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
POINTS = [{"weight": 3}, {"weight": 2}, {"weight": 1}]


def new_card() -> ReviewCard:
    return ReviewCard(question_id="q", state={})


@pytest.mark.parametrize(
    ("credits", "score"),
    [([1, 1, 1], 100), ([1, 0, 0], 50), ([0, 1, 1], 50), ([0.5, 0.5, 0.5], 50), ([0, 0, 0], 0), ([1, 1, 0], 83)],
)
def test_the_score_is_the_weighted_share_of_credit(credits, score):
    assert scheduling.score_from_credits(POINTS, credits) == score


@pytest.mark.parametrize(
    ("score", "rating"),
    [(0, Rating.AGAIN), (39, Rating.AGAIN), (40, Rating.HARD), (69, Rating.HARD), (70, Rating.GOOD),
     (89, Rating.GOOD), (90, Rating.EASY), (100, Rating.EASY)],
)  # fmt: skip
def test_the_score_maps_to_an_fsrs_rating_at_40_70_and_90_percent(score, rating):
    assert scheduling.rating_for_score(score) == rating


@pytest.mark.parametrize(
    ("rating", "days"), [(Rating.AGAIN, 1), (Rating.HARD, 1), (Rating.GOOD, 2), (Rating.EASY, 8)]
)
def test_a_first_review_schedules_the_card_days_ahead_by_its_rating(rating, days):
    card = scheduling.review(new_card(), rating, MONDAY_9AM)

    assert card.due == MONDAY_9AM + timedelta(days=days)
    assert card.reviews == 1
    assert card.last_review == MONDAY_9AM


def test_a_card_remembered_twice_waits_longer_and_a_forgotten_one_comes_back_tomorrow():
    first = scheduling.review(new_card(), Rating.GOOD, MONDAY_9AM)
    second_review_at = first.due
    remembered = scheduling.review(ReviewCard(question_id="q", state=dict(first.state)), Rating.GOOD, second_review_at)
    forgotten = scheduling.review(ReviewCard(question_id="q", state=dict(first.state)), Rating.AGAIN, second_review_at)

    assert remembered.due - second_review_at > first.due - MONDAY_9AM
    assert forgotten.due == second_review_at + timedelta(days=1)


def card_due(day: date) -> ReviewCard:
    return ReviewCard(question_id=str(day), state={"x": 1}, due=datetime(day.year, day.month, day.day, 15, tzinfo=UTC))


def test_the_due_queue_holds_cards_due_today_or_earlier_most_overdue_first():
    today = date(2025, 3, 5)
    cards = [card_due(date(2025, 3, 5)), card_due(date(2025, 3, 6)), card_due(date(2025, 3, 1))]

    due = scheduling.due_cards(cards, today)

    assert [c.question_id for c in due] == ["2025-03-01", "2025-03-05"]


def test_counts_per_day_put_overdue_cards_on_today():
    today = date(2025, 3, 5)
    cards = [card_due(date(2025, 3, 1)), card_due(date(2025, 3, 5)), card_due(date(2025, 3, 7)), card_due(date(2025, 4, 1))]

    counts = scheduling.due_per_day(cards, today, 3)

    assert counts == [(date(2025, 3, 5), 2), (date(2025, 3, 6), 0), (date(2025, 3, 7), 1)]


@pytest.mark.parametrize(
    ("days", "streak"),
    [
        ({date(2025, 3, 5), date(2025, 3, 4), date(2025, 3, 3)}, 3),
        ({date(2025, 3, 4), date(2025, 3, 3)}, 2),  # nothing yet today: the streak still stands
        ({date(2025, 3, 5), date(2025, 3, 3)}, 1),
        ({date(2025, 3, 3)}, 0),
        (set(), 0),
    ],
)
def test_the_streak_counts_consecutive_days_with_practice_up_to_today(days, streak):
    assert scheduling.streak(days, date(2025, 3, 5)) == streak


PHASES = [Phase("a", "A", 0.15, ()), Phase("b", "B", 0.3, ()), Phase("c", "C", 0.35, ()), Phase("d", "D", 0.2, ())]


@pytest.mark.parametrize("minutes", [10, 30, 35, 45])
def test_the_time_box_splits_into_whole_minutes_per_phase_that_add_up(minutes):
    split = phase_seconds(minutes, PHASES)

    assert sum(split) == minutes * 60
    assert all(s >= 60 and s % 60 == 0 for s in split)


def test_the_real_phases_are_the_four_of_a_design_interview():
    assert [p.title for p in read_phases()] == [
        "Clarify requirements", "High-level design", "Deep dive", "Trade-offs and wrap-up",
    ]  # fmt: skip


def test_the_timeline_runs_through_the_phases_and_ends():
    seconds = [300, 600, 600, 300]
    at = MONDAY_9AM

    assert timeline(at, seconds, [None] * 4, at + timedelta(minutes=2)).current == 0
    running = timeline(at, seconds, [None] * 4, at + timedelta(minutes=7))
    over = timeline(at, seconds, [None] * 4, at + timedelta(minutes=30))

    assert (running.current, running.remaining) == (1, 480)
    assert over.over and over.remaining == 0


def test_moving_on_early_starts_the_next_phase_then_and_keeps_its_full_length():
    seconds = [300, 600, 600, 300]
    early = MONDAY_9AM + timedelta(minutes=1)

    line = timeline(MONDAY_9AM, seconds, [None, early, None, None], MONDAY_9AM + timedelta(minutes=2))

    assert line.current == 1
    assert line.ends[0] == early
    assert line.remaining == 540
