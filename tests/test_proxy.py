"""The production profile behind a real reverse proxy from Debian's packages, Caddy and nginx.

One origin: the proxy sends /live/ to the live process and everything else to the page server,
exactly as the shipped deploy/caddy/Caddyfile and deploy/nginx/faultline.conf.template say (the
test fills in their variables as an operator would, and moves Caddy off ports 80 and 443). The
processes are the Procfile's, started with the production settings an operator uses: DEBUG off,
HTTPS (secure cookies, HSTS, redirect), PROXY_SSL_HEADER, no LAB_LIVE_URL. A learner signs up
(a POST with CSRF over the proxied origin), starts a lab run, sends a notification through the
API with the run's key, and watches it arrive on the page through the stream on the same origin.
"""

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect

from config.run import procfile_processes
from labs import runs
from labs.models import LabRun
from labs.pipeline import faults
from tests.harness import BASE_DIR, ServiceProcess, free_port, wait_for
from tests.workshop_roles import LAB, PASSWORD, make_instructor
from workshops import joining
from workshops.models import Workshop

pytestmark = pytest.mark.django_db(transaction=True)

DEPLOY = BASE_DIR / "deploy"
PRODUCTION = {  # what README's "Self-hosting" tells an operator to set behind a proxy (plus the suite's key)
    "DEBUG": "0",
    "PLAIN_HTTP": "0",
    "PROXY_SSL_HEADER": "X-Forwarded-Proto",
    "CLIENT_ADDRESS_HEADER": "X-Real-IP",
    "ALLOWED_HOSTS": "localhost",
    "LAB_STREAM_HEARTBEAT": "2",
}
UNVERIFIED = ssl.create_default_context()
UNVERIFIED.check_hostname = False
UNVERIFIED.verify_mode = ssl.CERT_NONE  # the proxies' certificates here are their own test ones


