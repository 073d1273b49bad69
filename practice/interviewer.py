"""The mock interviewer's follow-up questions, and how long each phase really took.

A real interviewer listens, notices what the candidate has not covered yet, and asks
about it when a phase ends. This one does the same with the rubric:

1. When a phase ends (its time runs out, the candidate moves on, or finishes), read
   all the notes written so far and match them against the question's rubric
   (practice/rubric.py's `match_answer`, the same estimate the review shows).
2. Of the points not found and not asked about before, take the heaviest first
   (the rubric's order breaks ties): two of them while three or more are open, else one.
3. Ask each point's `follow_up` question, or one made from the point when the file
   has none. The questions are stored on the mock interview, one round per phase,
   so a reload shows the same questions and the review can list them.
"""

from datetime import datetime

from practice.mock import Timeline
from practice.rubric import match_answer

TWO_QUESTIONS_FROM = 3  # open points from which the interviewer asks two questions in a round


def follow_up_question(point: dict) -> str:
    """The point's own follow-up, or a question made from the point's text."""
    if point.get("follow_up"):
        return point["follow_up"]
    text = point["point"].rstrip(".")
    return f"We haven't covered this yet: {text[0].lower()}{text[1:]}. How would your design handle it?"


def choose_follow_ups(rubric: list[dict], notes: str, asked: set[int]) -> list[dict]:
    """The round of questions for notes that stand as they are: [{point, question}], maybe empty."""
    matches = match_answer(notes, rubric)
    open_points = [i for i, match in enumerate(matches) if not match.found and i not in asked]
    open_points.sort(key=lambda i: (-rubric[i]["weight"], i))
    count = 2 if len(open_points) >= TWO_QUESTIONS_FROM else 1
    return [{"point": i, "question": follow_up_question(rubric[i])} for i in open_points[:count]]


def ask_due_rounds(rounds: list[list[dict]], ended: int, rubric: list[dict], notes: list[str]) -> bool:
    """Add a round for each phase that has ended since the last call; True when one was added.

    `rounds` holds one list per ended phase, in order; `ended` is how many phases are over.
    """
    added = False
    while len(rounds) < ended:
        asked = {question["point"] for round_ in rounds for question in round_}
        rounds.append(choose_follow_ups(rubric, "\n\n".join(notes), asked))
        added = True
    return added


def phase_times(line: Timeline, planned: list[int], finished_at: datetime) -> list[dict]:
    """Seconds planned and spent per phase, for an interview that ended at `finished_at`.

    A phase the candidate left early took less than planned; the last phase can run over
    when the candidate keeps writing after the time is up; a phase never reached took 0.
    """
    times = []
    last = len(planned) - 1
    for i, (start, end) in enumerate(zip(line.starts, line.ends, strict=True)):
        stop = finished_at if i == last else min(end, finished_at)
        times.append({"planned": planned[i], "spent": max(0, round((stop - start).total_seconds()))})
    return times
