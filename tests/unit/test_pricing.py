"""Pricing: the shipped table, model-id matching, user overrides, and cost to the nano-dollar.

Every expected figure is worked out by hand in the comments. A rate of R USD per million tokens
is R * 1000 nano-dollars per token, so most sums are whole numbers of nano-dollars.
"""

from __future__ import annotations

import math
import random
from datetime import date
from fractions import Fraction
from pathlib import Path

import pytest

from moltconsole_backend.gateway.pricing import (
    PriceTable,
    PriceTableError,
    model_candidates,
    normalize_model_id,
    parse_table,
    shipped_table,
)
from moltconsole_backend.settings import GatewaySettings, PriceSettings
from moltconsole_shared.wire.records import Usage


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable(GatewaySettings())


# --- the shipped table -----------------------------------------------------------------------


def test_shipped_table_is_dated_sourced_and_valid() -> None:
    shipped = shipped_table()
    assert shipped.as_of >= date(2026, 11, 1)
    assert set(shipped.sources) == {"anthropic", "openai"}
    assert all(len(note) > 40 for note in shipped.sources.values())
    # The models the brief names are all priced.
    for model in ("claude-opus-4-5", "claude-opus-4-1", "claude-sonnet-4-6", "claude-sonnet-4-5",
                  "claude-haiku-4-5", "claude-3-5-haiku", "gpt-5", "gpt-5-mini", "gpt-4.1",
                  "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini", "o3", "o4-mini"):
        assert model in shipped.prices, model


def test_shipped_rates_follow_anthropics_cache_multipliers() -> None:
    # Standard Anthropic models: 5-minute write 1.25x, 1-hour write 2x, read 0.1x input.
    for model in ("claude-opus-4-5", "claude-opus-4-1", "claude-sonnet-4-6", "claude-sonnet-4-5",
                  "claude-haiku-4-5", "claude-3-5-haiku"):
        rates = shipped_table().prices[model].standard
        assert rates.cache_write_5m == rates.input * 5 / 4, model
        assert rates.cache_write_1h == rates.input * 2, model
        assert rates.cache_read == rates.input / 10, model


def test_shipped_table_is_part_of_the_wheel() -> None:
    # hatchling ships every file of the package directory; the table must be next to the code.
    import moltconsole_backend.gateway.pricing as pricing

    assert (Path(pricing.__file__).parent / "prices.toml").is_file()


# --- matching model ids ----------------------------------------------------------------------


@pytest.mark.parametrize(("model", "expected"), [
    ("claude-sonnet-4-5", "claude-sonnet-4-5"),
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),  # dated snapshot
    ("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5"),  # provider prefix
    ("Anthropic/Claude-Sonnet-4.5", "claude-sonnet-4-5"),  # case, dotted version
    ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),  # Bedrock
    ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),  # Vertex
    ("claude-sonnet-4-6", "claude-sonnet-4-6"),
    ("claude-sonnet-4-6[1m]", "claude-sonnet-4-6"),
    ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
    ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
    ("claude-opus-4-0", "claude-opus-4"),  # alias
    ("claude-opus-4-20250514", "claude-opus-4"),
    ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
    ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),  # OpenAI snapshot date, dots kept
    ("openai/gpt-5", "gpt-5"),
    ("openrouter/openai/gpt-5-chat-latest", "gpt-5"),  # -latest, then alias
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # an exact snapshot entry beats date stripping
])
def test_model_ids_match(table: PriceTable, model: str, expected: str) -> None:
    price = table.lookup("anthropic", model)
    assert price is not None, model
    assert price.model == expected


@pytest.mark.parametrize("model", [
    "claude-sonnet-4-5-foo",  # no prefix guessing
    "gpt-4o-audio-preview",
    "claude-sonnet",
    "ft:gpt-4o-mini:org::abc",
    "",
    "my-local-model",
])
def test_unknown_models_have_no_price(table: PriceTable, model: str) -> None:
    assert table.lookup("openai", model) is None


