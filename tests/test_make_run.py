"""`make run` as a newcomer uses it: one command up, one Ctrl-C down, nothing left behind."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from tests.harness import BASE_DIR, free_port, group_alive, wait_for


@pytest.fixture
def run_env(tmp_path):
    env = {
        **os.environ,
        "PORT": str(port_pair()),
        "FAULTLINE_RUN_DIR": str(tmp_path / "run"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    # A newcomer's machine: no Redis given, so `make run` must start its own.
    env.pop("REDIS_URL", None)
    env.pop("FAULTLINE_REDIS_PREFIX", None)
    return env


def port_pair() -> int:
    """A free port whose next port is free too: `make run` needs both (web, live)."""
    import socket

    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", port + 1))
                return port
            except OSError:
                continue


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
        # The bulk lanes' worker yields the CPU to what people watch; the urgent lane's worker does not (config/celery.py).
        niceness = {name: niceness_of(latest_pid(lines, name)) for name in ("web", "worker", "urgent", "relay", "live")}
        assert niceness == {"web": 0, "worker": 10, "urgent": 0, "relay": 0, "live": 0}
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


def niceness_of(pid: int) -> int:
    """A process's CPU niceness, from /proc (field 19 of its stat line, after the name in brackets)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def latest_pid(lines: list[str], name: str) -> int | None:
    found = re.findall(rf"^\S+ {re.escape(name)}\s+\| started with pid=(\d+)", "".join(lines), re.M)
    return int(found[-1]) if found else None


def test_make_run_restarts_each_process_that_dies_and_nothing_sent_is_lost(run_env):
    """Kill each process in turn, the embedded Redis included: each comes back, the site keeps serving, and
    the notifications sent through the API meanwhile are all delivered, none twice."""
    url = f"http://127.0.0.1:{run_env['PORT']}/"
    runner, lines = start_runner(run_env)
    try:
        wait_for(lambda: any(f"Faultline is ready at {url}" in line for line in lines), 90, "the ready line")
        created = subprocess.run([sys.executable, "manage.py", "create_lab_run", "--username", "survivor"], cwd=BASE_DIR,
                                 env=run_env, capture_output=True, text=True, check=True)  # fmt: skip
        key = json.loads(created.stdout)["api_key"]
        sent = 0

        def send(count: int) -> None:
            nonlocal sent
            for _ in range(count):
                sent += 1
                request = urllib.request.Request(
                    url + "api/notifications", method="POST", data=json.dumps(
                        {"user_id": sent % 50 + 1, "template": "password_reset", "data": {"code": str(sent)}}).encode(),
                    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json", "Idempotency-Key": f"n-{sent}"})
                wait_for(lambda: _accepted(request), 30, f"notification {sent} to be accepted")

        send(5)
        for name in ("worker", "urgent", "relay", "live", "redis", "web"):
            old = latest_pid(lines, name)
            os.killpg(old, signal.SIGKILL)
            wait_for(lambda: latest_pid(lines, name) not in (None, old), 60, f"{name} to be started again")
            assert re.search(rf"{name}\s+\| exited with code -?\d+ after [\d.]+ s; restarting in", "".join(lines))
            wait_for(lambda: _healthy(url), 60, f"the site to be healthy again after killing {name}")
            send(3)

        audit = {}

        def settled() -> bool:
            nonlocal audit
            request = urllib.request.Request(url + "api/runs/current/audit", headers={"Authorization": f"Bearer {key}"})
            with urllib.request.urlopen(request, timeout=5) as response:
                audit = json.loads(response.read())
            return audit["in_flight"] == 0

        wait_for(settled, 120, "every notification to be delivered", interval=0.5)  # within the API key's rate limit
        # Every message ended delivered (or suppressed by its user's seeded preferences), none lost or sent twice.
        assert audit["intents"] == sent and audit["delivered"] + audit["suppressed"] == audit["accepted"] >= sent, audit
        assert (audit["lost"], audit["duplicate_sends"], audit["dead_lettered"]) == (0, 0, 0), audit
    finally:
        runner.send_signal(signal.SIGINT)
        returncode = runner.wait(timeout=30)
    assert returncode == 0, "".join(lines[-30:])


def _accepted(request) -> bool:
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 202
    except (urllib.error.URLError, OSError):
        return False  # the web process, or Redis behind it, is coming back: the same key is sent again


def _healthy(url: str) -> bool:
    try:
        return get(url + "healthz")[0] == 200
    except (urllib.error.URLError, OSError):
        return False  # the web process is starting again


def test_a_classroom_on_plain_http_reaches_the_site_by_the_machines_address_and_never_sees_a_debug_page(run_env):
    """HOST=0.0.0.0: learners on other machines use the address `make run` prints; they sign up and log in
    (CSRF over plain HTTP); a foreign Host header or a missing page shows no traceback and no settings."""
    import http.cookiejar

    runner, lines = start_runner({**run_env, "HOST": "0.0.0.0"})
    try:
        wait_for(lambda: re.search(r"Faultline is ready at (http://[\d.]+:\d+/)", "".join(lines)) or runner.poll() is not None,
                 90, "the ready line")
        assert runner.poll() is None, "".join(lines[-20:])
        url = re.search(r"Faultline is ready at (http://[\d.]+:\d+/)", "".join(lines))[1]
        assert not url.startswith("http://127.") and url.endswith(f":{run_env['PORT']}/")

        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        form = browser.open(url + "accounts/signup/", timeout=10).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)[1]
        signup = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": "learner-on-the-lan", "email": "",
                                         "password1": "a-long-classroom-pass-42", "password2": "a-long-classroom-pass-42"})  # fmt: skip
        with browser.open(urllib.request.Request(url + "accounts/signup/", data=signup.encode(), headers={"Referer": url}), timeout=10) as done:
            assert done.status == 200 and "learner-on-the-lan" in done.read().decode()  # signed in, on the page it led to

        for request in (urllib.request.Request(url + "no-such-page/"),
                        urllib.request.Request(url, headers={"Host": "attacker.example"})):  # fmt: skip
            try:
                browser.open(request, timeout=10)
                raise AssertionError(f"{request.full_url} answered 2xx")
            except urllib.error.HTTPError as refused:
                body = refused.read().decode()
                assert refused.code in (400, 404) and "Traceback" not in body and "SECRET_KEY" not in body and "REDIS_URL" not in body
    finally:
        runner.send_signal(signal.SIGINT)
        assert runner.wait(timeout=30) == 0
