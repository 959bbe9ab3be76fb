"""The readable sentence stored in trade_recommendations.reasoning: which model, how sure, and the main drivers
(the class probabilities, the threshold that was applied, the market regime, the candle)."""

from __future__ import annotations

from decimal import Decimal

from bridge_svc.signals import TradingSignal


def _pct(value: Decimal | None) -> str | None:
    return None if value is None else f"{value * 100:.1f}%"


def reasoning_for(signal: TradingSignal) -> str:
    """For example: "XGBoost model m.joblib (version 20260101_120000-ab12cd) rates BTC-USD a BUY with probability
    73.1% (threshold 50.0%; buy 73.1%, sell 12.0%, hold 14.9%) in a bull regime, on the 2026-01-01 12:00 UTC
    candle closing at 43000.00000000 USD.\""""
    model = f"XGBoost model {signal.model}" if signal.model else "The model"
    version = f" (version {signal.model_version})" if signal.model_version else ""
    sentence = (
        f"{model}{version} rates {signal.symbol} a {signal.signal_type} with probability {_pct(signal.confidence)}"
    )
    details = []
    if signal.threshold is not None:
        details.append(f"threshold {_pct(signal.threshold)}")
    probabilities = [
        f"{name} {_pct(value)}"
        for name, value in (
            ("buy", signal.buy_probability),
            ("sell", signal.sell_probability),
            ("hold", signal.hold_probability),
        )
        if value is not None
    ]
    if probabilities:
        details.append(", ".join(probabilities))
    if details:
        sentence += f" ({'; '.join(details)})"
    if signal.regime:
        sentence += f" in a {signal.regime} regime"
    if signal.candle_time is not None:
        sentence += f", on the {signal.candle_time:%Y-%m-%d %H:%M} UTC candle"
        if signal.price is not None:
            sentence += f" closing at {signal.price} USD"
    elif signal.price is not None:
        sentence += f", at {signal.price} USD"
    return sentence + "."
