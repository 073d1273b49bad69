"""/metrics as an operator's Prometheus sees it: who may scrape it, what it counts, what a scrape costs."""

import json
import re
import threading
import urllib.request
import uuid

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families

from labs.models import Delivery, NotificationIntent, Recipient
from labs.pipeline import relay as relay_pipeline
from labs.pipeline.breaker import ProviderBreaker
from labs.runs import create_run
from tests.harness import BASE_DIR, ServiceProcess, free_port, python_argv, wait_for

DASHBOARD = BASE_DIR / "deploy" / "grafana" / "faultline.json"
# Tables that grow with the history: a scrape may read them only through an index.
GROWING_TABLES = ("labs_delivery", "labs_outbox", "labs_deadletter", "labs_deliveryattempt", "labs_notificationintent",
                  "labs_providersend")  # fmt: skip
# Partial indexes that hold only work in flight: reading one whole costs what is in flight, not the history.
BACKLOG_INDEXES = ("outbox_unpublished", "delivery_unfinished", "deadletter_open")


def scrape(client: Client, **headers) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one scrape."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content[:500]
    return samples(response.content.decode())


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


def value(found: dict, name: str, **labels) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def learner(django_user_model):
    return django_user_model.objects.create_user(f"learner-{uuid.uuid4().hex[:6]}", password="not-used-1234")


def send(run, template: str, count: int, **extra) -> None:
    client = Client()
    for _ in range(count):
        response = client.post("/api/notifications", {"user_id": 7, "template": template, "data": {"code": "1"}, **extra},
                               content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {run.api_key}",
                               HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex)  # fmt: skip
        assert response.status_code == 202, response.content  # accepted


# --- Who may scrape ---------------------------------------------------------------------


def test_only_staff_the_machine_or_a_bearer_of_the_token_may_scrape(client, django_user_model, settings, db):
    settings.METRICS_TOKEN = "m" * 40
    another_machine = {"REMOTE_ADDR": "203.0.113.7"}

    assert client.get("/metrics").status_code == 200  # the test client comes from 127.0.0.1: the machine itself
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 403  # the machine's proxy, for someone else
    refused = client.get("/metrics", **another_machine)
    assert refused.status_code == 403 and b"METRICS_TOKEN" in refused.content and b"faultline_" not in refused.content
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer " + "x" * 40, **another_machine).status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer " + "m" * 40, **another_machine).status_code == 200
    settings.METRICS_TOKEN = None
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ", **another_machine).status_code == 403  # no token set opens nothing

    client.force_login(django_user_model.objects.create_user("operator", password="not-used-1234", is_staff=True))
    answer = client.get("/metrics", **another_machine)
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/plain; version=")  # the text exposition format


# --- What it shows ----------------------------------------------------------------------


def test_it_shows_the_outbox_backlog_then_the_messages_waiting_on_each_lane(client, django_user_model, db):
    run = create_run(learner(django_user_model))
    before = scrape(client)

    send(run, "password_reset", 3)  # a security message: the urgent lane, one message each

    assert set(Delivery.objects.filter(run=run).values_list("queue", flat=True)) == {"urgent"}
    waiting = scrape(client)
    assert value(waiting, "faultline_outbox_rows", state="due") == value(before, "faultline_outbox_rows", state="due") + 3
    assert value(waiting, "faultline_outbox_oldest_due_age_seconds") >= 0
    assert value(waiting, "faultline_deliveries_unfinished", status="pending") == 3 + value(before, "faultline_deliveries_unfinished", status="pending")
    # The highest intent id: the database's sequence, which a deleted row does not give back (an empty table before
    # this test may still have counted earlier ones).
    newest = NotificationIntent.objects.filter(run=run).order_by("-id").values_list("id", flat=True)[0]
    assert value(waiting, "faultline_notifications_accepted_total") == newest > value(before, "faultline_notifications_accepted_total")

    while relay_pipeline.publish_due():  # what the relay process does, with no worker to take the messages
        pass

    published = scrape(client)
    assert value(published, "faultline_outbox_rows", state="due") == 0
    assert value(published, "faultline_queue_messages", queue="urgent") == value(before, "faultline_queue_messages", queue="urgent") + 3
    assert value(published, "faultline_lab_runs", state="active") >= 1


def test_it_counts_breakers_of_active_runs_by_state(client, django_user_model, db):
    run = create_run(learner(django_user_model))
    before = scrape(client)

    breaker = ProviderBreaker(run.pk, "sms-primary")
    for _ in range(breaker.policy.min_calls):
        breaker.record(ok=False)  # five failed calls in the window: the breaker opens

    after = scrape(client)
    assert value(after, "faultline_breakers", state="open") == value(before, "faultline_breakers", state="open") + 1
    assert value(after, "faultline_breakers", state="closed") == value(before, "faultline_breakers", state="closed") - 1


def test_it_shows_dead_letters_by_group_and_each_process_kinds_heartbeat(client, django_user_model, celery_worker, relay):
    run = create_run(learner(django_user_model))
    # The seed draws opt-outs and quiet hours from the run's id; this user takes e-mail now, whatever the id.
    Recipient.objects.filter(run=run, number=7).update(email_opt_in=True, quiet_start=None, quiet_end=None)
    send(run, "order_shipped", 1, channels=["email"], data={})  # no order_id: a poison message
    wait_for(lambda: run.dead_letters.exists(), 120, "the dead letter")

    found = scrape(client)

    assert value(found, "faultline_dead_letters_open", error_group="template_data_missing") >= 1
    assert value(found, "faultline_process_instances", process="worker") == 1
    assert value(found, "faultline_process_instances", process="urgent") == 1  # the same worker takes every lane
    assert value(found, "faultline_process_instances", process="relay") == 1
    assert value(found, "faultline_process_restarted_recently", process="relay") == 1  # started seconds ago
    assert value(found, "faultline_delivery_attempts_total") >= 1
    assert value(found, "faultline_up", part="database") == 1 and value(found, "faultline_up", part="redis") == 1


