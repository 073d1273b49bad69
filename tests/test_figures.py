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
                 "LAB_RELAY_BATCH", "CELERY_VISIBILITY_TIMEOUT", "CELERY_WORKER_PREFETCH_MULTIPLIER",
                 "LAB_STREAM_HEARTBEAT"):  # fmt: skip
        if name not in os.environ:
            assert figures.FIGURES[figures_name(name)].read() == getattr(settings, name), name


def test_rate_figures_are_the_settings_rates_per_period():
    for name, setting in (("api_requests_per_minute", "RATELIMIT_API_PER_KEY"),
                          ("password_resets_per_account_per_hour", "RATELIMIT_RESET_PER_ACCOUNT"),
                          ("signups_per_address_per_hour", "RATELIMIT_SIGNUP_PER_ADDRESS")):  # fmt: skip
        if setting not in os.environ:
            count, _, period = getattr(settings, setting).partition("/")
            assert (figures.FIGURES[name].read(), period) == (int(count), "m" if name.endswith("minute") else "h"), name


def test_every_figure_reads_a_number_from_the_code():
    """A figure whose source moved (a renamed constant in labs.js, a Procfile option dropped) fails here first."""
    unreadable = {}
    for name, figure in figures.FIGURES.items():
        try:
            value = figure.read()
        except Exception as exc:  # noqa: BLE001 (the test reports every figure it cannot read)
            unreadable[name] = f"{type(exc).__name__}: {exc}"
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                unreadable[name] = f"not a number: {value!r}"
    assert unreadable == {}


def test_a_live_view_timing_is_read_from_the_script_and_a_renamed_one_is_reported(tmp_path, monkeypatch):
    script = tmp_path / "labs.js"
    script.write_text("(function () {\n  var RECONNECT_BASE_MS = 400;\n})();\n", encoding="utf-8")
    monkeypatch.setattr(figures, "LIVE_SCRIPT", script)  # an absolute path: BASE_DIR / it is it

    assert figures.problems("{{ faultline.live_reconnect_base_ms = 400 }}", "x.md") == []
    [wrong] = figures.problems("Waits {{ faultline.live_reconnect_base_ms = 500 }} ms.", "x.md")
    assert wrong == f"x.md:1: states live_reconnect_base_ms = 500, but the code has 400 (RECONNECT_BASE_MS in static/js/labs.js)"

    script.write_text("var BACKOFF_BASE_MS = 500;\n", encoding="utf-8")  # renamed: the figure's source is gone
    [gone] = figures.problems("Waits {{ faultline.live_reconnect_base_ms = 500 }} ms.", "x.md")
    assert gone.startswith("x.md:1: live_reconnect_base_ms can no longer be read from the code (RECONNECT_BASE_MS in static/js/labs.js)")
    assert "no longer has `var RECONNECT_BASE_MS = <number>;`" in gone


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
