"""What several benchmarks share: a pair of ports for `make run`'s web and live processes, CPU time from /proc, a wait
for a quiet machine, and a PostgreSQL cluster of their own.

`make bench` runs bench/[!_]*.py: a file whose name starts with "_" is a helper, not a benchmark.
"""

import os
import socket
from pathlib import Path

import tests.environment  # noqa: F401 - DEBUG off over plain HTTP with a key of its own, as the suite runs
from tests.harness import free_port


def port_pair() -> int:
    """A free port whose next port is free too (web, then live)."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue



def wait_for_quiet(idle_share: float = 0.8, at_most_s: float = 60) -> str:
    """Wait until the machine's cores have been at least `idle_share` idle for two seconds in a row (from
    /proc/stat), for at most `at_most_s` seconds; what it found, in words. `make bench` runs the benches back
    to back: the pages bench began at load 9 on the tail of the live-view bench's hundred pages."""
    import time

    def idle_and_total() -> tuple[int, int]:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return ticks[3] + ticks[4], sum(ticks[:8])  # idle + iowait; user … steal

    started, quiet_seconds, share, before = time.monotonic(), 0, 0.0, idle_and_total()
    while time.monotonic() - started < at_most_s:
        time.sleep(1)
        after = idle_and_total()
        share = (after[0] - before[0]) / max(after[1] - before[1], 1)
        before = after
        quiet_seconds = quiet_seconds + 1 if share >= idle_share else 0
        if quiet_seconds >= 2:
            return f"the cores were {share:.0%} idle after {time.monotonic() - started:.0f} s"
    return f"the cores were still busy after {at_most_s:.0f} s ({share:.0%} idle); measuring anyway"

def _process_table() -> tuple[dict[int, int], dict[int, float]]:
    """Every process's parent and user + system CPU seconds, from /proc (Linux)."""
    parents, times = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
            times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return parents, times


def cpu_seconds(root: int, descendants: bool = True) -> float:
    """User + system CPU of a process and (unless told not to) its live descendants."""
    return cpu_seconds_of([root], descendants)[root]


def cpu_seconds_of(roots: list[int], descendants: bool = True) -> dict[int, float]:
    """`cpu_seconds` of several processes from one reading of /proc."""
    parents, times = _process_table()
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found = {}
    for root in roots:
        total, todo = 0.0, [root]
        while todo:
            pid = todo.pop()
            total += times.get(pid, 0.0)
            todo += children.get(pid, []) if descendants else []
        found[root] = total
    return found


def postgres_cpu_seconds() -> float:
    """Every PostgreSQL server process on this machine (the bench's database is the busy one)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "postgres":
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            continue
    return total


class AutoAnalyze:
    """ANALYZE every `every_s` seconds while a bench runs, on a PostgreSQL server whose autovacuum is off (this
    machine's): autovacuum would, as the tables grow. Without statistics the planner reads a run's whole ledger for
    a lookup by intent, and a bench would measure a server nobody deploys. Nothing on SQLite or with autovacuum on."""

    def __init__(self, every_s: float = 10):
        import threading

        self.every_s = every_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "AutoAnalyze":
        from django.db import connection

        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SHOW autovacuum")
                if cursor.fetchone()[0] == "off":
                    self._thread.start()
        return self

    def _run(self) -> None:
        from django.db import connection

        try:
            while not self._stopped.wait(self.every_s):
                with connection.cursor() as cursor:
                    cursor.execute("ANALYZE")
        finally:
            connection.close()

    def stop(self) -> None:
        self._stopped.set()


def private_postgres():
    """(URL, stop) of a PostgreSQL cluster of its own in a new temporary folder (initdb, every setting as
    installed but the port, 127.0.0.1 and a socket in that folder), or None when this machine has no
    PostgreSQL binaries.

    A server as a bootcamp runs one: a shared one may have been tuned for something else (this machine's
    runs without autovacuum), and other clients' work would be measured with ours. As the postgres user
    when run as root: initdb refuses root."""
    import glob
    import shutil
    import subprocess
    import tempfile
    import time

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(Path(path).parts[-3]))
    initdb = found[-1] if found else shutil.which("initdb")
    if initdb is None:
        return None
    # A folder of its own, not inside the bench's (mkdtemp makes that one its owner's alone: the postgres
    # user could not reach a cluster in it).
    bin_dir, folder = Path(initdb).parent, Path(tempfile.mkdtemp(prefix="faultline-postgresql-"))
    as_owner = []
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            print("PostgreSQL: no postgres user to run initdb as (it refuses root); using a server instead")
            shutil.rmtree(folder, ignore_errors=True)
            return None
        as_owner = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
        shutil.chown(folder, "postgres", "postgres")
    made = subprocess.run([*as_owner, str(bin_dir / "initdb"), "-D", str(folder / "data"), "-U", "postgres", "--auth", "trust",
                           "-E", "UTF8", "--locale", "C.UTF-8"], capture_output=True, text=True)  # fmt: skip
    if made.returncode != 0:
        print(f"PostgreSQL: initdb failed ({made.stderr.strip().splitlines()[-1:]}); using a server instead")
        shutil.rmtree(folder, ignore_errors=True)
        return None
    port = free_port()
    server = subprocess.Popen([*as_owner, str(bin_dir / "postgres"), "-D", str(folder / "data"), "-c", f"port={port}",
                               "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={folder}"],
                              stdout=subprocess.DEVNULL, stderr=open(folder / "log", "w"))  # fmt: skip
    url = f"postgres://postgres@127.0.0.1:{port}/postgres"
    deadline = time.monotonic() + 30
    while subprocess.run([str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode != 0:
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"PostgreSQL did not start: {(folder / 'log').read_text()[-2000:]}")
        time.sleep(0.2)

    def stop():
        server.terminate()  # smart shutdown: the bench has closed its connections
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(folder, ignore_errors=True)

    return url, stop