def test_with_redis_down_the_database_figures_still_arrive(client, db, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    found = scrape(client)

    assert value(found, "faultline_up", part="redis") == 0 and value(found, "faultline_up", part="database") == 1
    assert ("faultline_outbox_rows", (("state", "due"),)) in found
    assert not any(name == "faultline_queue_messages" for name, _ in found)


# --- Requests, counted across gunicorn's workers ------------------------------------------


def test_requests_are_counted_across_every_gunicorn_worker(process_env, process_logs, tmp_path, transactional_db):
    folder = tmp_path / "metrics"
    port = free_port()
    web = ServiceProcess("web", python_argv("-m", "gunicorn", "config.wsgi", "--config", "python:config.gunicorn",
                                            "--bind", f"127.0.0.1:{port}", "--workers", "2", "--no-control-socket"),
                         {**process_env, "PROMETHEUS_MULTIPROC_DIR": str(folder)}, process_logs).start()  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: http_ok(url + "lessons/"), 60, "gunicorn to answer")
        results: list[bool] = []
        threads = [threading.Thread(target=lambda: results.extend(http_ok(url + "lessons/") for _ in range(10))) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [True] * 40
        answered = 1 + 40
        # Four clients at once keep both sync workers busy, so each has counted some in a file of its own.
        assert len(list(folder.glob("counter_*.db"))) >= 2

        for _ in range(6):  # each scrape is answered by whichever worker is free: every one must give the whole count
            with urllib.request.urlopen(url + "metrics", timeout=10) as response:
                found = samples(response.read().decode())
            assert value(found, "faultline_http_requests_total", view="courseware:index", method="GET", status="200") == answered
    finally:
        web.stop()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status == 200
    except OSError:
        return False


# --- What a scrape costs ------------------------------------------------------------------


def test_a_scrape_reads_the_growing_tables_only_through_indexes_with_a_fixed_number_of_queries(client, django_user_model, db):
    first = create_run(learner(django_user_model))
    send(first, "password_reset", 2)
    with CaptureQueriesContext(connection) as one_run:
        scrape(client)
    for _ in range(3):
        send(create_run(learner(django_user_model)), "password_reset", 2)
    with CaptureQueriesContext(connection) as four_runs:
        scrape(client)

    assert len(four_runs.captured_queries) == len(one_run.captured_queries)
    reads = [query["sql"] for query in four_runs.captured_queries if query["sql"].lstrip().upper().startswith("SELECT")]
    assert any("labs_delivery" in sql for sql in reads)
    for sql in reads:
        plan = query_plan(sql)
        for table in GROWING_TABLES:
            assert not scans_whole(plan, table), f"{table} is scanned whole by:\n{sql}\n{plan}"


def query_plan(sql: str) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # With sequential scans priced out, PostgreSQL still picks one only where no index serves the query
            # (on a test's tiny tables it would otherwise prefer one anyway).
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + sql)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql)
        return "\n".join(str(row[-1]) for row in cursor.fetchall())


def scans_whole(plan: str, table: str) -> bool:
    """Does the plan read `table`, or one of its indexes, whole (other than a backlog index)?"""
    if connection.vendor == "postgresql":
        if re.search(rf"Seq Scan on {table}\b", plan):
            return True
        # Any index of the table but a backlog one or its primary key read backward (MAX(id)) may be read whole:
        # PostgreSQL walks a whole multi-column index when the condition is not on its first column.
        used = set(re.findall(rf"(?:Index Scan|Index Only Scan|Index Scan Backward|Index Only Scan Backward) using (\w+) on {table}\b", plan))
        used |= {index for index in re.findall(r"Bitmap Index Scan on (\w+)", plan) if index in indexes_of(table)}
        backward_pkey = {index for index in used if index == f"{table}_pkey" and f"Backward using {index}" in plan}
        return bool(used - set(BACKLOG_INDEXES) - backward_pkey)
    # SQLite: SEARCH seeks an index on its first columns; SCAN reads a table, or an index, whole.
    scans = re.findall(rf"\bSCAN {table}\b(?: USING (?:COVERING )?INDEX (\w+))?", plan)
    return any(index not in BACKLOG_INDEXES for index in scans)


def indexes_of(table: str) -> set[str]:
    with connection.cursor() as cursor:
        return set(connection.introspection.get_constraints(cursor, table))


# --- The Grafana dashboard ----------------------------------------------------------------


def test_the_grafana_dashboard_asks_only_for_metrics_the_scrape_emits_and_shows_each_one(client, django_user_model, db):
    send(create_run(learner(django_user_model)), "password_reset", 1)
    client.get("/lessons/")  # a request counted, so the request metrics have samples
    emitted = {name for name, _ in scrape(client)}
    families = {family.name for family in text_string_to_metric_families(client.get("/metrics").content.decode())}

    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in panels(dashboard) for target in panel.get("targets", [])]
    asked = {name for expr in expressions for name in re.findall(r"\bfaultline_[a-z_]+", expr)}

    # A family with no sample yet (no dead letter) is still declared by the scrape, with its HELP and TYPE.
    assert expressions and asked <= emitted | families, f"not emitted: {sorted(asked - emitted - families)}"
    shown = {family for family in families if any(name == family or name.startswith(family + "_") for name in asked)}
    assert shown == families, f"not on the dashboard: {sorted(families - shown)}"


def panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found += panel.get("panels", [])  # a collapsed row keeps its panels inside
    return found
