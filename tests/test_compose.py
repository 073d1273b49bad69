"""compose.production.yml runs what the Procfile says, restarts it, and checks each process's health.

No Docker daemon runs on our machines, so the file is read, not started: its commands against the
Procfile, its healthchecks against real processes, its environment against the production profile's
deploy checks, and its Caddyfile with Caddy itself where Caddy is installed.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from django.urls import reverse

from config.run import procfile_processes
from tests.harness import BASE_DIR

COMPOSE = BASE_DIR / "compose.production.yml"
CADDYFILE = BASE_DIR / "deploy" / "caddy" / "Caddyfile"  # the one tests/test_proxy.py runs behind Caddy
SERVICES_BESIDE_THE_PROCFILE = {"migrate", "postgres", "redis", "proxy"}
# What an operator puts in deploy/compose/production.env (its .example), for reading the file here.
SAMPLE_ENV = {"FAULTLINE_DOMAIN": "faultline.example.org", "POSTGRES_USER": "faultline", "POSTGRES_PASSWORD": "s3cret-pw",
              "POSTGRES_DB": "faultline", "SECRET_KEY": "c4Lm9Qx2Vt7Bw1Nz6Rk3Hy8Jd5Gf0Ps-" * 2}  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation: ${VAR}, ${VAR:?message}, ${VAR:-default}; $$ is a literal $."""

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, rest = match.group(1), match.group(2), match.group(3)
        if name in env and env[name]:
            return env[name]
        if operator == ":?":
            raise AssertionError(f"compose would stop: {rest}")
        return rest if operator == ":-" else ""

    return re.sub(r"\$\$|\$\{(\w+)(?:(:\?|:-)([^}]*))?\}", one, value)


def test_every_procfile_process_is_a_service_running_its_procfile_line(compose):
    services = compose["services"]
    processes = procfile_processes()

    assert set(services) == set(processes) | SERVICES_BESIDE_THE_PROCFILE
    for name, line in processes.items():
        command = services[name]["command"]
        assert command[:2] == ["/bin/sh", "-c"], name
        assert interpolate(command[2], {}) == f"exec {line}", f"{name}: compose runs something else than the Procfile"


def test_every_long_running_service_restarts_and_has_a_healthcheck(compose):
    for name, service in compose["services"].items():
        if name == "migrate":
            assert service["restart"] == "no"  # a release step: it runs once
            continue
        assert service["restart"] in ("always", "unless-stopped"), name
        assert service["healthcheck"]["test"], name


def test_the_processes_wait_for_the_release_step_and_their_stores(compose):
    for name in procfile_processes():
        depends = compose["services"][name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy", name


def test_a_heartbeat_healthcheck_passes_with_the_process_running_and_fails_without_it(compose, relay, process_env):
    checks = {name: compose["services"][name]["healthcheck"]["test"] for name in ("worker", "urgent", "relay", "live")}
    assert {name: test[1:] for name, test in checks.items()} == {
        name: ["python", "-m", "config.heartbeat", name] for name in checks  # each container checks its own kind
    }

    def run(test: list[str]) -> subprocess.CompletedProcess:  # the image's `python` is this venv's here
        return subprocess.run([sys.executable, *test[2:]], cwd=BASE_DIR, env=process_env, capture_output=True, text=True, timeout=60)

    up, down = run(checks["relay"]), run(checks["urgent"])

    assert up.returncode == 0, up.stderr
    assert down.returncode == 1 and "no fresh urgent heartbeat" in down.stderr


def test_the_web_service_environment_passes_the_production_deploy_checks(compose):
    environment = {name: interpolate(str(value), SAMPLE_ENV) for name, value in compose["services"]["web"]["environment"].items()}
    assert environment["DATABASE_URL"] == "postgres://faultline:s3cret-pw@postgres:5432/faultline"
    server = {name: value for name, value in os.environ.items() if name not in ("DJANGO_ALLOW_ASYNC_UNSAFE", "PLAIN_HTTP", "DEBUG")}
    sqlite = "sqlite:////tmp/faultline-compose-check.sqlite3"  # the checks need no database server

    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=BASE_DIR,
                            env={**server, **environment, "SECRET_KEY": SAMPLE_ENV["SECRET_KEY"], "DATABASE_URL": sqlite},
                            capture_output=True, text=True, timeout=60)  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_proxy_serves_the_shipped_caddyfile_in_front_of_the_web_and_live_services(compose):
    services = compose["services"]
    proxy = services["proxy"]
    assert "./deploy/caddy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    # The ports the Procfile's lines listen on in these services (their defaults, unless the service sets them).
    web_port = services["web"].get("environment", {}).get("WEB_PORT", "8000")
    live_port = services["live"].get("environment", {}).get("LIVE_PORT", "8001")
    assert proxy["environment"]["FAULTLINE_WEB"] == f"web:{web_port}"
    assert proxy["environment"]["FAULTLINE_LIVE"] == f"live:{live_port}"
    assert "LAB_LIVE_URL" not in services["web"].get("environment", {}), "with HTTPS the streams are on the pages' origin"
    assert reverse("live:stream", args=[42]).startswith("/live/") and "handle /live/*" in CADDYFILE.read_text()


@pytest.mark.skipif(shutil.which("caddy") is None, reason="Caddy is not installed")
def test_caddy_accepts_the_caddyfile():
    result = subprocess.run(["caddy", "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
                            env={**os.environ, "FAULTLINE_DOMAIN": SAMPLE_ENV["FAULTLINE_DOMAIN"]},
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr
