"""Workers on other machines: the Procfile's processes spread over four hosts that share only the network.

Each host is a network namespace of this machine with its own address on one bridge, and every
process on it runs under the host's own name (a UTS namespace), so Celery names its node
`celery@worker-a` as it would on a real machine:

    10.x.y.1  this test (the bridge) ─┬─ data      10.x.y.2  PostgreSQL (its own initdb cluster) and Redis,
                                      │                      each listening on this address alone, with passwords
                                      ├─ app       10.x.y.3  web (gunicorn), relay, live
                                      ├─ worker-a  10.x.y.4  the Procfile's `worker` line
                                      └─ worker-b  10.x.y.5  the Procfile's `worker` line

Every process gets the same DATABASE_URL and REDIS_URL, both naming the data host. An operator's
steps follow: migrate from the app host, `manage.py create_lab_run` there, then the lab API over
HTTP. A campaign is delivered with attempts recorded by both worker hosts, nothing lost and
nothing sent twice (the run's audit). Then, while a second campaign is in flight, every process of
worker-a is killed with SIGKILL: the deliveries it held are taken over and finish on worker-b, and
the audit still finds nothing lost and nothing sent twice.

Needs root (namespaces), `ip` (iproute2) and Debian's PostgreSQL server binaries; skipped otherwise.
"""

import contextlib
import glob
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from config.run import procfile_processes
from tests.harness import ServiceProcess, python_argv, redis_server_binary, wait_for

INITDB = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(Path(path).parts[-3]))
pytestmark = [
    pytest.mark.worker,
    pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="builds network namespaces: needs root (CI runs as root)"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs `ip` from iproute2 (tests/system_tools.sh installs it)"),
    pytest.mark.skipif(not INITDB, reason="needs Debian's PostgreSQL server binaries (apt-get install postgresql)"),
]

PREFIX = "flt"  # namespaces flt-<pid>-<host>, bridge flt<pid>br, veths flt<pid>v<n>: a dead session's are found and removed
FOLDER_PREFIX = "faultline-multihost-"  # + pid: the data host's files (PostgreSQL's cluster, Redis's folder)
HOSTS = ("data", "app", "worker-a", "worker-b")
WORKERS = ("worker-a", "worker-b")
WEB_PORT = 8000
EMAIL_PRIMARY = "email-primary"  # a campaign's email goes to this provider first
# Shorter than production's, so a lost worker's deliveries move within the test's time: the
# lease after which the relay takes a delivery over, the wait before it republishes what was
# published and never claimed, and Redis's wait before it hands an unacknowledged task to
# another worker. An operator may set them the same way.
HEARTBEAT_TTL = 6
TIMINGS = {"LAB_SENDING_LEASE": "6", "LAB_REDELIVER_AFTER": "10", "CELERY_VISIBILITY_TIMEOUT": "20"}


def ip(*args: str, check: bool = True) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode:
        raise AssertionError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")
    return result.stdout


@dataclass
class Host:
    name: str
    netns: str
    address: str

    def argv(self, *command: str) -> list[str]:
        """`command` run on this host: inside its network namespace, under its own host name."""
        return ["ip", "netns", "exec", self.netns, "unshare", "--uts", "/bin/sh", "-c", 'hostname "$0" && exec "$@"',
                self.name, *command]  # fmt: skip

    def pids(self) -> list[int]:
        """Every process on this host (every process in its network namespace)."""
        return [int(pid) for pid in ip("netns", "pids", self.netns, check=False).split()]

    def kill_everything(self) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@dataclass
class Network:
    tag: str
    subnet: str  # "10.x.y"
    hosts: dict[str, Host] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"{PREFIX}{self.tag}br"

    def build(self) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for number, name in enumerate(HOSTS, start=2):
            host = Host(name, f"{PREFIX}-{self.tag}-{name}", f"{self.subnet}.{number}")
            ip("netns", "add", host.netns)
            self.hosts[name] = host
            veth = f"{PREFIX}{self.tag}v{number}"
            ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
            ip("link", "set", veth, "master", self.bridge, "up")
            for args in (["addr", "add", f"{host.address}/24", "dev", "eth0"], ["link", "set", "eth0", "up"], ["link", "set", "lo", "up"]):
                ip("-n", host.netns, *args)

    def tear_down(self) -> None:
        """Kill what is left on every host, then remove the namespaces (their veths go with them) and the bridge."""
        for host in self.hosts.values():
            host.kill_everything()
            with contextlib.suppress(TimeoutError):  # a namespace outlives its deletion until its last process dies
                wait_for(lambda: not host.pids(), 10, f"every process on {host.name} to die")
            ip("netns", "del", host.netns, check=False)
        ip("link", "del", self.bridge, check=False)


