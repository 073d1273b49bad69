"""The relay: a long-running loop that moves outbox rows to the broker.

It is its own process on purpose: a learner stops it and watches the outbox grow.
Each pass publishes a batch of due outbox rows (see labs/pipeline/relay.py); every
few seconds it also republishes stranded deliveries and deletes idle lab runs, and about
once a second it runs the service registry's heartbeats and health checks
(labs/pipeline/discovery.py).
When the broker or the database is unreachable it backs off and keeps the rows
pending. SIGTERM or Ctrl-C finishes the current batch and exits cleanly.

The loop runs in a child process that this command restarts if it dies, the way
a process supervisor would: the "relay crash" fault kills the child, and the
learner watches the restarted relay publish the unmarked batch a second time.
"""

import logging
import multiprocessing
import os
import random
import signal
import socket
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections, connections
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from config import heartbeat
from labs import runs, signals
from labs.pipeline import discovery, relay

log = logging.getLogger("faultline.relay")

RESCUE_EVERY = 5.0
HOUSEKEEPING_EVERY = 60.0
TICK_EVERY = discovery.CHECK_EVERY_S  # the registry's health checks, and labs.signals.relay_tick
OUTAGE_ERRORS = (KombuError, RedisError, OSError, DatabaseError)


class Command(BaseCommand):
    help = "Run the outbox relay until SIGTERM or Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument(
            "--interval", type=float, default=0.1, help="Seconds to sleep between passes when idle (default 0.1)."
        )

    def handle(self, *args, interval: float, **options):
        if interval <= 0:
            self.stderr.write("--interval must be a positive number of seconds.")
            raise SystemExit(2)
        stopping = threading.Event()
        child: multiprocessing.Process | None = None

        def request_stop(signum, frame):
            stopping.set()
            if child is not None and child.is_alive():
                os.kill(child.pid, signal.SIGTERM)

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        self.stdout.write(f"relay: started (pid {os.getpid()})")
        instance = f"{socket.gethostname()}:{os.getpid()}"
        while not stopping.is_set():
            connections.close_all()  # the child must open its own
            child = multiprocessing.get_context("fork").Process(target=serve, args=(interval, instance), daemon=False)
            child.start()
            child.join()
            if stopping.is_set() or child.exitcode == 0:
                break
            self.stdout.write(f"relay: the relay process died (exit {child.exitcode}); restarting it in 1 s")
            stopping.wait(1)
        try:
            heartbeat.clear("relay", instance)
        except RedisError:
            pass
        self.stdout.write("relay: stopped")


def serve(interval: float, instance: str) -> None:
    """The relay loop, in the supervised child process."""
    stopping = threading.Event()

    def request_stop(signum, frame):
        log.info("relay: %s received, finishing the current batch", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    last_beat = last_rescue = last_housekeeping = last_tick = 0.0
    failures = 0
    while not stopping.is_set():
        now = time.monotonic()
        if now - last_beat >= settings.HEARTBEAT_INTERVAL:
            try:
                heartbeat.beat("relay", instance)
                last_beat = now
            except RedisError:
                pass  # reported below when publishing fails too
        try:
            published = 0
            if relay.hold_lease():
                published = relay.publish_due() + relay.publish_saga_due()
                if now - last_rescue >= RESCUE_EVERY:
                    relay.rescue_stranded()
                    last_rescue = now
                if now - last_housekeeping >= HOUSEKEEPING_EVERY:
                    runs.delete_idle_runs()
                    last_housekeeping = now
                if now - last_tick >= TICK_EVERY:
                    tick()
                    last_tick = now
            if failures:
                log.info("relay: connected again after %d failed passes", failures)
                failures = 0
        except OUTAGE_ERRORS as exc:
            failures += 1
            delay = random.uniform(0, min(10.0, 0.25 * 2**failures))  # full jitter, capped at 10 s
            if failures == 1 or failures % 10 == 0:
                log.warning("relay: %s (%s); rows stay in the outbox, retrying in %.1f s", type(exc).__name__, exc, delay)
            close_old_connections()
            stopping.wait(delay)
            continue
        if published < settings.LAB_RELAY_BATCH:
            stopping.wait(interval)
    try:
        relay.release_lease()
    except DatabaseError:
        pass


def tick() -> None:
    """The relay's timed work: the heartbeats and health checks of the service registry (for runs with
    discovery on), then labs.signals.relay_tick; a receiver that fails is logged and does not stop the relay."""
    discovery.tick()
    for receiver, result in signals.relay_tick.send_robust(sender=relay):
        if isinstance(result, OUTAGE_ERRORS):
            raise result  # the database or Redis is down: the loop backs off as for its own work
        if isinstance(result, Exception):
            log.error("relay: %s failed: %r", getattr(receiver, "__qualname__", receiver), result, exc_info=result)
