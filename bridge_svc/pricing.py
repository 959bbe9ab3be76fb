"""Entry, stop-loss, take-profit and order size of a recommendation (pure functions, Decimal only).

The rule (the backtest reuses these functions, so live trading and the backtest price trades the same way):

- entry_price = the signal's price (the close of the candle the signal was computed on).
- BUY:  stop_loss = entry * (1 - STOP_LOSS_PERCENT / 100), take_profit = entry * (1 + TAKE_PROFIT_PERCENT / 100).
- SELL: mirrored: stop_loss = entry * (1 + STOP_LOSS_PERCENT / 100),
        take_profit = entry * (1 - TAKE_PROFIT_PERCENT / 100), floored at 0 (a SELL target of 100 % or more can
        never be reached).
- Prices are rounded half-even to 8 decimals (the scale of the price columns).
- amount_crypto = amount_usd / entry_price rounded DOWN to 8 decimals, so an order never exceeds amount_usd.
- amount_usd = TRADE_AMOUNT_USD and position_size_percent = POSITION_SIZE_PERCENT (2 decimals), as configured.

Defaults: stop loss 2 %, take profit 4 %, $100 per trade, 1.00 % of the portfolio.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Final

from common.lifecycle import OrderSide

PRICE_QUANTUM: Final = Decimal("0.00000001")
AMOUNT_CRYPTO_QUANTUM: Final = Decimal("0.00000001")
AMOUNT_USD_QUANTUM: Final = Decimal("0.00000001")
PERCENT_QUANTUM: Final = Decimal("0.01")
_HUNDRED: Final = Decimal(100)
_ZERO: Final = Decimal(0)


@dataclass(frozen=True, slots=True)
class PricingTerms:
    """The configured terms every recommendation is priced with."""

    amount_usd: Decimal
    stop_loss_percent: Decimal
    take_profit_percent: Decimal
    position_size_percent: Decimal


@dataclass(frozen=True, slots=True)
class PriceLevels:
    entry_price: Decimal
    stop_loss: Decimal
    take_profit: Decimal
    amount_usd: Decimal
    amount_crypto: Decimal
    position_size_percent: Decimal


def _price(value: Decimal) -> Decimal:
    return value.quantize(PRICE_QUANTUM, rounding=ROUND_HALF_EVEN)


def stop_loss_price(side: str, entry_price: Decimal, stop_loss_percent: Decimal) -> Decimal:
    """BUY: below the entry; SELL: above it."""
    offset = entry_price * stop_loss_percent / _HUNDRED
    return _price(entry_price - offset if side == OrderSide.BUY else entry_price + offset)


def take_profit_price(side: str, entry_price: Decimal, take_profit_percent: Decimal) -> Decimal:
    """BUY: above the entry; SELL: below it (never below 0)."""
    offset = entry_price * take_profit_percent / _HUNDRED
    return _price(entry_price + offset if side == OrderSide.BUY else max(entry_price - offset, _ZERO))


def amount_crypto(amount_usd: Decimal, entry_price: Decimal) -> Decimal:
    """Units of the base asset bought or sold for ``amount_usd``, rounded down to 8 decimals."""
    if entry_price <= 0:
        raise ValueError("entry price must be positive")
    return (amount_usd / entry_price).quantize(AMOUNT_CRYPTO_QUANTUM, rounding=ROUND_DOWN)


def price_levels(side: str, entry_price: Decimal, terms: PricingTerms) -> PriceLevels:
    """All price and size fields of a recommendation for a BUY or SELL at ``entry_price`` (> 0)."""
    if side not in tuple(OrderSide):
        raise ValueError(f"only BUY and SELL can be priced, not {side!r}")
    entry = _price(entry_price)
    amount_usd = terms.amount_usd.quantize(AMOUNT_USD_QUANTUM, rounding=ROUND_DOWN)
    return PriceLevels(
        entry_price=entry,
        stop_loss=stop_loss_price(side, entry, terms.stop_loss_percent),
        take_profit=take_profit_price(side, entry, terms.take_profit_percent),
        amount_usd=amount_usd,
        amount_crypto=amount_crypto(amount_usd, entry),
        position_size_percent=terms.position_size_percent.quantize(PERCENT_QUANTUM, rounding=ROUND_HALF_EVEN),
    )


def closing_levels(entry_price: Decimal, quantity: Decimal, terms: PricingTerms) -> PriceLevels:
    """A SELL that closes a whole position of ``quantity`` units: the SELL's levels, with amount_crypto = the
    quantity held (rounded down to the column's 8 decimals; the executor sells the whole position whatever this
    says) and amount_usd = that amount's value at ``entry_price`` (rounded down to 8 decimals)."""
    levels = price_levels(OrderSide.SELL, entry_price, terms)
    units = quantity.quantize(AMOUNT_CRYPTO_QUANTUM, rounding=ROUND_DOWN)  # the column's 8 decimals
    return PriceLevels(
        entry_price=levels.entry_price,
        stop_loss=levels.stop_loss,
        take_profit=levels.take_profit,
        amount_usd=(units * levels.entry_price).quantize(AMOUNT_USD_QUANTUM, rounding=ROUND_DOWN),
        amount_crypto=units,
        position_size_percent=levels.position_size_percent,
    )
