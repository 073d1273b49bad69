"""`manage.py score_answer QUESTION_ID`: an answer on standard input, the rubric estimate as one JSON object."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "outbox-relay-crash-after-publish"
ANSWER = """The new relay finds the same rows still unmarked and publishes all 100 again.

That is deliberate: marking first would lose messages on a crash, so the relay is at-least-once.
"""


def score(monkeypatch, question_id: str, answer: str) -> dict:
    monkeypatch.setattr(sys, "stdin", io.StringIO(answer))
    out = io.StringIO()
    call_command("score_answer", question_id, stdout=out)
    return json.loads(out.getvalue())


def test_it_prints_each_point_with_its_evidence_and_the_weighted_score(monkeypatch):
    result = score(monkeypatch, QUESTION, ANSWER)

    assert result["question"] == QUESTION
    assert [(p["weight"], p["covered"]) for p in result["points"]] == [(3, True), (2, True), (3, False), (1, False)]
    assert result["points"][0]["point"] == "The rows are still unmarked, so the new relay publishes the same 100 messages again"
    assert result["points"][1]["evidence"] == "That is deliberate: marking first would lose messages on a crash, so the relay is at-least-once."
    assert result["points"][2]["evidence"] is None
    assert result["score"] == 56  # (3 + 2) / 9


def test_a_keyword_list_scores_nothing(monkeypatch):
    result = score(monkeypatch, QUESTION, "republish, duplicates, at-least-once, idempotent consumers, smaller batches")

    assert result["score"] == 0 and not any(p["covered"] for p in result["points"])


def test_an_unknown_question_is_named_with_close_ids(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(ANSWER))

    with pytest.raises(CommandError, match=r"No question 'outbox-relay-crash'.*Did you mean .*outbox-relay-crash-after-publish"):
        call_command("score_answer", "outbox-relay-crash")


def test_an_empty_answer_is_refused(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("  \n"))

    with pytest.raises(CommandError, match="No answer on standard input"):
        call_command("score_answer", QUESTION)


def test_from_the_shell_it_prints_json_and_exits_non_zero_for_an_unknown_question():
    env = {"DEBUG": "1", "PATH": "/usr/bin:/bin"}
    run = [sys.executable, str(ROOT / "manage.py"), "score_answer"]

    ok = subprocess.run([*run, QUESTION], input=ANSWER, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    unknown = subprocess.run([*run, "nope"], input=ANSWER, capture_output=True, text=True, cwd=ROOT, env=env, check=False)

    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["score"] == 56
    assert unknown.returncode != 0 and "No question 'nope'" in unknown.stderr
