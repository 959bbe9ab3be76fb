"""Paper fill math (shared with `cts backtest`): a market order filled at the market price moved against us by
the slippage, with the taker fee charged in USD on top (BUY) or taken from the proceeds (SELL)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

SIZE_QUANTUM = Decimal("0.00000001")
USD_QUANTUM = Decimal("0.00000001")
PRICE_QUANTUM = Decimal("0.0000000001")
BPS = Decimal("0.0001")


@dataclass(frozen=True)
class Fill:
    price: Decimal  # USD per unit
    size: Decimal  # units of the base asset
    quote_total: Decimal  # size x price, USD
    fee: Decimal  # USD


def paper_fill(
    *,
    side: str,
    market_price: Decimal,
    quote_size: Decimal,
    base_size: Decimal,
    slippage_bps: Decimal,
    fee_rate: Decimal,
) -> Fill:
    """BUY spends ``quote_size`` USD (plus the fee); SELL sells ``base_size`` units."""
    if market_price <= 0:
        raise ValueError("market price must be positive")
    if side == "BUY":
        price = (market_price * (1 + slippage_bps * BPS)).quantize(PRICE_QUANTUM)
        size = (quote_size / price).quantize(SIZE_QUANTUM, rounding=ROUND_DOWN)
    elif side == "SELL":
        price = (market_price * (1 - slippage_bps * BPS)).quantize(PRICE_QUANTUM)
        size = base_size.quantize(SIZE_QUANTUM, rounding=ROUND_DOWN)
    else:
        raise ValueError(f"cannot fill a {side!r} order")
    quote_total = (size * price).quantize(USD_QUANTUM)
    fee = (quote_total * fee_rate).quantize(USD_QUANTUM)
    return Fill(price=price, size=size, quote_total=quote_total, fee=fee)
