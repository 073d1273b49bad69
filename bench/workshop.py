"""Workshop scale: one workshop of LEARNERS learners on this machine, run as a bootcamp would run it.

Steps:
1. A fresh PostgreSQL database `faultline_bench_<pid>`, created on BENCH_DATABASE_URL's server
   (default postgres://postgres@127.0.0.1:5432/postgres) and dropped at the end; SQLite when no
   PostgreSQL answers (or BENCH_DATABASE_URL=sqlite), said in the output. A Redis of its own.
   The processes `make run` starts (config/run.py), DEBUG off: gunicorn with 2 sync workers,
   the live process (uvicorn) on the next port, the Celery worker (2 processes), the
   urgent-lane worker and the relay.
2. An instructor, a workshop and LEARNERS learners seated through `workshops.joining.join`,
   so each has a real seeded run of the lab.
3. The instructor's grid in Chromium; BROWSER_PAGES learners' lab pages in Chromium, one
   browser context each; the other learners' pages headless (bench/_headless.py: the same
   requests as the page's script, the live stream read by a thread).
4. Every run gets INTENTS_PER_S intents a second from its page's steady stream: the Chromium
   pages press "Start the stream"; the headless pages post the same form once a second, each
   at its own moment of the second.
5. Steady phase, SECONDS long: the lag of every event to every page; twice a second a learner
   fault set or cleared on a random run (what a learner's fault form does), timed to its tile
   on the grid, which the grid's page notes as it redraws (a MutationObserver).
6. Heavy phase, SECONDS long: the same, while one run has email-primary down and gets a
   1,000-message campaign every HEAVY_EVERY seconds from its learner's burst form.
7. A broadcast (email-primary down, posted to the grid's form as the instructor): until the
   fault is in Redis for every run, and until every page has its classroom event. Then the
   emergency stop, measured the same way.
8. The figures, with the issue's goals beside them; the CPU of each server process per second
   of the measured session, and of the load generators (this process, Chromium) apart.
"""

import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import cpu_seconds_of, port_pair  # noqa: E402
from bench._headless import HeadlessPage, Session  # noqa: E402
from tests.harness import BASE_DIR, ServiceProcess, http_status, python_argv, start_embedded_redis, wait_for  # noqa: E402

LEARNERS = int(os.environ.get("BENCH_LEARNERS", 100))
BROWSER_PAGES = int(os.environ.get("BENCH_BROWSER_PAGES", 15))
SECONDS = float(os.environ.get("BENCH_SECONDS", 45))  # each of the steady and the heavy phase
INTENTS_PER_S = int(os.environ.get("BENCH_INTENTS_PER_S", 2))
HEAVY_EVERY = float(os.environ.get("BENCH_HEAVY_EVERY", 5))
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
LAB = "dead-letters-poison"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
TILE_FAULT = ("sms-secondary", {"latency_ms": 50})  # a fault the grid shows and this lab's traffic never feels
TOGGLES_PER_S = 2
GRID_SETTLE_S = 5  # the grid polls every 2 s: time for the last toggles to show

# Noted in each learner's page: when a classroom event came, and when the bar showed a fault or a stop.
PAGE_RECORDER = """
window.benchClassroom = [];
document.addEventListener("DOMContentLoaded", function () {
  document.body.addEventListener("lab-classroom", function () { window.benchClassroom.push(["event", Date.now() / 1000]); });
  var shown = {};
  new MutationObserver(function () {
    ["instructor-fault", "instructor-stop"].forEach(function (id) {
      var now = !!document.querySelector("[data-testid=" + id + "]");
      if (now !== !!shown[id]) { shown[id] = now; window.benchClassroom.push([id + (now ? "" : " gone"), Date.now() / 1000]); }
    });
  }).observe(document.body, { childList: true, subtree: true });
});
"""
# Noted in the grid's page: each tile's fault chips whenever they change, and how long each refresh took.
GRID_RECORDER = """
window.benchTiles = [];
document.addEventListener("DOMContentLoaded", function () {
  performance.setResourceTimingBufferSize(100000);
  var seen = {};
  function scan() {
    var now = Date.now() / 1000;
    document.querySelectorAll("[data-testid=tile]").forEach(function (tile) {
      var chips = Array.from(tile.querySelectorAll("[data-testid=tile-faults] li"))
        .map(function (li) { return li.textContent.replace("\u26a1", "").trim(); }).sort().join(",");
      if (seen[tile.dataset.learner] !== chips) { seen[tile.dataset.learner] = chips; window.benchTiles.push([tile.dataset.learner, now, chips]); }
    });
  }
  new MutationObserver(scan).observe(document.body, { childList: true, subtree: true });
  scan();
});
"""


