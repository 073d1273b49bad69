"""How much a lesson page costs to serve, next to a static file, measured in one run.

    .venv/bin/python -m courseware.benchmark [--requests 2000]

Starts `gunicorn config.wsgi` (one sync worker, the kind `make run` starts) on a free port
against the configured database, which must have the lessons loaded (`manage.py load_content`),
then requests, one after another over fresh connections: a static file through WhiteNoise, a
lesson page for an anonymous reader, and the same page for a signed-in learner (which also
records the visit; the throwaway learner is deleted afterwards). It prints milliseconds per request and the ratios to the static file, and
what rendering the lesson's Markdown on every request would cost instead of serving the stored HTML.
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


def measure(port: int, targets: dict[str, tuple[str, dict]], count: int, block: int = 50) -> dict[str, tuple[float, int]]:
    """Milliseconds per request and body size for each target, over `count` sequential requests each.

    The targets take turns in blocks, so a change in the machine's load during the run (other
    processes, CPU frequency) weighs on all of them alike and the ratios stay fair.
    """
    sizes, elapsed = {}, dict.fromkeys(targets, 0.0)
    for name, (path, headers) in targets.items():
        for _ in range(20):  # warm up
            response = request(port, "GET", path, headers=headers)
            assert response.status == 200, path
        sizes[name] = len(response.body)
    for _ in range(count // block):
        for name, (path, headers) in targets.items():
            start = time.perf_counter()
            for _ in range(block):
                request(port, "GET", path, headers=headers)
            elapsed[name] += time.perf_counter() - start
    done = count // block * block
    return {name: (elapsed[name] * 1000 / done, sizes[name]) for name in targets}


def manage_shell(code: str) -> None:
    subprocess.run([sys.executable, "manage.py", "shell", "-v", "0", "-c", code], cwd=BASE_DIR, check=True)


def sign_in(port: int, username: str) -> dict:
    """Create a throwaway learner and return the Cookie header of a signed-in session."""
    password = uuid.uuid4().hex
    manage_shell(f"from django.contrib.auth.models import User; User.objects.create_user({username!r}, password={password!r})")
    page = request(port, "GET", "/accounts/login/")
    csrf = re.search(r"csrftoken=([^;]+)", page.getheader("Set-Cookie")).group(1)
    form = f"csrfmiddlewaretoken={csrf}&username={username}&password={password}"
    headers = {"Cookie": f"csrftoken={csrf}", "Content-Type": "application/x-www-form-urlencoded"}
    response = request(port, "POST", "/accounts/login/", form, headers)
    session = re.search(r"sessionid=([^;]+)", response.getheader("Set-Cookie") or "")
    assert session, "signing in failed"
    return {"Cookie": f"sessionid={session.group(1)}"}


def markdown_render_ms(slug: str, count: int = 20) -> float:
    """Milliseconds to render one lesson from its file, as load_content does when its hash changes."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from courseware.content_files import read_course
    from courseware.rendering import render_lesson

    course = read_course()
    lesson = next(lesson for lesson in course.lessons if lesson.slug == slug)
    render_lesson(lesson, course.glossary)  # imports Pygments' lexers once
    start = time.perf_counter()
    for _ in range(count):
        render_lesson(lesson, course.glossary)
    return (time.perf_counter() - start) * 1000 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    sys.path.insert(0, str(BASE_DIR))
    from tests.harness import free_port

    port = free_port()
    username = f"bench-{uuid.uuid4().hex[:8]}"
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--log-level", "warning"],
        cwd=BASE_DIR, env={**os.environ, "DEBUG": "0"},
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                request(port, "GET", STATIC_PATH)
                break
            except OSError:
                time.sleep(0.1)
        results = measure(port, {
            f"static file {STATIC_PATH}": (STATIC_PATH, {}),
            f"lesson page {LESSON_PATH}, anonymous": (LESSON_PATH, {}),
            f"lesson page {LESSON_PATH}, signed in": (LESSON_PATH, sign_in(port, username)),
        }, args.requests)  # fmt: skip
    finally:
        server.terminate()
        server.wait()
        manage_shell(f"from django.contrib.auth.models import User; User.objects.filter(username={username!r}).delete()")
    print(f"{args.requests} sequential requests each, gunicorn with 1 sync worker, a fresh connection per request")
    static_ms = results[f"static file {STATIC_PATH}"][0]
    for name, (ms, size) in results.items():
        print(f"{name:68} {size / 1024:5.0f} KiB  {ms:6.2f} ms/request  {1000 / ms:6.0f} req/s  {ms / static_ms:4.1f}x static")
    slug = LESSON_PATH.strip("/").split("/")[-1]
    print(f"rendering {slug} from Markdown instead (not done per request; only when its hash changes): {markdown_render_ms(slug):6.2f} ms")


if __name__ == "__main__":
    main()
