"""What a response cost: the shipped, dated pricing table, the user's overrides, exact arithmetic.

The table (``prices.toml``, shipped in this package) holds absolute list prices in USD per million
tokens for each model: input, output, cache reads, 5-minute and 1-hour cache writes, and an
optional long-context tier. Users override or add models under ``[gateway.prices]`` in their
config; a user's entry replaces the shipped one whole.

Matching a model id (``model_candidates``), in order, first hit wins:

1. Normalise: trim and lowercase; keep what follows the last ``/`` (``anthropic/claude-...``,
   ``openrouter/openai/gpt-5``); drop a Bedrock region and vendor prefix (``us.anthropic.``) and
   version suffix (``-v1:0``); read a Vertex ``@`` as ``-``; drop a trailing ``[1m]`` tag; in
   Claude ids turn dots between digits into hyphens (``claude-sonnet-4.5``). OpenAI ids keep their
   dots (``gpt-4.1``).
2. Try the normalised id, then the id without a snapshot date (``-20250929`` or
   ``-2025-04-14``), then without a trailing ``-latest``. Table keys and their ``aliases`` are
   matched exactly: there is no prefix guessing, so an unknown variant stays unpriced.

User entries are looked up before the table, first those scoped to the serving provider (key
``"<provider>/<model>"`` where ``<provider>`` is a configured provider name), then plain ones.

Cost (``ModelPrice.cost``): with ``p`` = ``Usage.prompt_tokens`` (input + cache reads + cache
writes), the whole request is priced at the long-context rates when ``p`` is strictly above the
model's threshold, else at the standard rates. Each rate (a decimal in USD per million tokens) is
kept as an exact fraction; the sum of ``tokens x rate`` over the five token kinds is converted to
nano-dollars and rounded once, half away from zero (half-up for the non-negative totals), so
there is exactly one rounding per request. ``cache_savings_nanos`` is computed the same way from
the same rates: what the cache reads would have cost as plain input minus what they cost, minus
the premium paid for cache writes over plain input. A model without a price costs
``Cost(total_nanos=None)``, never 0. The sums are taken in integers, over the tier's rates brought
to a common denominator once (``Rates.numerators``): the same result as ``Fraction`` arithmetic,
which cost the gateway's loop about 35 us per request.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from moltconsole_backend.settings import GatewaySettings, PriceSettings
from moltconsole_shared.wire.records import NANOS_PER_USD, Cost, Usage

TOKENS_PER_RATE_UNIT = 1_000_000  # rates are per million tokens
CONFIG_SUFFIX = "+config"

_RATE_KEYS = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")
_LONG_KEYS = tuple(f"long_{key}" for key in _RATE_KEYS)
_MODEL_KEYS = frozenset({*_RATE_KEYS, *_LONG_KEYS, "long_context_threshold", "aliases"})

_DATE_SUFFIX_RE = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2})$")
_BEDROCK_PREFIX_RE = re.compile(r"^(?:[a-z]{2,6}\.)?(?:anthropic|openai)\.")
_BEDROCK_VERSION_RE = re.compile(r"-v\d+(?::\d+)?$")
_TAG_SUFFIX_RE = re.compile(r"\[[^\]]*\]$")
_DIGIT_DOT_RE = re.compile(r"(?<=\d)\.(?=\d)")


class PriceTableError(ValueError):
    """The pricing table or a price override cannot be used; the message names the entry."""


@dataclass(frozen=True, slots=True)
class Rates:
    """One tier's rates in USD per million tokens, as exact fractions.

    ``numerators`` are the five rates (in field order) over the one ``denominator``, so a cost
    is summed in integers.
    """

    input: Fraction
    output: Fraction
    cache_read: Fraction
    cache_write_5m: Fraction
    cache_write_1h: Fraction
    numerators: tuple[int, int, int, int, int] = field(init=False, repr=False, compare=False)
    denominator: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rates = (self.input, self.output, self.cache_read, self.cache_write_5m, self.cache_write_1h)
        den = math.lcm(*(rate.denominator for rate in rates))
        i, o, r, w5, w1 = (rate.numerator * (den // rate.denominator) for rate in rates)
        object.__setattr__(self, "numerators", (i, o, r, w5, w1))
        object.__setattr__(self, "denominator", den)


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """The price of one model: standard rates and an optional long-context tier."""

    model: str  # the table key (or the user's key) that matched
    vendor: str  # table section ("anthropic", "openai") or "config"
    standard: Rates
    long_context_threshold: int | None = None
    long: Rates | None = None
    version: str = ""  # stored with every cost: the table's as_of, "+config" for user entries

    @property
    def origin(self) -> Literal["table", "config"]:
        """Whether the price comes from the shipped table or the user's config."""
        return "config" if self.version.endswith(CONFIG_SUFFIX) else "table"

    def is_long(self, usage: Usage) -> bool:
        """Whether this request falls in the long-context tier (prompt strictly above threshold)."""
        return (
            self.long is not None
            and self.long_context_threshold is not None
            and usage.prompt_tokens > self.long_context_threshold
        )

    def cost(self, usage: Usage) -> Cost:
        """The exact cost of one response, rounded once to nano-dollars."""
        long = self.is_long(usage)
        r = self.long if long and self.long is not None else self.standard
        i, o, cr, w5, w1 = r.numerators  # USD per million tokens, times r.denominator
        read = usage.cache_read_tokens
        t5, t1 = usage.cache_write_5m_tokens, usage.cache_write_1h_tokens
        usd_mtok = usage.input_tokens * i + usage.output_tokens * o + read * cr + t5 * w5 + t1 * w1
        savings = read * (i - cr) - t5 * (w5 - i) - t1 * (w1 - i)
        return Cost(
            total_nanos=_to_nanos(usd_mtok, r.denominator),
            cache_savings_nanos=_to_nanos(savings, r.denominator),
            pricing_version=self.version,
            long_context=long,
        )


