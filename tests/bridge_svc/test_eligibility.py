"""The eligibility rules on their own (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bridge_svc.eligibility import EligibilityRules, skip_reason
from bridge_svc.signals import TradingSignal

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULES = EligibilityRules(min_confidence=Decimal("0.6"), max_age=timedelta(hours=1))
ELIGIBLE = TradingSignal(
    id=1,
    symbol="BTC-USD",
    signal_type="BUY",
    confidence=Decimal("0.75"),
    price=Decimal("50000"),
    created_at=NOW - timedelta(minutes=5),
    processed=False,
    is_mock=False,
)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({}, None),
        ({"signal_type": "SELL"}, None),
        ({"signal_type": "HOLD"}, "hold"),
        ({"confidence": Decimal("0.6")}, "low_confidence"),
        ({"confidence": Decimal("0.6001")}, None),
        ({"confidence": Decimal("0.1")}, "low_confidence"),
        ({"created_at": NOW - timedelta(hours=1)}, None),
        ({"created_at": NOW - timedelta(hours=1, seconds=1)}, "too_old"),
        ({"created_at": None}, "too_old"),
        ({"processed": True}, "already_processed"),
        ({"processed": True, "signal_type": "HOLD"}, "already_processed"),
        ({"price": None}, "no_price"),
        ({"price": Decimal(0)}, "no_price"),
    ],
)
def test_skip_reason(changes: dict[str, object], reason: str | None) -> None:
    assert skip_reason(replace(ELIGIBLE, **changes), RULES, NOW) == reason  # type: ignore[arg-type]


def test_minimum_and_age_are_configurable() -> None:
    strict = EligibilityRules(min_confidence=Decimal("0.8"), max_age=timedelta(minutes=1))
    assert skip_reason(ELIGIBLE, strict, NOW) == "low_confidence"
    assert skip_reason(replace(ELIGIBLE, confidence=Decimal("0.81")), strict, NOW) == "too_old"
