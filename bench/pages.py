"""Pages: how many requests a second each page a learner opens serves, next to a trivial view (issue 15: at least 50%).

Steps:
1. A fresh SQLite database with the content loaded (`manage.py load_content`), a Redis of its
   own, and the web process started from the Procfile's `web` line (gunicorn, 2 sync workers,
   DEBUG off), with bench/_pages_settings.py: the site's settings and URLs plus `/bench/trivial/`,
   a one-line template view that exists only in this bench.
2. A learner with some progress (lessons read, questions answered, reviews due) and a signed-in
   session; a visitor sends no cookie.
3. Each check, the first answer is a 200 that shows who is looking (the learner's name, or "Log in").
4. ROUNDS rounds; in each, every target in turn for SECONDS seconds with CONNECTIONS connections
   kept busy (a new connection per request, as gunicorn's sync workers close each one): the
   static CSS file first (the load generator must reach well past the trivial view, or it is the
   bottleneck), then every page anonymous and signed in, each right after a load of the trivial
   view, so that a page is compared with the trivial view of the same moment on a shared machine.
5. Print each page's requests/s and p50 and its share of the trivial view's rate just before
   (medians over the rounds), and whether it meets the 50% goal; beside them the web process's
   CPU per request and the same share taken from CPU per request, which other work on a
   shared machine moves less than it moves the rates.
"""

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import cpu_seconds, port_pair, wait_for_quiet  # noqa: E402
from tests.harness import BASE_DIR, ServiceProcess, http_status, start_embedded_redis, wait_for  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
SECONDS = float(os.environ.get("BENCH_SECONDS", 2))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", 16))
GOAL = 0.5
LEARNER = "bench-learner"
STATIC = "/static/css/site.css"
TRIVIAL = "/bench/trivial/"
PAGES = [  # (what, path)
    ("home", "/"),
    ("lesson catalogue", "/lessons/"),
    ("a lesson", "/lessons/network-calls/"),
    ("practice bank", "/practice/"),
    ("a question", "/practice/questions/brokers-kafka-consumer-groups/"),
    ("lab catalogue", "/labs/"),
    ("a lab page", "/labs/outbox-and-relay/"),
]


def say(text: str) -> None:
    print(text, flush=True)


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="faultline-pages-bench-"))
    redis_server, redis_url = start_embedded_redis(workdir)
    port = port_pair()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}", "REDIS_URL": redis_url,
           "FAULTLINE_REDIS_PREFIX": "bench:", "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "0",
           "PYTHONUNBUFFERED": "1", "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "HOST": "127.0.0.1", "WEB_PORT": str(port), "WEB_WORKERS": "2"}  # fmt: skip
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "FAULTLINE_REDIS_PREFIX", "DJANGO_SETTINGS_MODULE", "DEBUG")})
    web = None
    try:
        for command in (["migrate", "-v0"], ["load_content"]):
            subprocess.run([sys.executable, "manage.py", *command], cwd=BASE_DIR, env=env, check=True, stdout=subprocess.DEVNULL)
        import django

        django.setup()
        cookie = _learner_session()
        web = ServiceProcess("web", ["/bin/sh", "-c", f"exec {_procfile_web_line()}"],
                             {**env, "DJANGO_SETTINGS_MODULE": "bench._pages_settings"}, workdir).start()  # fmt: skip
        wait_for(lambda: http_status(f"http://127.0.0.1:{port}{TRIVIAL}") == 200, 60, "the web process", interval=0.2)
        quiet = wait_for_quiet()
        say(f"pages bench: gunicorn as the Procfile starts it (2 sync workers, DEBUG off), SQLite; {CONNECTIONS} connections, "
            f"{ROUNDS} rounds of {SECONDS:g} s per target; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} ({quiet})")  # fmt: skip
        targets = [("static CSS", "-", STATIC, ""), ("trivial view", "-", TRIVIAL, "")]
        for what, path in PAGES:
            targets += [(what, "anonymous", path, ""), (what, "signed in", path, cookie)]
        for what, visitor, path, cookie_value in targets[2:]:
            _check_page(port, what, visitor, path, cookie_value)
        rounds = [_round(port, web.pid, targets) for _ in range(ROUNDS)]
        _report(targets, rounds)
    finally:
        if web is not None:
            web.stop()
        redis_server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _procfile_web_line() -> str:
    from honcho.environ import parse_procfile

    return parse_procfile((BASE_DIR / "Procfile").read_text()).processes["web"]


