"""The relay as a process: it survives a broker outage without losing a row, and SIGTERM stops it cleanly."""

import signal
import uuid

import pytest
import redis as redis_lib

from labs.models import OutboxRow
from labs.pipeline import intake
from labs.runs import create_run
from tests.harness import ServiceProcess, free_port, python_argv, redis_server_binary, wait_for


@pytest.fixture
def private_redis(process_logs):
    """A Redis of this test's own, so it can be stopped without disturbing anything else."""
    port = free_port()
    argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    servers = []

    def start() -> ServiceProcess:
        server = ServiceProcess("private-redis", argv, {}, process_logs).start()
        client = redis_lib.Redis(port=port)
        wait_for(lambda: _pings(client), 10, "the private Redis")
        servers.append(server)
        return server

    start.url = f"redis://127.0.0.1:{port}/0"
    start.port = port
    yield start
    for server in servers:
        server.stop()


def _pings(client) -> bool:
    try:
        return client.ping()
    except redis_lib.ConnectionError:
        return False


def test_the_relay_keeps_rows_pending_through_a_broker_outage_and_publishes_them_after(
    transactional_db, django_user_model, process_env, process_logs, private_redis
):
    prefix = f"relay-test-{uuid.uuid4().hex[:6]}:"
    env = {**process_env, "REDIS_URL": private_redis.url, "FAULTLINE_REDIS_PREFIX": prefix}
    broker = private_redis()
    relay = ServiceProcess("relay", python_argv("manage.py", "relay"), env, process_logs).start()
    client = redis_lib.Redis(port=private_redis.port)
    wait_for(lambda: client.exists(f"{prefix}heartbeat:relay"), 20, "the relay's heartbeat")
    run = create_run(django_user_model.objects.create_user("outage", password="not-used-1234"))

    broker.kill()  # the broker goes away without warning
    requests = [intake.IntentRequest(f"k{i}", i, "password_reset", data={"code": "1"}) for i in range(1, 11)]
    intake.accept(run, requests)
    wait_for(lambda: "rows stay in the outbox" in relay.output(), 20, "the relay to notice the outage")
    assert OutboxRow.objects.filter(run=run, published_at=None).count() == 10
    assert relay.running()

    private_redis()  # the broker comes back on the same port, empty
    wait_for(lambda: not OutboxRow.objects.filter(run=run, published_at=None).exists(), 30, "the rows to be published")
    assert client.llen(f"{prefix}urgent") == 10  # every message reached its queue, once

    relay.popen.send_signal(signal.SIGTERM)
    assert relay.popen.wait(timeout=15) == 0
    assert "relay: stopped" in relay.output()
    assert not client.zrange(f"{prefix}heartbeat:relay", 0, -1)  # a clean stop leaves no heartbeat behind


def test_after_a_redis_restart_the_relay_republishes_what_the_broker_held_at_once(
    transactional_db, django_user_model, process_env, process_logs, private_redis
):
    prefix = f"relay-test-{uuid.uuid4().hex[:6]}:"
    # No worker, and a redeliver delay far longer than this test: only noticing the restart can republish.
    env = {**process_env, "REDIS_URL": private_redis.url, "FAULTLINE_REDIS_PREFIX": prefix, "LAB_REDELIVER_AFTER": "600"}
    broker = private_redis()
    relay = ServiceProcess("relay", python_argv("manage.py", "relay"), env, process_logs).start()
    client = redis_lib.Redis(port=private_redis.port)
    wait_for(lambda: client.exists(f"{prefix}heartbeat:relay"), 20, "the relay's heartbeat")
    run = create_run(django_user_model.objects.create_user("restart", password="not-used-1234"))
    intake.accept(run, [intake.IntentRequest(f"k{i}", i, "password_reset", data={"code": "1"}) for i in range(1, 11)])
    wait_for(lambda: client.llen(f"{prefix}urgent") == 10, 20, "the ten messages on the broker")

    broker.kill()
    private_redis()  # back on the same port, empty: the ten messages are gone
    client = redis_lib.Redis(port=private_redis.port)

    wait_for(lambda: client.llen(f"{prefix}urgent") == 10, 30, "the ten messages published again")
    assert "the broker restarted" in relay.output()
    assert OutboxRow.objects.filter(run=run).count() == 20  # one copy each, at the same generation
    assert set(OutboxRow.objects.filter(run=run).values_list("generation", flat=True)) == {0}
    relay.stop()


def test_the_rescue_copies_nothing_onto_a_lane_with_a_backlog_and_republishes_once_it_has_drained(db, django_user_model):
    """Under load a backlog can be older than any patience: copies of what is still queued would only
    deepen it. Messages that went missing from a busy lane are republished once the lane is empty."""
    from datetime import timedelta

    from django.utils import timezone

    from config.celery import app
    from labs.pipeline import relay

    app.control.purge()  # no worker runs in this module: the queues are this test's alone
    run = create_run(django_user_model.objects.create_user("backlog", password="not-used-1234"))
    intake.accept(run, [intake.IntentRequest(f"k{i}", i, "password_reset", data={"code": "1"}) for i in range(1, 11)])
    assert relay.publish_due() == 10
    long_ago = timezone.now() - timedelta(hours=1)  # far older than LAB_REDELIVER_AFTER
    OutboxRow.objects.filter(run=run).update(published_at=long_ago)

    for _ in range(3):  # pass after pass, while the ten wait their turn on the broker
        assert relay.rescue_stranded() == 0
    assert relay.broker_depths()["urgent"] == 10
    assert OutboxRow.objects.filter(run=run).count() == 10

    app.control.purge()  # the ten go missing: the lane is empty, the deliveries still unclaimed
    assert relay.rescue_stranded() == 10
    assert relay.publish_due() == 10
    assert relay.broker_depths()["urgent"] == 10
    assert relay.rescue_stranded() == 0, "a copy just published is not old yet"
    assert OutboxRow.objects.filter(run=run).count() == 20  # one copy each, at the same generation
    app.control.purge()


def test_saga_messages_the_broker_lost_go_out_again_and_a_late_copy_is_not_copied(db, django_user_model):
    """Lab 7's saga outbox follows the deliveries' rescue rule: published long ago and never taken, on an
    idle saga lane, it is published again; while it waits on the broker, nothing is copied."""
    from datetime import timedelta

    from django.utils import timezone

    from config.celery import app
    from labs.models import SagaMessage
    from labs.pipeline import relay, saga

    app.control.purge()  # no worker runs in this module
    run = create_run(django_user_model.objects.create_user("saga-rescue", password="not-used-1234"))
    saga.place_orders(run, 2)
    published = relay.publish_saga_due()
    assert published >= 2
    SagaMessage.objects.filter(run=run).update(published_at=timezone.now() - timedelta(hours=1))

    assert relay.rescue_saga_messages(100) == 0  # still on the broker: waiting its turn
    app.control.purge()  # the broker loses them
    assert relay.rescue_saga_messages(100) == published
    assert relay.publish_saga_due() == published
    assert not SagaMessage.objects.filter(run=run, published_at=None).exists()
    app.control.purge()
