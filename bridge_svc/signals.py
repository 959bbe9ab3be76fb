"""The trading signal as the bridge sees it: the columns of one trading_signals row it needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class TradingSignal:
    id: int
    symbol: str
    signal_type: str  # "BUY", "SELL" or "HOLD"
    confidence: Decimal
    price: Decimal | None
    created_at: datetime | None  # aware UTC
    processed: bool
    is_mock: bool
    model: str | None = None
    model_version: str | None = None
    threshold: Decimal | None = None
    regime: str | None = None
    buy_probability: Decimal | None = None
    sell_probability: Decimal | None = None
    hold_probability: Decimal | None = None
    candle_time: datetime | None = None  # aware UTC
