"""What the progress dashboard and the review page count."""

from collections import defaultdict
from datetime import date, timedelta

from django.utils import timezone

from practice.models import Attempt, Question
from practice.question_files import TOPICS

WEAK_BELOW = 70  # a topic whose latest scores average under this is worth revisiting


def practice_days(attempts: list[Attempt]) -> set[date]:
    return {timezone.localdate(a.created_at) for a in attempts}


def attempts_per_day(attempts: list[Attempt], today: date, days: int) -> list[tuple[date, int]]:
    counts = defaultdict(int)
    for a in attempts:
        counts[timezone.localdate(a.created_at)] += 1
    return [(day, counts[day]) for day in (today - timedelta(n) for n in reversed(range(days)))]


def latest_graded(attempts: list[Attempt]) -> dict[str, Attempt]:
    """The newest graded attempt per question: the candidate's current standing on it."""
    latest: dict[str, Attempt] = {}
    for a in sorted((a for a in attempts if a.graded), key=lambda a: a.created_at):
        latest[a.question_id] = a
    return latest


def score_by_topic(attempts: list[Attempt]) -> list[tuple[str, int]]:
    """Average of the latest score of each question, per topic, in the topics' order."""
    scores = defaultdict(list)
    for attempt in latest_graded(attempts).values():
        for topic in attempt.question.topics:
            scores[topic].append(attempt.score)
    return [(topic, round(sum(scores[topic]) / len(scores[topic]))) for topic in TOPICS if scores[topic]]


def weakest_topics(attempts: list[Attempt], limit: int = 3) -> list[dict]:
    """The lowest-scoring topics under WEAK_BELOW, each with the lessons and labs behind its weakest questions."""
    latest = sorted(latest_graded(attempts).values(), key=lambda a: a.score)
    weak = sorted((score, topic) for topic, score in score_by_topic(attempts) if score < WEAK_BELOW)[:limit]
    found = []
    for score, topic in weak:
        questions: list[Question] = [a.question for a in latest if topic in a.question.topics]
        lessons = list(dict.fromkeys(link for q in questions for link in q.lesson_links()))
        labs = list(dict.fromkeys(link for q in questions for link in q.lab_links()))
        found.append({"topic": topic, "label": TOPICS[topic], "score": score, "lessons": lessons, "labs": labs,
                      "questions": questions})  # fmt: skip
    return found
