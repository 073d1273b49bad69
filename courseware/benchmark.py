"""How much a lesson page costs to serve, next to a static file, measured in one run.

    .venv/bin/python -m courseware.benchmark [--requests 2000]

Starts `gunicorn config.wsgi` (one sync worker, as `make run` serves pages) on a free port
against the configured database, which must have the lessons loaded (`manage.py load_content`),
then requests, one after another over fresh connections: a static file through WhiteNoise, a
lesson page for an anonymous reader, and the same page for a signed-in learner (which also
records the visit). It prints milliseconds per request and the ratios to the static file.
"""

import argparse
import http.client
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
STATIC_PATH = "/static/css/site.css"
LESSON_PATH = "/lessons/case-study-notification-system/"


def request(port: int, method: str, path: str, body: str = "", headers: dict | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    response.body = response.read()
    connection.close()
    return response


def timed(port: int, path: str, count: int, headers: dict | None = None) -> tuple[float, int]:
    """Milliseconds per request over `count` sequential requests (after a warm-up), and the body size."""
    for _ in range(20):
        warm_up = request(port, "GET", path, headers=headers)
        assert warm_up.status == 200, path
    start = time.perf_counter()
    for _ in range(count):
        request(port, "GET", path, headers=headers)
    return (time.perf_counter() - start) * 1000 / count, len(warm_up.body)


def sign_in(port: int) -> dict:
    """Create a throwaway learner and return the Cookie header of a signed-in session."""
    username, password = f"bench-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         f"from django.contrib.auth.models import User; User.objects.create_user({username!r}, password={password!r})"],
        cwd=BASE_DIR, check=True,
    )  # fmt: skip
    page = request(port, "GET", "/accounts/login/")
    csrf = re.search(r"csrftoken=([^;]+)", page.getheader("Set-Cookie")).group(1)
    form = f"csrfmiddlewaretoken={csrf}&username={username}&password={password}"
    headers = {"Cookie": f"csrftoken={csrf}", "Content-Type": "application/x-www-form-urlencoded"}
    response = request(port, "POST", "/accounts/login/", form, headers)
    session = re.search(r"sessionid=([^;]+)", response.getheader("Set-Cookie") or "")
    assert session, "signing in failed"
    return {"Cookie": f"sessionid={session.group(1)}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    sys.path.insert(0, str(BASE_DIR))
    from tests.harness import free_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--log-level", "warning"],
        cwd=BASE_DIR, env={**os.environ, "DEBUG": "0"},
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                request(port, "GET", "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        static = timed(port, STATIC_PATH, args.requests)
        anonymous = timed(port, LESSON_PATH, args.requests)
        signed_in = timed(port, LESSON_PATH, args.requests, sign_in(port))
    finally:
        server.terminate()
        server.wait()
    print(f"{args.requests} sequential requests each, gunicorn with 1 sync worker, a fresh connection per request")
    for name, (ms, size) in [
        (f"static file {STATIC_PATH}", static),
        (f"lesson page {LESSON_PATH}, anonymous", anonymous),
        (f"lesson page {LESSON_PATH}, signed in", signed_in),
    ]:
        print(f"{name:68} {size / 1024:5.0f} KiB  {ms:6.2f} ms/request  {1000 / ms:6.0f} req/s  {ms / static[0]:4.1f}x static")


if __name__ == "__main__":
    main()
