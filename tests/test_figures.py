"""Faultline's figures in the content (labs/figures.py): a lesson or lab guide that states a number
the code does not have fails `check_content`, and the API answers the status codes the content states."""

import json
import os

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import Client

from courseware.content_files import read_course
from courseware.loading import check_content
from courseware.rendering import render_lesson
from labs import figures
from labs.lab_files import check_labs
from labs.pipeline import breaker, budget
from labs.runs import create_run
from tests.test_courseware import lesson_file, replace_in, tmp_course  # noqa: F401 (a fixture)


def test_a_figure_the_code_has_passes_and_one_it_does_not_fails_naming_where_the_code_keeps_it():
    text = "Opens after {{ faultline.breaker_min_calls = 5 }} calls.\nRetries wait at most {{faultline.retry_cap_ms=30,000}} ms.\n"
    assert figures.problems(text, "lesson.md") == []
    assert figures.fill(text) == "Opens after 5 calls.\nRetries wait at most 30,000 ms.\n"

    wrong = "One line.\nOpens after {{ faultline.breaker_min_calls = 3 }} calls.\n"
    assert figures.problems(wrong, "lesson.md") == [
        "lesson.md:2: states breaker_min_calls = 3, but the code has 5 (BreakerPolicy.min_calls in labs/pipeline/breaker.py)"
    ]


def test_an_unknown_figure_or_a_misspelt_marker_is_an_error():
    assert figures.problems("{{ faultline.breaker_calls = 5 }}", "x.md") == [
        "x.md:1: 'breaker_calls' is not one of Faultline's figures (labs/figures.py lists them)"
    ]
    [problem] = figures.problems("Opens after {{ faultline.breaker_min_calls }} calls.", "x.md")
    assert problem.startswith("x.md:1: '{{ faultline.breaker_min_calls }}' is not a figure marker")


def test_settings_figures_are_the_defaults_written_in_settings():
    """The figures come from config/settings.py's text; where the environment sets nothing, they are the running values."""
    for name in ("LAB_PROVIDER_TIMEOUT_MS", "LAB_SENDING_LEASE", "LAB_REDELIVER_AFTER", "LAB_MESSAGE_DEADLINE",
                 "LAB_RELAY_BATCH", "CELERY_VISIBILITY_TIMEOUT", "CELERY_WORKER_PREFETCH_MULTIPLIER"):  # fmt: skip
        if name not in os.environ:
            assert figures.FIGURES[figures_name(name)].read() == getattr(settings, name), name


def figures_name(setting: str) -> str:
    return next(name for name, figure in figures.FIGURES.items() if figure.source == f"the default of {setting} in config/settings.py")


def test_a_lesson_shows_the_number_and_fails_the_check_once_the_code_changes(tmp_course, monkeypatch):  # noqa: F811
    content, questions = tmp_course
    path = content / "lessons" / "01-first.md"
    replace_in(path, "Another timeout later.", "The breaker opens after {{ faultline.breaker_min_calls = 5 }} calls.")
    assert check_content(content, questions).errors == []
    lesson = next(lesson for lesson in read_course(content, questions).lessons if lesson.slug == "first")
    html = render_lesson(lesson, {}).html
    assert "opens after 5 calls" in html and "faultline" not in html

    monkeypatch.setattr(breaker.BreakerPolicy.__init__, "__defaults__", (10, 6, 0.5, 5.0))  # the code now waits for 6 calls

    [error] = check_content(content, questions).errors
    assert error == f"{path}:13: states breaker_min_calls = 5, but the code has 6 (BreakerPolicy.min_calls in labs/pipeline/breaker.py)"


def test_check_content_fails_when_a_figure_the_real_content_states_drifts(monkeypatch, capsys):
    assert check_labs().errors == []
    monkeypatch.setattr(budget, "FLOOR", 25)  # someone raises the retry budget's floor and forgets the content

    with pytest.raises(CommandError):
        call_command("check_content")

    errors = capsys.readouterr().err
    assert "02-retries-backoff-jitter.yaml" in errors
    assert "03-retries-backoff-jitter.md" in errors
    assert "states retry_budget_floor = 20, but the code has 25 (FLOOR in labs/pipeline/budget.py)" in errors


@pytest.fixture
def api(db, django_user_model):
    run = create_run(django_user_model.objects.create_user("ada", password="not-used-1234"))
    client = Client()
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {run.api_key}"
    return client


def test_the_api_answers_the_status_codes_the_content_states(api, settings):
    statuses = figures.API_STATUSES
    reset = {"user_id": 7, "template": "password_reset", "data": {"code": "271828"}}

    def send(body, key="reset-42"):
        return api.post("/api/notifications", json.dumps(body), content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)

    assert send(reset).status_code == statuses["status_accepted"]
    assert send(reset).status_code == statuses["status_replayed"]
    assert send({**reset, "data": {"code": "314159"}}).status_code == statuses["status_key_reused"]
    assert send({**reset, "user_id": 4242}, key="other").status_code == statuses["status_invalid"]

    settings.RATELIMIT_API_PER_KEY = "1/m"
    send(reset, key="third")
    over = send(reset, key="fourth")
    assert over.status_code == statuses["status_rate_limited"] and int(over["Retry-After"]) > 0
