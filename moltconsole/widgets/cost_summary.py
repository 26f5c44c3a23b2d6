"""The head of the Costs screen: spend, budgets with their warn mark, volume, latency, idle spend."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.widget import Widget

from moltconsole.formatting import duration
from moltconsole.widgets.cost_format import millis, money, percent, rate
from moltconsole_shared.wire.reports import Percentiles, Summary

LABEL_WIDTH = 8
BAR_MIN = 8
BAR_MAX = 40


def budget_bar(spent: int, budget: int, warn_percent: float, width: int) -> Text:
    """``width`` cells filled in proportion to ``spent/budget``, with ``┊`` at the warn mark.

    Green below the warn mark, yellow from it, red once the budget is spent.
    """
    share = spent / budget if budget else 0.0
    color = "red" if share >= 1 else "yellow" if share * 100 >= warn_percent else "green"
    filled = min(width, round(share * width))
    if spent > 0:
        filled = max(filled, 1)
    mark = min(width - 1, int(width * warn_percent / 100))
    bar = Text(no_wrap=True)
    for cell in range(width):
        if cell == mark and cell >= filled:
            bar.append("┊", "bold yellow")
        elif cell < filled:
            bar.append("█", color)
        else:
            bar.append("░", "dim")
    return bar


class CostSummary(Widget):
    """Spend today / 7 days / 30 days, burn rate, budget bars, requests and latency.

    Each line is a label and a few parts; a part that does not fit the width goes whole onto
    the next line, under the first (never cut, never an ellipsis), so the height follows.
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.summary: Summary | None = None
        self.window = "24h"
        self.warn_percent = 80.0

    def show(self, summary: Summary, window: str, warn_percent: float) -> None:
        """Display ``summary``; ``window`` names the span of its request figures."""
        self.summary = summary
        self.window = window
        self.warn_percent = warn_percent
        self.refresh(layout=True)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.lines(width))

    def render(self) -> Text:
        return Text("\n", no_wrap=True, overflow="crop").join(self.lines(self.size.width))

    def lines(self, width: int) -> list[Text]:
        """The summary laid out for ``width`` cells."""
        summary = self.summary
        if summary is None:
            return [Text("loading costs…", style="dim")]
        width = max(40, width)
        lines = [
            *self._spend_lines(summary, width),
            *self._burn_lines(summary, width),
            *self._budget_lines("daily", summary.today_nanos, summary.daily_budget_nanos,
                                summary.burn_rate_nanos_per_hour, width),
            *self._budget_lines("monthly", summary.month_to_date_nanos,
                                summary.monthly_budget_nanos, None, width),
            *self._volume_lines(summary, width),
            *self._latency_lines(summary, width),
            *self._idle_lines(summary, width),
        ]
        return lines

    # --- lines ----------------------------------------------------------------------------------
    def _spend_lines(self, s: Summary, width: int) -> list[Text]:
        parts = [
            _pair(f"{label} ", money(nanos))
            for label, nanos in (("today", s.today_nanos), ("7 days", s.week_nanos),
                                 ("30 days", s.month_nanos))
        ]
        return flow("spent", parts, width)

    def _burn_lines(self, s: Summary, width: int) -> list[Text]:
        burn = s.burn_rate_nanos_per_hour
        parts = [Text.assemble((rate(burn), "bold"), (" in the last hour", "dim"))]
        if burn > 0:
            parts.append(Text(f"≈ {money(round(burn * 24))}/day at this rate", "dim"))
        return flow("burn", parts, width, gap=" ")

    def _budget_lines(
        self, label: str, spent: int, budget: int | None, burn: float | None, width: int,
    ) -> list[Text]:
        if not budget:
            section = "budget.daily_usd" if label == "daily" else "budget.monthly_usd"
            return flow(label, [Text(f"{money(spent)}, no budget", "dim"),
                                Text(f"(set [gateway] {section})", "dim")], width, gap=" ")
        share = spent / budget
        amounts = Text(f" {money(spent)} of {money(budget)}  {100 * share:.0f}%",
                       "bold red" if share >= 1 else
                       "bold yellow" if share * 100 >= self.warn_percent else "")
        if share >= 1:
            note = Text("over budget", "bold red")
        elif burn:
            note = Text(f"full in {duration((budget - spent) / burn * 3600)} at this rate", "dim")
        else:
            note = Text("")
        # The bar takes the room the figures leave; when even a short bar and the note do not
        # fit beside the figures, the note goes onto the next line.
        room = width - LABEL_WIDTH - amounts.cell_len
        beside = room - (note.cell_len + 2 if note else 0)
        bar_width = max(BAR_MIN, min(BAR_MAX, beside if beside >= BAR_MIN else room))
        head = budget_bar(spent, budget, self.warn_percent, bar_width)
        head.append_text(amounts)
        return flow(label, [head, note] if note else [head], width, gap="  ")

    def _volume_lines(self, s: Summary, width: int) -> list[Text]:
        parts = [
            _pair("", f"{s.requests:,}", " request" if s.requests == 1 else " requests"),
            Text.assemble((f"{s.errors:,}", "bold red" if s.errors else "bold"),
                          f" {'error' if s.errors == 1 else 'errors'} "
                          f"({percent(s.errors, s.requests)})"),
        ]
        if s.unpriced:
            parts.append(Text.assemble((f"{s.unpriced:,} with no price", "bold yellow"),
                                       (" (not in the sums)", "dim")))
        return flow(self.window, parts, width)

    def _latency_lines(self, s: Summary, width: int) -> list[Text]:
        parts = []
        for label, data in (("", s.duration), ("first byte ", s.ttfb)):
            p = Percentiles.from_dict(data or {})
            parts.append(Text.assemble(
                (f"{label}p50 ", "dim"), (millis(p.p50_ms), "bold"),
                ("  p95 ", "dim"), (millis(p.p95_ms), "bold"),
            ))
        return flow("latency", parts, width)

    def _idle_lines(self, s: Summary, width: int) -> list[Text]:
        if s.idle_nanos <= 0 and s.background_nanos <= 0:
            return []
        parts = [
            Text.assemble(("⚠ idle spend ", "bold"), (money(s.idle_nanos), "bold"),
                          f" in {self.window}, no user message;"),
            Text.assemble("heartbeat/background ", (money(s.background_nanos), "bold")),
        ]
        return flow("", parts, width, gap=" ", style=Style(color="yellow"))


def _pair(label: str, value: str, after: str = "") -> Text:
    """A dim label, a bold figure and what it counts."""
    return Text.assemble((label, "dim"), (value, "bold"), after)


def flow(
    label: str, parts: list[Text], width: int, *, gap: str = "   ", style: Style | str = "",
) -> list[Text]:
    """``label`` in its column, then ``parts`` separated by ``gap``; a part that does not fit
    starts a new line, indented to where the parts begin. A part wider than a whole line
    stands alone on its line (and is cropped there, which ``width`` >= 40 keeps for freaks)."""
    indent = LABEL_WIDTH if label else 2
    first = Text(label.ljust(LABEL_WIDTH), "dim") if label else Text("")
    lines = [first]
    for part in parts:
        line = lines[-1]
        at_start = line.cell_len <= (LABEL_WIDTH if label else indent)
        needed = part.cell_len + (0 if at_start else len(gap))
        if not at_start and line.cell_len + needed > width:
            line = Text(" " * indent)
            lines.append(line)
            at_start = True
        if not at_start:
            line.append(gap)
        line.append_text(part)
    for line in lines:
        line.no_wrap = True
        line.overflow = "crop"
        if style:
            line.stylize(style)
    return lines
