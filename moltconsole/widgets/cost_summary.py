"""The head of the Costs screen: spend, budgets with their warn mark, volume, latency, idle spend."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from moltconsole.formatting import duration
from moltconsole.widgets.cost_format import millis, money, percent, rate
from moltconsole_shared.wire.reports import Percentiles, Summary

LABEL_WIDTH = 8
BAR_MIN = 10
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
    """Spend today / 7 days / 30 days, burn rate, budget bars, requests and latency."""

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

    def render(self) -> Text:
        summary = self.summary
        if summary is None:
            return Text("loading costs…", style="dim")
        width = max(40, self.size.width)
        lines = [
            self._spend_line(summary),
            self._budget_line("daily", summary.today_nanos, summary.daily_budget_nanos,
                              summary.burn_rate_nanos_per_hour, width),
            self._budget_line("monthly", summary.month_to_date_nanos, summary.monthly_budget_nanos,
                              None, width),
            self._volume_line(summary),
            self._latency_line(summary),
        ]
        idle = self._idle_line(summary)
        if idle is not None:
            lines.append(idle)
        return Text("\n", no_wrap=True, overflow="ellipsis").join(lines)

    # --- lines ----------------------------------------------------------------------------------
    def _spend_line(self, s: Summary) -> Text:
        line = Text(no_wrap=True, overflow="ellipsis")
        for label, nanos in (("today", s.today_nanos), ("7 days", s.week_nanos),
                             ("30 days", s.month_nanos)):
            line.append(f"{label} ", "dim")
            line.append(money(nanos), "bold")
            line.append("   ")
        line.append("burn ", "dim")
        line.append(rate(s.burn_rate_nanos_per_hour), "bold")
        if s.burn_rate_nanos_per_hour > 0:
            line.append(f" ≈ {money(round(s.burn_rate_nanos_per_hour * 24))}/day", "dim")
        return line

    def _budget_line(
        self, label: str, spent: int, budget: int | None, burn: float | None, width: int,
    ) -> Text:
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(label.ljust(LABEL_WIDTH), "dim")
        if not budget:
            section = "budget.daily_usd" if label == "daily" else "budget.monthly_usd"
            line.append(f"{money(spent)}, no budget (set [gateway] {section})", "dim")
            return line
        share = spent / budget
        amounts = f" {money(spent)} of {money(budget)}  {100 * share:.0f}%"
        if share >= 1:
            note, note_style = "  over budget", "bold red"
        elif burn:
            note, note_style = f"  full in {duration((budget - spent) / burn * 3600)} at this rate", "dim"
        else:
            note, note_style = "", ""
        room = width - LABEL_WIDTH - len(amounts) - len(note)
        line.append_text(budget_bar(spent, budget, self.warn_percent, max(BAR_MIN, min(BAR_MAX, room))))
        style = "bold red" if share >= 1 else "bold yellow" if share * 100 >= self.warn_percent else ""
        line.append(amounts, style)
        line.append(note, note_style)
        return line

    def _volume_line(self, s: Summary) -> Text:
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(self.window.ljust(LABEL_WIDTH), "dim")
        line.append(f"{s.requests:,}", "bold")
        line.append(" request   " if s.requests == 1 else " requests   ")
        line.append(f"{s.errors:,}", "bold red" if s.errors else "bold")
        line.append(f" {'error' if s.errors == 1 else 'errors'} ({percent(s.errors, s.requests)})")
        if s.unpriced:
            line.append("   ")
            line.append(f"{s.unpriced:,} with no price", "bold yellow")
            line.append(" (not in the sums)", "dim")
        return line

    def _latency_line(self, s: Summary) -> Text:
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append("latency".ljust(LABEL_WIDTH), "dim")
        for label, data in (("", s.duration), ("first byte ", s.ttfb)):
            p = Percentiles.from_dict(data or {})
            line.append(label, "dim")
            line.append("p50 ", "dim")
            line.append(millis(p.p50_ms), "bold")
            line.append("  p95 ", "dim")
            line.append(millis(p.p95_ms), "bold")
            line.append("   ")
        return line

    def _idle_line(self, s: Summary) -> Text | None:
        if s.idle_nanos <= 0 and s.background_nanos <= 0:
            return None
        line = Text(no_wrap=True, overflow="ellipsis", style=Style(color="yellow"))
        line.append("⚠ idle spend ", "bold")
        line.append(money(s.idle_nanos), "bold")
        line.append(f" in {self.window}, no user message; heartbeat/background ")
        line.append(money(s.background_nanos), "bold")
        return line
