"""The live process (uvicorn) holding a lab run's event stream: it ends when the session ends.

Talks HTTP to a real uvicorn process, as the browser's EventSource does, with a one-second
heartbeat so the test need not wait fifteen.
"""

import http.client
import urllib.parse

import pytest
from django.test import Client
from django.urls import reverse

from config.redis_client import get_redis
from labs import live, pace, runs
from labs.models import LabRun
from labs.pipeline import events
from tests.harness import free_port, start_live_process, wait_for

LAB = "outbox-and-relay"
HEARTBEAT = 1


@pytest.fixture(scope="module")
def live_port(process_env, process_logs):
    port = free_port()
    process = start_live_process(port, {**process_env, "LAB_STREAM_HEARTBEAT": str(HEARTBEAT)}, process_logs)
    yield port
    process.stop()


@pytest.fixture
def learner(django_user_model, transactional_db):
    client = Client()
    client.user = django_user_model.objects.create_user("ada")
    client.force_login(client.user)
    client.post(reverse("labs:start", args=[LAB]))
    client.run = LabRun.objects.get(owner=client.user)
    yield client
    runs.delete_run(client.run)


def open_stream(port: int, run_id: int, session_key: str, origin: str | None = None, token: str = "") -> http.client.HTTPResponse:
    """The stream as a lab page opens it (with the page's stream `token`), or by the session cookie alone."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Cookie": f"sessionid={session_key}", "Accept": "text/event-stream"}
    if origin:
        headers["Origin"] = origin
    query = "?after=0-0" + (f"&token={urllib.parse.quote(token)}" if token else "")
    connection.request("GET", reverse("live:stream", args=[run_id]) + query, headers=headers)
    return connection.getresponse()


def read_until_closed(response: http.client.HTTPResponse) -> str:
    """Everything the stream sends until the server closes it (the 30 s socket timeout fails the test first)."""
    received = b""
    while chunk := response.read1(65536):
        received += chunk
    return received.decode()


def test_logging_out_in_another_tab_ends_the_open_stream_at_its_next_heartbeat(learner, live_port):
    events.emit(learner.run.pk, "fault_changed", target="email-primary", fault={"down": True})
    stream = open_stream(live_port, learner.run.pk, learner.cookies["sessionid"].value)
    assert stream.status == 200
    first = stream.read1(65536).decode()
    assert "retry:" in first

    learner.post(reverse("accounts:logout"))  # the other tab
    rest = read_until_closed(stream)

    assert rest.rstrip().endswith('event: end\ndata: {"reason": "signed out"}')


def test_a_stream_stays_open_while_the_session_lasts(learner, live_port):
    stream = open_stream(live_port, learner.run.pk, learner.cookies["sessionid"].value)

    received = b""
    while received.count(b": keep-alive") < 3:  # three heartbeats, each one a session check
        chunk = stream.read1(65536)
        assert chunk, f"the stream closed while the session lasts: {received!r}"
        received += chunk
    assert b"signed out" not in received


def test_the_live_process_refuses_a_page_of_another_origin(learner, live_port):
    session_key = learner.cookies["sessionid"].value
    other_port = open_stream(live_port, learner.run.pk, session_key, origin=f"http://127.0.0.1:{live_port + 7}")
    evil = open_stream(live_port, learner.run.pk, session_key, origin="https://evil.example")
    site = open_stream(live_port, learner.run.pk, session_key, origin=f"http://127.0.0.1:{live_port - 1}")

    assert other_port.status == 403 and evil.status == 403
    assert other_port.getheader("Access-Control-Allow-Origin") is None
    assert site.status == 200 and site.getheader("Access-Control-Allow-Origin") == f"http://127.0.0.1:{live_port - 1}"


def test_open_streams_share_a_few_database_connections_not_one_each(django_user_model, live_port, transactional_db):
    """Each open stream checks its session at every heartbeat. Run as thread-sensitive code, which Django's ASGI
    handler gives a thread of its own per request for as long as the stream stays open, each check held a
    database connection until the page closed: 100 open lab pages used up PostgreSQL's 100 connections. The
    checks share the process's small pool. (SQLite has no connection limit to count against.)"""
    import re
    import subprocess

    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("counts connections to PostgreSQL")
    listening = subprocess.run(["ss", "-tlnpH", f"sport = :{live_port}"], capture_output=True, text=True).stdout
    pid = re.search(r"pid=(\d+)", listening)[1]

    def connections_to_the_database() -> int:
        port = connection.settings_dict["PORT"] or "5432"
        found = subprocess.run(["ss", "-tnpH", f"dport = :{port}"], capture_output=True, text=True).stdout
        return sum(f"pid={pid}," in line for line in found.splitlines())

    learners = []
    for n in range(16):
        client = Client()
        client.force_login(django_user_model.objects.create_user(f"streamer-{n}"))
        client.post(reverse("labs:start", args=[LAB]))
        learners.append((LabRun.objects.get(owner__username=f"streamer-{n}").pk, client.cookies["sessionid"].value))
    streams = [open_stream(live_port, run_id, session, token=live.stream_token(run_id, session)) for run_id, session in learners]
    for stream in streams:
        received = b""
        while received.count(b": keep-alive") < 1:  # at least one heartbeat, each a session check, has run
            received += stream.read1(65536)
    assert connections_to_the_database() <= 8, connections_to_the_database()  # the pool's few, not one a stream


def test_an_open_stream_counts_among_the_pages_open_until_the_page_closes_it(learner, live_port):
    """The web process divides its share for panel refreshes among the pages open (labs/pace.py): each open stream
    counts itself while it lasts, and a closed page stops counting at once."""
    assert pace.open_pages() == 1  # "at least the one asking": nobody is counted yet
    streams = [open_stream(live_port, learner.run.pk, learner.cookies["sessionid"].value) for _ in range(3)]
    for stream in streams:
        stream.read1(65536)  # the stream has started
    wait_for(lambda: get_redis().zcard(pace.open_pages_key()) == 3, 10, "three pages counted")
    assert pace.open_pages() == 3

    streams[0].close()
    wait_for(lambda: get_redis().zcard(pace.open_pages_key()) == 2, 10, "the closed page no longer counted")
    for stream in streams[1:]:
        stream.close()
    wait_for(lambda: get_redis().zcard(pace.open_pages_key()) == 0, 10, "no page counted")
