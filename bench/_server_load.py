"""What a benchmark's session cost the server: CPU per process, PostgreSQL's backends, and the web process's requests."""

import os
import re
import threading
import time
from pathlib import Path

from bench._common import cpu_seconds_of


class CpuMeter:
    """CPU seconds of each server process (with its children) from now on, and of PostgreSQL's backends of this database.

    What else this process started (Chromium, Playwright's driver) and this process itself
    are the load generators, counted apart.
    """

    def __init__(self, processes: dict):
        self.roots = {name: process.pid for name, process in processes.items()}
        self.started = time.monotonic()
        self.before = self._read()
        self.postgres = PostgresBackends().start()

    def _read(self) -> dict[str, float]:
        me = os.getpid()
        by_root = cpu_seconds_of([*self.roots.values(), me])
        own = cpu_seconds_of([me], descendants=False)[me]
        found = {name: by_root[pid] for name, pid in self.roots.items()}
        found["chromium (load)"] = by_root[me] - own - sum(found.values())
        found["bench driver (load)"] = own
        return found

    def mark(self) -> dict[str, float]:
        """CPU seconds so far of each process (PostgreSQL's backends too) and the moment: two marks make a phase (`between`)."""
        return self._read() | {"postgresql": self.postgres.so_far(), "at": time.monotonic()}

    @staticmethod
    def between(first: dict, second: dict) -> dict[str, float]:
        """Cores each process used from one mark to the next (what served the pages, and the load generators apart)."""
        seconds = second["at"] - first["at"]
        return {name: (second[name] - first[name]) / seconds for name in first if name != "at"}

    def read(self) -> dict:
        after = self._read()
        seconds = time.monotonic() - self.started
        per_s = {name: (after[name] - self.before[name]) / seconds for name in after}
        postgres = self.postgres.stop()
        if postgres is not None:
            per_s["postgresql"] = postgres / seconds
        return {"seconds": seconds, "per_s": per_s}


class PostgresBackends:
    """The CPU of this database's PostgreSQL backends while they live, read every second.

    A backend's CPU dies with it, so each is read while it runs: those there at the start
    count from then, those that start later from zero (a forked backend starts at zero).
    `by_client()` splits it by the client's application_name (PGAPPNAME in its environment).
    """

    def __init__(self):
        from django.db import connection

        self.local = connection.vendor == "postgresql"
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.client: dict[int, str] = {}
        self._stop = threading.Event()
        self._done = threading.Event()

    def start(self) -> "PostgresBackends":
        if self.local:
            threading.Thread(target=self._run, daemon=True).start()
        return self

    def stop(self) -> float | None:
        """CPU seconds, or None when the database is not a PostgreSQL on this machine."""
        if not self.local:
            return None
        self._stop.set()
        self._done.wait(10)
        if not self.last:
            return None
        return sum(self.last[pid] - self.first.get(pid, 0.0) for pid in self.last)

    def so_far(self) -> float:
        """CPU seconds of this database's backends since the start, as last sampled (0 when not measured here)."""
        last = dict(self.last)
        return sum(seconds - self.first.get(pid, 0.0) for pid, seconds in last.items())

    def by_client(self) -> dict[str, float]:
        """CPU seconds (after `stop`) by the backends' application_name ("other" when a client named none)."""
        found: dict[str, float] = {}
        for pid, seconds in self.last.items():
            name = self.client.get(pid) or "other"
            found[name] = found.get(name, 0.0) + seconds - self.first.get(pid, 0.0)
        return found

    def _run(self) -> None:
        from django.db import connection

        first_sample = True
        try:
            while True:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pid, application_name FROM pg_stat_activity WHERE datname = current_database()")
                    clients = dict(cursor.fetchall())
                self.client.update(clients)
                pids = list(clients)
                for pid, seconds in cpu_seconds_of(pids, descendants=False).items():
                    if Path(f"/proc/{pid}").exists():
                        self.last[pid] = seconds
                        if first_sample:
                            self.first[pid] = seconds
                first_sample = False
                if self._stop.wait(1):
                    break
        finally:
            connection.close()
            self._done.set()


# The web process's access log, as config/run.py asks gunicorn for it: "POST /labs/runs/7/burst 200 35ms".
ACCESS_LOG_FORMAT = "%(m)s %(U)s %(s)s %(M)sms"
ACCESS_LINE = re.compile(r"^(GET|POST) (\S+) (\d{3}) (\d+)ms$")
REQUEST_KINDS = [  # (what, method, path)
    ("stream posts", "POST", re.compile(r"^/labs/runs/\d+/burst$")),
    ("panels", "GET", re.compile(r"^/labs/runs/\d+/panels$")),
    ("fault panels", "GET", re.compile(r"^/labs/runs/\d+/faults$")),
    ("classroom bars", "GET", re.compile(r"^/workshops/seats/\d+/$")),
    ("grid", "GET", re.compile(r"^/workshops/\d+/$")),
]


class WebRequests:
    """The web process's requests from now on, read from its access log: how many of each kind, and how long each took."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.offset = log_path.stat().st_size
        self.started = time.monotonic()

    def read(self, workers: int = 2) -> dict:
        """Each kind's requests per second and time in the worker; `busy`: the share of the workers' time spent on
        requests; `errors`: how many answered 5xx."""
        from labs.pipeline.metrics import percentile

        seconds = time.monotonic() - self.started
        with open(self.log_path, errors="replace") as log:
            log.seek(self.offset)
            lines = log.read().splitlines()
        took: dict[str, list[int]] = {}
        errors = 0
        for line in lines:
            found = ACCESS_LINE.match(line.strip())
            if found:
                method, path, status, ms = found.groups()
                errors += status.startswith("5")
                kind = next((what for what, m, pattern in REQUEST_KINDS if m == method and pattern.match(path)), "other")
                took.setdefault(kind, []).append(int(ms))
        kinds = {kind: {"per_s": len(values) / seconds, "p50": percentile(values, 0.5), "p95": percentile(values, 0.95)}
                 for kind, values in sorted(took.items(), key=lambda item: -len(item[1]))}  # fmt: skip
        return {"kinds": kinds, "errors": errors, "busy": sum(sum(values) for values in took.values()) / 1000 / seconds / workers}
