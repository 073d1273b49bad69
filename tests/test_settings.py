"""A bad environment value stops start-up with a message naming the variable."""

import os
import subprocess
import sys

import pytest

from tests.harness import BASE_DIR


def run_check(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("DEBUG", "maybe", "is not a boolean"),
        ("DATABASE_URL", "mysql://db/faultline", "must start with"),
        ("REDIS_URL", "http://127.0.0.1:6379", "must start with"),
        ("REDIS_URL", "redis://127.0.0.1:port/0", "port that is not a number"),
        ("CELERY_VISIBILITY_TIMEOUT", "a minute", "is not a whole number"),
        ("CELERY_VISIBILITY_TIMEOUT", "5", "must be at least 10"),
        ("RATELIMIT_LOGIN_PER_ACCOUNT", "five a minute", "is not a rate"),
        ("RATELIMIT_API_PER_KEY", "0/m", "is not a rate"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(variable, value, complaint):
    result = run_check(**{variable: value})

    assert result.returncode != 0
    assert f"{variable}={value!r}" in result.stderr
    assert complaint in result.stderr


def test_good_values_pass_the_checks():
    result = run_check(DEBUG="yes", DATABASE_URL="sqlite:////tmp/faultline-settings-check.sqlite3")

    assert result.returncode == 0, result.stderr
