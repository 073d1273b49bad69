import uuid

import pytest

from config.redis_client import get_redis, key
from tests.harness import wait_for


def test_it_reports_all_four_parts_up_with_a_worker_and_the_relay(client, celery_worker, relay):
    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True,
        "redis": True,
        "worker": True,
        "relay": True,
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


@pytest.mark.django_db(transaction=True)
def test_the_worker_process_reads_rows_the_test_committed(django_user_model, celery_worker):
    from config.celery import app

    django_user_model.objects.create_user("probe-user", password="not-used-123")
    reply = f"probe-{uuid.uuid4().hex}"

    app.send_task("tests.probe_user_task", args=["probe-user", reply])

    assert wait_for(lambda: get_redis().get(key(reply)), 20, "the worker's reply") == b"found"
