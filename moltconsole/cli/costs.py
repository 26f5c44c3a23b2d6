"""``moltconsole costs``: what the agent's LLM calls cost, from the AI gateway's ledger.

One row per model (or per local calendar day) since ``--since``, a total, and notes on what has
no price and what was spent idle. ``--json`` and ``--csv`` carry every column, money exactly;
the human table fits the terminal: when it is too narrow for every column, the least telling
columns are left out whole (never a cut number) and a line names them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
import time
from dataclasses import dataclass
from typing import Any

from moltconsole.cli.choice import add_sandbox_option
from moltconsole.cli.session import on_backend, run, settings_of
from moltconsole.cli.since import parse_since
from moltconsole.client import BackendClient
from moltconsole_shared.commands import EXIT_OK, EXIT_USAGE
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire.reports import Summary


@dataclass(frozen=True, slots=True)
class CostColumn:
    """A column of ``moltconsole costs``: its title, the row field it shows, how the value is
    written (``text``, ``count``, ``money``, or ``data``: in --json and --csv only), and its
    rank: rank 0 is the last to go when the terminal is narrow."""

    title: str
    field: str
    kind: str
    rank: int = 0


# Token words as on the Costs screen: "prompt" is every token sent, cache included; the API's
# input_tokens is its uncached part. Ranks as on the screen's model table: model and cost stay
# longest, then how many requests and how big.
MODEL_COLUMNS = [
    CostColumn("provider", "provider", "text", 11), CostColumn("model", "model", "text", 0),
    CostColumn("requests", "requests", "count", 2), CostColumn("errors", "errors", "count", 10),
    CostColumn("prompt", "prompt_tokens", "count", 3), CostColumn("uncached", "input_tokens", "data"),
    CostColumn("output", "output_tokens", "count", 5),
    CostColumn("cache read", "cache_read_tokens", "count", 4),
    CostColumn("cache write 5m", "cache_write_5m_tokens", "count", 6),
    CostColumn("cache write 1h", "cache_write_1h_tokens", "count", 7),
    CostColumn("reasoning", "reasoning_tokens", "count", 9), CostColumn("cost", "cost_nanos", "money", 1),
    CostColumn("cache saved", "cache_savings_nanos", "money", 8),
    CostColumn("no price", "unpriced", "count", 12),
]
DAY_COLUMNS = [
    CostColumn("day", "day", "text", 0), CostColumn("requests", "requests", "count", 2),
    CostColumn("errors", "errors", "count", 10), CostColumn("prompt", "prompt_tokens", "count", 3),
    CostColumn("uncached", "input_tokens", "data"), CostColumn("output", "output_tokens", "count", 5),
    CostColumn("cache read", "cache_read_tokens", "count", 4),
    CostColumn("cache write", "cache_write_tokens", "count", 6),
    CostColumn("cost", "cost_nanos", "money", 1), CostColumn("no price", "unpriced", "count", 12),
]
GAP = "  "  # between two columns


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``costs [--since 7d] [--by model|day] [-s NAME] [--json|--csv]``.

    Without ``-s`` it shows all sandboxes; ``$MOLTCONSOLE_SANDBOX`` does not narrow it.
    """
    costs = sub.add_parser("costs", help="what the agent's LLM calls cost (the AI gateway's ledger)")
    costs.add_argument("--since", default="7d",
                       help="since 10m, 24h, 7d ago, or an ISO time (default: 7d)")
    costs.add_argument("--by", choices=["model", "day"], default="model",
                       help="one row per model (default) or per local calendar day")
    add_sandbox_option(costs, text="only this sandbox's requests (default: all sandboxes)")
    costs_format = costs.add_mutually_exclusive_group()
    costs_format.add_argument("--json", action="store_true", help="print JSON (money in nanos and USD)")
    costs_format.add_argument("--csv", action="store_true", help="print CSV with a header row")
    costs.set_defaults(func=costs_command)