def test_normal_form_and_candidates() -> None:
    assert normalize_model_id("  US.Anthropic.Claude-Opus-4-1-20250805-v1:0 ") == "claude-opus-4-1-20250805"
    assert normalize_model_id("gpt-4.1") == "gpt-4.1"
    assert model_candidates("claude-3-7-sonnet-latest") == ["claude-3-7-sonnet-latest", "claude-3-7-sonnet"]
    assert model_candidates("gpt-5-2025-08-07") == ["gpt-5-2025-08-07", "gpt-5"]


# --- cost arithmetic -------------------------------------------------------------------------


def test_plain_input_and_output(table: PriceTable) -> None:
    # claude-sonnet-4-5: $3 in, $15 out per MTok.
    # 1,000 in * 3,000 n$/tok = 3,000,000; 500 out * 15,000 = 7,500,000; total 10,500,000 n$.
    cost = table.cost("anthropic", "claude-sonnet-4-5-20250929", Usage(input_tokens=1000, output_tokens=500))
    assert cost.total_nanos == 10_500_000
    assert cost.cache_savings_nanos == 0
    assert cost.long_context is False
    assert cost.pricing_version == "2026-11-25"


def test_cache_reads_and_5m_and_1h_writes(table: PriceTable) -> None:
    # claude-sonnet-4-6: in 3, out 15, read 0.30, 5m write 3.75, 1h write 6 (USD/MTok).
    usage = Usage(input_tokens=2_000, output_tokens=1_000, cache_read_tokens=50_000,
                  cache_write_5m_tokens=4_000, cache_write_1h_tokens=3_000)
    # input    2,000 * 3,000   =   6,000,000
    # output   1,000 * 15,000  =  15,000,000
    # read    50,000 * 300     =  15,000,000
    # 5m w     4,000 * 3,750   =  15,000,000
    # 1h w     3,000 * 6,000   =  18,000,000
    # total                       69,000,000 n$ ($0.069)
    # savings: 50,000 * (3,000 - 300) = 135,000,000
    #          - 4,000 * (3,750 - 3,000) = 3,000,000 - 3,000 * (6,000 - 3,000) = 9,000,000
    #          = 123,000,000
    cost = table.cost("anthropic", "claude-sonnet-4-6", usage)
    assert cost.total_nanos == 69_000_000
    assert cost.cache_savings_nanos == 123_000_000


def test_savings_can_be_negative_when_writes_outweigh_reads(table: PriceTable) -> None:
    # claude-haiku-4-5: in 1, 1h write 2. 10,000 written for an hour, nothing read back:
    # savings = -(10,000 * (2,000 - 1,000)) = -10,000,000; total = 10,000 * 2,000 = 20,000,000.
    cost = table.cost("anthropic", "claude-haiku-4-5", Usage(cache_write_1h_tokens=10_000))
    assert cost.total_nanos == 20_000_000
    assert cost.cache_savings_nanos == -10_000_000


def test_openai_cached_input(table: PriceTable) -> None:
    # gpt-5: in 1.25, cached 0.125, out 10. Usage.input_tokens is the uncached part already.
    # 6,000 * 1,250 = 7,500,000; 4,000 * 125 = 500,000; 700 * 10,000 = 7,000,000 -> 15,000,000
    # savings: 4,000 * (1,250 - 125) = 4,500,000
    cost = table.cost("openai", "gpt-5-2025-08-07",
                      Usage(input_tokens=6_000, cache_read_tokens=4_000, output_tokens=700))
    assert cost.total_nanos == 15_000_000
    assert cost.cache_savings_nanos == 4_500_000


def test_openai_writes_cost_plain_input_before_gpt_5_6(table: PriceTable) -> None:
    # gpt-4.1: no write premium, so a write costs input (2 USD/MTok) and saves nothing.
    cost = table.cost("openai", "gpt-4.1", Usage(cache_write_5m_tokens=1_000))
    assert cost.total_nanos == 2_000_000
    assert cost.cache_savings_nanos == 0