def main() -> None:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="faultline-workshop-bench-"))
    database_url, database_note, drop_database = _database(workdir)
    redis_server, redis_url = start_embedded_redis(workdir)
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "FAULTLINE_REDIS_PREFIX": "bench:",
           "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "0", "PYTHONUNBUFFERED": "1"}  # fmt: skip
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "FAULTLINE_REDIS_PREFIX", "DJANGO_SETTINGS_MODULE", "DEBUG")})
    processes: dict[str, ServiceProcess] = {}
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=BASE_DIR, env=env, check=True)
        import django

        django.setup()
        port = port_pair()
        processes.update(_start_processes(env, workdir, port))
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_status(base + "/healthz") == 200, 60, "every process to be up (/healthz)", interval=0.3)
        chromium_pages = min(BROWSER_PAGES, LEARNERS)
        print(f"workshop bench: {LEARNERS} learners ({chromium_pages} lab pages in Chromium, {LEARNERS - chromium_pages} headless), "
              f"{database_note}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")  # fmt: skip
        class_ = _workshop(port)
        print(f"setup: {LEARNERS} learners seated, each with a seeded run, in {class_['seated_s']:.0f} s")
        from playwright.sync_api import sync_playwright

        from tests.conftest import CHROMIUM_ARGS

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                figures = _session(browser, base, port, class_, {**processes, "redis": redis_server}, chromium_pages)
            finally:
                browser.close()
        _report(figures)
        print(f"took {time.monotonic() - started:.0f} s in all")
    finally:
        for process in reversed(list(processes.values())):
            process.stop()
        redis_server.stop()
        drop_database()


# --- Setting up --------------------------------------------------------------------------------


def _database(workdir: Path) -> tuple[str, str, Callable[[], None]]:
    """The database URL, a line saying which, and what drops it at the end."""
    server = os.environ.get("BENCH_DATABASE_URL", DEFAULT_POSTGRES)
    sqlite = f"sqlite:///{workdir / 'bench.sqlite3'}"
    if server.startswith("sqlite"):
        return sqlite, "SQLite (BENCH_DATABASE_URL=sqlite)", lambda: None
    import psycopg

    name = f"faultline_bench_{os.getpid()}"
    try:
        with psycopg.connect(server, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f"CREATE DATABASE {name}")
            version = admin.execute("SHOW server_version").fetchone()[0]
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"workshop bench: NO PostgreSQL at {server} ({first_line}): running on SQLite instead. "
              "A bootcamp runs PostgreSQL: set BENCH_DATABASE_URL to a server where this bench may create a database.")  # fmt: skip
        return sqlite, "SQLite (PostgreSQL not reachable)", lambda: None

    def drop():
        from django.db import connections

        connections.close_all()
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    return urlsplit(server)._replace(path=f"/{name}").geturl(), f"PostgreSQL {version} (a fresh database {name})", drop


def _start_processes(env: dict, workdir: Path, port: int) -> dict[str, ServiceProcess]:
    """As config/run.py starts them (without honcho, so each can be stopped and measured on its own)."""
    commands = {
        "web": ["-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--no-control-socket"],
        "live": ["-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port + 1),
                 "--no-access-log", "--log-level", "warning"],
        "worker": ["-m", "celery", "-A", "config", "worker", "--loglevel", "WARNING", "--concurrency", "2",
                   "--without-mingle", "--without-gossip"],
        "urgent": ["-m", "celery", "-A", "config", "worker", "--loglevel", "WARNING", "--concurrency", "1", "--queues",
                   "urgent", "--hostname", "urgent@%h", "--without-mingle", "--without-gossip"],
        "relay": ["manage.py", "relay"],
    }  # fmt: skip
    return {name: ServiceProcess(name, python_argv(*argv), env, workdir).start() for name, argv in commands.items()}


