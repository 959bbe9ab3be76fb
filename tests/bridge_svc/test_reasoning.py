"""The reasoning sentence names the model, the probability and the drivers the signal row has."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from bridge_svc.reasoning import reasoning_for
from bridge_svc.signals import TradingSignal


def test_sentence_with_every_driver() -> None:
    signal = TradingSignal(
        id=7,
        symbol="ETH-USD",
        signal_type="SELL",
        confidence=Decimal("0.6420"),
        price=Decimal("2500.50000000"),
        created_at=None,
        processed=False,
        is_mock=False,
        model="balanced_realistic_model_20260101_120000.joblib",
        model_version="20260101_120000-abc123",
        threshold=Decimal("0.6000"),
        regime="bear",
        buy_probability=Decimal("0.1000"),
        sell_probability=Decimal("0.6420"),
        hold_probability=Decimal("0.2580"),
        candle_time=datetime(2026, 2, 3, 4, 0, tzinfo=UTC),
    )
    text = reasoning_for(signal)
    for part in (
        "balanced_realistic_model_20260101_120000.joblib",
        "20260101_120000-abc123",
        "ETH-USD a SELL with probability 64.2%",
        "threshold 60.0%",
        "buy 10.0%, sell 64.2%, hold 25.8%",
        "bear regime",
        "2026-02-03 04:00 UTC",
        "2500.50000000 USD",
    ):
        assert part in text
    assert text.endswith(".")


def test_sentence_without_optional_columns() -> None:
    signal = TradingSignal(
        id=8,
        symbol="BTC-USD",
        signal_type="BUY",
        confidence=Decimal("0.7"),
        price=None,
        created_at=None,
        processed=False,
        is_mock=False,
    )
    assert reasoning_for(signal) == "The model rates BTC-USD a BUY with probability 70.0%."
