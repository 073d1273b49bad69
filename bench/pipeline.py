"""Campaign throughput on SQLite and on PostgreSQL, measured in one run: batch API → outbox →
relay → workers → provider → attempt recorded.

Steps:
1. Two passes, one after the other, each in a process of its own: SQLite (a fresh file), then
   PostgreSQL: a cluster of the bench's own, as installed (bench._common.private_postgres), when
   this machine has PostgreSQL's binaries; else, or when BENCH_POSTGRES_URL names a server, a fresh
   database created on that server (default postgres://postgres@127.0.0.1:5432/postgres), dropped
   at the end; skipped, and said so, when no PostgreSQL answers. BENCH_DATABASES=sqlite or
   =postgresql runs one of them. The pair runs BENCH_ROUNDS times (3 by default), one after the
   other: on a shared machine the same code's rate drifts by a fifth or more between minutes, so the
   bench prints each round's ratio and their median.
2. Each pass: a Redis of its own, gunicorn, one Celery worker (2 processes) and the relay, as
   `make run` starts them; the baseline (how fast the same worker drains no-op Celery tasks
   from the same Redis); then for BENCH_SECONDS seconds, campaign batches of 1,000 posted to
   the API (two requests at a time, one per web worker) whenever fewer than BACKLOG
   deliveries are unfinished, with no provider latency.
3. Each pass prints delivered intents/s over the window, end-to-end latency (accepted →
   delivered) p50/p95, the ratio to the no-op drain rate, where the backlog waited and the
   CPU seconds per 1,000 delivered of each process (PostgreSQL's: this database's backends).
4. Both passes side by side, with the ratio PostgreSQL / SQLite.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import cpu_seconds, private_postgres, wait_for_quiet  # noqa: E402
from tests.chaos import Redis  # noqa: E402
from tests.harness import BASE_DIR, ServiceProcess, free_port, http_status, python_argv, wait_for  # noqa: E402

DURATION = float(os.environ.get("BENCH_SECONDS", 30))
BACKLOG = 4000
SENDERS = 2  # campaign requests in flight at once, one per web worker
NOOP_TASKS = 10_000
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))  # SQLite then PostgreSQL, this many times: the machine's pace drifts
ANALYZE_EVERY = 10  # seconds; PostgreSQL only (see below)
# Where the backlog waits is sampled this often: its counts cost the database a query of tens of ms, CPU the
# pipeline would otherwise have (on PostgreSQL the pass uses both cores; SQLite's leaves some idle to absorb it).
SAMPLE_EVERY = 5
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
DATABASES = ("sqlite", "postgresql")


def main() -> None:
    if sys.argv[1:2] == ["--pass"]:
        results = campaign_pass()
        Path(sys.argv[2]).write_text(json.dumps(results))
        return
    chosen = [name.strip() for name in os.environ.get("BENCH_DATABASES", ",".join(DATABASES)).split(",")]
    unknown = set(chosen) - set(DATABASES)
    if unknown:
        sys.exit(f"BENCH_DATABASES: unknown {', '.join(sorted(unknown))}; choose from {', '.join(DATABASES)}")
    workdir = Path(tempfile.mkdtemp(prefix="faultline-bench-"))
    rounds = []
    own = None if "postgresql" not in chosen or os.environ.get("BENCH_POSTGRES_URL") else private_postgres()
    try:
        for number in range(1, ROUNDS + 1):
            results = {}
            if "sqlite" in chosen:
                results["SQLite"] = _run_pass(f"sqlite:///{workdir / f'bench-{number}.sqlite3'}", workdir)
            if "postgresql" in chosen:
                database = _fresh_postgres(own[0] if own else None)
                if database is not None:
                    url, drop = database
                    try:
                        results["PostgreSQL"] = _run_pass(url, workdir)
                    finally:
                        drop()
            _compare(results, f"round {number} of {ROUNDS}, " if ROUNDS > 1 else "")
            rounds.append(results)
    finally:
        if own:
            own[1]()
    ratios = [r["PostgreSQL"]["rate"] / max(r["SQLite"]["rate"], 1) for r in rounds if len(r) == 2]
    if len(ratios) > 1:
        print(f"ratio PostgreSQL / SQLite by round: {', '.join(f'{x:.2f}' for x in ratios)}; median {statistics.median(ratios):.2f}")


def _run_pass(database: str, workdir: Path) -> dict:
    """One pass in a process of its own (Django binds its database at start-up); its results."""
    out = workdir / f"result-{uuid.uuid4().hex[:6]}.json"
    print(f"before the pass: {wait_for_quiet()}", flush=True)
    subprocess.run([sys.executable, __file__, "--pass", str(out)], env={**os.environ, "DATABASE_URL": database}, check=True)
    return json.loads(out.read_text())


def _fresh_postgres(server: str | None = None):
    """(URL, drop) of a new database on the PostgreSQL server, or None (said) when none answers."""
    import psycopg

    server = server or os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    name = f"faultline_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with psycopg.connect(server, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f"CREATE DATABASE {name}")
    except psycopg.Error as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"PostgreSQL pass SKIPPED: no PostgreSQL at {server} ({first_line}); "
              "set BENCH_POSTGRES_URL to a server where this bench may create a database")  # fmt: skip
        return None

    def drop():
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    return urlsplit(server)._replace(path=f"/{name}").geturl(), drop


def _compare(results: dict, heading: str = "") -> None:
    print(f"== campaign, both databases in this run ({heading}"
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, {os.cpu_count()} cores)")  # fmt: skip
    for name, found in results.items():
        cpu = ", ".join(f"{role} {seconds:.2f}" for role, seconds in found["cpu_per_thousand"].items())
        print(f"{name:>10}: {found['rate']:,.0f} delivered/s, p50 {found['p50']} ms, p95 {found['p95']} ms; "
              f"CPU s per 1,000 delivered: {cpu}")  # fmt: skip
    if len(results) == 2:
        print(f"ratio PostgreSQL / SQLite: {results['PostgreSQL']['rate'] / max(results['SQLite']['rate'], 1):.2f}")


def campaign_pass() -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="faultline-bench-"))
    redis = Redis(workdir)
    redis.start()
    env = {**os.environ, "REDIS_URL": redis.url, "FAULTLINE_REDIS_PREFIX": "bench:",
           "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONUNBUFFERED": "1"}  # fmt: skip
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=BASE_DIR, env=env, check=True)
    os.environ.update({k: env[k] for k in ("REDIS_URL", "FAULTLINE_REDIS_PREFIX", "DJANGO_SETTINGS_MODULE")})
    os.environ["PGAPPNAME"] = "bench driver"  # this process's own queries (PostgreSQL's CPU is split by client)
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from bench._server_load import PostgresBackends
    from config.celery import app
    from labs.models import Delivery, Recipient
    from labs.pipeline.metrics import percentile
    from labs.runs import create_run

    vendor = django.db.connection.vendor
    port = free_port()
    web = ServiceProcess("web", python_argv("-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                                            "--no-control-socket"), _named(env, "web"), workdir).start()  # fmt: skip
    worker = ServiceProcess("worker", python_argv("-m", "celery", "-A", "config", "worker", "-l", "WARNING", "-c", "2",
                                                  "--without-mingle", "--without-gossip", "-I", "tests.probe_tasks"),
                            _named(env, "worker"), workdir).start()  # fmt: skip
    processes = [web, worker]
    try:
        time.sleep(3)
        # The baseline: one no-op Celery task per message, same worker, same Redis.
        # Queue them all on a queue the worker is not consuming yet, then time the drain alone.
        import redis as redis_lib

        client = redis_lib.Redis.from_url(redis.url)
        with app.producer_or_acquire() as producer:
            for _ in range(NOOP_TASKS):
                app.send_task("tests.noop_task", queue="bench-noop", producer=producer)
        app.control.add_consumer("bench-noop", reply=False)
        started = time.monotonic()
        wait_for(lambda: client.llen("bench:bench-noop") == 0, 300, "the no-op drain", interval=0.02)
        noop_rate = NOOP_TASKS / (time.monotonic() - started)
        app.control.cancel_consumer("bench-noop", reply=False)
        print(f"{vendor}: baseline: bare Celery drained {NOOP_TASKS} no-op tasks at {noop_rate:,.0f} tasks/s")

        relay = ServiceProcess("relay", python_argv("manage.py", "relay"), _named(env, "relay"), workdir).start()
        processes.append(relay)
        owner = get_user_model().objects.create(username=f"bench-{uuid.uuid4().hex[:6]}")
        run = create_run(owner)
        Recipient.objects.filter(run=run).update(quiet_start=None, quiet_end=None, email_opt_in=True)
        wait_for(lambda: http_status(f"http://127.0.0.1:{port}/healthz") == 200, 30, "the web process", interval=0.2)

        # The campaign, sustained.
        roles = {"web": web.pid, "worker": worker.pid, "relay": relay.pid, "redis": redis.server.pid, "bench driver": os.getpid()}
        cpu_before = {role: cpu_seconds(pid, role != "bench driver") for role, pid in roles.items()}
        postgres = PostgresBackends().start()  # on SQLite the database's work is inside the processes above
        posted, in_flight = 0, []
        window_start = time.time()
        deadline = time.monotonic() + DURATION
        samples, next_sample, next_analyze = [], 0.0, time.monotonic() + ANALYZE_EVERY
        analyze_by_hand = vendor == "postgresql" and _autovacuum_off()
        with ThreadPoolExecutor(max_workers=SENDERS) as senders:
            while time.monotonic() < deadline:
                for request in [r for r in in_flight if r.done()]:
                    request.result()  # a failed request stops the bench
                in_flight = [r for r in in_flight if not r.done()]
                unfinished = _unfinished(run.pk)
                if time.monotonic() >= next_sample:
                    samples.append(_where_waiting(run, client))
                    next_sample = time.monotonic() + SAMPLE_EVERY
                if analyze_by_hand and time.monotonic() >= next_analyze:
                    # What autovacuum does as tables grow, on a server that runs with it off (this machine's
                    # shared one, when BENCH_POSTGRES_URL names it): the bench would measure a server nobody deploys.
                    with django.db.connection.cursor() as cursor:
                        cursor.execute("ANALYZE")
                    next_analyze = time.monotonic() + ANALYZE_EVERY
                if unfinished + 1000 * len(in_flight) < BACKLOG and len(in_flight) < SENDERS:
                    in_flight.append(senders.submit(_post, f"http://127.0.0.1:{port}/api/notifications/batch",
                                                    _campaign_body(posted), run.api_key))  # fmt: skip
                    posted += 1000
                else:
                    time.sleep(0.05)
        window_end = time.time()
        cpu = {role: cpu_seconds(pid, role != "bench driver") - cpu_before[role] for role, pid in roles.items()}
        postgres_seconds = postgres.stop()
        if postgres_seconds is not None:
            cpu["PostgreSQL"] = postgres_seconds
            postgres_by_client = postgres.by_client()

        # What came out the other end within the window.
        from datetime import datetime, timezone

        start_dt = datetime.fromtimestamp(window_start, timezone.utc)
        end_dt = datetime.fromtimestamp(window_end, timezone.utc)
        done = list(
            Delivery.objects.filter(run=run, status="delivered", finished_at__gte=start_dt, finished_at__lt=end_dt)
            .values_list("created_at", "finished_at")
        )
        rate = len(done) / (window_end - window_start)
        latencies = [int((f - c).total_seconds() * 1000) for c, f in done]
        p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
        print(f"{vendor}: campaign: posted {posted:,} intents in {DURATION:.0f} s; delivered {len(done):,} in the window")
        print(f"{vendor}: campaign: {rate:,.0f} delivered intents/s; end-to-end p50 {p50} ms, p95 {p95} ms "
              "(accepted → provider ledger → attempt recorded)")  # fmt: skip
        print(f"{vendor}: ratio: pipeline / bare Celery no-op drain = {rate / noop_rate:.2f}")
        stages = {stage: sum(s[stage] for s in samples) / len(samples) for stage in samples[0]}
        print(f"{vendor}: backlog, mean of per-second samples (where unfinished deliveries wait): "
              + ", ".join(f"{stage} {count:,.0f}" for stage, count in stages.items()))  # fmt: skip
        per_thousand = {role: seconds * 1000 / max(len(done), 1) for role, seconds in cpu.items()}
        print(f"{vendor}: CPU seconds per 1,000 delivered (each process with its children; PostgreSQL: this database's "
              "backends): " + ", ".join(f"{role} {seconds:.2f}" for role, seconds in per_thousand.items()))  # fmt: skip
        if postgres_seconds is not None:
            print(f"{vendor}: PostgreSQL's CPU seconds per 1,000 delivered, by the client its backend served: "
                  + ", ".join(f"{client} {seconds * 1000 / max(len(done), 1):.2f}" for client, seconds in sorted(postgres_by_client.items())))  # fmt: skip
        return {"rate": rate, "p50": p50, "p95": p95, "noop_rate": noop_rate, "cpu_per_thousand": per_thousand}
    finally:
        for proc in reversed(processes):
            proc.stop()
        redis.kill()
        django.db.connections.close_all()


def _autovacuum_off() -> bool:
    import django.db

    with django.db.connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        return cursor.fetchone()[0] == "off"


def _unfinished(run_id: int) -> int:
    """The run's deliveries not yet final, from its running counts (labs.pipeline.tally): a few rows.

    The driver asks about twenty times a second and must not eat the CPU it measures. Counting the
    rows by status did on PostgreSQL: each delivery row is rewritten three times, and without vacuum
    the (run, status) index keeps pointing at every dead version, so the count read the run's
    whole history (measured: 8 ms a call; the driver's backends went from 0.07-0.09 to 0.05 s of
    CPU per 1,000 delivered, the rest being the ANALYZE above).
    """
    from labs.models import TERMINAL
    from labs.pipeline import tally

    counts = tally.read(run_id)
    return counts.get("campaign_deliveries", 0) - sum(counts.get(tally.status(status), 0) for status in TERMINAL)


def _named(env: dict, role: str) -> dict:
    """The process's environment with its role as its PostgreSQL application_name (libpq reads PGAPPNAME)."""
    return {**env, "PGAPPNAME": role}


