"""Workshop scale: one workshop of LEARNERS learners on this machine, run as a bootcamp would run it.

Steps:
1. A fresh PostgreSQL database `faultline_bench_<pid>`, on a cluster of the bench's own made with this
   machine's initdb (bench._common.private_postgres), or on BENCH_DATABASE_URL's server when set or
   when there are no binaries (default postgres://postgres@127.0.0.1:5432/postgres), dropped at the
   end; SQLite when no PostgreSQL answers (or BENCH_DATABASE_URL=sqlite), said in the output. A Redis
   of its own.
   The processes `make run` starts (config/run.py), DEBUG off: gunicorn with 2 sync workers,
   the live process (uvicorn) on the next port, the Celery worker (2 processes), the
   urgent-lane worker and the relay.
2. An instructor, a workshop and LEARNERS learners seated through `workshops.joining.join`,
   so each has a real seeded run of the lab.
3. The instructor's grid in Chromium; BROWSER_PAGES learners' lab pages in Chromium, one
   browser context each; the other learners' pages headless (bench/_headless.py: the same
   requests as the page's script, the live stream read by a thread).
4. Every run gets INTENTS_PER_S intents a second, each run at its own moment of the second.
   BENCH_TRAFFIC=server (the default): this process accepts them through the pipeline's
   intake, so the web process serves only what the open pages ask for. BENCH_TRAFFIC=pages:
   every page runs its steady stream (Chromium pages press "Start the stream", headless
   pages post the same form each second), so the web process also takes every intent.
5. Steady phase, SECONDS long: the lag of every event to every page; twice a second a learner
   fault set or cleared on a random run (what a learner's fault form does), timed to its tile
   on the grid, which the grid's page notes as it redraws (a MutationObserver).
6. Heavy phase, SECONDS long: the same, while one run has email-primary down and gets a
   1,000-message campaign every HEAVY_EVERY seconds (by the traffic's way: the intake, or the
   learner's burst form).
7. A broadcast (email-primary down, posted to the grid's form as the instructor): until the
   fault is in Redis for every run, and until every page has its classroom event. Then the
   emergency stop, measured the same way.
8. The figures, with the issue's goals beside them; the CPU of each server process per second
   of the measured session, and of the load generators (this process, Chromium) apart.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import AutoAnalyze, port_pair, private_postgres, wait_for_quiet  # noqa: E402
from bench._headless import HeadlessPage, Session  # noqa: E402
from bench._server_load import ACCESS_LOG_FORMAT, CpuMeter, WebRequests  # noqa: E402
from bench._workshop_load import HeavyRun, SteadyTraffic, TileToggles  # noqa: E402
from tests.harness import BASE_DIR, ServiceProcess, http_status, python_argv, start_embedded_redis, wait_for  # noqa: E402

LEARNERS = int(os.environ.get("BENCH_LEARNERS", 100))
# Chromium shares the server's 2 cores here, as a class's own browsers do not: 15 pages took half a core and
# pushed the load average to 34, and then the Chromium pages drew what they were sent seconds late. With 5 the
# "as drawn" figures are Chromium's own and the rest of the class is headless (the issue allows it; said in the output).
BROWSER_PAGES = int(os.environ.get("BENCH_BROWSER_PAGES", 5))
SECONDS = float(os.environ.get("BENCH_SECONDS", 45))  # each of the steady and the heavy phase
INTENTS_PER_S = int(os.environ.get("BENCH_INTENTS_PER_S", 2))
HEAVY_EVERY = float(os.environ.get("BENCH_HEAVY_EVERY", 5))
TRAFFIC = os.environ.get("BENCH_TRAFFIC", "server")
PROXY = os.environ.get("BENCH_PROXY", "caddy")  # "none": the browsers talk to the processes' own ports
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
  window.benchDelivered = [];  // [count, when]: each change of the panels' delivered count, as drawn
  new MutationObserver(function () {
    var delivered = document.querySelector("[data-testid=strip-delivered]");
    var count = delivered ? parseInt(delivered.textContent, 10) : NaN;
    var last = window.benchDelivered[window.benchDelivered.length - 1];
    if (!isNaN(count) && (!last || last[0] !== count)) window.benchDelivered.push([count, Date.now() / 1000]);
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


def say(text: str) -> None:
    print(text, flush=True)  # a bench's output often goes to a file: each line as it comes


def stop_on_sigterm(signum, frame):
    raise SystemExit(143)  # so the processes, the browser and the database are cleaned up


def main() -> None:
    signal.signal(signal.SIGTERM, stop_on_sigterm)
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
        use_proxy = PROXY == "caddy" and shutil.which("caddy") is not None
        if use_proxy:  # as a bootcamp's server runs: one origin, /live/ to the live process (README, "Behind a reverse proxy")
            env.update(LAB_LIVE_URL="/", CLIENT_ADDRESS_HEADER="X-Real-IP")
        processes.update(_start_processes(env, workdir, port))
        if use_proxy:
            processes["caddy"], port = _start_caddy(workdir, port)
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_status(base + "/healthz") == 200, 60, "every process to be up (/healthz)", interval=0.3)
        chromium_pages = min(BROWSER_PAGES, LEARNERS)
        quiet = wait_for_quiet()
        say(f"workshop bench: {LEARNERS} learners ({chromium_pages} lab pages in Chromium, {LEARNERS - chromium_pages} headless), "
              f"{database_note}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start ({quiet}); "
              + ("behind Caddy (deploy/caddy/Caddyfile over plain HTTP)" if use_proxy else "no proxy (BENCH_PROXY=none, or caddy not installed)"))  # fmt: skip
        class_ = _workshop(port)
        say(f"setup: {LEARNERS} learners seated, each with a seeded run, in {class_['seated_s']:.0f} s")
        analyze = AutoAnalyze().start()  # as autovacuum would (bench/_common.py)
        from playwright.sync_api import sync_playwright

        from tests.conftest import CHROMIUM_ARGS

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                figures = _session(browser, base, port, class_, {**processes, "redis": redis_server}, chromium_pages)
            finally:
                browser.close()
                analyze.stop()
        _report(figures)
        say(f"took {time.monotonic() - started:.0f} s in all")
    finally:
        for process in reversed(list(processes.values())):
            process.stop()
        redis_server.stop()
        drop_database()


# --- Setting up --------------------------------------------------------------------------------


def _database(workdir: Path) -> tuple[str, str, Callable[[], None]]:
    """The database URL, a line saying which, and what drops it at the end."""
    given = os.environ.get("BENCH_DATABASE_URL")
    sqlite = f"sqlite:///{workdir / 'bench.sqlite3'}"
    if given and given.startswith("sqlite"):
        return sqlite, "SQLite (BENCH_DATABASE_URL=sqlite)", lambda: None
    import psycopg

    # A cluster of the bench's own, as installed, unless a server is named (bench._common.private_postgres says why).
    own = None if given else private_postgres()
    server = own[0] if own else given or DEFAULT_POSTGRES
    stop_own = own[1] if own else (lambda: None)
    name = f"faultline_bench_{os.getpid()}"
    try:
        with psycopg.connect(server, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f"CREATE DATABASE {name}")
            version = admin.execute("SHOW server_version").fetchone()[0]
    except psycopg.Error as exc:
        stop_own()
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        say(f"workshop bench: NO PostgreSQL at {server} ({first_line}): running on SQLite instead. "
              "A bootcamp runs PostgreSQL: set BENCH_DATABASE_URL to a server where this bench may create a database.")  # fmt: skip
        return sqlite, "SQLite (PostgreSQL not reachable)", lambda: None

    def drop():
        from django.db import connections

        connections.close_all()
        try:
            with psycopg.connect(server, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            stop_own()

    where = "a cluster of the bench's own, as installed" if own else "a fresh database"
    return urlsplit(server)._replace(path=f"/{name}").geturl(), f"PostgreSQL {version} ({where}: {name})", drop


def _start_processes(env: dict, workdir: Path, port: int) -> dict[str, ServiceProcess]:
    """As config/run.py starts them from the Procfile, each apart so it can be stopped and measured on its own
    (WEB_THREADS as in the Procfile)."""
    commands = {
        "web": ["-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                "--threads", os.environ.get("WEB_THREADS", "1"), "--no-control-socket",
                "--access-logfile", "-", "--access-logformat", ACCESS_LOG_FORMAT],
        "live": ["-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port + 1),
                 "--no-access-log", "--log-level", "warning"],
        "worker": ["-m", "celery", "-A", "config", "worker", "--loglevel", "WARNING", "--concurrency", "2",
                   "--without-mingle", "--without-gossip"],
        "urgent": ["-m", "celery", "-A", "config", "worker", "--loglevel", "WARNING", "--concurrency", "1", "--queues",
                   "urgent", "--hostname", "urgent@%h", "--without-mingle", "--without-gossip"],
        "relay": ["manage.py", "relay"],
    }  # fmt: skip
    return {name: ServiceProcess(name, python_argv(*argv), env, workdir).start() for name, argv in commands.items()}


def _start_caddy(workdir: Path, port: int) -> tuple[ServiceProcess, int]:
    """The shipped Caddyfile in front of the web (port) and live (port + 1) processes, over plain HTTP on a
    port of its own (no certificates to make here); returns Caddy and its port."""
    proxy_port = port_pair()
    shipped = (BASE_DIR / "deploy" / "caddy" / "Caddyfile").read_text()
    caddyfile = workdir / "Caddyfile"
    caddyfile.write_text(shipped.replace("\n{\n", "\n{\n\tadmin off\n", 1))  # no admin endpoint on a shared machine
    env = {"PATH": os.environ["PATH"], "HOME": str(workdir), "XDG_DATA_HOME": str(workdir / "caddy-data"),
           "XDG_CONFIG_HOME": str(workdir / "caddy-config"), "FAULTLINE_DOMAIN": f"http://127.0.0.1:{proxy_port}",
           "FAULTLINE_WEB": f"127.0.0.1:{port}", "FAULTLINE_LIVE": f"127.0.0.1:{port + 1}"}  # fmt: skip
    argv = ["caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile"]
    return ServiceProcess("caddy", argv, env, workdir).start(), proxy_port


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


# --- The measured session ---------------------------------------------------------------------------


def _session(browser, base: str, port: int, class_: dict, processes: dict, chromium_pages: int) -> dict:
    say("opening the pages…")
    grid, in_chromium, headless, side_requests = _open_pages(browser, base, port, class_, chromium_pages)
    if TRAFFIC == "pages":
        for _, page in in_chromium:
            page.fill("[data-traffic-stream] [name=stream-count]", str(INTENTS_PER_S))
            page.click("[data-stream-start]")
    pages_by_run = {learner["run_id"]: page for learner, page in headless}
    traffic = SteadyTraffic(class_["learners"], INTENTS_PER_S, TRAFFIC, pages_by_run).start()
    heavy_learner, heavy_page = headless[-1] if headless else in_chromium[-1]
    others = [learner for learner in class_["learners"] if learner is not heavy_learner]
    toggles = TileToggles(others, TILE_FAULT, TOGGLES_PER_S, rest_s=3 * GRID_SETTLE_S)
    time.sleep(3)  # every run's traffic going, every page caught up
    cpu, web = CpuMeter(processes), WebRequests(processes["web"].log_path)
    figures = {"learners": len(class_["learners"]), "chromium": len(in_chromium), "headless": len(headless)}
    toggles.start()
    say(f"steady phase ({SECONDS:.0f} s)…")
    window, marks = time.time(), [cpu.mark()]
    figures["steady"] = _phase(in_chromium, headless, SECONDS, skip=heavy_learner)
    figures["steady"]["intents"] = _intents_per_run_s(others, window, time.time())
    figures["steady"]["panels"] = _panel_lags(in_chromium, headless, window, time.time(), skip=heavy_learner)
    toggles.phase = "heavy"
    say(f"heavy phase ({SECONDS:.0f} s): {heavy_learner['name']}'s run has email-primary down and gets campaigns…")
    heavy_session = Session(port, {"sessionid": heavy_learner["session"]})
    heavy_session.get(f"/labs/{LAB}/", htmx=False)  # its CSRF token
    marks.append(cpu.mark())
    heavy = HeavyRun(heavy_learner, heavy_session, HEAVY_EVERY, TRAFFIC).start()
    window = time.time()
    figures["heavy"] = _phase(in_chromium, headless, SECONDS, skip=heavy_learner)
    figures["heavy"]["intents"] = _intents_per_run_s(others, window, time.time())
    figures["heavy"]["panels"] = _panel_lags(in_chromium, headless, window, time.time(), skip=heavy_learner)
    marks.append(cpu.mark())
    figures["phase_cpu"] = {"steady": CpuMeter.between(*marks[:2]), "heavy": CpuMeter.between(*marks[1:])}
    heavy.stop()
    toggles.stop()
    figures["heavy"]["campaigns"] = heavy.campaigns
    time.sleep(GRID_SETTLE_S)
    figures["grid"] = _grid_lags(grid, toggles.done)
    say("broadcast, then emergency stop…")
    figures["classroom"] = _broadcast_and_stop(class_, in_chromium, headless)
    figures["cpu"], figures["web"] = cpu.read(), web.read()
    figures["traffic"] = {"refused": traffic.refused, "skipped": traffic.skipped}
    traffic.stop()
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


PANELS_SETTLE_S = 3  # a delivery this close to a phase's end may not be drawn yet: it is not counted


def _panel_lags(in_chromium: list, headless: list, start: float, end: float, skip: dict) -> dict:
    """Panel freshness: for each delivery delivered in [start, end - PANELS_SETTLE_S], the time from its
    commit (finished_at, the database's clock on this machine) to the first moment its page's panels
    showed a delivered count that includes it (ms), in Chromium (as drawn, a MutationObserver) and in
    the headless pages (as the strip would draw it: the last panels answer's figure plus the stream's moves). The n-th delivery of a run is in the count once
    the count reaches n."""
    from labs.models import Delivery, DeliveryStatus

    found: dict[str, list[int]] = {"chromium": [], "headless": []}
    missed = 0
    pages = [("chromium", learner, page.evaluate("window.benchDelivered")) for learner, page in in_chromium] + \
        [("headless", learner, list(page.delivered)) for learner, page in headless]  # fmt: skip
    for kind, learner, shown in pages:
        if learner is skip:
            continue
        finished = Delivery.objects.filter(run_id=learner["run_id"], status=DeliveryStatus.DELIVERED).order_by("finished_at", "id")
        for ordinal, at in enumerate((t.timestamp() for t in finished.values_list("finished_at", flat=True)), 1):
            if not start <= at <= end - PANELS_SETTLE_S:
                continue
            drawn = next((when for count, when in shown if count >= ordinal and when >= at - 0.001), None)
            if drawn is None:
                missed += 1
            else:
                found[kind].append(int((drawn - at) * 1000))
    return {kind: _spread(lags) for kind, lags in found.items()} | {"missed": missed}


def _spread(values: list[int]) -> dict:
    from labs.pipeline.metrics import percentile

    return {"n": len(values), "p50": percentile(values, 0.5), "p95": percentile(values, 0.95), "max": max(values, default=None)}


def _intents_per_run_s(learners: list[dict], start: float, end: float) -> float:
    from datetime import datetime, timezone

    from labs.models import NotificationIntent

    runs = [learner["run_id"] for learner in learners]
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
    # The phases' own faults go first, so the stop clears only what the broadcast set; only where there
    # are some, since each clear sends the run's page for its fault panel.
    for run_id, settings in faults.all_faults_of(run_ids).items():
        if settings:
            faults.clear_faults(run_id)
    time.sleep(GRID_SETTLE_S)
    instructor, workshop = class_["instructor"], class_["workshop"]
    grid = instructor.get(f"/workshops/{workshop.pk}/", htmx=False)  # its CSRF token, and where its forms post
    lane = {action: re.search(rf'hx-post="([^"]*/{workshop.pk}/{action})"', grid)[1] for action in ("broadcasts", "stop")}
    found = {}
    # 1. The broadcast.
    asked = time.time()
    watching = _watch_faults(run_ids, lambda settings: settings.get("email-primary") == {"down": True})
    response = _timed_post(instructor, lane["broadcasts"],
                           {"target": "email-primary", "provider-down": "on", "duration_s": "60", "to": "everyone"})  # fmt: skip
    in_force = watching.result()
    found["broadcast"] = {"answered": response - asked, "in_force": in_force - asked,
                          **_told(asked, "Injected by your instructor", "instructor-fault", in_chromium, headless)}  # fmt: skip
    time.sleep(3)
    # 2. The emergency stop.
    asked = time.time()
    watching = _watch_faults(run_ids, lambda settings: settings == {})
    response = _timed_post(instructor, lane["stop"], {})
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


def _told(asked: float, text: str, testid: str, in_chromium: list, headless: list, wait_s: float = 30) -> dict:
    """When the last page got the classroom event (and, in Chromium, when its classroom bar showed it), after `asked`."""
    deadline = time.monotonic() + wait_s
    heard: dict[str, float] = {}
    bars: dict[str, float] = {}
    while time.monotonic() < deadline and (len(heard) < len(in_chromium) + len(headless) or len(bars) < len(in_chromium)):
        for learner, page in headless:
            at = next((at for at, said in page.classroom if at >= asked and text in said), None)
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


# --- The report ------------------------------------------------------------------------------------------


def _ms(value) -> str:
    return "n/a" if value is None else f"{value:,} ms"


def _s_ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else _ms(round(seconds * 1000))


def _report(f: dict) -> None:
    """A table: each figure, what was measured, and the issue's goal where it sets one."""
    steady, heavy, grid, cpu = f["steady"], f["heavy"], f["grid"], f["cpu"]
    rows = []
    for kind, label in (("chromium", "Chromium"), ("headless", "headless")):
        s = steady[kind]
        rows.append((f"(a) event → learner page p95, {label} pages", f"{_ms(s['p95'])} (p50 {_ms(s['p50'])}, max {_ms(s['max'])}; "
                     f"{s['n']:,} events on {f[kind]} pages)", ""))  # fmt: skip
    for phase in ("steady", "heavy"):
        panels = f[phase]["panels"]
        for kind, label in (("chromium", "Chromium, as drawn"), ("headless", "headless, as fetched")):
            p = panels[kind]
            rows.append((f"(a') delivery → panels' count p95, {phase}, {label}", f"{_ms(p['p95'])} (p50 {_ms(p['p50'])}, max {_ms(p['max'])}; "
                         f"{p['n']:,} deliveries)" + (f"; {panels['missed']} never shown" if kind == "headless" and panels["missed"] else ""),
                         "≤ 1 s" if kind == "chromium" else ""))  # fmt: skip
    g = grid["steady"]
    rows.append(("(b) change → grid tile p95", f"{_ms(g['p95'])} (p50 {_ms(g['p50'])}; {g['n']} learner faults set or cleared"
                 + (f", {grid['missed']} never shown" if grid["missed"] else "") + "; the grid polls every 2 s)", ""))  # fmt: skip
    rows.append(("    a grid refresh, in the instructor's browser", f"p50 {_ms(grid['refresh']['p50'])}, p95 {_ms(grid['refresh']['p95'])}", ""))
    for key, label, what in (("broadcast", "(c) broadcast", "in force in every run"), ("stop", "(d) emergency stop", "every fault cleared")):
        c = f["classroom"][key]
        own = f", {_ms(c['own_ms'])} by its own count" if "own_ms" in c else ""
        rows.append((f"{label}: {what}", f"{_s_ms(c['in_force'])} (the request answered in {_s_ms(c['answered'])}{own})", "≤ 1 s"))
        told = _s_ms(c["all_told"]) if c["all_told"] is not None else f"only {c['told']} of {c['pages']} pages in 30 s"
        bars = _s_ms(c["all_bars"]) if c["all_bars"] is not None else f"{c['bars']} of {f['chromium']}"
        rows.append(("    every page's classroom event; every Chromium bar", f"{told}; {bars}", ""))
    before, during = steady["others"]["p95"], heavy["others"]["p95"]
    rise = f"{(during / before - 1) * 100:+.0f}%" if before and during is not None else "n/a"
    rows.append(("(e) the other runs' page p95, one run under a heavy fault", f"{_ms(before)} → {_ms(during)} ({rise}); grid tile p95 "
                 f"{_ms(grid['steady']['p95'])} → {_ms(grid['heavy']['p95'])}", "< +20%"))  # fmt: skip
    rows.append(("    the heavy run (email-primary down)", f"{heavy['campaigns']} campaigns of 1,000 in {SECONDS:.0f} s; its own page p95 "
                 f"{_ms(heavy['heavy run']['p95'])}", ""))  # fmt: skip
    steady_cpu, heavy_cpu = ({name: value for name, value in f["phase_cpu"][phase].items() if "(load)" not in name} for phase in ("steady", "heavy"))
    rows.append(("    server cores, steady → heavy phase", f"{sum(steady_cpu.values()):.2f} → {sum(heavy_cpu.values()):.2f}: " + ", ".join(
        f"{name} {steady_cpu[name]:.2f} → {heavy_cpu[name]:.2f}" for name in steady_cpu), ""))  # fmt: skip
    server = {name: value for name, value in cpu["per_s"].items() if "(load)" not in name}
    load = {name.replace(" (load)", ""): value for name, value in cpu["per_s"].items() if "(load)" in name}
    rows.append(("(f) server CPU s per s of session", f"{sum(server.values()):.2f} of {os.cpu_count()} cores over {cpu['seconds']:.0f} s: "
                 + ", ".join(f"{name} {value:.2f}" for name, value in server.items()), ""))  # fmt: skip
    rows.append(("    the load generators, apart", ", ".join(f"{name} {value:.2f}" for name, value in load.items())
                 + (" (the driver also does the intake of every intent: server work)" if TRAFFIC == "server" else ""), ""))  # fmt: skip
    width = max(len(label) for label, _, _ in rows)
    say(f"{'figure':<{width}}  measured  [goal]")
    for label, measured, goal in rows:
        say(f"{label:<{width}}  {measured}" + (f"  [goal {goal}]" if goal else ""))
    t = f["traffic"]
    say(f"traffic ({TRAFFIC}): {INTENTS_PER_S} intents/s asked of every run; accepted {steady['intents']:.2f}/s per run while steady, "
        f"{heavy['intents']:.2f}/s during the heavy fault; {t['skipped']} ticks left out (the run's previous one unanswered), "
        f"{t['refused']} refused")  # fmt: skip
    web = f["web"]
    say(f"web process: its 2 workers busy {web['busy']:.0%} of the time, {web['errors']} answers 5xx; requests/s (time in the worker p50/p95): " + ", ".join(
        f"{kind} {w['per_s']:.1f} ({_ms(w['p50'])}/{_ms(w['p95'])})" for kind, w in web["kinds"].items()))  # fmt: skip


if __name__ == "__main__":
    main()
