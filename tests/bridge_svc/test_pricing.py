"""The pricing rule (pure): entry, stop-loss, take-profit and size, in exact decimals."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge_svc.pricing import PricingTerms, amount_crypto, price_levels

TERMS = PricingTerms(
    amount_usd=Decimal("100"),
    stop_loss_percent=Decimal("2.0"),
    take_profit_percent=Decimal("4.0"),
    position_size_percent=Decimal("1"),
)
UNIT = Decimal("0.00000001")

prices = st.decimals(min_value=Decimal("0.00000100"), max_value=Decimal("9999999.99999999"), places=8)
amounts = st.decimals(min_value=Decimal("1"), max_value=Decimal("1000000"), places=2)


def test_buy_levels() -> None:
    levels = price_levels("BUY", Decimal("100"), TERMS)
    assert levels.entry_price == Decimal("100")
    assert levels.stop_loss == Decimal("98")
    assert levels.take_profit == Decimal("104")
    assert levels.amount_crypto == Decimal("1")
    assert levels.amount_usd == Decimal("100")
    assert str(levels.position_size_percent) == "1.00"


def test_sell_levels_are_mirrored() -> None:
    levels = price_levels("SELL", Decimal("100"), TERMS)
    assert levels.stop_loss == Decimal("102")
    assert levels.take_profit == Decimal("96")


def test_sell_take_profit_never_below_zero() -> None:
    terms = PricingTerms(Decimal("100"), Decimal("2"), Decimal("150"), Decimal("1"))
    assert price_levels("SELL", Decimal("10"), terms).take_profit == Decimal(0)


def test_amount_crypto_rounds_down() -> None:
    assert amount_crypto(Decimal("100"), Decimal("3")) == Decimal("33.33333333")
    assert amount_crypto(Decimal("100"), Decimal("0.00000003")) == Decimal("3333333333.33333333")


@pytest.mark.parametrize("side", ["HOLD", "STRONG_BUY"])
def test_only_buy_and_sell_are_priced(side: str) -> None:
    with pytest.raises(ValueError, match="BUY and SELL"):
        price_levels(side, Decimal("1"), TERMS)


def test_entry_price_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        amount_crypto(Decimal("100"), Decimal(0))


@given(entry=prices, amount=amounts, side=st.sampled_from(["BUY", "SELL"]))
def test_levels_properties(entry: Decimal, amount: Decimal, side: str) -> None:
    terms = PricingTerms(amount, Decimal("2.5"), Decimal("5"), Decimal("1"))
    levels = price_levels(side, entry, terms)
    assert levels.entry_price == entry
    # Never more than amount_usd, and less than one smallest unit short of it.
    assert levels.amount_crypto * entry <= amount
    assert amount - levels.amount_crypto * entry < UNIT * entry
    for value in (levels.stop_loss, levels.take_profit, levels.amount_crypto):
        assert value == value.quantize(UNIT)
    if side == "BUY":
        assert levels.stop_loss <= entry <= levels.take_profit
        assert abs(levels.stop_loss - entry * Decimal("0.975")) <= UNIT / 2
    else:
        assert levels.take_profit <= entry <= levels.stop_loss
        assert abs(levels.stop_loss - entry * Decimal("1.025")) <= UNIT / 2