def test_reasoning_tokens_are_not_billed_twice(table: PriceTable) -> None:
    # o3: out 8. output_tokens already includes the 300 reasoning tokens: 1,000 * 8,000.
    cost = table.cost("openai", "o3", Usage(output_tokens=1_000, reasoning_tokens=300))
    assert cost.total_nanos == 8_000_000


def test_fractional_nanos_round_once_half_up(table: PriceTable) -> None:
    # Shipped rates have at most three decimals, so they are whole nano-dollars per token.
    # A user's rate can be finer: 0.0001 USD/MTok = 0.1 n$/token, 0.0003 = 0.3 n$/token.
    prices = PriceTable(overrides={"tiny": PriceSettings(input=0.0001, output=0.0003)})
    # 5 in * 0.1 = 0.5 -> rounds up to 1 (half-up), not 0 (half-even) and not 0+0 per part
    assert prices.cost("x", "tiny", Usage(input_tokens=5)).total_nanos == 1
    # 4 in * 0.1 = 0.4 -> 0
    assert prices.cost("x", "tiny", Usage(input_tokens=4)).total_nanos == 0
    # 3 in * 0.1 + 1 out * 0.3 = 0.6 -> 1: one rounding of the sum (each part alone rounds to 0)
    assert prices.cost("x", "tiny", Usage(input_tokens=3, output_tokens=1)).total_nanos == 1


def test_costs_are_summed_in_integers_and_equal_the_exact_sum_rounded_once() -> None:
    # Each tier's rates are brought to one denominator when the table is read, so pricing a
    # response is integer arithmetic (Fraction arithmetic cost the gateway ~35 us a request).
    # Rates with different denominators, and shipped tiers, against the exact sum rounded once.
    prices = PriceTable(overrides={
        "odd": PriceSettings(input=0.0001, output=1.1, cache_read=0.333, cache_write_5m=2.5,
                             cache_write_1h=7.0001),
    })
    models = [("x", "odd"), ("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-5.4"),
              ("anthropic", "claude-haiku-4-5")]
    rng = random.Random(7)
    for provider, model in models:
        price = prices.lookup(provider, model)
        assert price is not None
        for rates in (price.standard, price.long):
            if rates is None:
                continue
            fields = (rates.input, rates.output, rates.cache_read, rates.cache_write_5m, rates.cache_write_1h)
            assert [Fraction(n, rates.denominator) for n in rates.numerators] == list(fields)
        for _ in range(300):
            usage = Usage(input_tokens=rng.randrange(400_000), output_tokens=rng.randrange(70_000),
                          cache_read_tokens=rng.randrange(300_000), cache_write_5m_tokens=rng.randrange(9),
                          cache_write_1h_tokens=rng.randrange(50_000))
            r = price.long if price.is_long(usage) and price.long is not None else price.standard
            exact = (usage.input_tokens * r.input + usage.output_tokens * r.output
                     + usage.cache_read_tokens * r.cache_read + usage.cache_write_5m_tokens * r.cache_write_5m
                     + usage.cache_write_1h_tokens * r.cache_write_1h) * 1000
            saved = (usage.cache_read_tokens * (r.input - r.cache_read)
                     - usage.cache_write_5m_tokens * (r.cache_write_5m - r.input)
                     - usage.cache_write_1h_tokens * (r.cache_write_1h - r.input)) * 1000
            cost = prices.cost(provider, model, usage)
            assert cost.total_nanos == math.floor(exact + Fraction(1, 2))
            half = Fraction(1, 2) if saved >= 0 else -Fraction(1, 2)
            assert cost.cache_savings_nanos == math.trunc(saved + half)


