"""/metrics: what an operator graphs and alerts on, in Prometheus' text format (prometheus-client).

Two kinds of figure:

- Requests, by view (the URL's name), method and status, and how long they took: counted by
  every web worker as it answers (`RequestMetricsMiddleware`). gunicorn runs several worker
  processes and a scrape reaches one of them, so the counts live in prometheus-client's
  multiprocess mode: each worker writes its own memory-mapped file under
  PROMETHEUS_MULTIPROC_DIR (config/gunicorn.py sets it up) and a scrape adds them all up.
  Chosen over counting in Redis: no network round trip on every request, and pages keep being
  counted while Redis is down. A process without that folder (the test client, `runserver`)
  counts in its own memory.
- The pipeline's state, read when Prometheus scrapes (`PipelineCollector`), with a fixed number
  of queries whatever the size of the history: every database query is answered from an index
  (tests/test_metrics.py checks the plans), and Redis is asked in three round trips.

A part that cannot be read (Redis down) is left out of the scrape and its `faultline_up` is 0,
so the rest still arrives and an alert can name the part.
"""

import json
import os
import time
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from redis.exceptions import RedisError

from config import health
from config.redis_client import get_redis
from labs.models import UNFINISHED, DeadLetter, Delivery, DeliveryAttempt, LabRun, NotificationIntent, OutboxRow
from labs.pipeline.breaker import CLOSED, HALF_OPEN, OPEN, ProviderBreaker
from labs.pipeline.topology import ALL_PROVIDERS
from workshops.models import Seat, Workshop

# A run whose learner did something this recently counts as active.
ACTIVE_RUN_WINDOW = timedelta(minutes=15)
BREAKER_STATES = (CLOSED, OPEN, HALF_OPEN)
CONTENT_TYPE = CONTENT_TYPE_LATEST
UNRESOLVED_VIEW = "<unresolved>"  # a 404 from the URL resolver, or a redirect before it (HTTPS)

# The multiprocess mode keeps no `_created` series; a process that counts alone emits none either, so every
# scrape has the same families.
disable_created_metrics()

