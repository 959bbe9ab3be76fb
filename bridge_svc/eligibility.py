"""Which signals may become trade recommendations (pure rules, no I/O).

A signal is eligible when it is a BUY or a SELL (never HOLD), its confidence is strictly above the minimum
(BRIDGE_MIN_CONFIDENCE; exactly the minimum is not enough), it was created within the last
BRIDGE_SIGNAL_MAX_AGE_SECONDS, and it has not been processed yet. Otherwise the reason is one short,
machine-readable string (the constants below); the same strings appear in BridgeResponse and in
trading_signals.processed_reason."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

from bridge_svc.signals import TradingSignal
from common.lifecycle import ACTIONABLE_SIGNALS

NOT_FOUND: Final = "not_found"
ALREADY_PROCESSED: Final = "already_processed"
HOLD: Final = "hold"
LOW_CONFIDENCE: Final = "low_confidence"
TOO_OLD: Final = "too_old"
# Decided when the recommendation is written: the database refused a second open (PENDING) recommendation for the
# same symbol and side.
OPEN_POSITION: Final = "open_position"
# The signal has no usable price (missing or not positive), so no order size can be derived from it.
NO_PRICE: Final = "no_price"

TRADABLE_TYPES: Final = frozenset(ACTIONABLE_SIGNALS)


@dataclass(frozen=True, slots=True)
class EligibilityRules:
    min_confidence: Decimal
    max_age: timedelta

    def created_after(self, now: datetime) -> datetime:
        """The oldest creation time still eligible at ``now``."""
        return now - self.max_age


def skip_reason(signal: TradingSignal, rules: EligibilityRules, now: datetime) -> str | None:
    """None when ``signal`` is eligible at ``now``, else why it is not (first failing rule, in this order:
    already processed, HOLD, confidence, age, price)."""
    if signal.processed:
        return ALREADY_PROCESSED
    if signal.signal_type not in TRADABLE_TYPES:
        return HOLD
    if not signal.confidence > rules.min_confidence:
        return LOW_CONFIDENCE
    if signal.created_at is None or signal.created_at < rules.created_after(now):
        return TOO_OLD
    if signal.price is None or signal.price <= 0:
        return NO_PRICE
    return None
