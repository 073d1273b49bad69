"""The test harness every part of Faultline reuses.

- `redis_service` (session, automatic): REDIS_URL when given, with a key prefix of
  this run's own; otherwise an embedded redis-server on a free port.
- `start_worker` / `celery_worker`: a real Celery worker process on the test
  database (a file for SQLite, the test database for PostgreSQL) and the test Redis.
- `start_relay` / `relay`: the relay management command as a real process.
- `browser`, `page`, `screenshot`: Debian's Chromium through Playwright against
  pytest-django's live server; never a downloaded browser.

Tests that use a worker, the relay or the live server need committed rows, so they
run with `transactional_db` (the live server asks for it itself).
"""

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import BASE_DIR, ServiceProcess, free_port, python_argv, start_embedded_redis, start_live_process, wait_for

# Playwright's sync API keeps an event loop in the test thread; Django would then
# refuse ORM calls from that thread although nothing here runs concurrently.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("FAULTLINE_TEST_ARTIFACTS", BASE_DIR / "test-artifacts"))
# Flags that keep a headless Chromium from reaching for the network on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


# --- Redis -------------------------------------------------------------------------


@dataclass
class RedisService:
    url: str
    prefix: str

    def client(self):
        from config.redis_client import get_redis

        return get_redis()


def point_at_redis(url: str, prefix: str) -> None:
    """Make this process (settings and the Celery app) use the test Redis and prefix."""
    from django.conf import settings
    from django.test.signals import setting_changed

    from config.celery import app
    from config.settings import redis_cache

    transport = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "global_keyprefix": prefix}
    settings.REDIS_URL = url
    settings.REDIS_KEY_PREFIX = prefix
    settings.CELERY_BROKER_URL = url
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = transport
    settings.CACHES = redis_cache(url, prefix)
    setting_changed.send(sender=None, setting="CACHES", value=settings.CACHES, enter=True)  # drops connected caches
    app.conf.update(broker_url=url, broker_transport_options=transport)


@pytest.fixture(scope="session")
def process_logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("processes")


@pytest.fixture(scope="session", autouse=True)
def redis_service(process_logs):
    prefix = f"faultline-test-{uuid.uuid4().hex[:12]}:"
    server = None
    if os.environ.get("REDIS_URL"):
        url = os.environ["REDIS_URL"]
    else:
        server, url = start_embedded_redis(process_logs)
    point_at_redis(url, prefix)
    service = RedisService(url, prefix)
    yield service
    if server is not None:
        server.stop()
    else:
        client = service.client()
        for name in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(name)


@pytest.fixture(autouse=True)
def no_runs_in_redis(redis_service):
    """Each test starts with no run's or workshop's state in Redis (events, faults' counters, breakers,
    grids), and no lab page counted as open (labs/pace.py). A test whose database rolls back gives its rows' ids back (SQLite's AUTOINCREMENT counts only
    committed rows), but Redis keeps what they wrote: the next test's new run would read an earlier run's
    events as its own. A site never reuses an id, so this is the tests' matter, not the code's."""
    from config.redis_client import key

    client = redis_service.client()
    for pattern in (key("run", "*"), key("workshop", "*"), key("live", "open-pages")):
        names = list(client.scan_iter(match=pattern, count=1000))
        if names:
            client.delete(*names)


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    """Each test counts log-ins, sign-ups and API calls from zero, as each starts with an empty database."""
    from django.test import override_settings

    # Not the `settings` fixture: an autouse fixture that took it would undo a test's settings
    # only after the test's own fixtures were torn down (with Redis still pointed elsewhere, say).
    with override_settings(RATELIMIT_CACHE_PREFIX=f"rl:{uuid.uuid4().hex[:8]}:"):
        yield


# --- Worker and relay processes ------------------------------------------------------


def database_url_for_processes() -> str:
    """The URL of the database this test session uses, for processes we start."""
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = f"{db['USER']}:{db['PASSWORD']}@" if db["USER"] else ""
    return f"postgres://{auth}{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(scope="session")
def process_env(redis_service, django_db_setup) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url_for_processes(),
        "REDIS_URL": redis_service.url,
        "FAULTLINE_REDIS_PREFIX": redis_service.prefix,
        "PYTHONUNBUFFERED": "1",
    }


def worker_argv(concurrency: int = 2, *extra_args: str) -> list[str]:
    """A Celery worker on every queue in settings, with a unique name."""
    return python_argv(
        "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO", "--concurrency", str(concurrency),
        "--without-mingle", "--without-gossip", "--hostname", f"test-{uuid.uuid4().hex[:8]}@%h", *extra_args,
    )  # fmt: skip


def _wait_for_heartbeat(proc: ServiceProcess, process: str, timeout: float = 30) -> None:
    from config.heartbeat import alive

    def up():
        if not proc.running():
            raise AssertionError(f"the {proc.name} exited at start:\n{proc.output()[-4000:]}")
        return any(name.endswith(f":{proc.pid}") for name in alive(process))

    try:
        wait_for(up, timeout, f"the {proc.name}'s heartbeat")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{proc.output()[-4000:]}") from None


@pytest.fixture
def start_worker(process_env, process_logs):
    """Start a real Celery worker process; every worker started is stopped after the test."""
    started: list[ServiceProcess] = []

    def start(*extra_args: str, concurrency: int = 2) -> ServiceProcess:
        argv = worker_argv(concurrency, "-I", "tests.probe_tasks", *extra_args)
        proc = ServiceProcess("worker", argv, process_env, process_logs).start()
        started.append(proc)
        urgent_only = "urgent" in extra_args and ("--queues" in extra_args or "-Q" in extra_args)
        _wait_for_heartbeat(proc, "urgent" if urgent_only else "worker")
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def celery_worker(start_worker, transactional_db) -> ServiceProcess:
    return start_worker()


