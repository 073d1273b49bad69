"""The load bench/workshop.py puts on a workshop: every run's steady traffic, learners' faults for the grid, one heavy run."""

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

TEMPLATE = "weekly_digest"  # the steady stream form's own choice


class SteadyTraffic:
    """`per_second` intents a second into every run, each run at its own moment of the second.

    By "pages": each headless page posts its steady stream form, as the page's script does
    (the Chromium pages press "Start the stream" themselves), so the web process takes
    every intent. By "server": this process accepts them through the pipeline's intake,
    as the web process would, and the web process serves only what the pages ask for.
    """

    def __init__(self, learners: list[dict], per_second: int, by: str, headless: dict[int, object]):
        self.learners = learners if by == "server" else [learner for learner in learners if learner["run_id"] in headless]
        self.per_second = per_second
        self.by = by
        self.headless = headless  # run id → HeadlessPage
        self.refused = 0
        self.skipped = 0  # ticks left out because that run's previous one was not done yet
        self._pending: set[int] = set()
        self._stop = threading.Event()
        self._senders = ThreadPoolExecutor(max_workers=32 if by == "pages" else 4, thread_name_prefix="traffic")
        self._runs = {}
        if by == "server":
            from labs.models import LabRun

            self._runs = LabRun.objects.in_bulk([learner["run_id"] for learner in self.learners])

    def start(self) -> "SteadyTraffic":
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._senders.shutdown(wait=True, cancel_futures=True)

    def _run(self) -> None:
        moments = sorted((random.random(), learner["run_id"]) for learner in self.learners)
        second = time.monotonic()
        while not self._stop.is_set():
            for at, run_id in moments:
                delay = second + at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                if run_id in self._pending:
                    self.skipped += 1
                    continue
                self._pending.add(run_id)
                try:
                    self._senders.submit(self._send, run_id)
                except RuntimeError:  # stop() shut the senders down meanwhile
                    return
            second += 1

    def _send(self, run_id: int) -> None:
        try:
            if self.by == "pages":
                status, _ = self.headless[run_id].session.request("POST", f"/labs/runs/{run_id}/burst", {
                    "stream": "1", "stream-count": str(self.per_second), "stream-template": TEMPLATE}, htmx=False)  # fmt: skip
                if status != 200:
                    self.refused += 1
            else:
                from labs.pipeline import traffic

                traffic.send_burst(self._runs[run_id], self.per_second, TEMPLATE)
        except Exception:
            self.refused += 1
        finally:
            self._pending.discard(run_id)


class TileToggles:
    """A learner fault set or cleared on a random run, `per_second` times a second, each noted with its phase.

    A run waits `rest_s` between two changes, so the grid can show each change on its own.
    """

    def __init__(self, learners: list[dict], fault: tuple[str, dict], per_second: float, rest_s: float):
        self.learners = learners
        self.fault = fault
        self.per_second = per_second
        self.rest_s = rest_s
        self.phase = "steady"
        self.done: list[tuple[str, str, float, bool]] = []  # (phase, learner, when, fault on)
        self._on: set[int] = set()
        self._last: dict[int, float] = {}
        self._stop = threading.Event()

    def start(self) -> "TileToggles":
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        from labs.pipeline import faults

        target, settings = self.fault
        while not self._stop.wait(1 / self.per_second):
            now = time.time()
            ready = [learner for learner in self.learners if now - self._last.get(learner["run_id"], 0) > self.rest_s]
            if not ready:
                continue
            learner = random.choice(ready)
            run_id = learner["run_id"]
            turn_on = run_id not in self._on
            when = time.time()
            faults.set_fault(run_id, target, **(settings if turn_on else {}))  # what the learner's fault form does
            (self._on.add if turn_on else self._on.discard)(run_id)
            self._last[run_id] = when
            self.done.append((self.phase, learner["name"], when, turn_on))


class HeavyRun:
    """One learner's run with email-primary down and a 1,000-message campaign every `every_s` seconds.

    By "pages" the campaigns come from the learner's burst form (`session`), so they wait their turn
    in the web process; by "server" this process sends them through the intake, as SteadyTraffic does.
    """

    def __init__(self, learner: dict, session, every_s: float, by: str):
        self.learner, self.session, self.every_s, self.by = learner, session, every_s, by
        self.campaigns = 0
        self._stop = threading.Event()

    def start(self) -> "HeavyRun":
        from labs.pipeline import faults

        faults.set_fault(self.learner["run_id"], "email-primary", down=True)
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        from labs.models import LabRun
        from labs.pipeline import traffic

        run = LabRun.objects.get(pk=self.learner["run_id"])
        while not self._stop.is_set():
            if self.by == "pages":
                self.session.post(f"/labs/runs/{run.pk}/burst", {"count": "1000", "template": TEMPLATE})
            else:
                traffic.send_burst(run, 1000, TEMPLATE)
            self.campaigns += 1
            self._stop.wait(self.every_s)
