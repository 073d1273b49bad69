"""Footprint: the memory of the idle stack as `make run` starts it (issue 15: at most 500 MB in all).

Steps:
1. Start `python -m config.run` (what `make run` runs: the Procfile's processes under the
   supervisor, an embedded Redis) on a fresh SQLite database, free ports and a run folder
   of its own, with the environment a newcomer has (no REDIS_URL, no DEBUG given).
2. Wait for its "Faultline is ready" line, then SETTLE_S more, so start-up's garbage is gone
   and every worker has beaten at least once.
3. For every process in the tree under it, read its proportional set size (Pss) from
   /proc/PID/smaps_rollup: pages shared by several processes (a gunicorn master and the
   workers it forked) are split between them, so the sum is the memory the stack really takes.
4. Print each process, the total per Procfile entry and the total of all, then stop the stack
   with SIGINT as Ctrl-C does.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import port_pair  # noqa: E402
from tests.harness import BASE_DIR, wait_for  # noqa: E402

GOAL_MB = 500
SETTLE_S = float(os.environ.get("FOOTPRINT_SETTLE_SECONDS", 10))


def memory_kib(pid: int) -> tuple[int, int] | None:
    """A process's proportional set size and its private memory (what stopping it frees), in KiB;
    None if it is gone or unreadable."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    fields = {name: int(kib) for name, kib in re.findall(r"^(\w+):\s+(\d+) kB", rollup, re.M)}
    return fields["Pss"], fields["Private_Clean"] + fields["Private_Dirty"]


def children_of() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry.name))
    return children


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def tree(root: int, children: dict[int, list[int]]) -> list[int]:
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += sorted(children.get(pid, []))
    return found


def short(command: str, width: int = 70) -> str:
    command = command.replace(str(BASE_DIR) + "/", "").replace(sys.executable, "python")
    return command if len(command) <= width else command[: width - 1] + "…"


@dataclass
class Row:
    entry: str  # the Procfile entry (or "make run", "redis") the process belongs to
    pid: int
    pss_kib: int
    private_kib: int
    command: str


def measure(runner_pid: int, started: dict[str, int]) -> list[Row]:
    """A row for every live process of the stack, the supervisor included."""
    children = children_of()
    rows = []
    for entry, root in [("make run", runner_pid), *started.items()]:
        for pid in tree(root, children) if entry != "make run" else [root]:
            memory = memory_kib(pid)
            if memory is not None:
                rows.append(Row(entry, pid, *memory, command_line(pid)))
    return rows


def report(rows: list[Row]) -> int:
    """Print the table; returns the total PSS in KiB."""
    print(f"{'process':9} {'pid':>7} {'PSS MB':>7} {'private':>7}  command")
    for row in rows:
        print(f"{row.entry:9} {row.pid:>7} {row.pss_kib / 1024:>7.1f} {row.private_kib / 1024:>7.1f}  {short(row.command)}")
    print()
    print(f"{'entry':9} {'':>7} {'PSS MB':>7} {'private':>7}  processes")
    for entry in dict.fromkeys(row.entry for row in rows):
        mine = [row for row in rows if row.entry == entry]
        pss, private = sum(row.pss_kib for row in mine), sum(row.private_kib for row in mine)
        print(f"{entry:9} {'':>7} {pss / 1024:>7.1f} {private / 1024:>7.1f}  {len(mine)}")
    total = sum(row.pss_kib for row in rows)
    verdict = "within" if total / 1024 <= GOAL_MB else "OVER"
    print(f"{'total':9} {'':>7} {total / 1024:>7.1f} {'':>7}  {len(rows)} processes ({verdict} the {GOAL_MB} MB goal)")
    return total


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="faultline-footprint-"))
    env = {**os.environ, "PORT": str(port_pair()), "FAULTLINE_RUN_DIR": str(workdir / "run"),
           "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}", "PYTHONUNBUFFERED": "1"}  # fmt: skip
    for inherited in ("REDIS_URL", "FAULTLINE_REDIS_PREFIX", "DEBUG", "PLAIN_HTTP", "SECRET_KEY"):
        env.pop(inherited, None)  # a newcomer's `make run`: embedded Redis, DEBUG on 127.0.0.1, its own key
    runner = subprocess.Popen([sys.executable, "-m", "config.run"], cwd=BASE_DIR, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(runner.stdout), daemon=True).start()
    try:
        wait_for(lambda: any("Faultline is ready at" in line for line in lines) or runner.poll() is not None,
                 120, "the ready line")  # fmt: skip
        if runner.poll() is not None:
            sys.exit("make run stopped before it was ready:\n" + "".join(lines[-30:]))
        time.sleep(SETTLE_S)
        started = {name: int(pid) for name, pid in re.findall(r"^\S+ (\S+)\s+\| started with pid=(\d+)", "".join(lines), re.M)}
        print(f"Idle stack under `make run` (SQLite, embedded Redis), {SETTLE_S:g} s after ready; PSS from /proc/PID/smaps_rollup")
        report(measure(runner.pid, started))
    finally:
        runner.send_signal(signal.SIGINT)
        try:
            runner.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
