"""Chaos: thousands of intents while the pipeline is being broken for real.

Steps:
1. Start a Redis of its own, a Celery worker and the relay, all pointed at it.
2. Accept N intents through the intake (campaign batches plus transactional messages).
3. Meanwhile: SIGKILL a worker child every second or so, SIGKILL the whole worker once
   and start it again, SIGKILL the relay once and start it again, and restart Redis
   once (empty: whatever it held is gone).
4. Wait until every delivery is finished and print the audit: it must show 0 lost,
   0 duplicate provider sends and nothing in flight.

Throughout, the harness supervises the worker the way systemd or Kubernetes would:
a worker process that exits, or that stops refreshing its heartbeat (a liveness
probe), is started again. A Celery worker can lose its broker connection in ways it
does not recover from by itself (kombu's Redis transport has had several such bugs),
so production needs that supervision too; the pipeline's job is to lose nothing meanwhile.

`make chaos` runs the long version on a fresh SQLite file; tests/test_chaos.py runs a
short one on the test database.
"""

import argparse
import os
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from tests.harness import BASE_DIR, ServiceProcess, free_port, python_argv, redis_server_binary, wait_for

FAST = {"LAB_SENDING_LEASE": "3", "LAB_REDELIVER_AFTER": "5", "HEARTBEAT_TTL": "4"}


class Redis:
    """A private redis-server that can be killed and started again on the same port."""

    def __init__(self, logs: Path):
        self.port = free_port()
        self.logs = logs
        self.server: ServiceProcess | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        argv = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.server = ServiceProcess("chaos-redis", argv, {}, self.logs).start()
        client = redis.Redis(port=self.port)

        def up():
            try:
                return client.ping()
            except redis.ConnectionError:
                return False

        wait_for(up, 10, "the chaos Redis")

    def kill(self) -> None:
        self.server.kill()


def worker_children(worker: ServiceProcess) -> list[int]:
    try:
        return [int(pid) for pid in Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()]
    except (FileNotFoundError, ValueError):
        return []


class Chaos:
    def __init__(self, env: dict, logs: Path, say=print):
        self.env = env
        self.logs = logs
        self.say = say
        self.worker: ServiceProcess | None = None
        self.relay: ServiceProcess | None = None
        self.worker_started_at = 0.0
        self.stats = {"children_killed": 0, "worker_killed": 0, "relay_killed": 0, "redis_restarted": 0,
                      "worker_restarted_by_supervisor": 0}  # fmt: skip

    def supervise(self) -> None:
        """Restart a worker that exited or whose heartbeat stopped (a liveness probe)."""
        import redis

        if self.worker is None or time.monotonic() - self.worker_started_at < 15:
            return
        alive = False
        if self.worker.running():
            try:
                client = redis.Redis.from_url(self.env["REDIS_URL"], socket_timeout=1)
                name = f"{self.env['FAULTLINE_REDIS_PREFIX']}heartbeat:worker"
                alive = bool(client.zrangebyscore(name, time.time() - 10, "+inf"))
            except redis.RedisError:
                return  # Redis itself is down: nothing to judge the worker by
        if not alive:
            self.say("supervisor: the worker is gone or its heartbeat stopped; starting a new one")
            self.worker.kill()
            self.start_worker()
            self.stats["worker_restarted_by_supervisor"] += 1

    def start_worker(self) -> None:
        argv = python_argv("-m", "celery", "-A", "config", "worker", "-l", "WARNING", "-c", "2",
                           "--without-mingle", "--without-gossip", "--hostname", f"chaos-{uuid.uuid4().hex[:6]}@%h")  # fmt: skip
        self.worker = ServiceProcess("chaos-worker", argv, self.env, self.logs).start()
        self.worker_started_at = time.monotonic()

    def start_relay(self) -> None:
        self.relay = ServiceProcess("chaos-relay", python_argv("manage.py", "relay"), self.env, self.logs).start()

    def stop(self) -> None:
        for proc in (self.relay, self.worker):
            if proc is not None:
                proc.stop()

    def unleash(self, redis: Redis, seconds: float, stop: threading.Event) -> None:
        """Break things for `seconds`: child kills throughout, each big outage once."""
        started = time.monotonic()
        plan = {seconds * 0.25: self._kill_worker, seconds * 0.45: self._kill_relay, seconds * 0.65: lambda: self._restart_redis(redis)}
        while not stop.is_set() and time.monotonic() - started < seconds:
            elapsed = time.monotonic() - started
            for at in sorted(plan):
                if elapsed >= at:
                    plan.pop(at)()
            self.supervise()
            children = worker_children(self.worker)
            if children:
                os.kill(random.choice(children), signal.SIGKILL)
                self.stats["children_killed"] += 1
            stop.wait(random.uniform(0.5, 1.5))

    def _kill_worker(self) -> None:
        self.say("chaos: SIGKILL the whole worker, start it again in 2 s")
        self.worker.kill()
        self.stats["worker_killed"] += 1
        time.sleep(2)
        self.start_worker()

    def _kill_relay(self) -> None:
        self.say("chaos: SIGKILL the relay, start it again in 2 s")
        self.relay.kill()
        self.stats["relay_killed"] += 1
        time.sleep(2)
        self.start_relay()

    def _restart_redis(self, redis: Redis) -> None:
        self.say("chaos: SIGKILL Redis and start it again, empty")
        redis.kill()
        time.sleep(1)
        redis.start()
        self.stats["redis_restarted"] += 1


