"""The live signal rule (pure): thresholds are strict, both firing goes to the larger probability (BUY on a tie),
confidence is the chosen class's probability (the largest for HOLD), rounded half-even to 4 decimals."""

from __future__ import annotations

from decimal import Decimal

import pytest

from common.lifecycle import SignalType
from generator_svc.signal_rule import decide_from_probabilities, threshold_for, to_probability


def probabilities(buy: float, sell: float, hold: float) -> dict[str, float]:
    return {"BUY": buy, "SELL": sell, "HOLD": hold}


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (probabilities(0.7, 0.2, 0.1), ("BUY", Decimal("0.7000"))),
        (probabilities(0.2, 0.65, 0.15), ("SELL", Decimal("0.6500"))),
        (probabilities(0.5, 0.3, 0.2), ("HOLD", Decimal("0.5000"))),  # P(buy) = threshold: not above it
        (probabilities(0.3, 0.6, 0.1), ("HOLD", Decimal("0.6000"))),  # P(sell) = threshold: not above it
        (probabilities(0.2, 0.1, 0.7), ("HOLD", Decimal("0.7000"))),  # HOLD: the largest probability
        (probabilities(0.45, 0.15, 0.4), ("HOLD", Decimal("0.4500"))),  # ... even when it is BUY's
        (probabilities(0.5000001, 0.2, 0.2999999), ("BUY", Decimal("0.5000"))),
    ],
)
def test_default_thresholds(p: dict[str, float], expected: tuple[str, Decimal]) -> None:
    assert decide_from_probabilities(p, 0.5, 0.6) == expected


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (probabilities(0.45, 0.5, 0.05), "SELL"),  # both fire: the larger wins
        (probabilities(0.5, 0.45, 0.05), "BUY"),
        (probabilities(0.475, 0.475, 0.05), "BUY"),  # a tie goes to BUY
    ],
)
def test_when_both_fire_the_larger_probability_wins(p: dict[str, float], expected: str) -> None:
    signal_type, confidence = decide_from_probabilities(p, 0.4, 0.4)
    assert signal_type == expected
    assert confidence == to_probability(p[expected])


def test_probabilities_round_half_even_to_four_decimals_from_the_float_repr() -> None:
    assert to_probability(0.12345) == Decimal("0.1234")  # repr 0.12345: the half goes to the even digit
    assert to_probability(0.12355) == Decimal("0.1236")
    assert to_probability(0.99996) == Decimal("1.0000")
    assert to_probability(1 / 3) == Decimal("0.3333")
    assert to_probability(0) == Decimal("0.0000")
    assert to_probability(0.5).as_tuple().exponent == -4


def test_the_recorded_threshold_is_the_one_that_fired() -> None:
    assert threshold_for(SignalType.BUY, 0.55, 0.65) == Decimal("0.5500")
    assert threshold_for(SignalType.SELL, 0.55, 0.65) == Decimal("0.6500")
    assert threshold_for(SignalType.HOLD, 0.55, 0.65) == Decimal("0.5500")


def test_a_missing_class_is_an_error() -> None:
    with pytest.raises(KeyError):
        decide_from_probabilities({"BUY": 0.9, "SELL": 0.1}, 0.5, 0.6)
