"""Live-view latency: a state change in a run → its row in the lab page, in real Chromium.

Steps:
1. A fresh SQLite database, a Redis of its own and gunicorn with 2 sync workers, as
   `make run` starts the web process (DEBUG off, as in production).
2. PAGES learners, each with a run of their own, and their lab page open in Debian's
   Chromium (one browser context per learner, so each page has its own session).
3. Each round, every run gets one real state change (a notification accepted by the
   pipeline's intake: intent and outbox row written, `accepted` emitted), at a random
   moment of a ROUND_S window, so the pages see changes at the rate a busy class would.
   No relay runs, so nothing else moves and every event is one the bench made.
4. Each page notes, for every event, the time from the event's emission to its row in
   the page's DOM (the same machine's clock on both sides). The page also refreshes its
   heavy panels after events, as it does for learners; that load is part of the number.
5. Print p50/p95 with 1 page and with PAGES pages open at once, and their ratio.
"""

import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import port_pair  # noqa: E402
from tests.harness import (  # noqa: E402
    BASE_DIR,
    ServiceProcess,
    http_status,
    python_argv,
    start_embedded_redis,
    wait_for,
)

PAGES = int(os.environ.get("BENCH_PAGES", 100))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 12))
ROUND_S = float(os.environ.get("BENCH_ROUND_SECONDS", 2.0))
LAB = "dead-letters-poison"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="faultline-live-bench-"))
    redis_server, redis_url = start_embedded_redis(workdir)
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}", "REDIS_URL": redis_url,
           "FAULTLINE_REDIS_PREFIX": "bench:", "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "0",
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "FAULTLINE_REDIS_PREFIX", "DJANGO_SETTINGS_MODULE", "DEBUG")})
    import subprocess

    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=BASE_DIR, env=env, check=True)
    import django

    django.setup()
    port = port_pair()
    web = ServiceProcess("web", python_argv("-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                                            "--no-control-socket"), env, workdir).start()  # fmt: skip
    # The live stream process, as `make run` starts it: the page finds it on the next port.
    live = ServiceProcess("live", python_argv("-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
                                              "--port", str(port + 1), "--no-access-log", "--log-level", "warning"),
                          env, workdir).start()  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_status(base + "/labs/") == 200, 30, "the web process", interval=0.2)
        learners = _learners(PAGES)
        from playwright.sync_api import sync_playwright

        from tests.conftest import CHROMIUM_ARGS

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                # One page sees a change every second, three times as many rounds: enough samples for a p95.
                one = _measure(browser, base, learners[:1], rounds=ROUNDS * 3, round_s=ROUND_S / 2)
                many = _measure(browser, base, learners, rounds=ROUNDS, round_s=ROUND_S)
            finally:
                browser.close()
        _report(one, many)
    finally:
        live.stop()
        web.stop()
        redis_server.stop()


def _learners(count: int) -> list[tuple[int, str]]:
    """`count` learners with a run of the lab each: (run id, session cookie)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from labs.models import RunLab
    from labs.runs import create_run

    found = []
    for n in range(count):
        user = get_user_model().objects.create_user(f"bench-learner-{n}")
        run = create_run(user)
        RunLab.objects.create(run=run, owner=user, lab=LAB)
        client = Client()
        client.force_login(user)
        found.append((run.pk, client.cookies["sessionid"].value))
    return found


def _measure(browser, base: str, learners: list[tuple[int, str]], rounds: int, round_s: float) -> dict:
    from labs.models import LabRun
    from labs.pipeline import traffic
    from labs.pipeline.metrics import percentile

    contexts, pages = [], []
    for run_id, session in learners:
        context = browser.new_context(base_url=base, viewport={"width": 1280, "height": 900})
        context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
        page = context.new_page()
        page.goto(f"/labs/{LAB}/")
        contexts.append(context)
        pages.append(page)
    for page in pages:
        page.wait_for_selector("[data-live-status][data-state=live]", timeout=60_000)
    visible = sum(page.evaluate("document.visibilityState") == "visible" for page in pages)
    streaming = sum(page.evaluate("window.faultlineLive.source") == "live" for page in pages)
    time.sleep(1)
    for page in pages:
        page.evaluate("window.faultlineLive.lags.length = 0")

    run_ids = [run_id for run_id, _ in learners]
    run_by_id = LabRun.objects.in_bulk(run_ids)
    emitted = 0
    for round_number in range(rounds):
        moments = sorted((random.uniform(0, round_s), run_id) for run_id in run_ids)
        started = time.monotonic()
        for at, run_id in moments:
            delay = started + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            traffic.send_one(run_by_id[run_id], user_id=round_number % 50 + 1, template="password_reset")
            emitted += 1
    time.sleep(1.5)  # let the last changes land
    lags, panels, counted = [], 0, 0
    for page in pages:
        live = page.evaluate("({lags: window.faultlineLive.lags, panels: window.faultlineLive.panels})")
        lags.extend(int(lag * 1000) for lag in live["lags"])
        panels += live["panels"]
        counted += len(live["lags"])
    for context in contexts:
        context.close()
    return {
        "pages": len(pages),
        "visible": visible,
        "streaming": streaming,
        "emitted": emitted,
        "seen": counted,
        "panel_refreshes": panels,
        "p50": percentile(lags, 0.50),
        "p95": percentile(lags, 0.95),
        "max": max(lags, default=None),
    }


def _report(one: dict, many: dict) -> None:
    for result in (one, many):
        print(f"{result['pages']:>3} page(s) open ({result['visible']} visible, {result['streaming']} on the live stream): "
              f"{result['emitted']} state changes, "
              f"{result['seen']} seen in pages; event → row in the page p50 {result['p50']} ms, p95 {result['p95']} ms, "
              f"max {result['max']} ms; {result['panel_refreshes']} panel refreshes")  # fmt: skip
    ratio = many["p95"] / one["p95"] if one["p95"] else float("nan")
    print(f"ratio: p95 with {many['pages']} pages / p95 with 1 page = {ratio:.2f} (goal: p95 ≤ 300 ms with 100 pages)")



if __name__ == "__main__":
    main()