def accepting(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@dataclass
class Site:
    web_port: int
    live_port: int
    processes: dict[str, ServiceProcess]


@pytest.fixture(scope="module")
def site(process_env, process_logs):
    """The Procfile's processes (web, worker, urgent, relay, live) with the production settings."""
    from config.heartbeat import alive

    web_port, live_port = free_port(), free_port()
    env = {**process_env, **PRODUCTION, "HOST": "127.0.0.1", "WEB_PORT": str(web_port), "LIVE_PORT": str(live_port),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}  # fmt: skip
    env.pop("LAB_LIVE_URL", None)
    processes = {
        name: ServiceProcess(f"production-{name}", ["/bin/sh", "-c", f"exec {command}"], env, process_logs).start()
        for name, command in procfile_processes().items()
    }
    try:
        for port in (web_port, live_port):
            wait_for(lambda: accepting(port), 60, f"port {port}")
        for kind in ("worker", "urgent", "relay"):
            wait_for(lambda: alive(kind), 60, f"the {kind}'s heartbeat")
        yield Site(web_port, live_port, processes)
    finally:
        for process in processes.values():
            process.stop()


@dataclass
class Proxy:
    name: str
    url: str


def start_caddy(site: Site, workdir: Path, logs: Path) -> tuple[ServiceProcess, int]:
    port, plain_port = free_port(), free_port()
    shipped = (DEPLOY / "caddy" / "Caddyfile").read_text()
    # The shipped global options, plus what a test on a shared machine needs: no admin endpoint,
    # no change to the machine's trust store, ports of its own instead of 80 and 443.
    local = f"{{\n\tadmin off\n\tskip_install_trust\n\thttp_port {plain_port}\n\thttps_port {port}\n"
    assert shipped.count("\n{\n") == 1
    caddyfile = workdir / "Caddyfile"
    caddyfile.write_text(shipped.replace("\n{\n", "\n" + local, 1))
    env = {"PATH": os.environ["PATH"], "HOME": str(workdir), "XDG_DATA_HOME": str(workdir / "data"),
           "XDG_CONFIG_HOME": str(workdir / "config"), "FAULTLINE_DOMAIN": f"localhost:{port}",
           "FAULTLINE_WEB": f"127.0.0.1:{site.web_port}", "FAULTLINE_LIVE": f"127.0.0.1:{site.live_port}"}  # fmt: skip
    check = subprocess.run(["caddy", "validate", "--config", str(caddyfile), "--adapter", "caddyfile"],
                           env=env, capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    argv = ["caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile"]
    return ServiceProcess("caddy", argv, env, logs).start(), port


def start_nginx(site: Site, workdir: Path, logs: Path) -> tuple[ServiceProcess, int]:
    port = free_port()
    key, cert = workdir / "key.pem", workdir / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)  # fmt: skip
    variables = {"FAULTLINE_DOMAIN": "localhost", "FAULTLINE_WEB": f"127.0.0.1:{site.web_port}",
                 "FAULTLINE_LIVE": f"127.0.0.1:{site.live_port}", "FAULTLINE_HTTP_PORT": str(free_port()),
                 "FAULTLINE_HTTPS_PORT": str(port), "FAULTLINE_CERT": str(cert), "FAULTLINE_KEY": str(key)}  # fmt: skip
    # As the template's header says: envsubst with the FAULTLINE_ variables only, so $host and the like stay.
    listed = " ".join(f"${{{name}}}" for name in variables)
    with open(DEPLOY / "nginx" / "faultline.conf.template") as template:
        site_conf = subprocess.run(["envsubst", listed], stdin=template, env={**os.environ, **variables},
                                   check=True, capture_output=True, text=True).stdout  # fmt: skip
    (workdir / "faultline.conf").write_text(site_conf)
    # What Debian's /etc/nginx/nginx.conf provides around a site, in the test's own folder.
    (workdir / "nginx.conf").write_text(
        f"daemon off;\nworker_processes 1;\npid {workdir}/nginx.pid;\nerror_log stderr;\nuser root;\n"
        "events { worker_connections 256; }\n"
        f"http {{\n  include /etc/nginx/mime.types;\n  access_log off;\n  client_body_temp_path {workdir}/body;\n"
        f"  proxy_temp_path {workdir}/proxy;\n  fastcgi_temp_path {workdir}/fastcgi;\n  uwsgi_temp_path {workdir}/uwsgi;\n"
        f"  scgi_temp_path {workdir}/scgi;\n  include {workdir}/faultline.conf;\n}}\n"
    )
    argv = ["nginx", "-p", str(workdir), "-e", "stderr", "-c", str(workdir / "nginx.conf")]
    check = subprocess.run([*argv, "-t"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    return ServiceProcess("nginx", argv, dict(os.environ), logs).start(), port


@pytest.fixture(scope="module", params=["caddy", "nginx"])
def proxy(request, site, tmp_path_factory, process_logs):
    if not shutil.which(request.param):
        pytest.fail(f"this test runs Debian's {request.param}: `apt-get install {request.param}` (.ci/run does)")
    workdir = tmp_path_factory.mktemp(request.param)
    start = start_caddy if request.param == "caddy" else start_nginx
    process, port = start(site, workdir, process_logs)
    url = f"https://localhost:{port}"
    try:
        wait_for(lambda: fetch(url + "/healthz")[0] == 200, 60, f"{request.param} to answer over HTTPS")
        yield Proxy(request.param, url)
    finally:
        process.stop()


def fetch(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, str]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10, context=UNVERIFIED) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()
    except OSError:
        return 0, {}, ""


def test_the_proxy_serves_pages_over_https_with_streams_on_the_same_origin(proxy, site):
    status, headers, body = fetch(proxy.url + "/")
    assert status == 200 and "Faultline" in body
    assert "max-age=" in headers.get("Strict-Transport-Security", ""), "Django saw HTTPS through the proxy's header"
    policy = dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))
    assert policy["connect-src"] == "'self'", "the page talks to its own origin only: no second port"
    # The public sees the verdict alone, although the proxy connects from this machine.
    status, _, body = fetch(proxy.url + "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    # The live process answers its streams and nothing else (asked as the proxy asks it).
    as_the_proxy = {"X-Forwarded-Proto": "https"}
    assert fetch(f"http://localhost:{site.live_port}/", headers=as_the_proxy)[0] == 404
    assert fetch(f"http://localhost:{site.live_port}/lessons/", headers=as_the_proxy)[0] == 404
    assert fetch(f"http://localhost:{site.web_port}/lessons/", headers=as_the_proxy)[0] == 200


@pytest.mark.browser
def test_a_learner_signs_up_runs_a_lab_and_watches_it_live_through_the_proxy(proxy, site, browser):
    context = browser.new_context(base_url=proxy.url, ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    streams = []
    page.on("response", lambda response: streams.append(response) if "/live/" in response.url else None)
    username = f"learner-{uuid.uuid4().hex[:6]}"
    try:
        page.goto("/accounts/signup/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password", exact=True).fill("correct-horse-battery-42")
        page.get_by_label("Password confirmation").fill("correct-horse-battery-42")
        page.get_by_role("button", name="Sign up").click()  # a POST with its CSRF token over the proxy's origin
        expect(page.get_by_role("button", name="Log out")).to_be_visible()

        page.goto("/labs/outbox-and-relay/")
        page.get_by_role("button", name="Start a run").click()
        expect(page.locator("[data-live-status]")).to_have_attribute("data-state", "live")
        assert page.evaluate("window.faultlineLive.source") == "live", "the page listens to the live process"
        assert page.locator("[data-stream-url]").get_attribute("data-stream-url").startswith("/live/")
        key = page.get_by_test_id("api-key").text_content().strip()

        body = json.dumps({"user_id": 7, "template": "password_reset", "data": {"code": "424242"}}).encode()
        status, _, answer = fetch(proxy.url + "/api/notifications", body, {
            "Authorization": f"Bearer {key}", "Content-Type": "application/json", "Idempotency-Key": "through-the-proxy"})
        assert status == 202, answer
        # The events reach the open page through the proxy while the stream stays open.
        expect(page.locator("#event-feed li[data-kind=attempt_succeeded]")).to_have_count(1, timeout=30_000)
        assert any(r.status == 200 and r.url.startswith(proxy.url + "/live/") for r in streams)
        page.screenshot(path=str(BASE_DIR / "test-artifacts" / "screenshots" / f"behind-{proxy.name}.png"))
    finally:
        print("the feed as the learner saw it:", page.locator("#event-feed").inner_text())
        context.close()
        for run in LabRun.objects.filter(owner__username=username):
            runs.delete_run(run)


@pytest.mark.browser
def test_an_instructors_emergency_stop_takes_the_live_process_lane_through_the_proxy(proxy, site, browser, django_user_model):
    """The grid polls its tiles and posts its stop to /live/ behind a proxy: the live process answers them, so
    they do not queue behind the page server's workers (labs/live_urls.py); the learner's fault is cleared all the same."""
    teacher = make_instructor(django_user_model, f"teacher-{uuid.uuid4().hex[:6]}")
    workshop = Workshop.objects.create(owner=teacher, title="Game day behind a proxy", lab=LAB, capacity=5)
    seat = joining.join(workshop, django_user_model.objects.create_user(f"learner-{uuid.uuid4().hex[:6]}", password=PASSWORD))
    faults.set_fault(seat.run_id, "email-primary", down=True)
    context = browser.new_context(base_url=proxy.url, ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto("/accounts/login/")
        page.get_by_label("Username").fill(teacher.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.goto(f"/workshops/{workshop.pk}/")
        with page.expect_response(lambda response: "/cohort" in response.url) as polled:
            pass  # the grid polls its tiles every few seconds
        assert polled.value.url.startswith(f"{proxy.url}/live/workshops/{workshop.pk}/cohort?") and polled.value.status == 200
        with page.expect_response(lambda response: response.request.method == "POST") as answered:
            page.get_by_role("button", name="Stop every fault").click()
        assert (answered.value.url, answered.value.status) == (f"{proxy.url}/live/workshops/{workshop.pk}/stop", 200)
        expect(page.get_by_test_id("stops")).to_contain_text("1 run in")
        assert faults.all_faults(seat.run_id) == {}
        assert f"/workshops/{workshop.pk}/stop" not in site.processes["web"].output(), "the page server never saw the stop"
        assert f"/workshops/{workshop.pk}/cohort" not in site.processes["web"].output(), "nor the grid's polls"
        # The learner's classroom bar, which every page asks for at once after a stop, takes the same lane.
        learner = Client()
        learner.force_login(seat.learner)
        bar_url = f"/live/workshops/seats/{seat.pk}/bar"
        status, _, bar = fetch(proxy.url + bar_url, headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={learner.cookies[settings.SESSION_COOKIE_NAME].value}",
                                                            "HX-Request": "true"})  # fmt: skip
        assert status == 200 and "stopped every fault" in bar and f'hx-get="{bar_url}"' in bar, (status, bar[:500])
        assert f"/workshops/seats/{seat.pk}/" not in site.processes["web"].output(), "the page server never saw the bar"
    finally:
        context.close()
        runs.delete_run(seat.run)
