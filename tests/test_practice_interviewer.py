"""The mock interviewer's follow-ups: chosen from what the notes miss, asked when a phase ends, shown in the review."""

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from practice.interviewer import ask_due_rounds, choose_follow_ups, follow_up_question, phase_times
from practice.mock import timeline
from practice.models import MockInterview, Question
from practice.testing import moved_clock, questions  # noqa: F401  (fixtures)

DESIGN = "design-notification-system"
OUTBOX_NOTES = "The API writes the intent and an outbox row in one transaction and returns 202."
RUBRIC = [
    {"point": "Outbox in the same transaction", "weight": 3, "terms": ["outbox", "one transaction"], "why": "w", "follow_up": "What if it crashes?"},
    {"point": "Queues per channel", "weight": 1, "terms": ["queue per channel"], "why": "w", "follow_up": "Campaign floods?"},
    {"point": "Retries with jitter", "weight": 2, "terms": ["jitter", "random delay"], "why": "w", "follow_up": "Provider fails a third?"},
    {"point": "Circuit breakers per provider", "weight": 2, "terms": ["circuit breaker"], "why": "w"},
]


def test_the_interviewer_asks_about_the_heaviest_points_the_notes_miss():
    assert choose_follow_ups(RUBRIC, "", set()) == [
        {"point": 0, "question": "What if it crashes?"},
        {"point": 2, "question": "Provider fails a third?"},
    ]
    covered = choose_follow_ups(RUBRIC, OUTBOX_NOTES + " Each retry waits a random delay, which is full jitter.", set())
    assert [q["point"] for q in covered] == [3]  # two points open: one question
    assert covered[0]["question"] == (
        "We haven't covered this yet: circuit breakers per provider. How would your design handle it?"
    )


def test_each_ended_phase_gets_one_round_and_no_point_is_asked_twice():
    rounds: list = []

    assert ask_due_rounds(rounds, 1, RUBRIC, [OUTBOX_NOTES, "", ""])
    assert not ask_due_rounds(rounds, 1, RUBRIC, [OUTBOX_NOTES, "", ""])  # the same phase is not asked again
    ask_due_rounds(rounds, 3, RUBRIC, [OUTBOX_NOTES, "", ""])

    assert [[q["point"] for q in r] for r in rounds] == [[2, 3], [1], []]
    assert follow_up_question({"point": "Idempotent workers.", "weight": 1}) == (
        "We haven't covered this yet: idempotent workers. How would your design handle it?"
    )


def test_time_per_phase_counts_an_early_move_an_overrun_of_the_last_phase_and_phases_never_reached():
    start = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
    seconds = [300, 600, 600]
    early = [None, start + timedelta(minutes=2), None]

    finished = start + timedelta(minutes=2 + 10 + 13)
    times = phase_times(timeline(start, seconds, early, finished), seconds, finished)
    assert [(t["planned"], t["spent"]) for t in times] == [(300, 120), (600, 600), (600, 780)]

    quit_early = start + timedelta(minutes=4)
    assert [t["spent"] for t in phase_times(timeline(start, seconds, early, quit_early), seconds, quit_early)] == [120, 120, 0]


# --- Through the pages ---------------------------------------------------------------------------



@pytest.fixture
def signed_in(client, django_user_model, questions):
    client.force_login(django_user_model.objects.create_user("ada"))
    return client


def start_mock(client) -> tuple[str, MockInterview]:
    url = client.post(reverse("practice:mock_start"), {"question": DESIGN})["Location"]
    return url, MockInterview.objects.get()


def test_when_a_phase_ends_the_page_shows_a_follow_up_about_what_the_notes_miss(signed_in, moved_clock):
    url, mock = start_mock(signed_in)
    rubric = Question.objects.get(pk=DESIGN).rubric
    signed_in.post(reverse("practice:mock_notes", args=[mock.pk]), {"notes-0": OUTBOX_NOTES}, headers={"HX-Request": "true"})
    assert "data-testid=\"follow-up\"" not in signed_in.get(url).content.decode()

    moved_clock.advance(minutes=7, seconds=1)
    html = signed_in.get(url).content.decode()

    asked = MockInterview.objects.get().follow_ups
    assert [q["point"] for q in asked[0]] == [1, 2]  # the outbox (point 0) is covered; the heaviest misses next
    assert "The interviewer follows up on clarify requirements:" in html
    assert rubric[1]["follow_up"] in html and rubric[2]["follow_up"] in html
    assert rubric[0]["follow_up"] not in html
    assert html.index(rubric[1]["follow_up"]) > html.index('id="phase-1-heading"')  # answered in the next phase's notes


def test_the_page_asks_for_a_round_when_its_timer_ends_a_phase(signed_in, moved_clock):
    url, mock = start_mock(signed_in)
    moved_clock.advance(minutes=7, seconds=1)
    fragment = signed_in.post(
        reverse("practice:mock_follow_ups", args=[mock.pk]), {"round": "0", "notes-0": "Campaigns get a priority lane."},
        headers={"HX-Request": "true"},
    ).content.decode()  # fmt: skip

    mock.refresh_from_db()
    assert mock.notes[0] == "Campaigns get a priority lane."  # saved before the interviewer reads them
    assert 'id="follow-ups-0"' in fragment and "data-pending" not in fragment
    assert mock.follow_ups[0][0]["question"] in fragment
    assert 1 not in [q["point"] for q in mock.follow_ups[0]]  # "priority lane" covers the queues point
    assert signed_in.post(reverse("practice:mock_follow_ups", args=[mock.pk]), {"round": "9"}).status_code == 400


def test_finishing_early_asks_a_closing_round_first_and_the_review_shows_the_follow_ups_and_the_time_per_phase(
    signed_in, moved_clock
):
    url, mock = start_mock(signed_in)
    moved_clock.advance(minutes=3)
    signed_in.post(reverse("practice:mock_next", args=[mock.pk]), {"notes-0": OUTBOX_NOTES})
    moved_clock.advance(minutes=5)

    first = signed_in.post(reverse("practice:mock_finish", args=[mock.pk]), {"notes-1": "Retries use backoff with jitter."})
    mock.refresh_from_db()
    assert first["Location"] == url + "#follow-ups-3" and mock.finished_at is None
    closing = mock.follow_ups[3]
    assert mock.follow_ups[1:3] == [[], []]  # phases skipped by finishing early ask nothing
    page = signed_in.get(url).content.decode()
    assert "Before we finish, the interviewer asks:" in page and closing[0]["question"] in page

    moved_clock.advance(minutes=1)
    review = signed_in.get(signed_in.post(reverse("practice:mock_finish", args=[mock.pk]), {"notes-3": "Breakers per provider."})["Location"]).content.decode()

    assert "What the interviewer asked" in review
    for question in [*mock.follow_ups[0], *closing]:
        assert question["question"] in review
    assert "After clarify requirements:" in review and "Before finishing:" in review
    times = review[review.index('data-testid="phase-times"') :]
    assert "<th scope=\"row\">Clarify requirements</th><td>7:00</td><td>3:00 <span class=\"muted\">(moved on early)</span>" in times
    assert "<th scope=\"row\">High-level design</th><td>14:00</td><td>6:00" in times
    assert "<th scope=\"row\">Deep dive</th><td>16:00</td><td>0:00 <span class=\"muted\">(not reached)</span>" in times
    assert "<th scope=\"row\">Whole interview</th><td>45:00</td><td>9:00</td>" in times
