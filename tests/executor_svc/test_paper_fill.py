"""Paper fill math (pure): the price moves against us by the slippage, sizes round down to 1e-8, the taker fee is
charged on the quote total, and nothing is ever computed through float."""

from __future__ import annotations

from decimal import Decimal

import pytest

from executor_svc.paper_fill import Fill, paper_fill


def fill(side: str, **changes: Decimal) -> Fill:
    args = {
        "market_price": Decimal("20000"),
        "quote_size": Decimal("100"),
        "base_size": Decimal("0.5"),
        "slippage_bps": Decimal("5"),
        "fee_rate": Decimal("0.006"),
        **changes,
    }
    return paper_fill(side=side, **args)


def test_buy_pays_the_slippage_and_spends_the_quote_size() -> None:
    result = fill("BUY")
    assert result.price == Decimal("20010.0000000000")  # 20000 x (1 + 5 bps)
    assert result.size == Decimal("0.00499750")  # 100 / 20010, rounded down
    assert result.quote_total == Decimal("99.99997500")
    assert result.fee == Decimal("0.59999985")  # 0.6 % of the quote total
    assert result.quote_total <= Decimal("100")  # never spends more than asked (the fee comes on top)


def test_sell_receives_less_by_the_slippage_and_sells_the_base_size() -> None:
    result = fill("SELL", base_size=Decimal("0.123456789"))
    assert result.price == Decimal("19990.0000000000")
    assert result.size == Decimal("0.12345678")  # rounded down to 1e-8: never sells more than held
    assert result.quote_total == Decimal("2467.90103220")
    assert result.fee == Decimal("14.80740619")


def test_without_slippage_and_fees_the_market_price_is_paid() -> None:
    result = fill("BUY", slippage_bps=Decimal(0), fee_rate=Decimal(0), quote_size=Decimal("50"))
    assert (result.price, result.size, result.quote_total, result.fee) == (
        Decimal("20000"),
        Decimal("0.0025"),
        Decimal("50"),
        Decimal(0),
    )


def test_results_are_quantized_decimals() -> None:
    result = fill("BUY", market_price=Decimal("0.000012345678912345"), quote_size=Decimal("10"))
    assert all(type(v) is Decimal for v in (result.price, result.size, result.quote_total, result.fee))
    assert result.price.as_tuple().exponent == -10
    assert result.size.as_tuple().exponent == -8
    assert result.quote_total.as_tuple().exponent == -8
    assert result.fee.as_tuple().exponent == -8


def test_a_buy_too_small_for_one_unit_step_fills_nothing() -> None:
    result = fill("BUY", quote_size=Decimal("0.0000001"))
    assert result.size == 0
    assert result.fee == 0


@pytest.mark.parametrize("price", [Decimal(0), Decimal("-1")])
def test_a_market_price_that_is_not_positive_is_refused(price: Decimal) -> None:
    with pytest.raises(ValueError, match="market price must be positive"):
        fill("BUY", market_price=price)


@pytest.mark.parametrize("side", ["HOLD", "STRONG_BUY", "buy", ""])
def test_only_buy_and_sell_are_filled(side: str) -> None:
    with pytest.raises(ValueError, match="cannot fill"):
        fill(side)