def _workshop(port: int) -> dict:
    """The instructor, the workshop, and every learner seated with a run and a session."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.test import Client

    from workshops import joining
    from workshops.models import Workshop

    users = get_user_model()
    instructor = users.objects.create_user("bench-instructor")
    instructor.groups.add(Group.objects.get_or_create(name=settings.INSTRUCTOR_GROUP)[0])
    workshop = Workshop.objects.create(owner=instructor, title="Workshop bench", lab=LAB, capacity=LEARNERS)
    started = time.monotonic()
    learners = []
    for n in range(LEARNERS):
        user = users.objects.create_user(f"learner-{n:03d}")
        seat = joining.join(workshop, user)
        learners.append({"name": user.username, "run_id": seat.run_id, "session": _session_cookie(Client, user)})
    return {"workshop": workshop, "learners": learners, "seated_s": time.monotonic() - started,
            "instructor": Session(port, {"sessionid": _session_cookie(Client, instructor)})}  # fmt: skip


def _session_cookie(client_class, user) -> str:
    client = client_class()
    client.force_login(user)
    return client.cookies["sessionid"].value


def _open_pages(browser, base: str, port: int, class_: dict, chromium_pages: int):
    """The grid and the first learners' pages in Chromium, the others headless; every page's stream started."""
    lab_path = f"/labs/{LAB}/"
    workshop = class_["workshop"]
    grid_context = browser.new_context(base_url=base, viewport={"width": 1400, "height": 1000})
    grid_context.add_cookies([{"name": "sessionid", "value": class_["instructor"].cookies["sessionid"], "url": base}])
    grid_context.add_init_script(GRID_RECORDER)
    grid = grid_context.new_page()
    grid.goto(f"/workshops/{workshop.pk}/")
    in_chromium = []
    for learner in class_["learners"][:chromium_pages]:
        context = browser.new_context(base_url=base, viewport={"width": 1280, "height": 900})
        context.add_cookies([{"name": "sessionid", "value": learner["session"], "url": base}])
        context.add_init_script(PAGE_RECORDER)
        page = context.new_page()
        page.goto(lab_path)
        in_chromium.append((learner, page))
    for _, page in in_chromium:
        page.wait_for_selector("[data-live-status][data-state=live]", timeout=120_000)
    side_requests = ThreadPoolExecutor(max_workers=32, thread_name_prefix="page-requests")
    headless = []
    for learner in class_["learners"][chromium_pages:]:
        session = Session(port, {"sessionid": learner["session"]})
        headless.append((learner, HeadlessPage(session, lab_path, side_requests).start()))
    for _, page in headless:
        if not page.connected.wait(60):
            raise TimeoutError("a headless page's live stream did not open within 60 s")
    grid.wait_for_selector("[data-testid=tile]")
    return grid, in_chromium, headless, side_requests


# --- Load -----------------------------------------------------------------------------------------


class SteadyStreams:
    """The headless pages' steady streams: each posts the stream form once a second, at its own moment."""

    def __init__(self, headless: list):
        self.headless = headless
        self.sent = 0
        self.refused = 0
        self._stop = threading.Event()
        self._posts = ThreadPoolExecutor(max_workers=32, thread_name_prefix="streams")

    def start(self) -> "SteadyStreams":
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._posts.shutdown(wait=True)

    def _run(self) -> None:
        moments = sorted((random.random(), index) for index in range(len(self.headless)))
        second = time.monotonic()
        while not self._stop.is_set():
            for at, index in moments:
                delay = second + at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                self._posts.submit(self._post, *self.headless[index])
            second += 1

    def _post(self, learner: dict, page: HeadlessPage) -> None:
        status, _ = page.session.request("POST", f"/labs/runs/{learner['run_id']}/burst", {
            "stream": "1", "stream-count": str(INTENTS_PER_S), "stream-template": "weekly_digest"}, htmx=False)  # fmt: skip
        if status == 200:
            self.sent += INTENTS_PER_S
        else:
            self.refused += 1


