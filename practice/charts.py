"""Charts as inline SVG, drawn on the server: no chart library, nothing from another host.

Each function returns the geometry a template draws (templates/practice/column_chart.html
and bar_chart.html); the numbers are also listed in a table for screen readers.
"""

from dataclasses import dataclass

WIDTH = 480
COLUMN_HEIGHT = 160
BAR_ROW = 26
LABEL_WIDTH = 160


@dataclass(frozen=True)
class Mark:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: float
    text: str  # what a tooltip and the table say

    @property
    def center(self) -> float:
        return self.x + self.width / 2

    @property
    def end(self) -> float:
        return self.x + self.width


def column_chart(points: list[tuple[str, int]], unit: str) -> dict:
    """Vertical columns, one per point (label, count), scaled to the largest count."""
    top = max((value for _, value in points), default=0) or 1
    slot = WIDTH / max(len(points), 1)
    marks = []
    for i, (label, value) in enumerate(points):
        height = COLUMN_HEIGHT * value / top
        x = i * slot + slot * 0.15
        marks.append(Mark(x, COLUMN_HEIGHT - height, slot * 0.7, height, label, value, f"{label}: {value} {unit}"))
    # Label every column when they fit, else about seven of them.
    step = max(1, round(len(points) / 7))
    ticks = [(m.center, m.label) for i, m in enumerate(marks) if i % step == 0]
    return {"marks": marks, "ticks": ticks, "width": WIDTH, "height": COLUMN_HEIGHT, "top": top, "unit": unit}


def bar_chart(rows: list[tuple[str, float]], maximum: float, unit: str) -> dict:
    """Horizontal bars, one per row (label, value), on a fixed scale (0 to `maximum`)."""
    span = WIDTH - LABEL_WIDTH - 50
    marks = []
    for i, (label, value) in enumerate(rows):
        length = span * min(value, maximum) / maximum
        marks.append(Mark(LABEL_WIDTH, i * BAR_ROW + 4, length, BAR_ROW - 8, label, value, f"{label}: {value:g}{unit}"))
    height = max(len(rows), 1) * BAR_ROW
    return {"marks": marks, "width": WIDTH, "height": height, "unit": unit, "label_width": LABEL_WIDTH, "span": span}
