"""The debrief's chart: the timeline of what was injected above the cohort's series, on one time axis.

Drawn as inline SVG by templates/workshops/debrief.html, the way labs/charts.py draws the lab
page's charts: this module turns times into coordinates in a fixed viewBox, so the chart is
plain markup (no script, nothing fetched) that prints, and reads in both themes because the
template draws with `currentColor` and the site's colour variables. Each fault's window is
shaded across every series, so what a fault did lines up under it.
"""

from dataclasses import dataclass, field
from datetime import datetime

from workshops.debrief import Debrief, Span

WIDTH = 800
LANE = 18  # a timeline lane
ROW = 64  # a series: its label line, then its bars
BARS = 42  # the bars' greatest height
AXIS = 24  # the time axis and its labels
TICK_STEPS_S = (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 4 * 3600, 12 * 3600, 24 * 3600)
MOST_TICKS = 8
CHAR_WIDTH = 6.2  # of the 11px labels: a fault's name is written in its window when it fits


@dataclass
class Mark:
    x: float
    width: float
    y: float
    kind: str
    title: str
    label: str = ""  # written inside the mark when it fits


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass
class Row:
    name: str
    label: str
    summary: str
    y: float  # top of the row
    baseline: float
    bars: list[Bar] = field(default_factory=list)


@dataclass
class Chart:
    height: float
    rows_top: float
    axis_y: float
    windows: list[Mark]  # the faults' windows, shaded across the rows
    marks: list[Mark]  # the timeline: windows in their lanes, moments on the top lane
    rows: list[Row]
    ticks: list[tuple[float, str]]
    description: str


def _x(span: Span, at: datetime) -> float:
    whole = (span.end - span.start).total_seconds()
    return min(WIDTH, max(0.0, (at - span.start).total_seconds() / whole * WIDTH))


def _lanes(windows: list) -> list[int]:
    """A lane per window, the first whose last window has ended, so windows that overlap sit one above the other."""
    ends: list[datetime] = []
    lanes = []
    for entry in windows:
        lane = next((n for n, end in enumerate(ends) if end <= entry.at), len(ends))
        if lane == len(ends):
            ends.append(entry.until)
        ends[lane] = entry.until
        lanes.append(lane)
    return lanes


def _ticks(span: Span) -> list[tuple[float, str]]:
    seconds = (span.end - span.start).total_seconds()
    step = next((s for s in TICK_STEPS_S if seconds / s <= MOST_TICKS), TICK_STEPS_S[-1])
    first = -(-int(span.start.timestamp()) // step) * step
    shown = "%H:%M" if step >= 60 else "%H:%M:%S"
    ticks = []
    for moment in range(first, int(span.end.timestamp()) + 1, step):
        at = datetime.fromtimestamp(moment, tz=span.start.tzinfo)
        ticks.append((_x(span, at), at.strftime(shown)))
    return ticks


def _number(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def chart(debrief: Debrief) -> Chart:
    span = debrief.span
    windows = debrief.windows
    lanes = _lanes(windows)
    lane_count = max(lanes, default=-1) + 1
    marks = []
    for entry in (e for e in debrief.timeline if not e.is_window):
        marks.append(Mark(_x(span, entry.at), 0, LANE / 2, entry.kind, f"{entry.at:%H:%M:%S} {entry.title}"
                          + (f" — {entry.detail}" if entry.detail else "")))  # fmt: skip
    shaded = []
    for entry, lane in zip(windows, lanes, strict=True):
        x = _x(span, entry.at)
        width = max(2.0, _x(span, entry.until) - x)
        title = f"{entry.at:%H:%M:%S}–{entry.until:%H:%M:%S} {entry.title} ({entry.detail})"
        fits = len(entry.title) * CHAR_WIDTH + 8 <= width
        marks.append(Mark(x, width, LANE * (lane + 1) + 2, entry.kind, title, entry.title if fits else ""))
        if entry.kind == "fault":  # a fault's window is shaded across every chart, to see what it did
            shaded.append(Mark(x, width, 0, entry.kind, title))
    rows_top = LANE * (lane_count + 1) + 8
    rows = []
    for n, series in enumerate(debrief.series):
        top = rows_top + n * ROW
        baseline = top + ROW - 6
        values = series.values
        peak = max(values, default=0)
        unit = "/s" if series.per_second else f" in {span.bucket_s} s" if span.bucket_s > 1 else "/s"
        row = Row(series.name, series.label, f"{series.total:,} in all · peak {_number(peak)}{unit}", top, baseline)
        bar_width = WIDTH / span.bins
        for index, (count, value) in enumerate(zip(series.counts, values, strict=True)):
            if count:
                height = max(1.5, value / peak * BARS)
                row.bars.append(Bar(index * bar_width, baseline - height, max(1.0, bar_width - 0.4), height,
                                    f"{count:,} from {span.bucket_start(index):%H:%M:%S}"))  # fmt: skip
        rows.append(row)
    axis_y = rows_top + len(rows) * ROW
    totals = ", ".join(f"{s.label}: {s.total:,}" for s in debrief.series)
    description = (f"From {span.start:%H:%M:%S} to {span.end:%H:%M:%S} UTC: {len(windows)} fault window(s), "
                   f"{len(debrief.timeline) - len(windows)} moment(s); {totals}.")  # fmt: skip
    return Chart(axis_y + AXIS, rows_top, axis_y, shaded, marks, rows, _ticks(span), description)
