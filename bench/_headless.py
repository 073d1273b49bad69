"""A learner's lab page without a browser, for benchmarks that need more pages than Chromium holds here.

A `HeadlessPage` does over HTTP what static/js/labs.js and the classroom bar do, so the
server carries the same load as for a page in Chromium:
1. GET the lab page with the learner's session cookie, and read from it what the script
   reads: the live stream's URL and token, the last event id, the panels, fault panel and
   classroom bar URLs, and the CSRF token.
2. Hold the live stream open (one thread), resuming after the last event id when it drops,
   and note for every event the time from its emission to its arrival (`lags`), as
   `window.faultlineLive.lags` does.
3. After each frame, ask for the heavy panels as the page does: one request at a time, at
   most once a second, and 20 times the last drawing time apart when the server is slow
   (never more than 2 s), or as long as the last answer asked (data-next-ms, labs/pace.py).
   The strip's delivered count moves with each frame's moves and starts again from each
   panels answer's figures plus the moves after its event (labs.js "The strip"); `delivered`
   notes each count as it would be drawn.
   Fault events redraw the fault panel; classroom events and the bar's own timer the classroom bar.
What it does not do is parse and draw the HTML: Chromium's own cost stays with the
Chromium pages of the same run.
"""

import html
import http.client
import json
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode, urlsplit

PANELS_MIN_S = 1.0  # labs.js PANELS_MIN_MS
PANELS_MAX_GAP_S = 2.0  # labs.js PANELS_MAX_GAP_MS
CLASSROOM_POLL = re.compile(r'id="classroom-bar"[^>]*hx-trigger="[^"]*every (\d+)s')  # the classroom bar's own poll
DELIVERED = re.compile(r'data-testid="strip-delivered">(\d+)<')  # the panels' delivered count (templates/labs/pipeline_diagram.html)
THROUGH = re.compile(r'id="pipeline-strip"[^>]*data-events-through="([^"]*)"')  # the newest event the figures include
NEXT_MS = re.compile(r'data-next-ms="(\d+)"')  # when the server asks the page to come back (labs/pace.py)


