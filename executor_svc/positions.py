"""Positions (pure, Decimal only): what an executed BUY opens and the SELL that sells all of it closes.

One implementation for the paper executor, the live executor and `cts backtest`:

- A BUY fill opens a position: quantity = the filled size, entry_price = the average fill price, entry_cost = the
  USD paid including the fee, with the recommendation's stop-loss and take-profit.
- A SELL fill of the whole quantity closes it: realized P&L = proceeds - exit fee - entry_cost.
- Unrealized P&L at a price = quantity x price - entry_cost (the exit fee is not deducted: it is not paid yet).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from common.lifecycle import ExecutionMode, ExitReason

USD_QUANTUM = Decimal("0.00000001")


@dataclass(frozen=True)
class Position:
    mode: ExecutionMode
    symbol: str
    quantity: Decimal  # units of the base asset held
    entry_price: Decimal  # average fill price
    entry_cost: Decimal  # USD paid, fees included
    stop_loss: Decimal | None
    take_profit: Decimal | None
    opened_at: datetime
    entry_recommendation_id: int
    fees: Decimal = Decimal(0)  # entry and, once closed, exit fees
    id: int | None = None  # the database row (None in the backtest until it is stored)
    bracket_order_id: str = ""  # live: the attached take-profit / stop-loss order on Coinbase

    def unrealized_pnl(self, price: Decimal) -> Decimal:
        return (self.quantity * price - self.entry_cost).quantize(USD_QUANTUM)

    def held_for(self, now: datetime) -> float:
        """Hours the position has been open at ``now``."""
        return (now - self.opened_at).total_seconds() / 3600


@dataclass(frozen=True)
class ClosedPosition:
    position: Position
    reason: ExitReason
    exit_price: Decimal  # average fill price of the SELL
    proceeds: Decimal  # quantity x exit price, USD, before the fee
    exit_fee: Decimal
    closed_at: datetime
    exit_recommendation_id: int

    @property
    def realized_pnl(self) -> Decimal:
        return (self.proceeds - self.exit_fee - self.position.entry_cost).quantize(USD_QUANTUM)

    @property
    def fees(self) -> Decimal:
        return self.position.fees + self.exit_fee


def open_position(
    *,
    mode: ExecutionMode,
    symbol: str,
    filled_size: Decimal,
    average_price: Decimal,
    quote_total: Decimal,
    fee: Decimal,
    stop_loss: Decimal | None,
    take_profit: Decimal | None,
    opened_at: datetime,
    recommendation_id: int,
) -> Position:
    """The position an executed BUY opens (``quote_total`` = filled size x price, USD, before the fee)."""
    if filled_size <= 0:
        raise ValueError("a position needs a positive quantity")
    return Position(
        mode=mode,
        symbol=symbol,
        quantity=filled_size,
        entry_price=average_price,
        entry_cost=(quote_total + fee).quantize(USD_QUANTUM),
        stop_loss=stop_loss,
        take_profit=take_profit,
        opened_at=opened_at,
        entry_recommendation_id=recommendation_id,
        fees=fee,
    )


def close_position(
    position: Position,
    *,
    reason: ExitReason,
    average_price: Decimal,
    quote_total: Decimal,
    fee: Decimal,
    closed_at: datetime,
    recommendation_id: int,
) -> ClosedPosition:
    """The whole position sold (``quote_total`` = quantity x price, USD, before the fee)."""
    return ClosedPosition(
        position=position,
        reason=reason,
        exit_price=average_price,
        proceeds=quote_total,
        exit_fee=fee,
        closed_at=closed_at,
        exit_recommendation_id=recommendation_id,
    )


def with_id(position: Position, position_id: int) -> Position:
    return replace(position, id=position_id)
