"""The executor's value objects: the recommendation as the executor sees it, the order outcome and the recorded
execution."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

FINAL = ("EXECUTED", "FAILED", "CANCELLED")
SIDES = {"BUY": "BUY", "SELL": "SELL", "STRONG_BUY": "BUY", "STRONG_SELL": "SELL"}


@dataclass(frozen=True)
class Recommendation:
    id: int
    symbol: str
    signal_type: str
    amount_usd: Decimal
    amount_crypto: Decimal | None
    entry_price: Decimal | None
    status: str
    status_reason: str
    # Mock data: the recommendation or its signal has is_mock set (replayed candles, a paper execution).
    is_mock: bool = False

    @property
    def side(self) -> str:
        return SIDES.get(self.signal_type, "HOLD")


@dataclass(frozen=True)
class OrderRequest:
    recommendation_id: int
    client_order_id: str
    symbol: str
    side: str  # BUY / SELL
    quote_size: Decimal  # USD to spend (BUY)
    base_size: Decimal  # units to sell (SELL)


@dataclass(frozen=True)
class OrderOutcome:
    status: str  # EXECUTED / FAILED, or PENDING when a transient problem left it retryable
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
    mode: str  # PAPER / LIVE
    status: str
    symbol: str
    side: str
    filled_size: Decimal | None
    average_price: Decimal | None
    fees: Decimal | None
    error_code: str
    error_message: str
    completed_at: datetime | None


@dataclass(frozen=True)
class ExecutionResult:
    recommendation_id: int
    status: str  # EXECUTED / FAILED / CANCELLED / PENDING
    client_order_id: str
    mode: str
    symbol: str
    side: str
    exchange_order_id: str = ""
    filled_size: Decimal | None = None
    average_price: Decimal | None = None
    fees: Decimal | None = None
    error_reason: str = ""
    executed_at: datetime | None = None
    replayed: bool = False