def remove_networks_of_dead_sessions() -> None:
    """A session killed outright leaves its namespaces (and the processes in them), bridge and folder
    behind: remove those whose pid is gone."""

    def dead(pid: str) -> bool:
        return not Path(f"/proc/{pid}").exists()

    for line in ip("netns", "list").splitlines():
        name = line.split()[0]
        match = re.fullmatch(rf"{PREFIX}-(\d+)-[a-z-]+", name)
        if match and dead(match[1]):
            Host(name, name, "").kill_everything()
            ip("netns", "del", name, check=False)
    for match in re.finditer(rf"^\d+: ({PREFIX}(\d+)br)[:@]", ip("-o", "link", "show", "type", "bridge"), re.MULTILINE):
        if dead(match[2]):
            ip("link", "del", match[1], check=False)
    for folder in Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*"):
        match = re.fullmatch(rf"{FOLDER_PREFIX}(\d+)-.*", folder.name)
        if match and dead(match[1]):
            shutil.rmtree(folder, ignore_errors=True)


def free_subnet() -> str:
    """A 10.x.y.0/24 that no interface of this machine uses."""
    used = ip("-4", "-o", "addr", "show") + ip("-4", "route", "show")
    while True:
        subnet = f"10.{secrets.choice(range(100, 250))}.{secrets.choice(range(1, 250))}"
        if f"{subnet}." not in used:
            return subnet


# --- The data host: PostgreSQL and Redis ----------------------------------------------------


def start_postgresql(host: Host, subnet: str, folder: Path, password: str, logs: Path) -> ServiceProcess:
    """A cluster of its own (initdb, as the postgres user: initdb refuses root), listening on the data
    host's address only, with password authentication for the hosts' subnet."""
    bin_dir = Path(INITDB[-1]).parent
    as_postgres = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
    (folder / "password").write_text(password)
    shutil.chown(folder, "postgres", "postgres")
    shutil.chown(folder / "password", "postgres", "postgres")
    data = folder / "pgdata"
    made = subprocess.run([*as_postgres, str(bin_dir / "initdb"), "-D", str(data), "-U", "faultline", "--pwfile", str(folder / "password"),
                           "--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C", "--no-sync"], capture_output=True, text=True)  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    with open(data / "pg_hba.conf", "a") as hba:
        hba.write(f"host all all {subnet}.0/24 scram-sha-256\n")
    # fsync off: a throwaway cluster, and the machine's disk is shared with other tests.
    server = [str(bin_dir / "postgres"), "-D", str(data), "-c", f"listen_addresses={host.address}", "-c", "port=5432",
              "-c", "unix_socket_directories=", "-c", "fsync=off", "-c", "synchronous_commit=off"]  # fmt: skip
    return ServiceProcess("data-postgresql", host.argv(*as_postgres, *server), dict(os.environ), logs).start()


def start_redis(host: Host, folder: Path, password: str, logs: Path) -> ServiceProcess:
    (folder / "redis").mkdir()
    argv = [redis_server_binary(), "--bind", host.address, "--port", "6379", "--requirepass", password,
            "--save", "", "--appendonly", "no", "--dir", str(folder / "redis")]  # fmt: skip
    return ServiceProcess("data-redis", host.argv(*argv), dict(os.environ), logs).start()


def database_ready(server: ServiceProcess, address: str, password: str) -> bool:
    import psycopg

    assert server.running(), f"PostgreSQL exited:\n{server.output()[-3000:]}"
    try:
        psycopg.connect(host=address, user="faultline", password=password, dbname="postgres", connect_timeout=2).close()
        return True
    except psycopg.OperationalError:
        return False


# --- The hosts, the processes, and what the test asks them -----------------------------------


