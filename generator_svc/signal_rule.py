"""The live signal rule: BUY if P(buy) > BUY_THRESHOLD, SELL if P(sell) > SELL_THRESHOLD, else HOLD.

If both fire (only possible with thresholds summing to less than 1), the larger probability wins (BUY on a tie).
Confidence is the probability of the chosen class; for HOLD it is the largest of the three probabilities.
Values are rounded half-even to 4 decimals, the scale of trading_signals.confidence."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal

from common.lifecycle import SignalType

QUANTUM = Decimal("0.0001")


def to_probability(value: float) -> Decimal:
    return Decimal(repr(float(value))).quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


def decide(p_buy: float, p_sell: float, buy_threshold: float, sell_threshold: float) -> SignalType:
    buy = p_buy > buy_threshold
    sell = p_sell > sell_threshold
    if buy and sell:
        return SignalType.BUY if p_buy >= p_sell else SignalType.SELL
    if buy:
        return SignalType.BUY
    if sell:
        return SignalType.SELL
    return SignalType.HOLD


def decide_from_probabilities(
    by_class: Mapping[str, float], buy_threshold: float, sell_threshold: float
) -> tuple[SignalType, Decimal]:
    """(signal type, confidence) from {"BUY": p, "SELL": p, "HOLD": p} (the model's class names)."""
    p_buy, p_sell, p_hold = by_class["BUY"], by_class["SELL"], by_class["HOLD"]
    signal_type = decide(p_buy, p_sell, buy_threshold, sell_threshold)
    chosen = {SignalType.BUY: p_buy, SignalType.SELL: p_sell}.get(signal_type, max(p_buy, p_sell, p_hold))
    return signal_type, to_probability(chosen)


def threshold_for(signal_type: SignalType, buy_threshold: float, sell_threshold: float) -> Decimal:
    """The threshold recorded with a signal: the one that fired (HOLD records the BUY threshold)."""
    value = sell_threshold if signal_type == SignalType.SELL else buy_threshold
    return to_probability(value)