@pytest.fixture
def start_relay(process_env, process_logs):
    started: list[ServiceProcess] = []

    def start(*extra_args: str) -> ServiceProcess:
        proc = ServiceProcess("relay", python_argv("manage.py", "relay", *extra_args), process_env, process_logs)
        started.append(proc.start())
        _wait_for_heartbeat(proc, "relay")
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def relay(start_relay, transactional_db) -> ServiceProcess:
    return start_relay()


@pytest.fixture
def live_process(process_env, process_logs, transactional_db) -> ServiceProcess:
    """The live event-stream process (uvicorn), as `make run` starts it, on a free port (`.port`)."""
    port = free_port()
    proc = start_live_process(port, process_env, process_logs)
    proc.port = port
    _wait_for_heartbeat(proc, "live")
    yield proc
    proc.stop()


def start_pipeline(env: dict[str, str], logs: Path, concurrency: int = 2) -> tuple[ServiceProcess, ServiceProcess]:
    """A worker and a relay, for a module-scoped fixture; the caller stops them."""
    worker = ServiceProcess("worker", worker_argv(concurrency), env, logs).start()
    relay = ServiceProcess("relay", python_argv("manage.py", "relay"), env, logs).start()
    _wait_for_heartbeat(worker, "worker")
    _wait_for_heartbeat(relay, "relay")
    return worker, relay


@pytest.fixture(scope="module")
def worker_and_relay(process_env, process_logs):
    """One worker and one relay for a whole module; each test's rows are its own."""
    worker, relay = start_pipeline(process_env, process_logs)
    yield worker, relay
    relay.stop()
    worker.stop()


# --- Browser ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"browser tests drive Debian's Chromium at {CHROMIUM}, which is not installed: "
            "run `apt-get install chromium` (or set CHROMIUM_PATH to another Chromium)."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server, request):
    """A fresh browser tab (no cookies) pointed at the live server."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    yield tab
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        path = ARTIFACTS / "failures" / f"{request.node.name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(path), full_page=True)
    context.close()


@pytest.fixture
def screenshot(page):
    """Save the page as test-artifacts/screenshots/<name>.png for a reviewer to look at."""

    def take(name: str) -> Path:
        path = ARTIFACTS / "screenshots" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


# --- Reporting ---------------------------------------------------------------------------


# Only browser tests may rerun (a real Chromium on a loaded 2-core machine can miss a paint);
# a test that checks a pipeline invariant never does: if one is flaky, it hides a bug.
# Every rerun is named in the summary ("R") with the traceback of its first failure.


# `make test` runs the suite as two halves side by side (pytest-xdist, `-n 2 --dist loadgroup`): most of its time
# is spent waiting on real workers, relays and browsers, not on the CPU. Whole files go to one half, so a
# module's processes start once; each half keeps pytest-django's order (every test on a rolled-back database
# before the first one that flushes it, and the browser tests last). The halves are balanced with these
# seconds, measured with --durations on 2026-12-01; any other file counts SECONDS_PER_TEST a test.
MEASURED_SECONDS = {
    "test_labs_browser.py": 240, "test_make_run.py": 160, "test_api_fuzz.py": 150, "test_labs_sync_chain_browser.py": 125,
    "test_labs_saga_browser.py": 80, "test_labs_faults.py": 80, "test_chaos.py": 50, "test_courseware_browser.py": 40,
    "test_labs_discovery.py": 40, "test_practice_rubric.py": 35, "test_hostile_input.py": 35, "test_backup.py": 25,
    "test_labs_pipeline.py": 25, "test_proxy.py": 25,
}  # fmt: skip
SECONDS_PER_TEST = 0.5


def suite_halves(items) -> dict[str, str]:
    """Each test file's half, "a" or "b": the heaviest files first, each to the half with less so far."""
    seconds: dict[str, float] = {}
    for item in items:
        name = item.path.name
        seconds[name] = MEASURED_SECONDS.get(name, seconds.get(name, 0) + SECONDS_PER_TEST)
    halves, load = {}, {"a": 0.0, "b": 0.0}
    for name, cost in sorted(seconds.items(), key=lambda pair: (-pair[1], pair[0])):
        half = min(load, key=load.get)
        halves[name], load[half] = half, load[half] + cost
    return halves


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    halves = suite_halves(items)
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "browser" in fixtures:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.flaky(reruns=2, reruns_delay=1))
        if {"start_worker", "celery_worker"} & fixtures:
            item.add_marker(pytest.mark.worker)
        item.add_marker(pytest.mark.xdist_group(halves[item.path.name]))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter):
    for report in terminalreporter.stats.get("rerun", []):
        terminalreporter.write_sep("-", f"rerun: first failure of {report.nodeid}")
        terminalreporter.write_line(str(report.longrepr))
    def browser_reports(outcome):
        return [r for r in terminalreporter.stats.get(outcome, []) if getattr(r, "when", "") == "call" and "browser" in r.keywords]

    passed, failed = len(browser_reports("passed")), len(browser_reports("failed"))
    if passed or failed:
        terminalreporter.write_line(f"browser tests in real Chromium ({CHROMIUM}): {passed} passed, {failed} failed")
