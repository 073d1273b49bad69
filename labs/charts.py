"""Geometry for the lab page's small charts, drawn as inline SVG by the templates.

Each function turns timestamps into coordinates in a fixed viewBox, so a chart is plain
markup: no script, nothing fetched from another host, and it reads in both themes
because the templates draw with `currentColor` and the site's colour variables.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

SPARK_WIDTH, SPARK_HEIGHT = 120, 28
RETRY_WIDTH, RETRY_BASELINE = 600, 74
RETRY_BIN_MS = 100
TRACK_WIDTH = 600


def stack(count: int, top: float, bottom: float, gap: float = 6) -> list[tuple[float, float]]:
    """(y, height) of `count` boxes stacked evenly between `top` and `bottom`."""
    height = (bottom - top - gap * (count - 1)) / count
    return [(top + n * (height + gap), height) for n in range(count)]


@dataclass
class Sparkline:
    points: str  # an SVG polyline's points
    total: int
    peak: int
    last: int  # in the latest full second


def sparkline(counted: list[tuple[datetime, int]], now: datetime, seconds: int) -> Sparkline:
    """Per-second counts over the last `seconds`, as a polyline, from (second, how many) pairs the
    database counted (a second that began before the window's start, which the window cuts,
    goes in the first bar)."""
    counts = [0] * seconds
    start = now - timedelta(seconds=seconds)
    for at, n in counted:
        index = max(0, int((at - start).total_seconds()))
        if index < seconds:
            counts[index] += n
    peak = max(counts)
    step = SPARK_WIDTH / (seconds - 1)
    points = " ".join(
        f"{i * step:.1f},{SPARK_HEIGHT - 2 - (count / peak * (SPARK_HEIGHT - 4) if peak else 0):.1f}"
        for i, count in enumerate(counts)
    )
    return Sparkline(points, sum(counts), peak, counts[-2] if seconds > 1 else counts[-1])


@dataclass
class Bar:
    x: float
    height: float

    @property
    def y(self) -> float:
        return RETRY_BASELINE - self.height

    count: int
    future: bool  # not due yet


@dataclass
class RetryChart:
    bars: list[Bar]
    ticks: list[tuple[float, str]]  # (x, label)
    now_x: float
    total: int
    herd_pct: int
    bar_width: float


def retry_chart(retries: list, now: datetime, herd_pct: int) -> RetryChart:
    """When retries (labs.checks.ScheduledRetry) come due, in 100 ms bins, from 30 s ago to the last one scheduled."""
    begin = now.timestamp() - 30
    end = max([now.timestamp() + 5, *[retry.due_at + 0.5 for retry in retries]])
    end = min(end, now.timestamp() + 60)
    span_ms = (end - begin) * 1000
    bins: dict[int, int] = {}
    for retry in retries:
        if begin <= retry.due_at <= end:
            index = int((retry.due_at - begin) * 1000 // RETRY_BIN_MS)
            bins[index] = bins.get(index, 0) + 1
    peak = max(bins.values(), default=0)
    scale = RETRY_WIDTH / span_ms
    bars = [
        Bar(index * RETRY_BIN_MS * scale, max(2.0, count / peak * (RETRY_BASELINE - 4)), count,
            begin + index * RETRY_BIN_MS / 1000 > now.timestamp())
        for index, count in sorted(bins.items())
    ]  # fmt: skip
    ticks = []
    for second in range(-30, int(end - now.timestamp()) + 1, 5):
        ticks.append(((now.timestamp() + second - begin) * 1000 * scale, "now" if second == 0 else f"{second:+d} s"))
    return RetryChart(bars, ticks, (now.timestamp() - begin) * 1000 * scale, len(retries), herd_pct,
                      max(1.5, RETRY_BIN_MS * scale - 0.5))  # fmt: skip


@dataclass
class Segment:
    x: float
    width: float
    kind: str  # attempt-ok, attempt-bad, backoff, ceiling
    title: str


@dataclass
class Marker:
    x: float
    kind: str
    title: str


@dataclass
class LineageTrack:
    segments: list[Segment] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    span_label: str = ""


def lineage_track(origin: datetime, delivery, moments) -> LineageTrack:
    """One delivery's life on a line from its acceptance: attempts, each backoff (and its ceiling) to scale."""
    attempts = list(delivery.attempt_rows.all())
    ends = [m.at for m in moments] + [a.finished_at for a in attempts]
    ends += [a.finished_at + timedelta(milliseconds=a.backoff_cap_ms or 0) for a in attempts if a.backoff_ms is not None]
    span_ms = max(100.0, max((end - origin).total_seconds() * 1000 for end in ends))
    scale = TRACK_WIDTH / span_ms

    def x(at: datetime) -> float:
        return max(0.0, (at - origin).total_seconds() * 1000 * scale)

    track = LineageTrack(span_label=f"{span_ms / 1000:.1f} s" if span_ms >= 1000 else f"{span_ms:.0f} ms")
    for attempt in attempts:
        ok = attempt.outcome == "succeeded"
        track.segments.append(Segment(x(attempt.started_at), max(2.0, x(attempt.finished_at) - x(attempt.started_at)),
                                      "attempt-ok" if ok else "attempt-bad", f"attempt {attempt.number}: {attempt.outcome}"))  # fmt: skip
        if attempt.backoff_ms is not None:
            start = x(attempt.finished_at)
            track.segments.append(Segment(start, (attempt.backoff_cap_ms or 0) * scale, "ceiling",
                                          f"ceiling {attempt.backoff_cap_ms} ms"))  # fmt: skip
            track.segments.append(Segment(start, max(1.0, attempt.backoff_ms * scale), "backoff",
                                          f"backoff {attempt.backoff_ms} ms"))  # fmt: skip
    for moment in moments:
        if moment.kind in ("published", "dead_lettered", "replayed", "discarded", "delivered", "duplicate"):
            track.markers.append(Marker(x(moment.at), moment.kind, moment.text))
    return track