class TileToggles:
    """A learner fault set or cleared on a random run, twice a second, each noted with the phase it falls in."""

    def __init__(self, learners: list[dict], spare: set[int]):
        self.learners = [learner for learner in learners if learner["run_id"] not in spare]
        self.phase = "steady"
        self.done: list[tuple[str, str, float, bool]] = []  # (phase, learner, when, fault on)
        self._on: set[int] = set()
        self._last: dict[int, float] = {}
        self._stop = threading.Event()

    def start(self) -> "TileToggles":
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        from labs.pipeline import faults

        target, settings = TILE_FAULT
        while not self._stop.wait(1 / TOGGLES_PER_S):
            now = time.time()
            # A run toggled less than two polls ago waits, so each change can be seen on its own.
            ready = [learner for learner in self.learners if now - self._last.get(learner["run_id"], 0) > 3 * GRID_SETTLE_S]
            if not ready:
                continue
            learner = random.choice(ready)
            run_id = learner["run_id"]
            turn_on = run_id not in self._on
            when = time.time()
            faults.set_fault(run_id, target, **(settings if turn_on else {}))
            (self._on.add if turn_on else self._on.discard)(run_id)
            self._last[run_id] = when
            self.done.append((self.phase, learner["name"], when, turn_on))


class HeavyRun:
    """One learner's run with email-primary down and a 1,000-message campaign every HEAVY_EVERY seconds."""

    def __init__(self, learner: dict, page: HeadlessPage):
        self.learner, self.page = learner, page
        self.campaigns = 0
        self._stop = threading.Event()

    def start(self) -> "HeavyRun":
        from labs.pipeline import faults

        faults.set_fault(self.learner["run_id"], "email-primary", down=True)
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.page.session.post(f"/labs/runs/{self.learner['run_id']}/burst", {"count": "1000", "template": "weekly_digest"})
            self.campaigns += 1
            self._stop.wait(HEAVY_EVERY)


# --- The measured session ---------------------------------------------------------------------------


def _session(browser, base: str, port: int, class_: dict, processes: dict, chromium_pages: int) -> dict:
    grid, in_chromium, headless, side_requests = _open_pages(browser, base, port, class_, chromium_pages)
    for _, page in in_chromium:
        page.fill("[data-traffic-stream] [name=stream-count]", str(INTENTS_PER_S))
        page.click("[data-stream-start]")
    streams = SteadyStreams(headless).start()
    heavy_learner, heavy_page = headless[-1] if headless else in_chromium[-1]
    toggles = TileToggles(class_["learners"], spare={heavy_learner["run_id"]})
    time.sleep(3)  # every stream running, every page caught up
    cpu = CpuMeter(processes)
    figures = {"learners": len(class_["learners"]), "chromium": len(in_chromium), "headless": len(headless)}
    toggles.start()
    window = time.time()
    figures["steady"] = _phase(in_chromium, headless, SECONDS, skip=heavy_learner)
    figures["steady"]["intents"] = _intents_per_run_s(class_, window, time.time(), skip=heavy_learner)
    toggles.phase = "heavy"
    heavy = HeavyRun(heavy_learner, heavy_page).start()
    window = time.time()
    figures["heavy"] = _phase(in_chromium, headless, SECONDS, skip=heavy_learner)
    figures["heavy"]["intents"] = _intents_per_run_s(class_, window, time.time(), skip=heavy_learner)
    heavy.stop()
    toggles.stop()
    figures["heavy"]["campaigns"] = heavy.campaigns
    time.sleep(GRID_SETTLE_S)
    figures["grid"] = _grid_lags(grid, toggles.done)
    figures["classroom"] = _broadcast_and_stop(class_, in_chromium, headless)
    figures["cpu"] = cpu.read()
    figures["sent_by_headless"], figures["refused_streams"] = streams.sent, streams.refused
    streams.stop()
    for _, page in headless:
        page.stop()
    side_requests.shutdown(wait=False, cancel_futures=True)
    return figures