@dataclass
class Cluster:
    network: Network
    env: dict[str, str]
    database: dict[str, str]  # psycopg.connect() arguments for the data host's database
    redis_url: str
    processes: dict[str, ServiceProcess]

    @property
    def web(self) -> str:
        return f"http://{self.network.hosts['app'].address}:{WEB_PORT}"

    def sql(self, query: str, *params) -> list[tuple]:
        import psycopg

        with psycopg.connect(**self.database, connect_timeout=5) as connection:
            return connection.execute(query, params).fetchall()

    def manage(self, *args: str) -> str:
        """`python manage.py ARGS` run on the app host, as an operator would; its output."""
        done = subprocess.run(self.network.hosts["app"].argv(*python_argv("manage.py", *args)), env=self.env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def heartbeats(self, kind: str) -> set[str]:
        """The hosts whose `kind` processes keep a fresh heartbeat (members are "host:pid")."""
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        try:
            seconds, _ = client.time()  # heartbeats are scored by Redis's clock (config/heartbeat.py)
            members = client.zrangebyscore(f"faultline:heartbeat:{kind}", seconds - HEARTBEAT_TTL, "+inf")
        finally:
            client.close()
        return {member.decode().rsplit(":", 1)[0] for member in members}

    def logs(self) -> str:
        return process_logs_tail(self.processes)


def process_logs_tail(processes: dict[str, ServiceProcess]) -> str:
    return "\n".join(f"--- {name}:\n{process.output()[-2500:]}" for name, process in processes.items())


def procfile_command(name: str) -> list[str]:
    return ["/bin/sh", "-c", f"exec {procfile_processes()[name]}"]


@pytest.fixture(scope="module")
def cluster(process_logs):
    remove_networks_of_dead_sessions()
    network = Network(str(os.getpid()), free_subnet())
    folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-"))
    processes: dict[str, ServiceProcess] = {}
    password = secrets.token_hex(16)
    try:
        network.build()
        data, app = network.hosts["data"], network.hosts["app"]
        processes["postgresql"] = start_postgresql(data, network.subnet, folder, password, process_logs)
        processes["redis"] = start_redis(data, folder, password, process_logs)
        wait_for(lambda: database_ready(processes["postgresql"], data.address, password), 60, "PostgreSQL on the data host")
        database = {"host": data.address, "user": "faultline", "password": password, "dbname": "faultline"}
        import psycopg

        with psycopg.connect(**{**database, "dbname": "postgres"}, autocommit=True) as connection:
            connection.execute("CREATE DATABASE faultline")
        redis_url = f"redis://:{password}@{data.address}:6379/0"
        env = {
            **{name: value for name, value in os.environ.items() if not name.startswith(("LAB_", "FAULTLINE_", "CELERY_"))},
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": f"postgres://faultline:{password}@{data.address}:5432/faultline",
            "REDIS_URL": redis_url,
            "DEBUG": "0",
            "PLAIN_HTTP": "1",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": app.address,
            "HOST": app.address,
            "WEB_PORT": str(WEB_PORT),
            "LIVE_PORT": str(WEB_PORT + 1),
            "WEB_WORKERS": "1",
            "WORKER_CONCURRENCY": "2",
            "HEARTBEAT_TTL": str(HEARTBEAT_TTL),
            "PYTHONUNBUFFERED": "1",
            "PATH": os.pathsep.join([str(Path(python_argv()[0]).parent), os.environ.get("PATH", "")]),
            **TIMINGS,
        }
        cluster = Cluster(network, env, database, redis_url, processes)
        cluster.manage("migrate", "--noinput")
        for name in ("web", "relay", "live"):
            processes[name] = ServiceProcess(f"app-{name}", app.argv(*procfile_command(name)), env, process_logs).start()
        for name in WORKERS:
            processes[name] = ServiceProcess(name, network.hosts[name].argv(*procfile_command("worker")), env, process_logs).start()

        def everything_up():
            exited = [name for name, process in processes.items() if not process.running()]
            assert not exited, f"{', '.join(exited)} exited at start:\n{cluster.logs()}"
            return (http_status(cluster.web + "/healthz") == 200 and cluster.heartbeats("worker") == set(WORKERS)
                    and cluster.heartbeats("relay") == {"app"} and cluster.heartbeats("live") == {"app"})  # fmt: skip

        try:
            wait_for(everything_up, 90, "web, relay and live on the app host and a worker on each worker host")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{cluster.logs()}") from None
        yield cluster
    finally:
        # Shown with a failure's report: what each process said last.
        print(process_logs_tail(processes))
        for process in reversed(processes.values()):
            process.stop(timeout=10)
        network.tear_down()
        shutil.rmtree(folder, ignore_errors=True)


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


@dataclass
class LabApi:
    base: str
    key: str

    def call(self, method: str, path: str, body=None) -> dict:
        request = urllib.request.Request(self.base + "/api" + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{method} {path} answered {error.code}: {error.read().decode()[:500]}") from None

    def campaign(self, first: int, count: int) -> None:
        """`count` weekly digests by email to the run's 50 users, in requests of 1,000 (the API's limit)."""
        for start in range(first, first + count, 1000):
            batch = [{"idempotency_key": f"digest-{n}", "user_id": n % 50 + 1, "template": "weekly_digest",
                      "channels": ["email"], "data": {"count": 3}} for n in range(start, min(start + 1000, first + count))]  # fmt: skip
            assert self.call("POST", "/notifications/batch", {"notifications": batch})["accepted"] == len(batch)

    def settled_audit(self, timeout: float) -> dict:
        return wait_for(lambda: (lambda audit: audit if audit["in_flight"] == 0 else None)(self.call("GET", "/runs/current/audit")),
                        timeout, "every delivery to finish", interval=1)  # fmt: skip


@pytest.fixture(scope="module")
def lab(cluster):
    """A lab run made on the app host with `manage.py create_lab_run`; its users take email at any hour."""
    made = json.loads(cluster.manage("create_lab_run", "--username", "ops").strip().splitlines()[-1])
    api = LabApi(cluster.web, made["api_key"])
    for user in range(1, made["users"] + 1):
        api.call("PUT", f"/users/{user}/notification-preferences", {"channels": {"email": True}, "quiet_hours": None})
    return api, made["run"]


def attempts_by_worker(cluster: Cluster, run_id: int, outcome: str = "succeeded") -> dict[str, int]:
    rows = cluster.sql("SELECT a.worker, count(*) FROM labs_deliveryattempt a JOIN labs_delivery d ON d.id = a.delivery_id"
                       " WHERE d.run_id = %s AND a.outcome = %s GROUP BY a.worker", run_id, outcome)  # fmt: skip
    return dict(rows)


def assert_nothing_lost_nothing_twice(audit: dict, accepted: int) -> None:
    assert audit["accepted"] == accepted
    assert (audit["lost"], audit["duplicate_sends"], audit["in_flight"]) == (0, 0, 0), audit
    assert audit["delivered"] == audit["provider_sends"] == accepted, audit


def test_a_campaign_is_delivered_by_workers_on_two_hosts_and_survives_losing_one(cluster, lab):
    api, run_id = lab
    node = {name: f"celery@{name}" for name in WORKERS}

    # 1. A campaign of 2,000 (20 batch messages); each bulk call takes 0.2 s, so both workers get some.
    api.call("PUT", "/runs/current/faults", {"faults": {EMAIL_PRIMARY: {"latency_ms": 200}}})
    api.campaign(0, 2000)
    assert_nothing_lost_nothing_twice(api.settled_audit(timeout=60), 2000)
    made = attempts_by_worker(cluster, run_id)
    assert set(made) == set(node.values()), f"attempts by worker: {made}"
    assert sum(made.values()) == 2000

    # 2. A second campaign with 1 s bulk calls; once worker-a holds some of it, kill every process on worker-a.
    api.call("PUT", "/runs/current/faults", {"faults": {EMAIL_PRIMARY: {"latency_ms": 1000}}})
    api.campaign(2000, 2000)
    holding = "SELECT id FROM labs_delivery WHERE run_id = %s AND status = 'sending' AND claimed_by = %s"
    wait_for(lambda: cluster.sql(holding, run_id, node["worker-a"]), 60, "worker-a to hold part of the second campaign")
    lost_host = cluster.network.hosts["worker-a"]
    lost_host.kill_everything()
    cluster.processes["worker-a"].kill()
    assert lost_host.pids() == []
    # Read what worker-a held once PostgreSQL has closed its connections: a commit it sent just
    # before dying is then applied (or its transaction rolled back), never still on the way.
    connected = "SELECT count(*) FROM pg_stat_activity WHERE client_addr = %s::inet"
    wait_for(lambda: cluster.sql(connected, lost_host.address) == [(0,)], 30, "PostgreSQL to drop worker-a's connections")
    held = {delivery_id for (delivery_id,) in cluster.sql(holding, run_id, node["worker-a"])}
    assert held, "the kill found worker-a holding deliveries"
    api.call("DELETE", "/runs/current/faults")

    # 3. The relay takes over what worker-a held once its lease runs out, and worker-b finishes everything.
    assert_nothing_lost_nothing_twice(api.settled_audit(timeout=90), 4000)
    outcomes = cluster.sql("SELECT a.delivery_id, a.outcome, a.worker FROM labs_deliveryattempt a WHERE a.delivery_id = ANY(%s)",
                           sorted(held))  # fmt: skip
    crashed = {delivery for delivery, outcome, worker in outcomes if outcome == "crashed" and worker == node["worker-a"]}
    assert crashed == held, "each delivery worker-a held has a crashed attempt naming worker-a"
    finished_by = {delivery: worker for delivery, outcome, worker in outcomes if outcome == "succeeded"}
    assert finished_by == {delivery: node["worker-b"] for delivery in held}, "worker-b finished what worker-a held"
    wait_for(lambda: cluster.heartbeats("worker") == {"worker-b"}, 10, "worker-a's heartbeat to go stale while worker-b's stays fresh")
    assert http_status(cluster.web + "/healthz") == 200, "the site is healthy with the one worker host left"
