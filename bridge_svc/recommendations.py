"""A trade recommendation made from one eligible signal (pure: pricing and reasoning applied to the signal)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from bridge_svc.pricing import PriceLevels, PricingTerms, closing_levels, price_levels
from bridge_svc.reasoning import reasoning_for
from bridge_svc.signals import TradingSignal
from common.lifecycle import ExecutionStatus, SignalType, pending_key


@dataclass(frozen=True, slots=True)
class NewRecommendation:
    """A trade_recommendations row about to be written (PENDING)."""

    signal_id: int
    symbol: str
    signal_type: SignalType  # BUY or SELL
    confidence: Decimal
    levels: PriceLevels
    reasoning: str
    is_mock: bool
    created_at: datetime  # aware UTC, whole seconds (the column has no fraction)

    @property
    def pending_key(self) -> str:
        return pending_key(self.symbol, self.signal_type)


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A recommendation the bridge wrote."""

    id: int
    proposal: NewRecommendation
    execution_status: ExecutionStatus = ExecutionStatus.PENDING


def propose(
    signal: TradingSignal, terms: PricingTerms, now: datetime, held: Decimal | None = None
) -> NewRecommendation:
    """The recommendation for an eligible ``signal`` (BUY or SELL with a positive price). A SELL closes the
    position of ``held`` units (bridge_svc.admission)."""
    if signal.price is None:
        raise ValueError("an eligible signal has a price")
    if signal.signal_type == SignalType.SELL and held is not None:
        levels = closing_levels(signal.price, held, terms)
    else:
        levels = price_levels(signal.signal_type, signal.price, terms)
    return NewRecommendation(
        signal_id=signal.id,
        symbol=signal.symbol,
        signal_type=SignalType(signal.signal_type),
        confidence=signal.confidence,
        levels=levels,
        reasoning=reasoning_for(signal),
        is_mock=signal.is_mock,
        created_at=now.replace(microsecond=0),
    )