def _phase(in_chromium: list, headless: list, seconds: float, skip: dict) -> dict:
    """Every event's lag to every page over `seconds`, Chromium pages and headless pages apart (ms)."""
    for _, page in in_chromium:
        page.evaluate("window.faultlineLive.lags.length = 0")
    for _, page in headless:
        page.lags = []
    time.sleep(seconds)
    found = {"chromium": [], "headless": [], "heavy run": []}
    for learner, page in in_chromium:
        lags = page.evaluate("window.faultlineLive.lags")
        found["heavy run" if learner is skip else "chromium"].extend(int(lag * 1000) for lag in lags)
    for learner, page in headless:
        found["heavy run" if learner is skip else "headless"].extend(int(lag * 1000) for lag in page.lags)
    return {kind: _spread(lags) for kind, lags in found.items()} | {"others": _spread(found["chromium"] + found["headless"])}


def _spread(values: list[int]) -> dict:
    from labs.pipeline.metrics import percentile

    return {"n": len(values), "p50": percentile(values, 0.5), "p95": percentile(values, 0.95), "max": max(values, default=None)}


def _intents_per_run_s(class_: dict, start: float, end: float, skip: dict) -> float:
    from datetime import datetime, timezone

    from labs.models import NotificationIntent

    runs = [learner["run_id"] for learner in class_["learners"] if learner is not skip]
    count = NotificationIntent.objects.filter(run_id__in=runs, created_at__gte=datetime.fromtimestamp(start, timezone.utc),
                                              created_at__lt=datetime.fromtimestamp(end, timezone.utc)).count()  # fmt: skip
    return count / len(runs) / (end - start)


def _grid_lags(grid, toggles: list) -> dict:
    """For each toggle, the time until the learner's tile showed it (ms), by phase; and the grid's refresh times."""
    target = TILE_FAULT[0]
    seen = grid.evaluate("window.benchTiles")
    by_learner: dict[str, list] = {}
    for learner, at, chips in seen:
        by_learner.setdefault(learner, []).append((at, target in chips.split(",")))
    lags = {"steady": [], "heavy": []}
    missed = 0
    for phase, learner, when, turned_on in toggles:
        shown = next((at for at, on in by_learner.get(learner, []) if at >= when and on == turned_on), None)
        if shown is None:
            missed += 1
        else:
            lags[phase].append(int((shown - when) * 1000))
    refreshes = grid.evaluate("""performance.getEntriesByType("resource")
        .filter(function (e) { return e.initiatorType === "xmlhttprequest" && e.name.indexOf("/workshops/") >= 0; })
        .map(function (e) { return Math.round(e.duration); })""")  # fmt: skip
    return {"steady": _spread(lags["steady"]), "heavy": _spread(lags["heavy"]), "missed": missed, "refresh": _spread(refreshes)}


def _broadcast_and_stop(class_: dict, in_chromium: list, headless: list) -> dict:
    """A broadcast through the grid's form, then the emergency stop; each timed to Redis and to every page."""
    from labs.pipeline import faults

    run_ids = [learner["run_id"] for learner in class_["learners"]]
    for run_id in run_ids:
        faults.clear_faults(run_id)  # the phases' own faults: the stop must clear only what the broadcast set
    time.sleep(3)
    instructor, workshop = class_["instructor"], class_["workshop"]
    instructor.get(f"/workshops/{workshop.pk}/", htmx=False)  # its CSRF token
    found = {}
    # 1. The broadcast.
    asked = time.time()
    watching = _watch_faults(run_ids, lambda settings: settings.get("email-primary") == {"down": True})
    response = _timed_post(instructor, f"/workshops/{workshop.pk}/broadcasts",
                           {"target": "email-primary", "provider-down": "on", "duration_s": "60", "to": "everyone"})  # fmt: skip
    in_force = watching.result()
    found["broadcast"] = {"answered": response - asked, "in_force": in_force - asked,
                          **_told(asked, "Injected by your instructor", "instructor-fault", in_chromium, headless)}  # fmt: skip
    time.sleep(3)
    # 2. The emergency stop.
    asked = time.time()
    watching = _watch_faults(run_ids, lambda settings: settings == {})
    response = _timed_post(instructor, f"/workshops/{workshop.pk}/stop", {})
    cleared = watching.result()
    from workshops.models import EmergencyStop

    found["stop"] = {"answered": response - asked, "in_force": cleared - asked, "own_ms": EmergencyStop.objects.latest("id").took_ms,
                     **_told(asked, "Emergency stop", "instructor-stop", in_chromium, headless)}  # fmt: skip
    return found


