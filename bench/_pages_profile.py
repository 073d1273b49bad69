"""Where a page's time goes, in one process: bench/pages.py's pages served by the WSGI application itself.

Not a benchmark (no server, no sockets): `python bench/_pages_profile.py [N] [page ...]` sets up the
database, content and learner as bench/pages.py does, calls the web process's WSGI application
N times per page and visitor, prints each page's CPU ms per request (the quickest of 10 batches) beside the trivial view's,
and with PROFILE=1 the top of a cProfile for each (sorted by own time; PROFILE_SORT=cumulative;
PROFILE_CALLERS=name for who calls a function).
"""

import cProfile
import io
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench._common  # noqa: E402, F401 - the suite's environment
from bench.pages import PAGES, TRIVIAL, _learner_session  # noqa: E402
from tests.harness import BASE_DIR, start_embedded_redis  # noqa: E402


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    wanted = sys.argv[2:]
    workdir = Path(tempfile.mkdtemp(prefix="faultline-pages-profile-"))
    redis_server, redis_url = start_embedded_redis(workdir)
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}", "REDIS_URL": redis_url,
           "FAULTLINE_REDIS_PREFIX": "bench:", "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "0"}  # fmt: skip
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "FAULTLINE_REDIS_PREFIX", "DJANGO_SETTINGS_MODULE", "DEBUG")})
    try:
        for command in (["migrate", "-v0"], ["load_content"]):
            subprocess.run([sys.executable, "manage.py", *command], cwd=BASE_DIR, env=env, check=True, stdout=subprocess.DEVNULL)
        import django

        django.setup()
        cookie = _learner_session()
        from django.conf import settings

        settings.ROOT_URLCONF = "bench._pages_urls"
        from django.core.wsgi import get_wsgi_application

        application = get_wsgi_application()
        targets = [("trivial view", "-", TRIVIAL, "")]
        for what, path in PAGES:
            if not wanted or any(w in what for w in wanted):
                targets += [(what, "anonymous", path, ""), (what, "signed in", path, cookie)]
        base = None
        for what, visitor, path, cookie_value in targets:
            ms, profile = _serve(application, path, cookie_value, count)
            base = base or ms
            print(f"{what:18} {visitor:10} {ms:6.3f} ms   {base / ms:5.0%} of the trivial view", flush=True)
            if profile is not None:
                out = io.StringIO()
                stats = pstats.Stats(profile, stream=out)
                stats.sort_stats(os.environ.get("PROFILE_SORT", "tottime")).print_stats(int(os.environ.get("PROFILE_LINES", 30)))
                print(f"{stats.total_calls / count:.0f} function calls a request (steadier than time on a busy machine)")
                if os.environ.get("PROFILE_CALLERS"):
                    stats.print_callers(os.environ["PROFILE_CALLERS"])
                print(out.getvalue())
    finally:
        redis_server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _serve(application, path: str, cookie: str, count: int) -> tuple[float, cProfile.Profile | None]:
    """CPU ms per request over `count` requests (after a few to warm up), and the profile of them if asked."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "8000", "HTTP_HOST": "127.0.0.1:8000", "REMOTE_ADDR": "127.0.0.1", "SCRIPT_NAME": "",
               "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), "SERVER_PROTOCOL": "HTTP/1.1"}  # fmt: skip
    if cookie:
        environ["HTTP_COOKIE"] = cookie

    def one() -> None:
        status = []
        response = application(dict(environ), lambda s, headers, exc_info=None: status.append(s))
        body = b"".join(response)
        response.close()  # as gunicorn does: Django's request_finished
        assert status[0].startswith("200"), (path, status, body[:500])

    for _ in range(20):
        one()
    profile = cProfile.Profile() if os.environ.get("PROFILE") else None
    if profile:
        profile.enable()
    batches = []  # the quickest of 10 batches: on a shared machine, the one least disturbed by others
    for _ in range(10):
        started = time.process_time()
        for _ in range(max(1, count // 10)):
            one()
        batches.append((time.process_time() - started) * 1000 / max(1, count // 10))
    if profile:
        profile.disable()
    return min(batches), profile


if __name__ == "__main__":
    main()