class Session:
    """Cookies and CSRF token of one signed-in person, talking to the web process."""

    def __init__(self, port: int, cookies: dict[str, str]):
        self.port = port
        self.cookies = dict(cookies)
        self.csrf = ""

    def request(self, method: str, path: str, form: dict | None = None, htmx: bool = True, timeout: float = 60) -> tuple[int, str]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = None
        if htmx:
            headers["HX-Request"] = "true"
        if method == "POST":
            headers.update({"X-CSRFToken": self.csrf, "Content-Type": "application/x-www-form-urlencoded",
                            "Origin": f"http://127.0.0.1:{self.port}"})  # fmt: skip
            body = urlencode(form or {}, doseq=True)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            text = response.read().decode()
            for cookie in response.headers.get_all("Set-Cookie") or []:
                name, _, value = cookie.split(";", 1)[0].partition("=")
                self.cookies[name.strip()] = value.strip()
        finally:
            connection.close()
        token = re.search(r'hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'', text)
        if token:
            self.csrf = token[1]
        return response.status, text

    def get(self, path: str, htmx: bool = True) -> str:
        status, text = self.request("GET", path, htmx=htmx)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")
        return text

    def post(self, path: str, form: dict) -> str:
        status, text = self.request("POST", path, form)
        if status not in (200, 204):
            raise RuntimeError(f"POST {path} answered {status}: {text[:300]}")
        return text


def _attribute(page: str, name: str) -> str:
    found = re.search(rf'{name}="([^"]*)"', page)
    if not found:
        raise RuntimeError(f"the lab page has no {name}")
    return html.unescape(found[1])


class HeadlessPage:
    def __init__(self, session: Session, lab_path: str, requests: ThreadPoolExecutor):
        self.session = session
        self.requests = requests  # the page's side requests (panels, fault panel, classroom bar)
        page = session.get(lab_path, htmx=False)
        self.stream_url = urlsplit(_attribute(page, "data-stream-url"))
        self.last_id = _attribute(page, "data-last-event")
        self.panels_url = _attribute(page, "data-panels-url")
        self.faults_url = _attribute(page, "data-faults-url")
        bar = re.search(r'id="classroom-bar"[^>]*hx-get="([^"]+)"', page, re.S)
        self.classroom_url = html.unescape(bar[1]) if bar else None
        poll = CLASSROOM_POLL.search(page)
        self.classroom_poll_s = int(poll[1]) if poll else 60
        self.lags: list[float] = []  # seconds from emission to arrival, one per event
        self.delivered: list[tuple[int, float]] = []  # (the strip's delivered count, when it showed it), as labs.js draws it
        self._strip_base, self._strip_through = 0, "0-0"  # the last panels answer's count and the event it read through
        self._moves: list[tuple[str, int]] = []  # (event id, amount) of delivered moves after that event
        self.classroom: list[tuple[float, str]] = []  # (arrival, text) of every classroom event
        self.frames = 0
        self.panel_requests = 0
        self._panels_busy = self._panels_wanted = False
        self._panels_timer: threading.Timer | None = None
        self._last_panels, self._panels_gap = 0.0, PANELS_MIN_S
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._connection = None
        self.connected = threading.Event()

    def start(self) -> "HeadlessPage":
        threading.Thread(target=self._listen, daemon=True).start()
        threading.Thread(target=self._poll_classroom, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        connection = self._connection
        if connection is not None and connection.sock is not None:
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)  # wakes the thread reading it; close() alone would not
            except OSError:
                pass

    # --- The live stream --------------------------------------------------------------------

    def _listen(self) -> None:
        while not self._stopped.is_set():
            try:
                self._read_stream()
            except (OSError, http.client.HTTPException):
                pass
            if not self._stopped.is_set():
                time.sleep(0.25)  # the page waits a growing, jittered delay; one short one is enough here

    def _read_stream(self) -> None:
        path = f"{self.stream_url.path}?{self.stream_url.query}&after={self.last_id}"
        # A path alone ("/live/…", behind a proxy) is on the page's own origin.
        host, port = (self.stream_url.hostname, self.stream_url.port) if self.stream_url.hostname else ("127.0.0.1", self.session.port)
        self._connection = connection = http.client.HTTPConnection(host, port, timeout=30)
        cookie = "; ".join(f"{k}={v}" for k, v in self.session.cookies.items())
        connection.request("GET", path, headers={"Accept": "text/event-stream", "Cookie": cookie})
        response = connection.getresponse()
        if response.status != 200:
            raise http.client.HTTPException(f"the stream answered {response.status}")
        self.connected.set()
        kind, data = "", ""
        while not self._stopped.is_set():
            line = response.readline()
            if not line:
                return
            line = line.decode().rstrip("\n")
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif not line:
                if kind == "events" and data:
                    self._apply(json.loads(data), time.time())
                kind, data = "", ""

    def _apply(self, payload: dict, arrived: float) -> None:
        self.last_id = payload["last"]
        self.frames += 1
        self.lags.extend(arrived - at for at in payload["at"])
        with self._lock:
            moved = [(event_id, amount) for event_id, figure, amount in payload.get("moves", ())
                     if figure == "delivered" and _after(event_id, self._strip_through)]  # fmt: skip
            if moved:
                self._moves += moved
                self._show_delivered(arrived)
        kinds = payload["kinds"]
        if "classroom" in kinds:  # its words: in the rows drawn (the frame's newest 60) or the last three announced
            self.classroom.append((arrived, " ".join(payload["announce"]) + " " + html.unescape(payload["html"])))
            if self.classroom_url:
                self.requests.submit(self._quietly, self.classroom_url)
        if "fault_changed" in kinds or "defences_changed" in kinds:
            self.requests.submit(self._quietly, self.faults_url)
        self._request_panels()

    # --- What the page asks the web process for -----------------------------------------------

    def _request_panels(self) -> None:
        with self._lock:
            self._panels_wanted = True
            if self._panels_busy or self._panels_timer is not None:
                return
            wait = self._last_panels + self._panels_gap - time.monotonic()
            if wait > 0:
                self._panels_timer = threading.Timer(wait, self._panels_due)
                self._panels_timer.daemon = True
                self._panels_timer.start()
                return
            self._panels_wanted, self._panels_busy = False, True
            self._last_panels = time.monotonic()
        self.requests.submit(self._draw_panels)

    def _panels_due(self) -> None:
        with self._lock:
            self._panels_timer = None
        if not self._stopped.is_set():
            self._request_panels()

    def _draw_panels(self) -> None:
        asked = time.monotonic()
        answer = self._quietly(self.panels_url)
        shown, through, next_ms = DELIVERED.search(answer), THROUGH.search(answer), NEXT_MS.search(answer)
        with self._lock:
            if shown and through:  # the strip starts again from the answer's figures plus the moves after its event
                self._strip_base, self._strip_through = int(shown[1]), through[1]
                self._moves = [move for move in self._moves if _after(move[0], self._strip_through)]
                self._show_delivered(time.time())
            self._panels_busy = False
            self.panel_requests += 1
            own = min(PANELS_MAX_GAP_S, max(PANELS_MIN_S, 20 * (time.monotonic() - asked)))
            self._panels_gap = max(int(next_ms[1]) / 1000 if next_ms else 0.0, own)
            again = self._panels_wanted
        if again and not self._stopped.is_set():
            self._request_panels()

    def _show_delivered(self, when: float) -> None:
        count = self._strip_base + sum(amount for _, amount in self._moves)
        if not self.delivered or self.delivered[-1][0] != count:
            self.delivered.append((count, when))

    def _poll_classroom(self) -> None:
        while self.classroom_url and not self._stopped.wait(self.classroom_poll_s):
            self._quietly(self.classroom_url)

    def _quietly(self, path: str) -> str:
        try:
            return self.session.request("GET", path)[1]
        except (OSError, http.client.HTTPException):
            return ""  # the page shrugs off a failed refresh too


def _after(a: str, b: str) -> bool:
    """Stream id `a` comes after `b` (labs.js idAfter)."""
    x, y = (tuple(int(part) for part in value.split("-")) for value in (a, b))
    return x > y