def _timed_post(session: Session, path: str, form: dict) -> float:
    session.post(path, form)
    return time.time()


def _watch_faults(run_ids: list[int], holds) -> Future:
    """From now on, watch for the moment every run's faults (read from Redis as the worker reads them) satisfy `holds`."""
    return ThreadPoolExecutor(max_workers=1).submit(_until_faults, run_ids, holds)


def _until_faults(run_ids: list[int], holds) -> float:
    from labs.pipeline import faults

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(holds(settings) for settings in faults.all_faults_of(run_ids).values()):
            return time.time()
        time.sleep(0.005)
    raise TimeoutError("the faults were not as expected in every run within 30 s")


def _told(asked: float, text: str, testid: str, in_chromium: list, headless: list, wait_s: float = 15) -> dict:
    """When the last page got the classroom event (and, in Chromium, when its classroom bar showed it), after `asked`."""
    deadline = time.monotonic() + wait_s
    heard: dict[str, float] = {}
    bars: dict[str, float] = {}
    while time.monotonic() < deadline and (len(heard) < len(in_chromium) + len(headless) or len(bars) < len(in_chromium)):
        for learner, page in headless:
            at = next((at for at, said in page.classroom if at >= asked and said.startswith(text)), None)
            if at is not None:
                heard[learner["name"]] = at
        for learner, page in in_chromium:
            marks = page.evaluate("window.benchClassroom")
            event = next((at for kind, at in marks if kind == "event" and at >= asked), None)
            shown = next((at for kind, at in marks if kind == testid and at >= asked), None)
            if event is not None:
                heard[learner["name"]] = event
            if shown is not None:
                bars[learner["name"]] = shown
        time.sleep(0.2)
    pages = len(in_chromium) + len(headless)
    return {"told": len(heard), "pages": pages, "all_told": max(heard.values()) - asked if len(heard) == pages else None,
            "bars": len(bars), "all_bars": max(bars.values()) - asked if bars and len(bars) == len(in_chromium) else None}  # fmt: skip


# --- CPU ------------------------------------------------------------------------------------------------


class CpuMeter:
    """CPU seconds of each server process (with its children) from now on, and of PostgreSQL's backends of this database."""

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
        # This process's other children: Chromium and Playwright's driver.
        found["chromium (load)"] = by_root[me] - own - sum(found.values())
        found["bench driver (load)"] = own
        return found

    def read(self) -> dict:
        after = self._read()
        seconds = time.monotonic() - self.started
        per_s = {name: (after[name] - self.before[name]) / seconds for name in after}
        postgres = self.postgres.stop()
        if postgres is not None:
            per_s["postgresql"] = postgres / seconds
        return {"seconds": seconds, "per_s": per_s}


class PostgresBackends:
    """Sums the CPU of this database's PostgreSQL backends while they live (sampled every second)."""

    def __init__(self):
        from django.db import connection

        self.local = connection.vendor == "postgresql" and Path("/proc").exists()
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._done = threading.Event()

    def start(self) -> "PostgresBackends":
        if self.local:
            threading.Thread(target=self._run, daemon=True).start()
        return self

    def stop(self) -> float | None:
        if not self.local:
            return None
        self._stop.set()
        self._done.wait(10)
        if not self.last:
            return None  # not on this machine
        return sum(self.last[pid] - self.first.get(pid, 0.0) for pid in self.last)

    def _run(self) -> None:
        from django.db import connection

        first_sample = True
        try:
            while True:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
                    pids = [row[0] for row in cursor.fetchall()]
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


