"""Typed reading of exchange answers: exact decimals, no NaN/infinity, and one short line naming what is wrong."""

from __future__ import annotations

from decimal import Decimal

import pytest

from common.exchange_json import ExchangeDecimal, ExchangeModel, MalformedResponse, PositiveDecimal, parse


class Quote(ExchangeModel):
    bid: PositiveDecimal
    ask: PositiveDecimal
    spread: ExchangeDecimal
    venue: str = ""


def test_numbers_are_read_from_the_json_text_as_decimals() -> None:
    quote = parse(Quote, b'{"bid": 0.30000000000000004441, "ask": "1E+3", "spread": -0.5, "extra": [1]}')
    assert quote == Quote(bid=Decimal("0.30000000000000004441"), ask=Decimal("1E+3"), spread=Decimal("-0.5"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>", "body is not JSON"),
        (b'{"bid": NaN, "ask": "1", "spread": "0"}', "bid: Input should be a finite number (got nan)"),
        (b'{"bid": "1", "ask": "1", "spread": "-inf"}', "spread: Input should be a finite number (got '-inf')"),
        (b'{"bid": "0", "ask": "1", "spread": "0"}', "bid: Input should be greater than 0 (got '0')"),
        (b'{"ask": "1", "spread": "0"}', "bid: Field required"),
        (b"[]", "body: Input should be a valid dictionary or instance of Quote (got [])"),
    ],
)
def test_malformed_answers_name_the_field(body: bytes, message: str) -> None:
    with pytest.raises(MalformedResponse) as info:
        parse(Quote, body)
    assert str(info.value) == message


def test_the_message_stays_short() -> None:
    with pytest.raises(MalformedResponse) as info:
        parse(Quote, b'{"bid": "' + b"9" * 500 + b'x", "ask": "", "spread": null, "venue": 5}')
    message = str(info.value)
    assert message.startswith("bid: Input should be a valid decimal (got '999")
    assert "...)" in message  # a long value is cut
    assert message.endswith("; and 1 more")  # three problems shown, the fourth counted
    assert len(message) < 300
