"""Which symbols the generator looks at: the top N by 24-hour USD volume among tradable USD products.

Skipped: stablecoins, products that are disabled, cancel-only, limit-only or view-only, symbols without enough
candle history, the deny list; with an allow list, only those symbols. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

STABLECOINS = frozenset(
    {
        "USDT",
        "USDC",
        "DAI",
        "PYUSD",
        "USDS",
        "FDUSD",
        "TUSD",
        "GUSD",
        "EURC",
        "USDP",
        "PAX",
        "BUSD",
        "UST",
        "LUSD",
        "FRAX",
        "USDE",
        "GHO",
        "RLUSD",
        "EUROC",
        "CBETH-USDC",
    }
)


@dataclass(frozen=True)
class Product:
    """A market as Coinbase describes it (GET /market/products), or as the candles table implies it."""

    product_id: str
    volume_24h_usd: Decimal
    quote_currency: str = "USD"
    base_currency: str = ""
    status: str = "online"
    trading_disabled: bool = False
    cancel_only: bool = False
    limit_only: bool = False
    view_only: bool = False


@dataclass(frozen=True)
class UniverseRules:
    size: int
    min_history: int
    allowlist: frozenset[str] = frozenset()
    denylist: frozenset[str] = frozenset()


def exclusion_reason(product: Product, history: int, rules: UniverseRules) -> str | None:
    base = product.base_currency or product.product_id.split("-", 1)[0]
    if rules.allowlist and product.product_id not in rules.allowlist:
        return "not in SYMBOL_ALLOWLIST"
    if product.product_id in rules.denylist:
        return "in SYMBOL_DENYLIST"
    if product.quote_currency != "USD":
        return "not a USD product"
    if base in STABLECOINS:
        return "stablecoin"
    if product.status != "online" or product.trading_disabled:
        return "trading disabled"
    if product.cancel_only or product.limit_only or product.view_only:
        return "cancel-only, limit-only or view-only"
    if history < rules.min_history:
        return f"not enough candle history ({history} < {rules.min_history})"
    return None


def select_universe(
    products: Iterable[Product], history: Mapping[str, int], rules: UniverseRules
) -> tuple[list[str], dict[str, str]]:
    """(the top ``rules.size`` product ids by 24 h USD volume, {excluded product id: reason})."""
    eligible: list[Product] = []
    excluded: dict[str, str] = {}
    for product in products:
        reason = exclusion_reason(product, history.get(product.product_id, 0), rules)
        if reason is None:
            eligible.append(product)
        else:
            excluded[product.product_id] = reason
    eligible.sort(key=lambda p: (-p.volume_24h_usd, p.product_id))
    return [p.product_id for p in eligible[: rules.size]], excluded


def top_tradable(products: Sequence[Product], rules: UniverseRules) -> list[str]:
    """The universe before any history is stored (what to fetch candles for): the same rules, history not counted."""
    symbols, _ = select_universe(products, dict.fromkeys((p.product_id for p in products), rules.min_history), rules)
    return symbols
