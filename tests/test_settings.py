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


PRODUCTION = {"DEBUG": "0", "SECRET_KEY": "p7Vq2Lx9Tb4Wm8Rz3Kc6Yn1Hd5Gf0Js-" * 2, "ALLOWED_HOSTS": "faultline.example.org",
              "PLAIN_HTTP": "", "DATABASE_URL": "sqlite:////tmp/faultline-settings-check.sqlite3"}  # fmt: skip


def test_production_passes_the_deploy_checks_with_nothing_but_a_key_and_a_host():
    server = {name: value for name, value in os.environ.items() if name != "DJANGO_ALLOW_ASYNC_UNSAFE"}  # the browser tests' own
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=BASE_DIR,
                            env={**server, **PRODUCTION}, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize("key", ["", "short-key", "faultline-dev-only-" + "a1b2c3d4" * 8])
def test_production_refuses_a_missing_short_or_development_key_naming_it(key):
    result = run_check(**{**PRODUCTION, "SECRET_KEY": key})
    assert result.returncode != 0
    assert "SECRET_KEY is missing, too short or a development key" in result.stderr
    assert "Traceback" not in result.stderr.splitlines()[-1]


def test_plain_http_is_an_explicit_opt_out_of_the_https_defaults():
    show = "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.SECURE_HSTS_SECONDS)"
    shell = [sys.executable, "manage.py", "shell", "-c", show]
    https = subprocess.run(shell, cwd=BASE_DIR, env={**os.environ, **PRODUCTION}, capture_output=True, text=True, timeout=60)
    plain = subprocess.run(shell, cwd=BASE_DIR, env={**os.environ, **PRODUCTION, "PLAIN_HTTP": "1"}, capture_output=True, text=True, timeout=60)
    assert https.stdout.splitlines()[-1].split() == ["True", "True", "31536000"], https.stderr
    assert plain.stdout.splitlines()[-1].split() == ["False", "False", "0"], plain.stderr


def test_a_short_metrics_token_stops_start_up_naming_it_without_echoing_it():
    result = run_check(METRICS_TOKEN="hunter2")

    assert result.returncode != 0
    assert "METRICS_TOKEN is too short" in result.stderr and "hunter2" not in result.stderr


@pytest.mark.parametrize(
    ("host", "services_url"),
    [("10.20.30.40", "http://10.20.30.40:9001"), ("0.0.0.0", "http://127.0.0.1:9001"), ("", "http://127.0.0.1:9001"),
     ("::", "http://[::1]:9001"), ("fd00::5", "http://[fd00::5]:9001")],
)
def test_lab_services_are_called_where_the_live_process_listens(host, services_url):
    """A host that runs web and live on its network address alone (README, "More workers") reaches lab 9's services."""
    printed = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; print(settings.LAB_SERVICES_URL)"],
        cwd=BASE_DIR, env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "1", "HOST": host,
                           "LIVE_PORT": "9001", "LAB_SERVICES_URL": ""},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert printed.stdout.strip() == services_url, printed.stderr