def costs_command(args: argparse.Namespace) -> int:
    """``moltconsole costs``."""
    settings = settings_of(args)
    try:
        args.since_time = parse_since(args.since)
    except ValueError as exc:
        print(f"moltconsole costs: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run(on_backend(settings, lambda client: print_costs(client, args)))


async def print_costs(client: BackendClient, args: argparse.Namespace) -> int:
    """Print the spend asked for: JSON, CSV, or a table as wide as the terminal."""
    import dataclasses

    since = args.since_time
    if args.by == "model":
        rows = [dataclasses.asdict(r) for r in
                await client.costs_models(since=since, sandbox=args.sandbox)]
        columns = MODEL_COLUMNS
    else:
        rows = [dataclasses.asdict(r) for r in
                await client.costs_days(since=since, sandbox=args.sandbox)]
        columns = DAY_COLUMNS
    rows = [with_prompt_tokens(row) for row in rows]
    if args.json:
        print(json.dumps(costs_json(rows, columns, since, args.by, args.sandbox), indent=2))
    elif args.csv:
        sys.stdout.write(costs_csv(rows, columns))
    else:
        summary = await client.costs_summary(sandbox=args.sandbox)
        width = shutil.get_terminal_size().columns
        print(format_costs(rows, columns, since, args.by, args.sandbox, summary, width=width))
    return EXIT_OK


def with_prompt_tokens(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with ``prompt_tokens``: uncached input, cache reads and cache writes together."""
    writes = sum(row.get(f, 0) for f in ("cache_write_tokens", "cache_write_5m_tokens",
                                          "cache_write_1h_tokens"))
    return {**row, "prompt_tokens": row["input_tokens"] + row["cache_read_tokens"] + writes}


def _usd_exact(nanos: int) -> str:
    """Nano-dollars as an exact decimal string (``12.345678900``), for scripts."""
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), 1_000_000_000)
    return f"{sign}{whole}.{frac:09d}"


def costs_json(
    rows: list[dict[str, Any]], columns: list[CostColumn], since: float, by: str, sandbox: str | None,
) -> dict[str, Any]:
    """``moltconsole costs --json``: rows as the API has them plus ``*_usd`` amounts.

    A row none of whose requests has a price has a null cost, never 0.
    """
    out = []
    for row in rows:
        item = {column.field: row[column.field] for column in columns}
        for column in columns:
            if column.kind == "money":
                item[column.field.replace("_nanos", "_usd")] = row[column.field] / 1_000_000_000
        if _all_unpriced(row):
            item["cost_nanos"] = item["cost_usd"] = None
        out.append(item)
    return {"since": since, "by": by, "sandbox": sandbox, "rows": out}


def costs_csv(rows: list[dict[str, Any]], columns: list[CostColumn]) -> str:
    """``moltconsole costs --csv``: one header row, money as exact USD decimals; the cost of a
    row none of whose requests has a price is empty, never 0."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([column.field.replace("_nanos", "_usd") for column in columns])
    for row in rows:
        writer.writerow([
            ("" if column.field == "cost_nanos" and _all_unpriced(row) else _usd_exact(row[column.field]))
            if column.kind == "money" else row[column.field]
            for column in columns
        ])
    return buffer.getvalue()


def _all_unpriced(row: dict[str, Any]) -> bool:
    return bool(row["unpriced"]) and row["unpriced"] >= row["requests"]


def _cost_cell(row: dict[str, Any], field: str) -> str:
    from moltconsole.widgets.cost_format import NO_PRICE, money

    if field == "cost_nanos" and _all_unpriced(row):
        return NO_PRICE  # nothing in this row has a price: not $0
    text = money(row[field])
    if field != "cost_nanos":
        return text
    return text + (" *" if row["unpriced"] else "  ")  # "  " keeps the amounts aligned


def _cell(row: dict[str, Any], column: CostColumn) -> str:
    if column.kind == "money":
        return _cost_cell(row, column.field)
    if column.kind == "count":
        return f"{row[column.field]:,}"
    return sanitize(str(row[column.field]))


def _pack(parts: list[str], width: int | None, gap: str = "   ") -> list[str]:
    """``parts`` on as few lines of at most ``width`` characters as they fit, none split."""
    lines = [parts[0]]
    for part in parts[1:]:
        if width is None or len(lines[-1]) + len(gap) + len(part) <= width:
            lines[-1] += gap + part
        else:
            lines.append(part)
    return lines


def fit_columns(columns: list[CostColumn], natural: dict[str, int], width: int | None) -> list[CostColumn]:
    """The columns that fit whole in ``width`` characters, in display order: the lowest ranks
    first (a prefix of the ranks, so a narrow table keeps the most telling ones, not a
    scattering); the first rank always shows. ``width`` None: every column."""
    chosen: set[str] = set()
    used = 0
    for column in sorted(columns, key=lambda c: c.rank):
        need = natural[column.field] + (len(GAP) if chosen else 0)
        if chosen and width is not None and used + need > width:
            break
        chosen.add(column.field)
        used += need
    return [column for column in columns if column.field in chosen]


def format_costs(
    rows: list[dict[str, Any]], columns: list[CostColumn], since: float, by: str,
    sandbox: str | None, summary: Summary, *, width: int | None = None,
) -> str:
    """The human table: a summary line, one row per model or day, a total, and notes, in at
    most ``width`` columns (None: as wide as it takes)."""
    from moltconsole.widgets.cost_format import money, rate

    def prose(text: str) -> list[str]:
        if width is None:
            return [text]
        return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)

    columns = [column for column in columns if column.kind != "data"]
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(since))
    who = f"sandbox {sanitize(sandbox)}" if sandbox else "all sandboxes"
    spend = [f"today {money(summary.today_nanos)}", f"7 days {money(summary.week_nanos)}",
             f"30 days {money(summary.month_nanos)}", f"burn {rate(summary.burn_rate_nanos_per_hour)}"]
    lines = [*_pack(spend, width), "", *prose(f"spend by {by} since {when}, {who}")]
    if not rows:
        lines.extend(prose("no requests in this period (the agent's LLM calls are recorded when they "
                           "go through the AI gateway)"))
        return "\n".join(lines)
    total: dict[str, Any] = {column.field: 0 for column in columns if column.kind != "text"}
    for row in rows:
        for field in total:
            total[field] += row[field]
    total.update({column.field: "" for column in columns if column.kind == "text"})
    cells = {column.field: [_cell(row, column) for row in [*rows, total]] for column in columns}
    natural = {
        column.field: max(len(column.title), *map(len, cells[column.field]),
                          len("total") if column.kind == "text" else 0)
        for column in columns
    }
    shown = fit_columns(columns, natural, width)
    cells[shown[0].field][-1] = "total"
    widths = [natural[column.field] for column in shown]
    table = [[column.title for column in shown]]
    table.extend([cells[column.field][n] for column in shown] for n in range(len(rows) + 1))
    for n, row_cells in enumerate(table):
        if n == len(table) - 1:
            lines.append(GAP.join("-" * w for w in widths))
        parts = [
            cell.ljust(widths[i]) if shown[i].kind == "text" else cell.rjust(widths[i])
            for i, cell in enumerate(row_cells)
        ]
        lines.append(GAP.join(parts).rstrip())
    hidden = [column.title for column in columns if column not in shown]
    if hidden:
        lines.extend(prose(f"not shown in {width} columns: {', '.join(hidden)} (a wider terminal "
                           "shows them; --csv and --json have every column)"))
    unpriced = total["unpriced"]
    if unpriced:
        names = sorted({sanitize(str(r["model"])) for r in rows if r["unpriced"] and "model" in r})
        lines.append("")
        lines.extend(prose(
            f"{unpriced:,} request(s) have no price and are not in the amounts (* marks a partial "
            "amount)" + (f": {', '.join(names)}" if names else "")
            + ". Add prices under [gateway.prices] in the config."
        ))
    idle = summary.idle_nanos
    if idle or summary.background_nanos:
        lines.append("")
        lines.extend(prose(
            f"idle spend {money(idle)} in the last 24h with no user message "
            f"(heartbeat/background requests: {money(summary.background_nanos)})"
        ))
    return "\n".join(lines)
