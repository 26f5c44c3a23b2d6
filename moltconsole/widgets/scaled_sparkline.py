"""A sparkline drawn against a fixed ceiling (a memory limit, a core), not against its own range.

Textual's ``Sparkline`` scales each series between its own least and greatest value, so one
sample, or a flat series, fills the bars: CPU at 0.0% looked pegged. Here a bar's height is its
value over ``ceiling`` (or over the greatest value when that is higher), so idle draws low.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.color import Color as RichColor
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from textual.reactive import reactive
from textual.widgets import Sparkline

BARS = "▁▂▃▄▅▆▇█"


class ScaledBars:
    """``data`` as bars ``height`` rows high, each bucket's greatest value over ``ceiling``."""

    def __init__(self, data: Sequence[float], ceiling: float, width: int, height: int,
                 low: RichColor, high: RichColor) -> None:
        self.data = list(data)
        self.ceiling = max([ceiling, *self.data]) or 1.0
        self.width = width
        self.height = height
        self.low = low
        self.high = high

    def ratios(self) -> list[float]:
        """Each column's value over the ceiling, from 0 to 1 (empty without data)."""
        if not self.data:
            return []
        count = len(self.data)
        columns = []
        for column in range(self.width):
            start = column * count // self.width
            end = max(start + 1, (column + 1) * count // self.width)
            columns.append(max(self.data[start:end]) / self.ceiling)
        return columns

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # No data yet: the lowest bar across, as Textual draws it.
        ratios = self.ratios() or [0.0] * self.width
        steps = len(BARS) * self.height
        for row in reversed(range(self.height)):
            for ratio in ratios:
                # At least the lowest bar: a sample of 0 is still a sample.
                part = max(1, round(ratio * steps)) - row * len(BARS)
                if part <= 0:
                    yield Segment(" ")
                else:
                    style = Style(color=_blend(self.low, self.high, ratio))
                    yield Segment(BARS[min(part, len(BARS)) - 1], style)
            if row:
                yield Segment.line()


def _blend(low: RichColor, high: RichColor, ratio: float) -> RichColor:
    a, b = low.get_truecolor(), high.get_truecolor()
    r = min(max(ratio, 0.0), 1.0)
    return RichColor.from_rgb(*(x + (y - x) * r for x, y in zip(a, b, strict=True)))


class ScaledSparkline(Sparkline):
    """A ``Sparkline`` whose bars are measured against ``ceiling``."""

    ceiling: reactive[float] = reactive(100.0)

    def render(self) -> ScaledBars:
        """The bars, coloured from the min to the max colour by their height."""
        _, base = self.background_colors
        low = base + self.get_component_styles("sparkline--min-color").color
        high = base + self.get_component_styles("sparkline--max-color").color
        return ScaledBars(self.data or [], self.ceiling, self.size.width, self.size.height,
                          low.rich_color, high.rich_color)