# --- The report ------------------------------------------------------------------------------------------


def _ms(value) -> str:
    return "n/a" if value is None else f"{value:,} ms"


def _report(f: dict) -> None:
    steady, heavy = f["steady"], f["heavy"]
    print(f"pages: {f['chromium']} in Chromium, {f['headless']} headless; the grid in Chromium")
    print(f"traffic: {INTENTS_PER_S} intents/s asked of every run; accepted {steady['intents']:.2f}/s per run while steady, "
          f"{heavy['intents']:.2f}/s during the heavy fault; {f['refused_streams']} headless stream posts refused")  # fmt: skip
    print("(a) event → learner page (every event, every page but the heavy run's):")
    for kind, label in (("chromium", "Chromium pages"), ("headless", "headless pages")):
        s = steady[kind]
        print(f"      {label:<15} p50 {_ms(s['p50'])}, p95 {_ms(s['p95'])}, max {_ms(s['max'])} ({s['n']:,} events)")
    grid = f["grid"]
    g = grid["steady"]
    print(f"(b) learner fault set/cleared → its grid tile: p50 {_ms(g['p50'])}, p95 {_ms(g['p95'])}, max {_ms(g['max'])} "
          f"({g['n']} changes; the grid polls every 2 s); a grid refresh takes p50 {_ms(grid['refresh']['p50'])}, "
          f"p95 {_ms(grid['refresh']['p95'])}" + (f"; {grid['missed']} changes never shown" if grid["missed"] else ""))  # fmt: skip
    for key, label, what in (("broadcast", "(c) broadcast", "in force in every run"), ("stop", "(d) emergency stop", "every fault cleared")):
        c = f["classroom"][key]
        told = f"every page told in {_ms(round(c['all_told'] * 1000))}" if c["all_told"] is not None else f"only {c['told']} of {c['pages']} pages told"
        bars = f"every Chromium bar showed it in {_ms(round(c['all_bars'] * 1000))}" if c["all_bars"] is not None else f"{c['bars']} Chromium bars showed it"
        own = f", {_ms(c['own_ms'])} by the server's own count" if "own_ms" in c else ""
        print(f"{label}: {what} {_ms(round(c['in_force'] * 1000))} after the instructor's request (answered in "
              f"{_ms(round(c['answered'] * 1000))}{own}); {told}; {bars}   [goal: ≤ 1 s]")  # fmt: skip
    before, during = steady["others"]["p95"], heavy["others"]["p95"]
    rise = (during / before - 1) * 100 if before and during is not None else float("nan")
    print(f"(e) heavy fault (email-primary down, {heavy['campaigns']} campaigns of 1,000 in {SECONDS:.0f} s, in one run): "
          f"the other runs' p95 {_ms(before)} → {_ms(during)} ({rise:+.0f}%)   [goal: < +20%]; "
          f"grid tile p95 {_ms(grid['steady']['p95'])} → {_ms(grid['heavy']['p95'])}; the heavy run's own page p95 "
          f"{_ms(heavy['heavy run']['p95'])}")  # fmt: skip
    cpu = f["cpu"]
    server = {name: value for name, value in cpu["per_s"].items() if "(load)" not in name}
    print(f"(f) CPU seconds per second of session ({cpu['seconds']:.0f} s measured), server: "
          + ", ".join(f"{name} {value:.2f}" for name, value in server.items())
          + f"; total {sum(server.values()):.2f} of {os.cpu_count()} cores. Load generators: "
          + ", ".join(f"{name.replace(' (load)', '')} {value:.2f}" for name, value in cpu["per_s"].items() if "(load)" in name))  # fmt: skip


if __name__ == "__main__":
    main()