def test_long_context_tier_boundary(table: PriceTable) -> None:
    # claude-sonnet-4-5: above 200,000 prompt tokens the WHOLE request moves to
    # in 6, out 22.50, read 0.60, 5m write 7.50.
    # Exactly at the threshold: 150,000 in + 50,000 read = 200,000 -> standard tier:
    #   150,000 * 3,000 = 450,000,000; 50,000 * 300 = 15,000,000; 1,000 * 15,000 = 15,000,000
    #   total 480,000,000
    at = Usage(input_tokens=150_000, cache_read_tokens=50_000, output_tokens=1_000)
    cost = table.cost("anthropic", "claude-sonnet-4-5", at)
    assert at.prompt_tokens == 200_000
    assert cost.long_context is False
    assert cost.total_nanos == 480_000_000
    # One token above: 150,001 in (the one token is a 5m write) -> long tier for everything:
    #   150,000 * 6,000 = 900,000,000; 50,000 * 600 = 30,000,000; 1 * 7,500 = 7,500;
    #   1,000 * 22,500 = 22,500,000; total 952,507,500
    above = Usage(input_tokens=150_000, cache_read_tokens=50_000, cache_write_5m_tokens=1,
                  output_tokens=1_000)
    cost = table.cost("anthropic", "claude-sonnet-4-5", above)
    assert above.prompt_tokens == 200_001
    assert cost.long_context is True
    assert cost.total_nanos == 952_507_500
    # savings in the long tier: 50,000 * (6,000 - 600) - 1 * (7,500 - 6,000) = 269,998,500
    assert cost.cache_savings_nanos == 269_998_500


def test_sonnet_4_6_is_flat_across_its_window(table: PriceTable) -> None:
    # No tier: 500,000 in * 3,000 = 1,500,000,000.
    cost = table.cost("anthropic", "claude-sonnet-4-6", Usage(input_tokens=500_000))
    assert cost.long_context is False
    assert cost.total_nanos == 1_500_000_000


def test_openai_long_context_scales_cache_rates(table: PriceTable) -> None:
    # gpt-5.4: above 272,000 input tokens: in 5 (2x), out 22.50 (1.5x), cached 0.50 (2x, scaled).
    # 200,000 in * 5,000 = 1,000,000,000; 100,000 cached * 500 = 50,000,000;
    # 2,000 out * 22,500 = 45,000,000; total 1,095,000,000
    cost = table.cost("openai", "gpt-5.4", Usage(input_tokens=200_000, cache_read_tokens=100_000,
                                                 output_tokens=2_000))
    assert cost.long_context is True
    assert cost.total_nanos == 1_095_000_000


def test_unknown_model_is_flagged_not_free(table: PriceTable) -> None:
    cost = table.cost("openai", "gpt-99-ultra", Usage(input_tokens=1_000, output_tokens=1_000))
    assert cost.total_nanos is None
    assert not cost.priced
    assert cost.pricing_version == table.version


def test_zero_usage_of_a_known_model_is_zero(table: PriceTable) -> None:
    cost = table.cost("anthropic", "claude-opus-4-5", Usage())
    assert cost.total_nanos == 0
    assert cost.priced


# --- user overrides --------------------------------------------------------------------------


def test_override_wins_and_marks_the_version() -> None:
    settings = GatewaySettings(prices={
        "claude-sonnet-4-5": PriceSettings(input=2.0, output=10.0, cache_read=0.2),
    })
    prices = PriceTable(settings)
    assert prices.version == "2026-11-25+config"
    # The dated id finds the user's entry: 1,000 * 2,000 + 100 * 10,000 + 1,000 * 200 = 3,200,000
    cost = prices.cost("anthropic", "claude-sonnet-4-5-20250929",
                       Usage(input_tokens=1_000, output_tokens=100, cache_read_tokens=1_000))
    assert cost.total_nanos == 3_200_000
    assert cost.pricing_version == "2026-11-25+config"
    # The user's entry replaces the shipped one whole: no long-context tier any more,
    # and unset cache-write rates cost plain input. 300,000 * 2,000 = 600,000,000
    cost = prices.cost("anthropic", "claude-sonnet-4-5", Usage(input_tokens=300_000))
    assert cost.long_context is False
    assert cost.total_nanos == 600_000_000
    # Other models keep the table's price and version.
    assert prices.cost("anthropic", "claude-haiku-4-5", Usage()).pricing_version == "2026-11-25"


