import time
import uuid

import pytest

from config.redis_client import get_redis, key
from tests.harness import wait_for


def test_it_reports_every_part_up_with_a_worker_the_relay_and_the_live_process(client, celery_worker, relay, live_process):
    wait_for(lambda: client.get("/healthz").json()["checks"]["live"]["ok"], 20, "the live process's heartbeat")
    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True,
        "redis": True,
        "worker": True,
        "urgent": True,  # a worker started without -Q serves the urgent lane too
        "relay": True,
        "live": True,  # the heartbeat of the test's own live process, started below
    }


def test_it_answers_503_naming_the_worker_once_the_worker_stops(client, start_worker, relay):
    worker = start_worker()
    assert client.get("/healthz").status_code == 200

    worker.stop()

    response = client.get("/healthz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["worker"]["ok"] is False
    assert "worker" in checks["worker"]["error"]
    assert checks["relay"]["ok"] is True


def test_it_answers_503_when_nothing_but_the_database_and_redis_run(client, db):
    response = client.get("/healthz")

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["ok"] and checks["redis"]["ok"]
    assert not checks["worker"]["ok"] and not checks["relay"]["ok"]
    assert "Traceback" not in response.content.decode()


def test_without_the_live_process_it_is_degraded_not_down(client, celery_worker, relay):
    get_redis().delete(key("heartbeat", "live"))  # a live process killed a moment ago still beats for HEARTBEAT_TTL
    body = client.get("/healthz").json()
    assert body["status"] == "degraded" and body["checks"]["live"]["ok"] is False
    assert client.get("/healthz").status_code == 200  # lab pages fall back to the page server


def test_an_urgent_only_worker_is_reported_apart_from_the_lanes(client, start_worker, relay):
    start_worker("--queues", "urgent")
    wait_for(lambda: client.get("/healthz").json()["checks"]["urgent"]["ok"], 30, "the urgent worker's heartbeat")
    checks = client.get("/healthz").json()["checks"]
    assert checks["worker"]["ok"] is False and "worker" in checks["worker"]["error"]
    assert checks["urgent"]["restarted_lately"] is True  # it started seconds ago
    assert client.get("/healthz").status_code == 503  # nothing takes the other lanes


def test_a_worker_on_a_machine_whose_clock_runs_behind_still_counts_as_alive(client, db, monkeypatch):
    """Workers run on several machines (README, "More workers"): their beats are judged by Redis's clock."""
    from config import heartbeat

    real_time = time.time
    with monkeypatch.context() as on_the_other_machine:
        on_the_other_machine.setattr(time, "time", lambda: real_time() - 60)
        heartbeat.beat("worker", "slow-clock-host:4242")
    try:
        worker = client.get("/healthz").json()["checks"]["worker"]
        assert worker["ok"] is True and list(worker["instances"]) == ["slow-clock-host:4242"]
        assert worker["up_s"]["slow-clock-host:4242"] < 5  # it started just now, whatever its own clock said
    finally:
        heartbeat.clear("worker", "slow-clock-host:4242")


def test_the_public_sees_the_verdict_only_and_staff_see_the_details(client, django_user_model, db):
    for headers in ({"REMOTE_ADDR": "203.0.113.7"}, {"HTTP_X_FORWARDED_FOR": "203.0.113.7"}):  # another machine; via a proxy
        response = client.get("/healthz", **headers)
        assert response.status_code == 503 and response.json() == {"status": "down"}
    staff = django_user_model.objects.create_user("operator", password="not-used-1234", is_staff=True)
    client.force_login(staff)
    details = client.get("/healthz", REMOTE_ADDR="203.0.113.7").json()
    assert details["checks"]["database"]["ok"] is True and "error" in details["checks"]["worker"]


@pytest.mark.django_db(transaction=True)
def test_the_worker_process_reads_rows_the_test_committed(django_user_model, celery_worker):
    from config.celery import app

    django_user_model.objects.create_user("probe-user", password="not-used-123")
    reply = f"probe-{uuid.uuid4().hex}"

    app.send_task("tests.probe_user_task", args=["probe-user", reply])

    assert wait_for(lambda: get_redis().get(key(reply)), 20, "the worker's reply") == b"found"
