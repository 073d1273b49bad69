"""The rubric matcher (practice/rubric.py): which key points a written answer covers, and where."""

from pathlib import Path

import pytest
import yaml

from practice.question_files import read_questions
from practice.rubric import match_answer, sentences, stem, term_matches, words

SAMPLES = Path(__file__).parent / "data" / "practice_rubric_samples.yaml"
JITTER_POINT = {
    "point": "Jitter randomises each delay so retries spread evenly over time",
    "weight": 3,
    "terms": ["jitter", "randomise", "random delay", "spread out"],
    "why": "Spreading turns a wall of retries into a steady rate.",
}


@pytest.fixture(scope="module")
def bank() -> dict[str, dict]:
    return {q["id"]: q for q in read_questions().questions}


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("retries", "retrying"),
        ("retried", "retry"),
        ("randomise", "randomize"),
        ("synchronised", "synchronized"),
        ("queues", "queued"),
        ("processes", "process"),
        ("stopped", "stopping"),
        ("ties", "tied"),
        ("deduplication", "deduplicate"),
        ("idempotently", "idempotent"),
    ],
)
def test_inflections_and_british_and_american_spellings_meet(a, b):
    assert stem(a) == stem(b)


def test_different_words_stay_different():
    assert stem("consumer") != stem("consume")
    assert stem("status") == "status"
    assert stem("bus") == "bus"


def test_an_answer_splits_into_sentences_without_markdown_marks():
    answer = "- **First**, we retry. Then we park it!\n\n## Why\n1. Because `DLQ` exists; it helps"

    assert sentences(answer) == ["First, we retry.", "Then we park it!", "Why", "Because DLQ exists;", "it helps"]


def test_a_multi_word_term_matches_as_a_phrase_or_with_its_words_apart():
    assert term_matches(words("same transaction"), words("in the same database transaction"))
    assert term_matches(words("before it trips"), words("long before the breaker trips"))
    assert not term_matches(words("same transaction"), words("the same table"))


def test_a_compound_word_matches_its_spaced_form():
    assert term_matches(words("rolled back"), words("a rollback would leave it"))
    assert term_matches(words("failover"), words("we fail over to the backup"))


def test_a_paraphrase_is_found_and_the_sentence_that_shows_it_is_quoted():
    answer = "Backoff alone keeps clients in step. So I would randomize every delay. That is all."

    [match] = match_answer(answer, [JITTER_POINT])

    assert match.found
    assert match.sentence == "So I would randomize every delay."
    assert match.term == "randomise"


def test_the_quote_is_the_sentence_that_matches_most_terms():
    answer = "Add jitter. Jitter means a random delay, so retries are spread out."

    [match] = match_answer(answer, [JITTER_POINT])

    assert match.sentence == "Jitter means a random delay, so retries are spread out."
    assert set(match.terms) == {"jitter", "random delay", "spread out"}


def test_a_miss_is_explained_with_why_the_point_matters_and_words_that_would_show_it():
    [match] = match_answer("Exponential backoff doubles the wait each time.", [JITTER_POINT])

    assert not match.found
    assert match.sentence == ""
    assert "“jitter”, “randomise”" in match.explanation
    assert "Why it matters: Spreading turns a wall of retries into a steady rate." in match.explanation


def test_an_empty_answer_covers_nothing(bank):
    assert not any(m.found for m in match_answer("", bank["design-notification-system"]["rubric"]))


# One sentence per rubric point of the notification-system design question, each in words a
# candidate might use rather than the rubric's own. Each must find its point, and only an answer
# that makes the point may find it.
NOTIFICATION_PARAPHRASES = [
    "The API stores the notification and an outbox record in a single database transaction and answers 202.",
    "Every channel has its own queue and worker pool, and urgent messages get a priority lane.",
    "Just before sending, the worker re-reads the user's preferences and honours opt-outs and quiet hours.",
    "Transient provider errors are retried with exponential backoff and jitter, then dead-lettered.",
    "A circuit breaker per provider lets us fail over to a second provider.",
    "Workers keep a delivery record so a redelivered task is deduplicated instead of sent twice.",
]


@pytest.mark.parametrize("index", range(len(NOTIFICATION_PARAPHRASES)))
def test_each_design_point_is_found_from_a_paraphrase_and_missed_when_not_made(bank, index):
    rubric = bank["design-notification-system"]["rubric"]
    others = " ".join(s for i, s in enumerate(NOTIFICATION_PARAPHRASES) if i != index)

    covered = match_answer(NOTIFICATION_PARAPHRASES[index], rubric)[index]
    without = match_answer(others, rubric)[index]

    assert covered.found, covered.explanation
    assert covered.sentence == NOTIFICATION_PARAPHRASES[index]
    assert not without.found, f"found {without.term!r} in {without.sentence!r}"


def measure(samples: list[dict], bank: dict) -> dict:
    """Compare the matcher's verdicts with the human labels, point by point."""
    tally = {"correct": 0, "total": 0, "false_negatives": [], "false_positives": []}
    for sample in samples:
        results = match_answer(sample["answer"], bank[sample["question"]]["rubric"])
        for index, result in enumerate(results):
            expected = index in sample["covers"]
            tally["total"] += 1
            if result.found == expected:
                tally["correct"] += 1
            else:
                where = f"{sample['question']} #{index} ({sample['label']})"
                detail = f"{where}: {result.point}" if expected else f"{where}: “{result.term}” in “{result.sentence}”"
                tally["false_negatives" if expected else "false_positives"].append(detail)
    tally["share"] = tally["correct"] / tally["total"]
    return tally


def test_the_matcher_agrees_with_a_human_on_most_points_of_real_answers(bank):
    samples = yaml.safe_load(SAMPLES.read_text())
    tuned = measure([s for s in samples if not s.get("held_out")], bank)
    held_out = measure([s for s in samples if s.get("held_out")], bank)

    report = "\n".join(
        f"{name}: {t['correct']}/{t['total']} points right ({t['share']:.0%}); "
        f"missed: {t['false_negatives']}; wrongly found: {t['false_positives']}"
        for name, t in (("tuned on", tuned), ("held out", held_out))
    )
    print(report)
    assert len(samples) >= 40
    assert tuned["share"] >= 0.95, report
    assert held_out["share"] >= 0.85, report