def _where_waiting(run, client) -> dict[str, int]:
    from labs.models import Delivery, OutboxRow
    from labs.pipeline.campaign import BATCH_SIZE
    from labs.pipeline.deliveries import on_broker

    batch_tasks = sum(client.llen(f"bench:{queue}") for queue in ("email", "sms", "push"))
    return {
        "outbox (unpublished)": OutboxRow.objects.filter(run=run, published_at=None).count(),
        f"in Redis (batches of {BATCH_SIZE})": batch_tasks * BATCH_SIZE,
        "queued, not claimed": on_broker(run.pk).values("delivery_id").distinct().count(),
        "sending": Delivery.objects.filter(run=run, status="sending").count(),
    }


def _campaign_body(first: int) -> bytes:
    """A campaign of 1,000 digests, items `first`… (each its own idempotency key), as the request's JSON.

    Written as text rather than through json.dumps of 1,000 dicts: the driver shares the cores it measures,
    and encoding was most of its CPU (0.02 s per 1,000 delivered)."""
    items = ",".join(f'{{"idempotency_key":"b{n}","user_id":{n % 50 + 1},"template":"weekly_digest","channels":["email"],'
                     f'"data":{{"count":3}}}}' for n in range(first, first + 1000))  # fmt: skip
    return f'{{"notifications":[{items}]}}'.encode()


def _post(url: str, body: bytes, key: str) -> None:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 202, response.read()


if __name__ == "__main__":
    main()
