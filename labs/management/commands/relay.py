"""The relay: a long-running loop that moves outbox rows to the broker.

It is its own process on purpose: a learner stops it and watches the outbox grow.
For now it only keeps its heartbeat; the outbox it drains arrives with the labs
engine. SIGTERM or Ctrl-C finishes the current pass and exits cleanly.
"""

import logging
import os
import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from redis.exceptions import RedisError

from config import heartbeat

log = logging.getLogger("faultline.relay")


class Command(BaseCommand):
    help = "Run the outbox relay until SIGTERM or Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument(
            "--interval", type=float, default=0.5, help="Seconds to sleep between passes when idle (default 0.5)."
        )

    def handle(self, *args, interval: float, **options):
        if interval <= 0:
            self.stderr.write("--interval must be a positive number of seconds.")
            raise SystemExit(2)
        stopping = threading.Event()

        def request_stop(signum, frame):
            log.info("relay: %s received, finishing the current pass", signal.Signals(signum).name)
            stopping.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

        self.stdout.write(f"relay: started (pid {os.getpid()})")
        last_beat = 0.0
        redis_down = False
        while not stopping.is_set():
            now = time.monotonic()
            if now - last_beat >= settings.HEARTBEAT_INTERVAL:
                try:
                    heartbeat.beat("relay")
                    last_beat = now
                    if redis_down:
                        log.info("relay: Redis is back")
                        redis_down = False
                except RedisError as exc:
                    if not redis_down:
                        log.warning("relay: cannot reach Redis (%s); retrying", exc)
                        redis_down = True
            stopping.wait(interval)

        try:
            heartbeat.clear("relay")
        except RedisError:
            pass
        self.stdout.write("relay: stopped")
