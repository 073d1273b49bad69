"""A small process supervisor for `make run`: start processes, prefix their output, restart one
that exits, stop them all on Ctrl-C or SIGTERM.

Why not honcho's manager: it stops every process when one exits, so one crashed worker took
the whole site down. Here a process that exits is started again after a backoff that doubles
with each quick exit (0.5 s, 1 s, 2 s … up to 30 s) and resets once it has run for a while;
the line saying so names the process and its exit code.

Each process runs in a session of its own, so stopping signals its whole group (a gunicorn
master and its workers, a Celery worker and its pool, the relay) and nothing is left orphaned.
Stopping: SIGTERM to every group but the ones marked `last` (the embedded Redis), then those;
whatever has not exited after `grace` seconds gets SIGKILL.
"""

import datetime
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from honcho.printer import Message, Printer

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
STEADY_AFTER_S = 30.0  # a process that ran this long before exiting starts again at the first backoff


@dataclass
class Supervised:
    name: str
    argv: list[str]
    env: dict
    cwd: str
    last: bool = False  # stopped after the others (a store they use)
    popen: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    backoff_s: float = BACKOFF_FIRST_S
    restarts: int = 0
    reader: threading.Thread | None = field(default=None, repr=False)


class Supervisor:
    def __init__(self, out=sys.stdout, grace: float = 5.0):
        self.printer = Printer(out, width=9)
        self.lock = threading.Lock()
        self.processes: list[Supervised] = []
        self.grace = grace
        self.stopping = threading.Event()
        self.stopped = False

    def say(self, text: str, name: str = "faultline") -> None:
        with self.lock:
            self.printer.write(Message(type="line", data=text + "\n", time=datetime.datetime.now(), name=name, colour=None))

    def add(self, name: str, argv: list[str], env: dict, cwd: str, last: bool = False) -> Supervised:
        process = Supervised(name, argv, env, cwd, last)
        self.processes.append(process)
        self._start(process)
        return process

    def _start(self, process: Supervised) -> None:
        process.popen = subprocess.Popen(
            process.argv, env=process.env, cwd=process.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, errors="replace", start_new_session=True,
        )  # fmt: skip
        process.started_at = time.monotonic()
        process.restart_at = None
        process.reader = threading.Thread(target=self._copy_output, args=(process, process.popen), daemon=True)
        process.reader.start()
        self.say(f"started with pid={process.popen.pid}", process.name)

    def _copy_output(self, process: Supervised, popen: subprocess.Popen) -> None:
        for line in popen.stdout:
            self.say(line.rstrip("\n"), process.name)

    def run(self) -> int:
        """Watch until asked to stop; then stop everything. Returns 0."""
        while not self.stopping.wait(0.2):
            now = time.monotonic()
            for process in self.processes:
                if process.restart_at is not None:
                    if now >= process.restart_at:
                        process.restarts += 1
                        self._start(process)
                elif process.popen.poll() is not None:
                    self._schedule_restart(process, now)
        self.stop_all()
        return 0

    def _schedule_restart(self, process: Supervised, now: float) -> None:
        if process.reader is not None:
            process.reader.join(timeout=1)  # its last lines first
        ran_for = now - process.started_at
        if ran_for >= STEADY_AFTER_S:
            process.backoff_s = BACKOFF_FIRST_S
        delay = process.backoff_s
        process.backoff_s = min(BACKOFF_MAX_S, process.backoff_s * 2)
        process.restart_at = now + delay
        self.say(f"exited with code {process.popen.returncode} after {ran_for:.1f} s; restarting in {delay:g} s", process.name)

    def request_stop(self, *_args) -> None:
        self.stopping.set()

    def stop_all(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        for group in ([p for p in self.processes if not p.last], [p for p in self.processes if p.last]):
            running = [p for p in group if p.popen is not None and p.popen.poll() is None]
            for process in running:
                self._signal(process, signal.SIGTERM)
            deadline = time.monotonic() + self.grace
            for process in running:
                try:
                    process.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.say(f"did not stop within {self.grace:g} s: killing it", process.name)
                    self._signal(process, signal.SIGKILL)
                    process.popen.wait()
            for process in group:
                if process.popen is not None:
                    self._signal(process, signal.SIGKILL)  # stragglers left in the group (a pool child)
                    self.say(f"stopped (exit code {process.popen.returncode})", process.name)

    @staticmethod
    def _signal(process: Supervised, signum: int) -> None:
        try:
            os.killpg(process.popen.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass
