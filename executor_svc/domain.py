"""The executor's value objects: the recommendation as the executor sees it, the order outcome and the recorded
execution."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from common.lifecycle import ExecutionMode, ExecutionStatus, ExitReason, OrderSide, OrderStatus, SignalType
from executor_svc.positions import Position


@dataclass(frozen=True)
class Recommendation:
    id: int
    symbol: str
    signal_type: SignalType
    amount_usd: Decimal
    amount_crypto: Decimal | None
    entry_price: Decimal | None
    status: ExecutionStatus
    status_reason: str
    # Mock data: the recommendation or its signal has is_mock set (replayed candles, a paper execution).
    is_mock: bool = False
    created_at: datetime | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    exit_reason: ExitReason | None = None  # a SELL closing a position: why (None: a SELL signal)

    @property
    def side(self) -> OrderSide | None:
        """What an order for it does; None for HOLD (nothing to execute)."""
        return self.signal_type.side


@dataclass(frozen=True)
class OrderRequest:
    recommendation_id: int
    client_order_id: str
    symbol: str
    side: OrderSide
    quote_size: Decimal  # USD to spend (BUY)
    base_size: Decimal  # units to sell (SELL)
    stop_loss: Decimal | None = None  # BUY: the levels that will protect the position it opens
    take_profit: Decimal | None = None
    exit_reason: ExitReason = ExitReason.SIGNAL  # SELL: why it closes the position
    # Paper exits at a level (stop-loss, take-profit): the market price the SELL fills at instead of the latest close.
    market_price: Decimal | None = None


@dataclass(frozen=True)
class OrderOutcome:
    # EXECUTED / FAILED, or PENDING when a transient problem left it retryable (with exchange_order_id: the
    # exchange accepted the order and it is not filled yet, recorded as SUBMITTED)
    status: OrderStatus
    exchange_order_id: str = ""
    filled_size: Decimal | None = None
    average_price: Decimal | None = None
    fees: Decimal | None = None
    error_code: str = ""
    error_message: str = ""


@dataclass(frozen=True)
class ExecutionRecord:
    recommendation_id: int
    client_order_id: str
    exchange_order_id: str
    mode: ExecutionMode
    status: OrderStatus
    symbol: str
    side: OrderSide
    filled_size: Decimal | None
    average_price: Decimal | None
    fees: Decimal | None
    error_code: str
    error_message: str
    completed_at: datetime | None
    created_at: datetime | None = None


@dataclass(frozen=True)
class ExecutionResult:
    recommendation_id: int
    status: ExecutionStatus
    client_order_id: str
    mode: ExecutionMode
    symbol: str
    side: OrderSide | None
    exchange_order_id: str = ""
    filled_size: Decimal | None = None
    average_price: Decimal | None = None
    fees: Decimal | None = None
    error_reason: str = ""
    executed_at: datetime | None = None
    replayed: bool = False


@dataclass(frozen=True)
class PositionExit:
    """A position closed by a protective exit (stop-loss, take-profit, time limit)."""

    position: Position
    reason: ExitReason
    recommendation_id: int
    exit_price: Decimal
    quantity: Decimal
    realized_pnl: Decimal
