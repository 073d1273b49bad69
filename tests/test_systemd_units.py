"""The systemd units that `make systemd` writes run the Procfile's lines, and restart them.

No systemd runs on our machines: the units are generated, checked with `systemd-analyze verify`
where it is installed, and their commands run here the way systemd would run them.
"""

import json
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from configparser import ConfigParser
from pathlib import Path

import pytest

from config.run import procfile_processes
from tests.harness import BASE_DIR, ServiceProcess, free_port, wait_for

GENERATOR = BASE_DIR / "deploy" / "systemd.py"
COMMITTED = BASE_DIR / "deploy" / "systemd"


def generate(out: Path, *options: str) -> dict[str, str]:
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(out), *options], check=True, capture_output=True, timeout=60)
    return {path.name: path.read_text() for path in sorted(out.iterdir())}


def read_unit(text: str) -> ConfigParser:
    unit = ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    unit.optionxform = str  # keys keep their case, as systemd reads them
    unit.read_string(text)
    return unit


def environment_lines(text: str) -> dict[str, str]:
    """Every Environment=NAME=value line of a unit (ConfigParser keeps only the last of a repeated key)."""
    return dict(line.split("=", 2)[1:] for line in text.splitlines() if line.startswith("Environment="))


def command_of(exec_start: str) -> list[str]:
    """The argv systemd runs for an ExecStart value: `$$` and `%%` are a literal `$` and `%`, then its quoting."""
    return shlex.split(exec_start.replace("$$", "$").replace("%%", "%"))


def test_each_procfile_process_gets_a_unit_running_its_line_restarting_always(tmp_path):
    units = generate(tmp_path, "--home", "/opt/fl", "--venv", "/opt/fl/env", "--user", "fl", "--env-file", "/etc/fl.env")
    processes = procfile_processes()

    assert set(units) == {f"faultline-{name}.service" for name in processes} | {"faultline.target"}
    for name, line in processes.items():
        text = units[f"faultline-{name}.service"]
        service = read_unit(text)["Service"]
        assert command_of(service["ExecStart"]) == ["/bin/sh", "-c", f"exec {line}"], name
        assert service["Restart"] == "always" and service["EnvironmentFile"] == "/etc/fl.env", name
        assert service["User"] == "fl" and service["WorkingDirectory"] == "/opt/fl", name
        assert environment_lines(text)["PATH"].startswith("/opt/fl/env/bin:"), name  # the Procfile's `python` is the venv's
        assert read_unit(text)["Unit"]["StartLimitIntervalSec"] == "0", name  # restarted however often it exits
    wanted = read_unit(units["faultline.target"])["Unit"]["Wants"].split()
    assert wanted == [f"faultline-{name}.service" for name in processes]


def test_the_committed_units_are_the_procfile_generated_for_the_readme_layout(tmp_path):
    fresh = generate(tmp_path)
    committed = {path.name: path.read_text() for path in sorted(COMMITTED.iterdir())}
    assert committed == fresh, "the Procfile changed: run `make systemd` and commit deploy/systemd/"


def test_a_relative_path_is_refused_with_a_message(tmp_path):
    result = subprocess.run([sys.executable, str(GENERATOR), "--out", str(tmp_path), "--venv", ".venv"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2 and "--venv must be an absolute path" in result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_finds_nothing_to_say(tmp_path):
    generate(tmp_path, "--venv", sys.prefix, "--home", str(BASE_DIR))
    result = subprocess.run(["systemd-analyze", "verify", *map(str, sorted(tmp_path.glob("*.service")))],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    # It exits 0 even for an unknown key or a bad value, and says so: silence is the pass.
    assert result.returncode == 0 and result.stderr.strip() == "" and result.stdout.strip() == "", result.stderr


def test_every_unit_started_as_systemd_would_brings_the_site_up(tmp_path, process_env, process_logs, transactional_db):
    """Each unit's ExecStart, with its Environment= lines and an environment file, as systemd runs it:
    /healthz then sees every process kind alive."""
    units = generate(tmp_path / "units", "--venv", sys.prefix, "--home", str(BASE_DIR))
    port = free_port()
    settings_file = {"HOST": "127.0.0.1", "WEB_PORT": str(port), "LIVE_PORT": str(free_port()), "WEB_WORKERS": "1",
                     **{name: process_env[name] for name in ("DATABASE_URL", "REDIS_URL", "FAULTLINE_REDIS_PREFIX",
                                                              "SECRET_KEY", "PLAIN_HTTP")}}  # fmt: skip
    started = []
    try:
        for name in procfile_processes():
            text = units[f"faultline-{name}.service"]
            service = read_unit(text)["Service"]
            environment = {**settings_file, **environment_lines(text)}
            if "PROMETHEUS_MULTIPROC_DIR" in environment:  # systemd's RuntimeDirectory=, here under the test's folder
                environment["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "run-web")
            started.append(ServiceProcess(name, command_of(service["ExecStart"]), environment, process_logs).start())
        url = f"http://127.0.0.1:{port}/healthz"
        wait_for(lambda: health(url).get("status") == "ok", 90, "every process to be up")
    except TimeoutError:
        raise AssertionError(f"{health(url)}\n" + "\n".join(p.output()[-1500:] for p in started)) from None
    finally:
        for process in started:
            process.stop()


def health(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())
    except OSError:
        return {}
