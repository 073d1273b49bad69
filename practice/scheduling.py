"""From a candidate's self-grade to the next review, with FSRS (the `fsrs` package).

The lesson is not about this; the algorithm is FSRS-6 with its default parameters.

1. The candidate gives each rubric point a credit: covered 1, partly 0.5, missed 0.
2. The score is the weighted share of credit: sum(weight × credit) / sum(weight), 0–100.
3. The score becomes an FSRS rating: under 40 Again, under 70 Hard, under 90 Good,
   else Easy. A quick check is Good when right and Again when wrong (recognising
   the right option is easier than recalling it, so it never earns Easy); an estimation
   drill likewise is Good within its tolerance and Again outside it; giving up is Again.
4. FSRS updates the card's stability and difficulty and sets its next due time.

Reviews are days apart, so the scheduler has no same-day learning steps: the first
review already schedules in days. Fuzzing is off so the date a candidate is shown
is the date the card comes back.
"""

from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta

from django.utils import timezone
from fsrs import Card, Rating, Scheduler

from practice.models import Rating as RatingChoice
from practice.models import ReviewCard

SCHEDULER = Scheduler(learning_steps=(), relearning_steps=(), enable_fuzzing=False)
CREDITS = {"covered": 1.0, "partly": 0.5, "missed": 0.0}
RATING_THRESHOLDS = ((40, RatingChoice.AGAIN), (70, RatingChoice.HARD), (90, RatingChoice.GOOD))


def score_from_credits(points: list[dict], credits: list[float]) -> int:
    """The weighted share of credit, 0–100; `points` are rubric points (or matches) with a weight."""
    total = sum(point["weight"] for point in points)
    earned = sum(point["weight"] * credit for point, credit in zip(points, credits, strict=True))
    return round(100 * earned / total) if total else 0


def rating_for_score(score: int) -> RatingChoice:
    for below, rating in RATING_THRESHOLDS:
        if score < below:
            return rating
    return RatingChoice.EASY


def review(card: ReviewCard, rating: int, now: datetime) -> ReviewCard:
    """Apply one review to `card` (new or existing) and return it, not saved."""
    fsrs_card = Card.from_dict(card.state) if card.state else Card(card_id=1, due=now)
    fsrs_card, _log = SCHEDULER.review_card(fsrs_card, Rating(rating), now)
    card.state = fsrs_card.to_dict()
    card.due = fsrs_card.due
    card.reviews += 1
    card.last_review = now
    return card


def due_on(card: ReviewCard) -> date:
    return due_day(card.due)


def due_day(due: datetime) -> date:
    """The day a card falls due, in the site's time zone."""
    return timezone.localdate(due)


def due_count(dues: Iterable[datetime], today: date) -> int:
    """How many of these due dates fall today or earlier (`due_cards`'s rule, for a count from due dates alone):
    before the start of tomorrow in the site's time zone, which compares without converting each date."""
    tomorrow = timezone.make_aware(datetime.combine(today + timedelta(days=1), time.min))
    return sum(due < tomorrow for due in dues)


def due_cards(cards: list[ReviewCard], today: date) -> list[ReviewCard]:
    """Cards due today or overdue, the most overdue first."""
    return sorted((c for c in cards if due_on(c) <= today), key=lambda c: c.due)


def due_per_day(cards: list[ReviewCard], today: date, days: int) -> list[tuple[date, int]]:
    """How many cards fall due on each of the next `days` days; overdue ones count today."""
    counts = Counter(max(due_on(c), today) for c in cards)
    return [(day, counts[day]) for day in (today + timedelta(n) for n in range(days))]


def streak(practice_days: set[date], today: date) -> int:
    """Consecutive days with practice, ending today (or yesterday, if today has none yet)."""
    day = today if today in practice_days else today - timedelta(1)
    count = 0
    while day in practice_days:
        count += 1
        day -= timedelta(1)
    return count