def test_override_prices_a_model_the_table_lacks() -> None:
    settings = GatewaySettings(prices={
        "llama-4-local": PriceSettings(input=0.5, output=1.5, long_context_threshold=100,
                                       long_input=1.0, long_output=3.0, cache_read=0.1),
    })
    prices = PriceTable(settings)
    # Standard: 100 in * 500 + 10 out * 1,500 = 65,000
    cost = prices.cost("local", "llama-4-local", Usage(input_tokens=100, output_tokens=10))
    assert cost.total_nanos == 65_000
    # Long (101 prompt tokens > 100):
    # 100 in * 1,000 + 1 read * 200 (0.1 scaled by 1.0/0.5) + 10 out * 3,000 = 130,200
    usage = Usage(input_tokens=100, cache_read_tokens=1, output_tokens=10)
    cost = prices.cost("local", "llama-4-local", usage)
    assert cost.long_context is True
    assert cost.total_nanos == 130_200


def test_provider_scoped_override() -> None:
    settings = GatewaySettings(prices={"openai/gpt-4o": PriceSettings(input=1.0, output=1.0)})
    prices = PriceTable(settings)
    usage = Usage(input_tokens=1_000)
    # Served by the "openai" provider: the user's 1 USD/MTok -> 1,000,000.
    assert prices.cost("openai", "gpt-4o", usage).total_nanos == 1_000_000
    # Served by another provider: the shipped 2.50 -> 2,500,000.
    assert prices.cost("azure", "gpt-4o", usage).total_nanos == 2_500_000


def test_no_overrides_keeps_the_plain_version() -> None:
    assert PriceTable(GatewaySettings()).version == shipped_table().as_of.isoformat()


# --- validation of a table file --------------------------------------------------------------

GOOD = """
as_of = "2026-01-02"
[providers.acme]
source = "acme price list, read 2026-01-02"
[providers.acme.models."acme-1"]
input = 1.0
output = 2.0
"""


def test_a_minimal_table_loads(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(GOOD)
    prices = PriceTable(table_path=path)
    assert prices.version == "2026-01-02"
    # cache rates default to input: 10 read * 1,000 = 10,000, saving nothing
    cost = prices.cost("acme", "acme-1", Usage(cache_read_tokens=10))
    assert cost.total_nanos == 10_000
    assert cost.cache_savings_nanos == 0


@pytest.mark.parametrize(("text", "message"), [
    ("as_of = 'soon'\n", "as_of"),
    (GOOD.replace('source = "acme price list, read 2026-01-02"', ""), "source"),
    (GOOD.replace("input = 1.0", "input = -1.0"), "acme-1.input: a price cannot be negative"),
    (GOOD.replace("input = 1.0", 'input = "cheap"'), "acme-1.input"),
    (GOOD.replace("input = 1.0", "inptu = 1.0"), "unknown key(s) inptu"),
    (GOOD.replace("output = 2.0", ""), "missing output"),
    (GOOD + "long_input = 3.0\n", "long_input needs long_context_threshold"),
    (GOOD + "long_context_threshold = 0\n", "long_context_threshold"),
    (GOOD.replace('"acme-1"', '"Acme-1"'), "not in normal form"),
    (GOOD + 'aliases = ["acme-1"]\n', "listed twice"),
    ("as_of = 2026-01-02\nproviders = 3\n", "providers"),
    ("not toml [", "not valid TOML"),
])
def test_bad_tables_are_refused_with_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(PriceTableError) as info:
        parse_table(text, "test.toml")
    assert message in str(info.value)
    assert "test.toml" in str(info.value)