def send_traffic(run, intents: int) -> None:
    """Campaign batches with transactional messages mixed in, accepted through the intake."""
    from labs.pipeline import intake
    from labs.pipeline.traffic import SAMPLE_DATA

    templates = ["weekly_digest", "weekly_digest", "password_reset", "order_shipped", "security_alert", "inapp_message"]
    sent = 0
    while sent < intents:
        size = min(250, intents - sent)
        batch = []
        for n in range(sent, sent + size):
            template = templates[n % len(templates)]
            batch.append(intake.IntentRequest(f"chaos-{n}", n % 50 + 1, template, data=SAMPLE_DATA[template]))
        intake.accept(run, batch)
        sent += size
        time.sleep(0.2)


def calm_run(owner):
    from labs.models import Recipient
    from labs.runs import create_run

    run = create_run(owner, retry_base_ms=200, retry_cap_ms=2000, max_attempts=8)
    Recipient.objects.filter(run=run).update(quiet_start=None, quiet_end=None)
    return run


def run_chaos(run, env: dict, logs: Path, intents: int, chaos_seconds: float, settle_timeout: float,
              say=print, redis: Redis | None = None) -> dict:  # fmt: skip
    from labs.pipeline.audit import audit

    if redis is None:
        redis = Redis(logs)
        redis.start()
    env = {**env, **FAST, "REDIS_URL": redis.url, "FAULTLINE_REDIS_PREFIX": f"chaos-{uuid.uuid4().hex[:6]}:"}
    chaos = Chaos(env, logs, say)
    chaos.start_worker()
    chaos.start_relay()
    stop = threading.Event()
    breaker = threading.Thread(target=chaos.unleash, args=(redis, chaos_seconds, stop), daemon=True)
    started = time.monotonic()
    try:
        breaker.start()
        send_traffic(run, intents)
        breaker.join()
        say(f"chaos: done breaking after {time.monotonic() - started:.0f} s; waiting for the pipeline to settle")

        def settled() -> bool:
            chaos.supervise()
            return audit(run)["in_flight"] == 0

        wait_for(settled, settle_timeout, "every delivery to finish", interval=1)
        result = audit(run)
        result["seconds"] = round(time.monotonic() - started, 1)
        return {**result, **chaos.stats}
    finally:
        stop.set()
        chaos.stop()
        redis.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description="Break the pipeline for real and print the audit.")
    parser.add_argument("--intents", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=40, help="how long to keep breaking things")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="faultline-chaos-"))
    database = f"sqlite:///{workdir / 'chaos.sqlite3'}"
    env = {**os.environ, "DATABASE_URL": database, "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONUNBUFFERED": "1"}
    env.pop("REDIS_URL", None)
    import subprocess

    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=BASE_DIR, env=env, check=True)
    redis = Redis(workdir)
    redis.start()
    os.environ.update(DATABASE_URL=database, DJANGO_SETTINGS_MODULE="config.settings", REDIS_URL=redis.url)
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    run = calm_run(get_user_model().objects.create(username=f"chaos-{uuid.uuid4().hex[:6]}"))
    print(f"chaos: {args.intents} intents, breaking things for {args.seconds:.0f} s (logs in {workdir})")
    result = run_chaos(run, env, workdir, args.intents, args.seconds, settle_timeout=300, redis=redis)
    width = max(map(len, result))
    for name, value in result.items():
        print(f"  {name:<{width}}  {value}")
    healthy = result["lost"] == 0 and result["duplicate_sends"] == 0 and result["in_flight"] == 0
    print("chaos: PASS: nothing lost, nothing sent twice" if healthy else "chaos: FAIL: an invariant broke")
    sys.exit(0 if healthy else 1)


if __name__ == "__main__":
    main()
