"""Question files: `check_content` validates them, `load_content` loads them (practice/loader.py)."""

import re
import textwrap

import pytest
from django.core.management import CommandError, call_command

from practice.loader import check_questions, load_questions
from practice.models import Question
from practice.testing import write_question
from tests import content_counts as counts

VALID = textwrap.dedent(
    """\
    id: retries-tiny
    title: A tiny question
    kind: concept
    difficulty: 1
    topics: [retries]
    minutes: 3
    prompt: Why retry?
    hints: [Think about transient faults.]
    rubric:
      - point: Transient faults pass
        weight: 2
        terms: [transient, temporary, blip, passes]
        why: Most network faults are short.
    model_answer: Because most faults are transient.
    follow_ups: ["When not?"]
    mistakes: [Retrying a 400.]
    lessons: [retries-backoff-jitter]
    labs: [retries-backoff-jitter]
    """
)


@pytest.fixture
def content(tmp_path, settings):
    settings.PRACTICE_CONTENT_DIR = str(tmp_path)
    (tmp_path / "mock_phases.yaml").write_text(
        "- {slug: clarify, title: Clarify, share: 0.5, prompts: ['Who calls?']}\n"
        "- {slug: wrap-up, title: Wrap up, share: 0.5, prompts: ['Trade-offs?']}\n"
    )
    return tmp_path


def test_check_content_passes_on_the_real_question_bank(capsys):
    call_command("check_content")

    out = capsys.readouterr().out
    assert f"practice: {counts.questions()} of {counts.questions()} question files valid" in out
    assert f"{counts.questions('choice')} choice" in out
    assert "check_content: all content is valid." in out


def test_the_real_bank_covers_every_topic_and_kind_with_enough_quick_checks():
    report = check_questions()

    assert report.errors == []
    assert not [w for w in report.warnings if "topic" in w or "multiple-choice" in w or "no " in w]


@pytest.mark.django_db
def test_load_content_loads_every_question_and_a_second_run_changes_nothing(capsys):
    call_command("load_content")
    first = capsys.readouterr().out
    snapshot = list(Question.objects.order_by("id").values())

    call_command("load_content")
    second = capsys.readouterr().out

    total = counts.bank()
    assert f"{counts.questions()} questions and {counts.drills()} estimation drills" in first and f"{total} new" in first
    assert f"0 new, 0 updated, {total} unchanged, 0 retired" in second
    assert list(Question.objects.order_by("id").values()) == snapshot


@pytest.mark.django_db
def test_an_edited_file_updates_its_question_and_a_removed_file_retires_it(content):
    path = write_question(content, "retries", "retries-tiny", VALID)
    write_question(content, "retries", "retries-other", VALID.replace("retries-tiny", "retries-other"))
    load_questions()

    path.write_text(VALID.replace("A tiny question", "A renamed question"))
    (content / "questions" / "retries" / "retries-other.yaml").unlink()
    summary = load_questions()

    assert "0 new, 1 updated, 0 unchanged, 1 retired" in summary
    assert Question.objects.get(pk="retries-tiny").title == "A renamed question"
    assert Question.objects.get(pk="retries-other").retired


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("difficulty: 1", "difficulty: 5"), "retries-tiny.yaml:4: difficulty must be 1 "),
        (("kind: concept", "kind: essay"), "retries-tiny.yaml:3: kind 'essay' is not one of"),
        (("weight: 2", "weight: 9"), "retries-tiny.yaml:11: weight must be 1, 2 or 3"),
        (("lessons: [retries-backoff-jitter]", "lessons: [no-such-lesson]"), "retries-tiny.yaml:17: unknown lesson slug 'no-such-lesson'"),
        (("labs: [retries-backoff-jitter]", "labs: [no-such-lab]"), "retries-tiny.yaml:18: unknown lab slug 'no-such-lab'"),
        (("id: retries-tiny", "id: retries-small"), "retries-tiny.yaml:1: id 'retries-small' must equal the file name"),
        (("topics: [retries]", "topics: [sagas]"), "retries-tiny.yaml:5: topics must include 'retries'"),
        (("minutes: 3\n", "minutes: 3\nauthor: me\n"), "retries-tiny.yaml:7: unknown key 'author'"),
        (("    why: Most network faults are short.\n", ""), "retries-tiny.yaml:10: rubric point is missing 'why'"),
        (("terms: [transient,", "terms: [503,"), r'retries-tiny.yaml:12: term 503 is not text: quote it \("503"\)'),
        # libyaml names the line where it noticed (the next key); the pure-Python parser the one before.
        (("prompt: Why retry?", "prompt: [Why retry?"), r"retries-tiny.yaml:[78]: not valid YAML"),
    ],
)
def test_a_bad_question_file_fails_the_checker_and_the_loader_naming_the_file_and_line(content, change, expected):
    write_question(content, "retries", "retries-tiny", VALID.replace(*change))

    report = check_questions()
    with pytest.raises(ValueError) as raised:
        load_questions()

    assert any(re.search(expected, error) for error in report.errors), report.errors
    assert re.search(expected, str(raised.value))


def test_a_choice_question_needs_exactly_one_correct_option(content):
    choice = VALID.replace("kind: concept", "kind: choice") + textwrap.dedent(
        """\
        options:
          - text: Always
            correct: true
            explanation: Right.
          - text: Never
            correct: true
            explanation: Also right?
        """
    )
    write_question(content, "retries", "retries-tiny", choice)

    errors = check_questions().errors

    assert any("retries-tiny.yaml:19: exactly one option must be correct: true (found 2)" in e for e in errors), errors


def test_two_files_with_one_id_are_reported(content):
    write_question(content, "retries", "retries-tiny", VALID)
    write_question(content, "sagas", "retries-tiny", VALID.replace("topics: [retries]", "topics: [sagas, retries]"))

    errors = check_questions().errors

    assert any("is already used by" in e and "retries-tiny.yaml:1" in e for e in errors), errors


@pytest.mark.django_db
def test_load_content_stops_with_the_file_and_line_and_loads_nothing(content):
    write_question(content, "retries", "retries-tiny", VALID.replace("difficulty: 1", "difficulty: hard"))

    with pytest.raises(CommandError, match=r"practice: .*retries-tiny.yaml:4: difficulty"):
        call_command("load_content")

    assert not Question.objects.exists()
