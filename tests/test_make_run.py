"""`make run` as a newcomer uses it: one command up, one Ctrl-C down, nothing left behind."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request

import pytest

from tests.harness import BASE_DIR, free_port, group_alive, wait_for


@pytest.fixture
def run_env(tmp_path):
    env = {
        **os.environ,
        "PORT": str(free_port()),
        "FAULTLINE_RUN_DIR": str(tmp_path / "run"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    # A newcomer's machine: no Redis given, so `make run` must start its own.
    env.pop("REDIS_URL", None)
    env.pop("FAULTLINE_REDIS_PREFIX", None)
    return env


def start_runner(env) -> tuple[subprocess.Popen, list[str]]:
    runner = subprocess.Popen(
        [sys.executable, "-m", "config.run"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(runner.stdout), daemon=True).start()
    return runner, lines


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_make_run_serves_the_site_with_all_parts_up_and_ctrl_c_stops_every_process(run_env):
    url = f"http://127.0.0.1:{run_env['PORT']}/"
    runner, lines = start_runner(run_env)
    try:
        wait_for(lambda: any(f"Faultline is ready at {url}" in line for line in lines), 90, "the ready line")

        status, html = get(url)
        assert status == 200 and "How services talk" in html
        status, health = get(url + "healthz")
        assert status == 200, health
        assert all(check["ok"] for check in json.loads(health)["checks"].values())

        second = subprocess.run(
            [sys.executable, "-m", "config.run"], cwd=BASE_DIR, env=run_env, capture_output=True, text=True, timeout=30
        )
        assert second.returncode == 1
        assert f"Faultline is already running from this checkout at {url}" in second.stderr

        pids = {int(pid) for pid in re.findall(r"pid=(\d+)", "".join(lines))}
        assert len(pids) == 6, "".join(lines)  # embedded Redis, web, worker, urgent worker, relay, live stream
    finally:
        runner.send_signal(signal.SIGINT)  # what Ctrl-C delivers
        returncode = runner.wait(timeout=30)

    assert returncode == 0, "".join(lines[-30:])
    wait_for(lambda: not any(group_alive(pid) for pid in pids), 10, "every process group to be gone")
    assert get_refused(url)


def get_refused(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
    except urllib.error.URLError as exc:
        return isinstance(exc.reason, ConnectionRefusedError)
    return False


def test_make_run_explains_a_bad_port(run_env):
    result = subprocess.run(
        [sys.executable, "-m", "config.run"],
        cwd=BASE_DIR,
        env={**run_env, "PORT": "eighty"},
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 1
    assert "PORT='eighty' is not a port number" in result.stderr
