"""The rubric matcher (practice/rubric.py): which key points a written answer covers, and where."""

import pytest

from practice.question_files import read_questions
from practice.rubric import match_answer, sentences, stem, term_matches, words

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
    answer = "Backoff alone keeps clients in step. So I would randomize every delay to spread them out. That is all."

    [match] = match_answer(answer, [JITTER_POINT])

    assert match.found
    assert match.sentence == "So I would randomize every delay to spread them out."
    assert match.term == "randomise"


def test_the_quote_is_the_sentence_that_matches_most_terms():
    answer = "Add jitter. Jitter means a random delay, so retries are spread out."

    [match] = match_answer(answer, [JITTER_POINT])

    assert match.sentence == "Jitter means a random delay, so retries are spread out."
    assert set(match.terms) == {"jitter", "randomise", "random delay", "spread out"}


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


# What a strict grader would not credit (issue 17): negation, dismissal, questions, bare lists.
DESIGN = "design-notification-system"


def _found(answer: str, rubric: list[dict]) -> list[int]:
    return [i for i, m in enumerate(match_answer(answer, rubric)) if m.found]


def test_a_negated_or_dismissed_pattern_credits_nothing(bank):
    rubric = bank[DESIGN]["rubric"]
    answer = (
        "We don't need idempotency keys or a dead-letter queue either, and a circuit breaker is overkill. "
        "I have never heard of an outbox, priority, opt-outs, jitter, a breaker or being idempotent."
    )

    assert _found(answer, rubric) == []


def test_negation_reaches_only_its_own_clause(bank):
    rubric = bank[DESIGN]["rubric"]
    answer = (
        "A circuit breaker is overkill, but each provider's circuit breaker must open on errors "
        "so that we fail over to the second provider."
    )

    assert _found(answer, rubric) == [4]


def test_marking_first_does_not_credit_that_marking_first_would_lose_messages(bank):
    rubric = bank["outbox-relay-crash-after-publish"]["rubric"]

    assert 1 not in _found("The relay should mark rows first and publish afterwards, so this can never happen.", rubric)
    assert 1 in _found(
        "Publishing first means a crash gives duplicates, while marking first would lose messages, "
        "so the relay is at-least-once by design.",
        rubric,
    )


def test_a_bare_list_of_the_rubric_terms_earns_nothing(bank):
    for question in bank.values():
        if question["kind"] == "choice":
            continue
        listed = ", ".join(point["terms"][0] for point in question["rubric"])
        bulleted = "\n".join(f"- {', '.join(point['terms'][:3])}" for point in question["rubric"])

        assert _found(listed, question["rubric"]) == [], question["id"]
        assert _found(bulleted, question["rubric"]) == [], question["id"]


def test_a_question_states_nothing(bank):
    rubric = bank["outbox-relay-crash-after-publish"]["rubric"]

    assert 1 not in _found("Marking first would lose messages, and the relay is at-least-once by design?", rubric)


def test_one_term_in_passing_is_not_a_statement_of_the_point(bank):
    assert _found("We also have a circuit breaker somewhere.", bank[DESIGN]["rubric"]) == []


def test_words_common_across_the_bank_carry_no_point():
    point = {"point": "Workers retry", "weight": 2, "terms": ["worker", "retry", "send"], "why": "."}

    assert not match_answer("The worker will retry the send.", [point], common=frozenset({"worker", "retry", "send"}))[0].found


def test_compounds_and_camel_case_meet_their_spaced_forms():
    assert words("CrashLoopBackOff") == ["crash", "loop", "back", "off"]
    assert term_matches(words("timeout"), words("the call timed out"))
    assert term_matches(words("crash loop"), words("pods end up in CrashLoopBackOff"))


def test_a_model_answer_to_a_question_of_another_topic_scores_little(bank):
    """Off-topic answers earn almost nothing: the model answers of other topics' questions, tried on every rubric."""
    written = [q for q in bank.values() if q["kind"] != "choice"]
    shares = []
    for question in written:
        total = sum(p["weight"] for p in question["rubric"])
        for other in written[::4]:  # a quarter of them keeps the test quick; every topic is in it
            if other["topic"] != question["topic"]:
                found = _found(other["model_answer"], question["rubric"])
                shares.append(sum(question["rubric"][i]["weight"] for i in found) / total)

    assert sum(shares) / len(shares) < 0.08
    assert sum(share >= 0.7 for share in shares) / len(shares) < 0.01


REJECTING_POINT = {
    "point": "Reject synchronous lookups per send",
    "weight": 2,
    "terms": ["synchronous lookup", "lookup per send"],
    "why": "The account service cannot take one read per send.",
}


def test_a_point_that_rejects_something_is_found_where_the_answer_rejects_it_too():
    def found(answer: str) -> bool:
        return match_answer(answer, [REJECTING_POINT], common=frozenset())[0].found

    assert found("Never do a synchronous lookup per send: the account service would fall over.")
    assert found("I'd avoid a synchronous lookup per send, since the account service can't take it.")
    assert not found("We do a synchronous lookup per send, with a cache in front.")


def test_what_an_answer_sets_aside_with_rather_than_or_instead_of_is_not_stated():
    assert not match_answer("I'd keep a fixed delay instead of a random delay or jitter.", [JITTER_POINT])[0].found
    assert match_answer("Instead of a fixed delay, jitter spreads them out.", [JITTER_POINT])[0].found


def test_a_sentence_that_only_drops_names_earns_nothing(bank):
    rubric = bank["events-and-state-design-preferences-copy"]["rubric"]
    answer = "The account service publishes events, we use a compacted topic, an outbox and a schema registry."

    assert _found(answer, rubric) == []


def test_the_words_of_a_point_back_up_a_term_but_do_not_state_it_alone():
    point = {
        "point": "Publish the account service's events through its outbox",
        "weight": 2,
        "terms": ["same transaction", "outbox table"],
        "why": ".",
    }

    def found(answer: str) -> bool:
        return match_answer(answer, [point], common=frozenset())[0].found

    assert not found("The account service publishes events through an outbox.")
    assert found("The account service writes the event to its outbox table.")


def test_a_sentence_that_calls_one_of_the_points_terms_unneeded_contradicts_the_point():
    assert not match_answer("A random delay on each retry spreads them out, we don't need jitter.", [JITTER_POINT])[0].found
    assert match_answer("We don't need a fixed delay: a random delay, jitter, spreads them out.", [JITTER_POINT])[0].found