def _learner_session() -> str:
    """A learner who has read some lessons, answered some questions and has reviews due; their session cookie."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from courseware import progress as lesson_progress
    from courseware.models import Lesson
    from practice import scheduling
    from practice.models import Attempt, Question, Rating
    from practice.progress import AccountProgress

    user = get_user_model().objects.create_user(LEARNER)
    for lesson in Lesson.objects.order_by("position")[:5]:
        lesson_progress.mark_read(user, lesson, read=True)
    practice = AccountProgress(user)
    now = timezone.now()
    for n, question in enumerate(Question.objects.order_by("pk")[:12]):
        answered = now - timedelta(days=10 - n % 5)
        rating = Rating.AGAIN if n % 2 else Rating.GOOD
        attempt = Attempt(question=question, source=Attempt.Source.GAVE_UP, created_at=answered, matches=[], grades=[],
                          score=0 if n % 2 else 100, rating=rating, graded_at=answered)  # fmt: skip
        card = scheduling.review(practice.card(question.pk), rating, answered)
        attempt.due_after = card.due
        practice.save_graded(attempt, card)
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def _request(port: int, path: str, cookie: str) -> bytes:
    headers = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
    return (headers + (f"Cookie: {cookie}\r\n" if cookie else "") + "\r\n").encode()


def _fetch(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(request)
        chunks = []
        while chunk := connection.recv(262144):
            chunks.append(chunk)
    return b"".join(chunks)


def _check_page(port: int, what: str, visitor: str, path: str, cookie: str) -> None:
    """The page answers 200 and shows who is looking: otherwise its figures would measure something else."""
    response = _fetch(port, _request(port, path, cookie)).decode(errors="replace")
    status = response[9:12]
    who = f'data-testid="signed-in-as">{LEARNER}<' if cookie else ">Log in</a>"
    if status != "200" or who not in response:
        raise SystemExit(f"pages bench: {what} ({visitor}) at {path} answered {status} without {who!r}:\n{response[:2000]}")


def load(port: int, path: str, cookie: str, connections: int, seconds: float, server: int) -> dict:
    """`connections` threads, each sending requests one after another for `seconds`: requests/s, p50 ms, non-200s,
    and the web process's CPU per request (`server` is its pid: the master and its workers)."""
    request = _request(port, path, cookie)
    deadline = time.monotonic() + seconds
    took: list[float] = []
    failures = []

    def one_connection() -> None:
        mine, bad = [], 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = _fetch(port, request)
            mine.append(time.perf_counter() - started)
            bad += response[9:12] != b"200"
        took.extend(mine)  # list.extend is atomic under the GIL
        failures.append(bad)

    started, cpu_started, server_started = time.monotonic(), time.process_time(), cpu_seconds(server)
    threads = [threading.Thread(target=one_connection) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return {"per_s": len(took) / elapsed, "p50_ms": statistics.median(took) * 1000 if took else None, "failed": sum(failures),
            "client_ms": (time.process_time() - cpu_started) * 1000 / max(1, len(took)),
            "server_ms": (cpu_seconds(server) - server_started) * 1000 / max(1, len(took))}  # fmt: skip


def _round(port: int, server: int, targets: list[tuple]) -> dict:
    """One load of every target, each page right after a load of the trivial view: the machine is shared, and
    a page's share is taken against the trivial view's rate of the moment. Returns each target's figures."""
    found = {}
    for what, visitor, path, cookie in targets:
        if visitor != "-":
            found.setdefault(("trivial view", "-"), []).append(load(port, TRIVIAL, "", CONNECTIONS, SECONDS, server))
        figures = load(port, path, cookie, CONNECTIONS, SECONDS, server)
        if visitor != "-":
            figures["share"] = figures["per_s"] / found[("trivial view", "-")][-1]["per_s"]
            figures["cpu_share"] = found[("trivial view", "-")][-1]["server_ms"] / figures["server_ms"]
        found.setdefault((what, visitor), []).append(figures)
    return {key: _median_figures(runs) for key, runs in found.items()}


def _median_figures(runs: list[dict]) -> dict:
    """The median of each figure over several loads of one target; failures add up."""
    return {name: (sum if name == "failed" else statistics.median)(run[name] for run in runs) for name in runs[0]}


def _report(targets: list[tuple], rounds: list[dict]) -> None:
    trivial = [r[("trivial view", "-")]["per_s"] for r in rounds]
    static = [r[("static CSS", "-")]["per_s"] for r in rounds]
    say(f"{'page':18} {'visitor':10} {'req/s':>7} {'p50 ms':>7} {'share':>6}  {'goal ≥ ' + format(GOAL, '.0%'):12} "
        f"{'CPU ms/req':>10} {'CPU share':>9}")
    met = 0
    for what, visitor, path, _ in targets:
        runs = [r[(what, visitor)] for r in rounds]
        per_s = statistics.median(run["per_s"] for run in runs)
        p50 = statistics.median(run["p50_ms"] for run in runs)
        failed = sum(run["failed"] for run in runs)
        share = statistics.median(run.get("share", run["per_s"] / base) for run, base in zip(runs, trivial))
        server_ms = statistics.median(run["server_ms"] for run in runs)
        cpu_share = f"{statistics.median(run['cpu_share'] for run in runs):>9.0%}" if visitor != "-" else ""
        verdict = "" if visitor == "-" else "meets" if share >= GOAL else "BELOW"
        met += verdict == "meets"
        note = f"  {failed} answers not 200" if failed else ""
        say(f"{what:18} {visitor:10} {per_s:>7.0f} {p50:>7.1f} {share:>6.0%}  {verdict:12} {server_ms:>10.2f} {cpu_share}{note}")
    client_ms = statistics.median(r[("trivial view", "-")]["client_ms"] for r in rounds)
    static_ratio = statistics.median(s / t for s, t in zip(static, trivial))
    say(f"{met} of {len(targets) - 2} page loads meet the goal. The static CSS file answered {static_ratio:.1f}× the trivial "
        f"view's rate (with wrk the issue found them about equal); the load generator spent {client_ms:.2f} ms of CPU per "
        f"trivial request, on the same cores as the server. CPU share: the trivial view's CPU per request over the "
        f"page's, in the web process; on a busy machine it moves less than the rates do.")  # fmt: skip


if __name__ == "__main__":
    main()