REQUESTS = Counter(
    "faultline_http_requests",
    "HTTP requests answered, by view (URL name), method and status.",
    ["view", "method", "status"],
    registry=None,
)
REQUEST_SECONDS = Histogram(
    "faultline_http_request_duration_seconds",
    "Time from the request reaching Django to its response (a stream: to its first byte), by view.",
    ["view"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=None,
)


class RequestMetricsMiddleware:
    """Counts every response, the outermost middleware's included (an HTTPS redirect, a 403)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = match.view_name if match is not None else UNRESOLVED_VIEW
        REQUESTS.labels(view, request.method, str(response.status_code)).inc()
        REQUEST_SECONDS.labels(view).observe(time.perf_counter() - started)
        return response


def exposition() -> bytes:
    """The whole scrape: every process's request counts, then the pipeline's state."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REQUESTS)
        registry.register(REQUEST_SECONDS)
    registry.register(PipelineCollector())
    return generate_latest(registry)


def _gauge(name: str, documentation: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


class PipelineCollector:
    """The pipeline's state, read at scrape time."""

    def collect(self):
        up = _gauge("faultline_up", "1 when this part could be read for this scrape, else 0.", ["part"])
        try:
            yield from self._database()
            up.add_metric(["database"], 1)
        except DatabaseError:
            up.add_metric(["database"], 0)
        try:
            yield from self._redis()
            up.add_metric(["redis"], 1)
        except RedisError:
            up.add_metric(["redis"], 0)
        yield up

    # --- database -------------------------------------------------------------------

    def _database(self):
        now = timezone.now()
        # The outbox's unpublished rows, through its partial index (outbox_unpublished): due ones wait
        # for the relay; scheduled ones are retries whose backoff has not ended.
        outbox = OutboxRow.objects.filter(published_at__isnull=True).aggregate(
            due=Count("id", filter=Q(available_at__lte=now)),
            scheduled=Count("id", filter=Q(available_at__gt=now)),
            oldest_due=Min("available_at", filter=Q(available_at__lte=now)),
        )
        rows = _gauge("faultline_outbox_rows", "Unpublished outbox rows: due (waiting for the relay) or scheduled (a retry's backoff).", ["state"])
        rows.add_metric(["due"], outbox["due"])
        rows.add_metric(["scheduled"], outbox["scheduled"])
        yield rows
        oldest = (now - outbox["oldest_due"]).total_seconds() if outbox["oldest_due"] else 0.0
        yield GaugeMetricFamily("faultline_outbox_oldest_due_age_seconds", "How long the oldest due outbox row has waited for the relay (0: none waits).", value=max(0.0, oldest))

        # Unfinished deliveries, and open dead letters, from partial indexes that hold only those rows
        # (delivery_unfinished, deadletter_open): the cost follows what is in flight, not the history.
        # Finished deliveries show as the rates of the counters below.
        by_status = dict(Delivery.objects.filter(status__in=UNFINISHED).values_list("status").annotate(n=Count("id"))
                         .values_list("status", "n"))  # fmt: skip
        deliveries = _gauge("faultline_deliveries_unfinished", "Deliveries not finished yet, by status.", ["status"])
        for status in UNFINISHED:
            deliveries.add_metric([status.value], by_status.get(status.value, 0))
        yield deliveries
        by_group = (DeadLetter.objects.filter(resolution=DeadLetter.Resolution.OPEN).values_list("error_group")
                    .annotate(n=Count("id")).values_list("error_group", "n"))  # fmt: skip
        dead = _gauge("faultline_dead_letters_open", "Dead letters waiting for triage (not replayed or discarded), by error group.", ["error_group"])
        for group, n in by_group:
            dead.add_metric([group], n)
        yield dead

        yield from self._totals()

        runs = LabRun.objects.aggregate(all=Count("id"), active=Count("id", filter=Q(last_activity_at__gte=now - ACTIVE_RUN_WINDOW)))
        lab_runs = _gauge("faultline_lab_runs", f"Lab runs: all kept, and active (used in the last {ACTIVE_RUN_WINDOW.seconds // 60} minutes).", ["state"])
        lab_runs.add_metric(["all"], runs["all"])
        lab_runs.add_metric(["active"], runs["active"])
        yield lab_runs
        running = Workshop.objects.filter(ended_at__isnull=True)
        yield GaugeMetricFamily("faultline_workshops_running", "Workshops not ended.", value=running.count())
        yield GaugeMetricFamily("faultline_workshop_seats", "Learners seated in workshops not ended.",
                                value=Seat.objects.filter(workshop__in=running).count())  # fmt: skip

    def _totals(self):
        """Counters from the tables' ids, which only go up (a sequence; AUTOINCREMENT on SQLite): the
        highest id is how many rows were ever written, read from the primary key's index at once.
        rate() of them is the pipeline's throughput, whatever runs were deleted since."""
        tables = {"faultline_notifications_accepted": (NotificationIntent, "Notification intents accepted by the API."),
                  "faultline_deliveries_created": (Delivery, "Deliveries created (one per intent and channel)."),
                  "faultline_delivery_attempts": (DeliveryAttempt, "Delivery attempts recorded (provider calls, breaker refusals, crashes).")}  # fmt: skip
        quoted = connection.ops.quote_name
        selects = ", ".join(f"(SELECT MAX(id) FROM {quoted(model._meta.db_table)})" for model, _ in tables.values())
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {selects}")
            highest = cursor.fetchone()
        for (name, (_, documentation)), value in zip(tables.items(), highest):
            yield CounterMetricFamily(name, documentation, value=value or 0)

    # --- Redis --------------------------------------------------------------------

    def _redis(self):
        redis = get_redis()
        prefix = settings.REDIS_KEY_PREFIX
        lanes = settings.LAB_QUEUES
        with redis.pipeline(transaction=False) as pipe:
            for lane in lanes:  # kombu keeps a lane's messages in a list per priority step (0 is the bare name)
                for step in _PRIORITY_STEPS:
                    pipe.llen(prefix + lane + (f"{_PRIORITY_SEP}{step}" if step else ""))
            pipe.hlen(prefix + "unacked")
            lengths = pipe.execute()
        queue = _gauge("faultline_queue_messages", "Messages waiting on the broker, by lane (a campaign message carries up to 100 deliveries).", ["queue"])
        for index, lane in enumerate(lanes):
            queue.add_metric([lane], sum(lengths[index * len(_PRIORITY_STEPS) : (index + 1) * len(_PRIORITY_STEPS)]))
        yield queue
        yield GaugeMetricFamily("faultline_queue_unacked_messages", "Messages a worker has taken and not acknowledged yet.", value=lengths[-1])

        active = list(LabRun.objects.filter(last_activity_at__gte=timezone.now() - ACTIVE_RUN_WINDOW).values_list("id", flat=True))
        breakers = [ProviderBreaker(run_id, provider) for run_id in active for provider in ALL_PROVIDERS]
        states = dict.fromkeys(BREAKER_STATES, 0)
        for raw in redis.mget([breaker.state_key for breaker in breakers]) if breakers else []:
            states[_breaker_state(raw)] += 1
        gauge = _gauge("faultline_breakers", "Circuit breakers of active runs' providers, by state as last recorded.", ["state"])
        for state, n in states.items():
            gauge.add_metric([state], n)
        yield gauge

        instances = _gauge("faultline_process_instances", "Processes of each kind whose heartbeat is fresh.", ["process"])
        restarted = _gauge("faultline_process_restarted_recently", f"1 when a process of this kind started in the last {health.RESTARTED_LATELY_S} s.", ["process"])
        for process in health.PROCESSES:
            found = health.heartbeats(process)
            instances.add_metric([process], len(found["instances"]))
            restarted.add_metric([process], int(found["restarted_lately"]))
        yield instances
        yield restarted


def _breaker_state(raw: bytes | None) -> str:
    return json.loads(raw)["state"] if raw else CLOSED  # no state kept yet: a breaker starts closed


_PRIORITY_STEPS = (0, 3, 6, 9)  # kombu's Redis transport's default priority_steps
_PRIORITY_SEP = "\x06\x16"  # and the separator it puts between a queue's name and its step