def _to_nanos(usd_times_mtok: int, denominator: int) -> int:
    """A sum of tokens x USD-per-million-token rates (``usd_times_mtok / denominator``), in
    nano-dollars, rounded half away from zero."""
    num = usd_times_mtok * NANOS_PER_USD
    den = denominator * TOKENS_PER_RATE_UNIT
    if num >= 0:
        return (2 * num + den) // (2 * den)
    return -((-2 * num + den) // (2 * den))


def normalize_model_id(model: str) -> str:
    """A model id reduced to the form the table is keyed by (step 1 of the matching rule)."""
    mid = model.strip().lower()
    if "/" in mid:
        mid = mid.rsplit("/", 1)[1]
    mid = _TAG_SUFFIX_RE.sub("", mid)
    if _BEDROCK_PREFIX_RE.match(mid):
        mid = _BEDROCK_PREFIX_RE.sub("", mid, count=1)
        mid = _BEDROCK_VERSION_RE.sub("", mid)
    mid = mid.replace("@", "-")
    if mid.startswith("claude"):
        mid = _DIGIT_DOT_RE.sub("-", mid)
    return mid


def model_candidates(model: str) -> list[str]:
    """The ids tried for ``model``, most specific first (step 2 of the matching rule)."""
    first = normalize_model_id(model)
    out = [first] if first else []
    undated = _DATE_SUFFIX_RE.sub("", first)
    if undated and undated not in out:
        out.append(undated)
    for base in list(out):
        if base.endswith("-latest"):
            stripped = base.removesuffix("-latest")
            if stripped and stripped not in out:
                out.append(stripped)
    return out


@dataclass(frozen=True, slots=True)
class ShippedTable:
    """The parsed ``prices.toml``: its date, a source note per vendor, and prices by model id."""

    as_of: date
    sources: dict[str, str]
    prices: dict[str, ModelPrice]  # every key and alias -> its price


def _fraction(value: Any, where: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PriceTableError(f"{where}: expected a price in USD per million tokens, got {value!r}")
    try:
        result = Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise PriceTableError(f"{where}: expected a price in USD per million tokens, got {value!r}") from None
    if result < 0:
        raise PriceTableError(f"{where}: a price cannot be negative (got {value!r})")
    return result


def _scaled(rate: Fraction, old_input: Fraction, new_input: Fraction) -> Fraction:
    # A cache rate in the long tier keeps its ratio to the input rate.
    return rate if old_input == 0 else rate * new_input / old_input


def _build_price(
    model: str,
    vendor: str,
    version: str,
    values: Mapping[str, Any],
    where: str,
) -> ModelPrice:
    unknown = sorted(set(values) - _MODEL_KEYS)
    if unknown:
        raise PriceTableError(
            f"{where}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(_MODEL_KEYS))}"
        )
    for key in ("input", "output"):
        if key not in values:
            raise PriceTableError(f"{where}: missing {key}")
    rate = {k: _fraction(values[k], f"{where}.{k}") for k in _RATE_KEYS + _LONG_KEYS if k in values}
    inp = rate["input"]
    standard = Rates(
        inp,
        rate["output"],
        rate.get("cache_read", inp),
        rate.get("cache_write_5m", inp),
        rate.get("cache_write_1h", inp),
    )
    threshold = values.get("long_context_threshold")
    if threshold is None:
        present = [k for k in _LONG_KEYS if k in values]
        if present:
            raise PriceTableError(f"{where}: {present[0]} needs long_context_threshold")
        return ModelPrice(model, vendor, standard, version=version)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise PriceTableError(
            f"{where}.long_context_threshold: expected a whole number of "
            f"prompt tokens >= 1, got {threshold!r}"
        )
    long_in = rate.get("long_input", inp)
    long = Rates(
        long_in,
        rate.get("long_output", standard.output),
        rate.get("long_cache_read", _scaled(standard.cache_read, inp, long_in)),
        rate.get("long_cache_write_5m", _scaled(standard.cache_write_5m, inp, long_in)),
        rate.get("long_cache_write_1h", _scaled(standard.cache_write_1h, inp, long_in)),
    )
    return ModelPrice(model, vendor, standard, threshold, long, version)


def parse_table(text: str, name: str = "prices.toml") -> ShippedTable:
    """Parse and validate a pricing table; raise PriceTableError naming the entry at fault."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PriceTableError(f"{name}: not valid TOML ({exc})") from None
    extra = sorted(set(data) - {"as_of", "providers"})
    if extra:
        raise PriceTableError(f"{name}: unknown top-level key(s) {', '.join(extra)}")
    as_of = data.get("as_of")
    if isinstance(as_of, str):
        try:
            as_of = date.fromisoformat(as_of)
        except ValueError:
            raise PriceTableError(
                f"{name}: as_of must be a date such as 2026-11-25, got {data['as_of']!r}"
            ) from None
    if not isinstance(as_of, date):
        raise PriceTableError(f"{name}: as_of must be a date such as 2026-11-25")
    version = as_of.isoformat()
    providers = data.get("providers")
    if not isinstance(providers, dict) or not providers:
        raise PriceTableError(f"{name}: no [providers.<name>] sections")
    sources: dict[str, str] = {}
    prices: dict[str, ModelPrice] = {}
    for vendor, section in providers.items():
        where = f"{name}: providers.{vendor}"
        if not isinstance(section, dict):
            raise PriceTableError(f"{where}: expected a table")
        extra = sorted(set(section) - {"source", "models"})
        if extra:
            raise PriceTableError(f"{where}: unknown key(s) {', '.join(extra)}")
        source = section.get("source")
        if not isinstance(source, str) or not source.strip():
            raise PriceTableError(f"{where}: needs a source note (where and when the prices were read)")
        sources[vendor] = " ".join(source.split())
        models = section.get("models")
        if not isinstance(models, dict) or not models:
            raise PriceTableError(f"{where}: no models")
        for key, values in models.items():
            mwhere = f"{where}.models.{key}"
            if not isinstance(values, dict):
                raise PriceTableError(f"{mwhere}: expected a table")
            price = _build_price(key, vendor, version, values, mwhere)
            aliases = values.get("aliases", [])
            if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
                raise PriceTableError(f"{mwhere}.aliases: expected a list of model ids")
            for ident in [key, *aliases]:
                if ident != normalize_model_id(ident):
                    raise PriceTableError(
                        f"{mwhere}: id {ident!r} is not in normal form "
                        f"(expected {normalize_model_id(ident)!r})"
                    )
                if ident in prices:
                    raise PriceTableError(f"{mwhere}: id {ident!r} is listed twice")
                prices[ident] = price
    return ShippedTable(as_of, sources, prices)


@lru_cache(maxsize=4)
def _load_file(path: str | None) -> ShippedTable:
    if path is None:
        shipped = resources.files("moltconsole_backend.gateway").joinpath("prices.toml")
        text = shipped.read_text(encoding="utf-8")
        return parse_table(text)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PriceTableError(f"{path}: cannot be read ({exc.strerror})") from None
    return parse_table(text, path)


def shipped_table() -> ShippedTable:
    """The pricing table shipped with moltconsole (parsed once per process)."""
    return _load_file(None)


class PriceTable:
    """The shipped table plus the user's overrides: looks up models and prices usage.

    ``PriceTable(settings)`` takes the overrides from ``GatewaySettings.prices``; ``table_path``
    reads another table file instead of the shipped one (tests, or a newer table).
    """

    def __init__(
        self,
        settings: GatewaySettings | None = None,
        *,
        table_path: Path | None = None,
        overrides: Mapping[str, PriceSettings] | None = None,
    ) -> None:
        self.table = _load_file(str(table_path) if table_path is not None else None)
        given = dict(settings.prices) if settings is not None else {}
        given.update(overrides or {})
        providers = set(settings.providers) if settings is not None else set()
        self.version = self.table.as_of.isoformat() + (CONFIG_SUFFIX if given else "")
        user_version = self.table.as_of.isoformat() + CONFIG_SUFFIX
        # (provider or "", normalised model id) -> price
        self._user: dict[tuple[str, str], ModelPrice] = {}
        for key, setting in given.items():
            provider, _, rest = key.partition("/")
            scope = provider if rest and provider in providers else ""
            model = normalize_model_id(rest if scope else key)
            if not model:
                raise PriceTableError(f"gateway.prices.{key}: names no model")
            self._user[(scope, model)] = _from_settings(key, setting, user_version)

    @property
    def as_of(self) -> date:
        """The date the shipped table's prices were read."""
        return self.table.as_of

    @property
    def sources(self) -> dict[str, str]:
        """Where each vendor's prices were read, per table section."""
        return dict(self.table.sources)

    def models(self) -> list[str]:
        """Every model id the table and the overrides can price (aliases included)."""
        return sorted({*self.table.prices, *(model for _, model in self._user)})

    def lookup(self, provider: str, model: str) -> ModelPrice | None:
        """The price of ``model`` served by ``provider``, or None when nothing prices it."""
        candidates = model_candidates(model)
        scope = provider.strip().lower()
        for key in _scoped(scope, candidates):
            price = self._user.get(key)
            if price is not None:
                return price
        for candidate in candidates:
            price = self.table.prices.get(candidate)
            if price is not None:
                return price
        return None

    def cost(self, provider: str, model: str, usage: Usage) -> Cost:
        """The cost of one response; ``total_nanos`` is None when the model has no price."""
        price = self.lookup(provider, model)
        if price is None:
            return Cost(total_nanos=None, pricing_version=self.version)
        return price.cost(usage)


def _scoped(provider: str, candidates: Iterable[str]) -> list[tuple[str, str]]:
    ids = list(candidates)
    return [*((provider, c) for c in ids if provider), *(("", c) for c in ids)]


def _from_settings(key: str, setting: PriceSettings, version: str) -> ModelPrice:
    values: dict[str, Any] = {k: v for k, v in setting.model_dump().items() if v is not None}
    return _build_price(key, "config", version, values, f"gateway.prices.{key}")
