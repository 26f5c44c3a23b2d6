"""``moltconsole costs`` end to end: the CLI, the client, the cost routes and a real ledger.

The backend here is the cost API alone (plus /v1/health), served by uvicorn from a thread on
the socket the config names; the ledger is seeded relative to the real clock, since the CLI
asks for "the last 7 days" as of now.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moltconsole import cli
from moltconsole.cli.costs import DAY_COLUMNS, MODEL_COLUMNS, format_costs, with_prompt_tokens
from moltconsole.cli.parser import build_parser
from moltconsole.widgets.cost_format import NO_PRICE, money
from moltconsole_backend.gateway.ledger import Ledger
from moltconsole_shared.commands import EXIT_OK, EXIT_USAGE
from moltconsole_shared.wire.reports import Summary
from tests.unit.test_cli import short_dir
from tests.unit.test_cost_routes import (
    DAY,
    cost_app,
    local_time_utc,
    open_ledger,
    seeded_records,
    serve_in_thread,
)

__all__ = ["short_dir"]  # a fixture shared with test_cli

MARGIN = 30.0  # the seeded "now" is this far behind the real one: no record sits on a boundary


@pytest.fixture
def backend(short_dir: Path) -> Iterator[tuple[Path, Ledger]]:
    """A config file, and the seeded ledger the backend behind it serves."""
    config = short_dir / "config.toml"
    config.write_text(
        f'[paths]\ndata_dir = "{short_dir}/data"\ncache_dir = "{short_dir}/cache"\n'
        f'runtime_dir = "{short_dir}/run"\n'
    )
    (short_dir / "run").mkdir()
    ledger = open_ledger(short_dir / "ledger.sqlite", seeded_records(time.time() - MARGIN))
    try:
        with local_time_utc(), serve_in_thread(cost_app(ledger), short_dir / "run" / "backend.sock"):
            yield config, ledger
    finally:
        ledger.close()


def run(config: Path, *args: str) -> int:
    return cli.main(["--config", str(config), "costs", *args])


def by_model_since(ledger: Ledger, seconds: float) -> dict[str, Any]:
    return {m.model: m for m in ledger.by_model(time.time() - seconds)}


def test_table_by_model(
    backend: tuple[Path, Ledger], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "160")  # wide enough for every column
    config, ledger = backend
    assert run(config) == EXIT_OK
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert re.match(r"today \$\S+ +7 days \$\S+ +30 days \$\S+ +burn \$\S+/h$", lines[0])
    assert lines[2].startswith("spend by model since ") and lines[2].endswith(", all sandboxes")
    header = lines[3].split()
    assert header[:6] == ["provider", "model", "requests", "errors", "prompt", "output"]
    # The Costs screen's words: "prompt" counts cache reads and writes; no "input" column.
    assert "input" not in header and "uncached" not in header
    models = by_model_since(ledger, 7 * DAY)
    s = models["claude-sonnet-4-5"]
    sonnet = next(line for line in lines if " claude-sonnet-4-5 " in line)
    # Tokens with thousands separators, money as on the screen.
    prompt = (s.input_tokens + s.cache_read_tokens + s.cache_write_5m_tokens
              + s.cache_write_1h_tokens)
    assert s.cache_read_tokens and sonnet.split()[4] == f"{prompt:,}"
    assert sonnet.split()[-3] == money(models["claude-sonnet-4-5"].cost_nanos)
    mini = next(line for line in lines if " gpt-5-mini " in line)
    assert "no price" in mini and "$0" not in mini.split("no price")[0].split()[-1]
    total = next(line for line in lines if line.startswith("total"))
    assert money(sum(m.cost_nanos for m in models.values())) + " *" in total
    assert "2 request(s) have no price and are not in the amounts" in out
    assert "gpt-5-mini. Add prices under [gateway.prices]" in out
    assert "idle spend $" in out and "with no user message" in out


def test_table_by_day(
    backend: tuple[Path, Ledger], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    config, ledger = backend
    assert run(config, "--by", "day", "--since", "3d") == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[3].split()[:3] == ["day", "requests", "errors"]
    days = ledger.by_day(time.time() - 3 * DAY)
    rows = [line for line in lines if re.match(r"\d{4}-\d\d-\d\d ", line)]
    assert [row.split()[0] for row in rows] == [d.day for d in days]


@pytest.mark.parametrize("columns", [80, 160])
def test_table_fits_the_terminal_with_whole_columns(
    backend: tuple[Path, Ledger], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    columns: int,
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))  # what shutil.get_terminal_size reads first
    config, ledger = backend
    assert run(config, "--since", "30d") == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= columns
    for name, usage in by_model_since(ledger, 30 * DAY).items():
        row = next(line for line in lines if f" {name} " in f" {line} ")
        cells = re.split(r"\s{2,}", row.strip())  # two spaces or more between columns, never in a cell
        cost = NO_PRICE if usage.unpriced >= usage.requests else money(usage.cost_nanos)
        assert f"{usage.requests:,}" in cells and cost in cells
    header = re.split(r"\s{2,}", lines[3].strip())
    left_out = " ".join(lines[next(n for n, line in enumerate(lines) if line.startswith("total")) + 1:])
    if columns == 80:
        assert header == ["model", "requests", "prompt", "output", "cache read", "cost"]
        assert left_out.startswith(
            "not shown in 80 columns: provider, errors, cache write 5m, cache write 1h, reasoning, "
            "cache saved, no price (a wider terminal shows them; --csv and --json have every column)"
        )
    else:
        assert header == [c.title for c in MODEL_COLUMNS if c.kind != "data"]
        assert "not shown" not in left_out


def test_json(backend: tuple[Path, Ledger], capsys: pytest.CaptureFixture[str]) -> None:
    config, ledger = backend
    assert run(config, "--json", "--since", "24h") == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["by"] == "model" and data["sandbox"] is None
    models = by_model_since(ledger, DAY)
    assert {row["model"] for row in data["rows"]} == set(models)
    for row in data["rows"]:
        if row["model"] == "gpt-5-mini":
            # No price: null, never 0.
            assert row["unpriced"] == 2 and row["cost_nanos"] is None and row["cost_usd"] is None
            continue
        m = models[row["model"]]
        assert row["cost_nanos"] == m.cost_nanos
        assert row["cost_usd"] == row["cost_nanos"] / 1e9
        # The whole prompt, and the API's uncached part under the API's name.
        assert row["input_tokens"] == m.input_tokens
        assert row["prompt_tokens"] == (m.input_tokens + m.cache_read_tokens
                                        + m.cache_write_5m_tokens + m.cache_write_1h_tokens)
        assert row["cache_savings_usd"] == row["cache_savings_nanos"] / 1e9


def test_csv(backend: tuple[Path, Ledger], capsys: pytest.CaptureFixture[str]) -> None:
    config, ledger = backend
    assert run(config, "--csv", "--by", "day", "--since", "30d") == EXIT_OK
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    days = ledger.by_day(time.time() - 30 * DAY)
    assert [r["day"] for r in rows] == [d.day for d in days]
    first = rows[0]
    assert set(first) == {"day", "requests", "errors", "prompt_tokens", "input_tokens",
                          "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd",
                          "unpriced"}
    assert int(first["prompt_tokens"]) == (days[0].input_tokens + days[0].cache_read_tokens
                                           + days[0].cache_write_tokens)
    # Exact decimals: nano-dollars, not floats.
    assert first["cost_usd"] == f"{days[0].cost_nanos // 10**9}.{days[0].cost_nanos % 10**9:09d}"


def test_csv_cost_of_unpriced_model_is_empty(
    backend: tuple[Path, Ledger], capsys: pytest.CaptureFixture[str],
) -> None:
    config, _ = backend
    assert run(config, "--csv") == EXIT_OK
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert rows["gpt-5-mini"]["cost_usd"] == "" and rows["gpt-5-mini"]["unpriced"] == "2"
    assert rows["claude-haiku-4-5"]["cost_usd"].startswith("0.")


def test_sandbox_filter_with_nothing_to_show(
    backend: tuple[Path, Ledger], capsys: pytest.CaptureFixture[str],
) -> None:
    config, _ = backend
    assert run(config, "--sandbox", "elsewhere") == EXIT_OK
    out = capsys.readouterr().out
    assert "sandbox elsewhere" in out and "no requests in this period" in out


def test_bad_since_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[paths]\nruntime_dir = "{tmp_path}/run"\ndata_dir = "{tmp_path}/d"\n')
    assert run(config, "--since", "last week") == EXIT_USAGE
    assert "--since 'last week' is neither a duration" in capsys.readouterr().err


def test_json_and_csv_exclude_each_other(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["costs", "--json", "--csv"])
    assert caught.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


# --- the human table, exactly --------------------------------------------------------------------
def summary(**fields: Any) -> Summary:
    base: dict[str, Any] = dict(
        now=0.0, today_nanos=1_234_500_000, week_nanos=12_000_000_000, month_nanos=0,
        month_to_date_nanos=0, burn_rate_nanos_per_hour=4_200_000, requests=0, errors=0,
        unpriced=0, window_seconds=DAY,
    )
    base.update(fields)
    return Summary(**base)


def test_format_costs_aligns_and_flags_partial_and_missing_prices() -> None:
    rows = [with_prompt_tokens(row) for row in [
        {"day": "2027-01-14", "requests": 1200, "errors": 3, "input_tokens": 1_234_567,
         "output_tokens": 89_000, "cache_read_tokens": 12_000_000, "cache_write_tokens": 40_000,
         "cost_nanos": 12_345_678_901, "unpriced": 2},
        {"day": "2027-01-15", "requests": 4, "errors": 0, "input_tokens": 900,
         "output_tokens": 100, "cache_read_tokens": 0, "cache_write_tokens": 0,
         "cost_nanos": 0, "unpriced": 4},
    ]]
    with local_time_utc():
        text = format_costs(rows, DAY_COLUMNS, 1_799_913_600.0, "day", "main",
                                summary(idle_nanos=420_000_000, background_nanos=400_000_000))
    assert text == "\n".join([
        "today $1.23   7 days $12.00   30 days $0.00   burn $0.0042/h",
        "",
        "spend by day since 2027-01-14 08:00, sandbox main",
        "day         requests  errors      prompt  output  cache read  cache write      cost  no price",
        "2027-01-14     1,200       3  13,274,567  89,000  12,000,000       40,000  $12.35 *         2",
        "2027-01-15         4       0         900     100           0            0  no price         4",
        "----------  --------  ------  ----------  ------  ----------  -----------  --------  --------",
        "total          1,204       3  13,275,467  89,100  12,000,000       40,000  $12.35 *         6",
        "",
        "6 request(s) have no price and are not in the amounts (* marks a partial amount). "
        "Add prices under [gateway.prices] in the config.",
        "",
        "idle spend $0.4200 in the last 24h with no user message (heartbeat/background "
        "requests: $0.4000)",
    ])


def two_models() -> list[dict[str, Any]]:
    """A priced model and a partly priced one, as ``print_costs`` has them."""
    return [with_prompt_tokens(row) for row in [
        {"provider": "anthropic", "model": "claude-sonnet-4-5", "requests": 10, "errors": 0,
         "input_tokens": 1, "output_tokens": 2, "cache_read_tokens": 3,
         "cache_write_5m_tokens": 4, "cache_write_1h_tokens": 5, "reasoning_tokens": 6,
         "cost_nanos": 3_000_000_000, "cache_savings_nanos": 42_000, "unpriced": 0},
        {"provider": "openai", "model": "gpt-x", "requests": 3, "errors": 1,
         "input_tokens": 1, "output_tokens": 2, "cache_read_tokens": 0,
         "cache_write_5m_tokens": 0, "cache_write_1h_tokens": 0, "reasoning_tokens": 0,
         "cost_nanos": 1_500_000, "cache_savings_nanos": 0, "unpriced": 1},
    ]]


def test_format_costs_aligns_amounts_by_model() -> None:
    with local_time_utc():
        text = format_costs(two_models(), MODEL_COLUMNS, 0.0, "model", None, summary())
    assert text.splitlines()[3:] == [
        "provider   model              requests  errors  prompt  output  cache read  cache write 5m"
        "  cache write 1h  reasoning       cost  cache saved  no price",
        "anthropic  claude-sonnet-4-5        10       0      13       2           3               4"
        "               5          6    $3.00       <$0.0001         0",
        "openai     gpt-x                     3       1       1       2           0               0"
        "               0          0  $0.0015 *        $0.00         1",
        "---------  -----------------  --------  ------  ------  ------  ----------  --------------"
        "  --------------  ---------  ---------  -----------  --------",
        "total                               13       1      14       4           3               4"
        "               5          6    $3.00 *     <$0.0001         1",
        "",
        "1 request(s) have no price and are not in the amounts (* marks a partial amount): gpt-x. "
        "Add prices under [gateway.prices] in the config.",
    ]


def test_format_costs_in_80_columns_leaves_whole_columns_out_and_says_which() -> None:
    with local_time_utc():
        text = format_costs(two_models(), MODEL_COLUMNS, 0.0, "model", None,
                            summary(idle_nanos=420_000_000, background_nanos=400_000_000), width=80)
    assert text.splitlines()[3:] == [
        "model              requests  prompt  output  cache read       cost",
        "claude-sonnet-4-5        10      13       2           3    $3.00",
        "gpt-x                     3       1       2           0  $0.0015 *",
        "-----------------  --------  ------  ------  ----------  ---------",
        "total                    13      14       4           3    $3.00 *",
        "not shown in 80 columns: provider, errors, cache write 5m, cache write 1h,",
        "reasoning, cache saved, no price (a wider terminal shows them; --csv and --json",
        "have every column)",
        "",
        "1 request(s) have no price and are not in the amounts (* marks a partial",
        "amount): gpt-x. Add prices under [gateway.prices] in the config.",
        "",
        "idle spend $0.4200 in the last 24h with no user message (heartbeat/background",
        "requests: $0.4000)",
    ]


def test_format_costs_narrower_still_keeps_model_and_cost_whole() -> None:
    with local_time_utc():
        lines = format_costs(two_models(), MODEL_COLUMNS, 0.0, "model", None, summary(),
                             width=40).splitlines()
    assert max(len(line) for line in lines) <= 40
    assert lines[:2] == ["today $1.23   7 days $12.00", "30 days $0.00   burn $0.0042/h"]
    assert lines[5:10] == [
        "model              requests       cost",
        "claude-sonnet-4-5        10    $3.00",
        "gpt-x                     3  $0.0015 *",
        "-----------------  --------  ---------",
        "total                    13    $3.00 *",
    ]


@pytest.mark.parametrize(("nanos", "shown"), [
    (None, "no price"),
    (0, "$0.00"),
    (40_000, "<$0.0001"),
    (420_000, "$0.0004"),
    (12_345_678, "$0.0123"),
    (999_960_000, "$1.00"),  # rounds up to a dollar: two decimals, not "$1.0000"
    (1_000_000_000, "$1.00"),
    (1_234_567_890_123, "$1,234.57"),
    (-2_500_000, "-$0.0025"),
    (-3_210_000_000, "-$3.21"),
])
def test_money_two_decimals_from_a_dollar_four_below(nanos: int | None, shown: str) -> None:
    assert money(nanos) == shown
