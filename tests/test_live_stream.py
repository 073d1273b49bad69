"""The live process (uvicorn) holding a lab run's event stream: it ends when the session ends.

Talks HTTP to a real uvicorn process, as the browser's EventSource does, with a one-second
heartbeat so the test need not wait fifteen.
"""

import http.client

import pytest
from django.test import Client
from django.urls import reverse

from labs import runs
from labs.models import LabRun
from labs.pipeline import events
from tests.harness import free_port, start_live_process

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


def open_stream(port: int, run_id: int, session_key: str, origin: str | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Cookie": f"sessionid={session_key}", "Accept": "text/event-stream"}
    if origin:
        headers["Origin"] = origin
    connection.request("GET", reverse("labs:stream", args=[run_id]) + "?after=0-0", headers=headers)
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
