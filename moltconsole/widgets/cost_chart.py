"""Cost over time as a bar chart with labelled axes: dollars up the side, time along the bottom."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget

from moltconsole.widgets.cost_format import money
from moltconsole_shared.wire.reports import SeriesPoint

EIGHTHS = " ▁▂▃▄▅▆▇█"


def merge_points(points: Sequence[SeriesPoint], columns: int) -> list[SeriesPoint]:
    """At most ``columns`` points: neighbours are summed when there are more than fit."""
    if columns <= 0:
        return []
    group = max(1, math.ceil(len(points) / columns))
    if group == 1:
        return list(points)
    merged = []
    for i in range(0, len(points), group):
        part = points[i:i + group]
        merged.append(SeriesPoint(
            start=part[0].start, cost_nanos=sum(p.cost_nanos for p in part),
            requests=sum(p.requests for p in part),
        ))
    return merged


def time_label(start: float, bucket_seconds: float, span_seconds: float) -> str:
    """A bucket's start as the axis shows it: the time over a day, the date and time over
    days of hours, the date for days."""
    if bucket_seconds >= 86_400:
        fmt = "%m-%d"
    elif span_seconds > 86_400:
        fmt = "%m-%d %H:%M"
    else:
        fmt = "%H:%M"
    return time.strftime(fmt, time.localtime(start))


class CostChart(Widget, can_focus=True):
    """Vertical bars of spend per time bucket.

    The left axis shows the tallest bar's amount and $0; the bottom axis the start times of
    the first, middle and last bars. Buckets with requests but no priced cost show a dot on
    the baseline, so "requests, but nothing priced" does not look like "no requests".
    """

    COMPONENT_CLASSES = {"cost-chart--bar", "cost-chart--axis", "cost-chart--empty"}

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.points: list[SeriesPoint] = []
        self.bucket_seconds = 3600.0

    def show(self, points: Sequence[SeriesPoint], bucket_seconds: float) -> None:
        """Draw these points (one per bucket of ``bucket_seconds``)."""
        self.points = list(points)
        self.bucket_seconds = bucket_seconds
        self.refresh()

    def render(self) -> Text:
        width, height = self.size
        axis = self.get_component_rich_style("cost-chart--axis")
        if not self.points or height < 3:
            return Text("no requests in this window", style=self.get_component_rich_style(
                "cost-chart--empty"))
        peak = max(p.cost_nanos for p in self.points)
        labels = [money(peak), money(peak / 2) if peak else "", money(0)]
        gutter = max(len(label) for label in labels) + 1
        plot_width = max(1, width - gutter - 1)
        points = merge_points(self.points, plot_width)
        group_seconds = self.bucket_seconds * max(1, math.ceil(len(self.points) / plot_width))
        # Evenly spaced bars (the right edge may stay empty), a one-cell gap between them.
        step = max(1, plot_width // len(points))
        bar_width = step - 1 if step >= 2 else 1
        starts = [i * step for i in range(len(points))]
        rows = height - 1  # the bottom row holds the time labels
        cells = rows * 8

        bar = self.get_component_rich_style("cost-chart--bar")
        lines: list[Text] = []
        for row in range(rows):
            line = Text(no_wrap=True, overflow="crop")
            label = labels[0] if row == 0 else labels[1] if row == rows // 2 and rows > 4 else ""
            if row == rows - 1:
                label = labels[2]
            line.append(label.rjust(gutter - 1) + " ", axis)
            line.append("┤" if label else "│", axis)
            level_top = (rows - row) * 8  # eighths from the baseline to the top of this row
            used = 0
            for point, start in zip(points, starts, strict=True):
                line.append(" " * (start - used))
                used = start + bar_width
                filled = round(point.cost_nanos / peak * cells) if peak else 0
                if point.cost_nanos > 0:
                    filled = max(filled, 1)  # any spend is visible
                part = min(8, max(0, filled - (level_top - 8)))
                if part == 0 and row == rows - 1 and point.requests and point.cost_nanos <= 0:
                    glyph = "·"
                else:
                    glyph = EIGHTHS[part]
                line.append(glyph * bar_width, bar)
            lines.append(line)

        footer = [" "] * (gutter + 1 + plot_width)
        chosen = sorted({0, len(points) // 2, len(points) - 1})
        placed_until = gutter  # labels never overlap each other or the axis
        for index in chosen:
            text = time_label(points[index].start, group_seconds, group_seconds * len(points))
            column = gutter + 1 + starts[index]
            column = min(column, len(footer) - len(text))
            if column < placed_until:
                continue
            footer[column:column + len(text)] = list(text)
            placed_until = column + len(text) + 1
        lines.append(Text("".join(footer).rstrip(), style=axis, no_wrap=True, overflow="crop"))
        return Text("\n", no_wrap=True, overflow="crop").join(lines)

