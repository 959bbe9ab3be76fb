"""Bracket orders on Coinbase Advanced Trade through the trading client: a market BUY carrying a take-profit and a
stop-loss (trigger_bracket_gtc, prices rounded to the product's quote_increment), following the bracket to its fill,
cancelling it (batch_cancel) and the race of a bracket that fills while a SELL is cancelling it, the fills listed.

Against the fake Coinbase over real HTTP (it verifies every JWT as Coinbase does), and through httpx.MockTransport
for answers the fake never gives (malformed numbers, missing results, the List Orders fallback)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from common.http_retry import RetryPolicy
from executor_svc.coinbase_auth import CoinbaseCredentials
from executor_svc.coinbase_client import (
    Bracket,
    BracketState,
    CancelResult,
    CoinbaseClient,
    ExchangeAuthError,
    ExchangeResponseError,
    Fill,
    OrderAck,
    fill_totals,
    round_to_increment,
)
from tests.support.fake_coinbase import FakeCoinbase

BTC = "BTC-USD"
SHIB = "SHIB-USD"
ENTRY = Decimal("9000")  # the fake's BTC-USD price
EXITS = Bracket(take_profit=Decimal("9450.00"), stop_loss=Decimal("8730.00"))
BOUGHT = Decimal("0.01111111")  # 100 USD at 9000, to the satoshi


async def no_sleep(seconds: float) -> None:
    pass


def client_of(fake: FakeCoinbase, key: ec.EllipticCurvePrivateKey | None = None) -> CoinbaseClient:
    credentials = CoinbaseCredentials(fake.key_name, key or fake.private_key)
    return CoinbaseClient(fake.base_url, credentials, retry=RetryPolicy(max_retries=1, sleep=no_sleep))


@pytest.fixture
async def client(fake: FakeCoinbase) -> AsyncIterator[CoinbaseClient]:
    fake.balances = {"USD": Decimal(1000), "BTC": Decimal(0)}  # every coin held comes from the BUY
    client = client_of(fake)
    yield client
    await client.close()
    assert fake.jwt_failures == []  # every request was signed as Coinbase wants it


async def buy(client: CoinbaseClient, bracket: Bracket | None = EXITS, cid: str = "cid-1") -> OrderAck:
    return await client.create_market_order(cid, BTC, "BUY", quote_size=Decimal(100), base_size=None, bracket=bracket)


# Rounding to the quote_increment


@pytest.mark.parametrize(
    ("price", "increment", "up", "expected"),
    [
        ("65000.005", "0.01", False, "65000.00"),
        ("65000.005", "0.01", True, "65000.01"),
        ("65000", "0.01", False, "65000.00"),  # a multiple stays, printed with the increment's places
        ("65000.01", "0.01", True, "65000.01"),
        ("0.0000123456", "0.00000001", False, "0.00001234"),  # SHIB-like: never 1.234E-5
        ("0.0000123456", "0.00000001", True, "0.00001235"),
        ("0.00001234", "0.00000001", True, "0.00001234"),
        ("1.3", "0.5", False, "1.0"),
        ("1.3", "0.5", True, "1.5"),
    ],
)
def test_a_price_rounds_to_the_increment_in_the_direction_asked(
    price: str, increment: str, up: bool, expected: str
) -> None:
    rounded = round_to_increment(Decimal(price), Decimal(increment), up=up)
    assert format(rounded, "f") == expected
    assert rounded % Decimal(increment) == 0


@pytest.mark.parametrize("increment", ["0", "-0.01", "NaN", "Infinity"])
def test_rounding_needs_a_positive_increment(increment: str) -> None:
    with pytest.raises(ValueError, match="increment"):
        round_to_increment(Decimal(100), Decimal(increment), up=True)


def test_a_bracket_rounds_both_exits_toward_the_entry() -> None:
    btc = Bracket.for_product(Decimal("9450.009"), Decimal("8729.991"), Decimal("0.01"))
    assert (btc.take_profit, btc.stop_loss) == (Decimal("9450.00"), Decimal("8730.00"))  # target down, stop up
    shib = Bracket.for_product(Decimal("0.0000125999"), Decimal("0.0000114001"), Decimal("0.00000001"))
    assert shib.configuration() == {
        "trigger_bracket_gtc": {"limit_price": "0.00001259", "stop_trigger_price": "0.00001141"}
    }


@pytest.mark.parametrize(
    ("take_profit", "stop_loss", "increment", "problem"),
    [
        ("100.004", "100.001", "0.01", "above stop_loss"),  # both round to 100.00
        ("0.000000015", "0.000000011", "0.00000001", "above stop_loss"),
        ("100", "0", "0.01", "positive"),
        ("100", "-5", "0.01", "positive"),
        ("90", "95", "0.01", "above stop_loss"),
    ],
)
def test_a_bracket_that_is_no_bracket_is_refused_before_sending(
    take_profit: str, stop_loss: str, increment: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        Bracket.for_product(Decimal(take_profit), Decimal(stop_loss), Decimal(increment))


async def test_only_a_buy_carries_a_bracket(client: CoinbaseClient, fake: FakeCoinbase) -> None:
    with pytest.raises(ValueError, match="only a BUY"):
        await client.create_market_order("c", BTC, "SELL", quote_size=None, base_size=Decimal(1), bracket=EXITS)
    assert fake.order_posts == 0


async def test_product_rules_carry_the_quote_increment(client: CoinbaseClient, fake: FakeCoinbase) -> None:
    fake.quote_increments[SHIB] = Decimal("0.00000001")
    assert (await client.product(BTC)).quote_increment == Decimal("0.01")
    assert (await client.product(SHIB)).quote_increment == Decimal("0.00000001")


# Placing and following a bracket


async def test_a_buy_with_a_bracket_sends_the_attached_trigger_bracket_gtc(
    client: CoinbaseClient, fake: FakeCoinbase
) -> None:
    ack = await buy(client)
    # The field names of coinbase-advanced-py's create_order/TriggerBracketGtc: no size in the attached order.
    assert fake.order_bodies == [
        {
            "client_order_id": "cid-1",
            "product_id": BTC,
            "side": "BUY",
            "order_configuration": {"market_market_ioc": {"quote_size": "100"}},
            "attached_order_configuration": {
                "trigger_bracket_gtc": {"limit_price": "9450.00", "stop_trigger_price": "8730.00"}
            },
        }
    ]
    assert ack.success
    assert ack.attached_order_id == fake.bracket_of(ack.order_id)["order_id"]
    parent = await client.get_order(ack.order_id)
    assert (parent.status, parent.filled_size, parent.attached_order_id) == ("FILLED", BOUGHT, ack.attached_order_id)
    again = await buy(client)  # the same client_order_id: the same order and bracket, nothing new
    assert again == ack
    assert fake.distinct_orders() == 2


async def test_a_plain_buy_sends_no_attached_order(client: CoinbaseClient, fake: FakeCoinbase) -> None:
    ack = await buy(client, bracket=None)
    assert "attached_order_configuration" not in fake.order_bodies[0]
    assert ack == OrderAck(True, ack.order_id, "", "")
    assert await client.bracket_of(ack.order_id, product_id=BTC, since=datetime.now(UTC) - timedelta(hours=1)) is None


async def test_the_bracket_is_an_open_order_of_its_own_holding_the_coins(
    client: CoinbaseClient, fake: FakeCoinbase
) -> None:
    ack = await buy(client)
    bracket = await client.get_bracket(ack.attached_order_id)
    assert bracket == BracketState(
        order_id=ack.attached_order_id,
        parent_order_id=ack.order_id,
        product_id=BTC,
        status="OPEN",
        filled_size=Decimal(0),
        average_price=Decimal(0),
        total_fees=Decimal(0),
        take_profit=Decimal("9450.00"),
        stop_loss=Decimal("8730.00"),
        trigger_status="STOP_PENDING",
    )
    assert bracket.is_live
    assert bracket.leg is None
    found = await client.bracket_of(ack.order_id, product_id=BTC, since=datetime.now(UTC) - timedelta(hours=1))
    assert found == bracket
    assert await client.available_balance("BTC") == 0  # all of it on hold for the bracket
    refused = await client.create_market_order("sell-1", BTC, "SELL", quote_size=None, base_size=BOUGHT)
    assert (refused.success, refused.error) == (False, "INSUFFICIENT_FUND")
    listed = {o.order_id: o for o in await client.list_orders(since=datetime.now(UTC) - timedelta(hours=1))}
    assert listed[bracket.order_id].is_attached_bracket
    assert (listed[bracket.order_id].order_type, listed[bracket.order_id].side) == ("BRACKET", "SELL")
    assert not listed[ack.order_id].is_attached_bracket


async def test_a_parent_not_filled_yet_has_a_pending_bracket(client: CoinbaseClient, fake: FakeCoinbase) -> None:
    fake.faults.append("open")
    ack = await buy(client)
    assert (await client.get_bracket(ack.attached_order_id)).status == "PENDING"
    assert (await client.get_bracket(ack.attached_order_id)).is_live
    fake.fill_open_orders()
    assert (await client.get_bracket(ack.attached_order_id)).status == "OPEN"
    assert [f.size for f in await client.list_fills(ack.order_id)] == [BOUGHT]


async def test_a_bracket_is_followed_to_its_take_profit_fill(client: CoinbaseClient, fake: FakeCoinbase) -> None:
    ack = await buy(client)
    fake.trigger_bracket(ack.order_id, "take_profit")
    bracket = await client.get_bracket(ack.attached_order_id)
    fees = (BOUGHT * Decimal("9450.00") * Decimal("0.006")).quantize(Decimal("0.00000001"))
    assert (bracket.status, bracket.filled_size, bracket.average_price, bracket.total_fees) == (
        "FILLED",
        BOUGHT,
        Decimal("9450.00"),
        fees,
    )
    assert not bracket.is_live
    assert bracket.leg == "take_profit"
    fills = await client.list_fills(ack.attached_order_id)
    assert [(f.order_id, f.side, f.price, f.size, f.commission) for f in fills] == [
        (ack.attached_order_id, "SELL", Decimal("9450.00"), BOUGHT, fees)
    ]
    assert fill_totals(fills) == (BOUGHT, Decimal("9450.00"), fees)
    assert fake.balances["BTC"] == 0
    with pytest.raises(ValueError, match="FILLED, not OPEN"):  # a bracket fills once
        fake.trigger_bracket(ack.order_id, "stop_loss")


async def test_a_stop_that_gaps_fills_below_its_trigger_and_counts_as_the_stop(
    client: CoinbaseClient, fake: FakeCoinbase
) -> None:
    ack = await buy(client)
    fake.trigger_bracket(ack.attached_order_id, "stop_loss", price=Decimal("8500.00"))
    bracket = await client.get_bracket(ack.attached_order_id)
    assert (bracket.status, bracket.average_price, bracket.trigger_status) == (
        "FILLED",
        Decimal("8500.00"),
        "STOP_TRIGGERED",
    )
    assert bracket.leg == "stop_loss"


def test_without_a_trigger_status_the_price_tells_the_leg() -> None:
    def filled_at(price: str) -> BracketState:
        return BracketState("b", "p", BTC, "FILLED", Decimal(1), Decimal(price), Decimal(0), Decimal(110), Decimal(90))

    assert filled_at("111").leg == "take_profit"
    assert filled_at("100").leg == "take_profit"  # the midpoint: a limit SELL never fills below its limit
    assert filled_at("99.99").leg == "stop_loss"
    assert filled_at("85").leg == "stop_loss"


# The fake refuses what Coinbase refuses


@pytest.mark.parametrize(
    ("attached", "error", "preview"),
    [
        (  # not multiples of BTC-USD's quote_increment 0.01
            {"trigger_bracket_gtc": {"limit_price": "9450.005", "stop_trigger_price": "8730.00"}},
            "INVALID_PRICE_PRECISION",
            "PREVIEW_INVALID_PRICE_PRECISION",
        ),
        (
            {"trigger_bracket_gtc": {"limit_price": "9450.00", "stop_trigger_price": "8730.001"}},
            "INVALID_PRICE_PRECISION",
            "PREVIEW_INVALID_PRICE_PRECISION",
        ),
        (  # the target not above the stop
            {"trigger_bracket_gtc": {"limit_price": "8730.00", "stop_trigger_price": "8730.00"}},
            "INVALID_LIMIT_PRICE",
            "PREVIEW_INVALID_ATTACHED_TAKE_PROFIT_PRICE",
        ),
        (  # a stop above the market would fire at once
            {"trigger_bracket_gtc": {"limit_price": "9500.00", "stop_trigger_price": "9100.00"}},
            "INVALID_STOP_PRICE",
            "PREVIEW_INVALID_ATTACHED_STOP_LOSS_PRICE",
        ),
        (
            {"trigger_bracket_gtc": {"base_size": "0.01", "limit_price": "9450.00", "stop_trigger_price": "8730.00"}},
            "INVALID_REQUEST",
            "PREVIEW_INVALID_REQUEST",
        ),
        (
            {"trigger_bracket_gtc": {"limit_price": "lots", "stop_trigger_price": "8730.00"}},
            "INVALID_REQUEST",
            "PREVIEW_INVALID_REQUEST",
        ),
        (
            {"limit_limit_gtc": {"limit_price": "9450.00"}},
            "UNSUPPORTED_ORDER_CONFIGURATION",
            "PREVIEW_UNSUPPORTED_ORDER_CONFIGURATION",
        ),
    ],
)
async def test_the_fake_refuses_a_bad_bracket_as_coinbase_does(
    client: CoinbaseClient, fake: FakeCoinbase, attached: dict[str, Any], error: str, preview: str
) -> None:
    body = {
        "client_order_id": "cid-bad",
        "product_id": BTC,
        "side": "BUY",
        "order_configuration": {"market_market_ioc": {"quote_size": "100"}},
        "attached_order_configuration": attached,
    }
    response = await client.http.post(f"{fake.base_url}/orders", json=body)  # signed by the client's JWT auth
    answer = response.json()
    assert response.status_code == 200
    assert (answer["success"], answer["error_response"]["error"]) == (False, error)
    assert answer["error_response"]["preview_failure_reason"] == preview
    assert fake.distinct_orders() == 0
    assert fake.balances == {"USD": Decimal(1000), "BTC": Decimal(0)}


async def test_an_unrounded_bracket_is_refused_and_nothing_is_bought(
    client: CoinbaseClient, fake: FakeCoinbase
) -> None:
    fake.quote_increments[SHIB] = Decimal("0.00000001")
    fake.prices[SHIB] = Decimal("0.00001200")
    shib = Bracket(take_profit=Decimal("0.000012605"), stop_loss=Decimal("0.0000114"))  # one place too many
    ack = await client.create_market_order("cid-s", SHIB, "BUY", quote_size=Decimal(10), base_size=None, bracket=shib)
    assert (ack.success, ack.order_id, ack.error, ack.attached_order_id) == (False, "", "INVALID_PRICE_PRECISION", "")
    assert "quote_increment 1E-8" in ack.message
    rounded = Bracket.for_product(shib.take_profit, shib.stop_loss, (await client.product(SHIB)).quote_increment)
    ok = await client.create_market_order("cid-s", SHIB, "BUY", quote_size=Decimal(10), base_size=None, bracket=rounded)
    assert ok.success
    assert (await client.get_bracket(ok.attached_order_id)).take_profit == Decimal("0.00001260")


# Cancelling a bracket


async def test_a_cancelled_bracket_frees_the_coins_for_a_sell(client: CoinbaseClient, fake: FakeCoinbase) -> None:
    ack = await buy(client)
    results = await client.cancel_orders([ack.attached_order_id])
    assert results == {ack.attached_order_id: CancelResult(ack.attached_order_id, True, "")}
    assert fake.cancel_requests == [[ack.attached_order_id]]
    bracket = await client.get_bracket(ack.attached_order_id)
    assert (bracket.status, bracket.is_live, bracket.filled_size, bracket.leg) == ("CANCELLED", False, Decimal(0), None)
    assert await client.available_balance("BTC") == BOUGHT
    sold = await client.create_market_order("sell-1", BTC, "SELL", quote_size=None, base_size=BOUGHT)
    assert sold.success
    assert fake.balances["BTC"] == 0
    again = await client.cancel_orders([ack.attached_order_id, "no-such-order"])
    assert again == {
        ack.attached_order_id: CancelResult(ack.attached_order_id, False, "DUPLICATE_CANCEL_REQUEST"),
        "no-such-order": CancelResult("no-such-order", False, "UNKNOWN_CANCEL_ORDER"),
    }


async def test_a_filled_bracket_cannot_be_cancelled(client: CoinbaseClient, fake: FakeCoinbase) -> None:
    ack = await buy(client)
    fake.trigger_bracket(ack.order_id, "take_profit")
    results = await client.cancel_orders([ack.attached_order_id])
    assert results[ack.attached_order_id] == CancelResult(ack.attached_order_id, False, "ORDER_IS_FULLY_FILLED")


async def test_no_ids_no_cancel_request(client: CoinbaseClient, fake: FakeCoinbase) -> None:
    assert await client.cancel_orders([]) == {}
    assert fake.cancel_requests == []


@pytest.mark.parametrize("cancel_succeeds", [False, True])
async def test_a_bracket_that_fills_while_a_sell_is_cancelling_it_wins(
    client: CoinbaseClient, fake: FakeCoinbase, cancel_succeeds: bool
) -> None:
    ack = await buy(client)
    fake.fill_before_cancel(ack.order_id, "stop_loss", cancel_succeeds=cancel_succeeds)
    result = (await client.cancel_orders([ack.attached_order_id]))[ack.attached_order_id]
    if cancel_succeeds:  # the cancel was initiated, and still the fill came first: only the status tells
        assert result == CancelResult(ack.attached_order_id, True, "")
    else:
        assert result == CancelResult(ack.attached_order_id, False, "ORDER_IS_FULLY_FILLED")
    bracket = await client.get_bracket(ack.attached_order_id)
    assert (bracket.status, bracket.filled_size, bracket.average_price, bracket.leg) == (
        "FILLED",
        BOUGHT,
        Decimal("8730.00"),
        "stop_loss",
    )
    assert await client.available_balance("BTC") == 0  # nothing left to sell
    refused = await client.create_market_order("sell-1", BTC, "SELL", quote_size=None, base_size=BOUGHT)
    assert (refused.success, refused.error) == (False, "INSUFFICIENT_FUND")


async def test_a_cancel_is_signed_like_every_request(fake: FakeCoinbase) -> None:
    stranger = client_of(fake, key=ec.generate_private_key(ec.SECP256R1()))
    try:
        with pytest.raises(ExchangeAuthError, match="HTTP 401"):
            await stranger.cancel_orders(["ord-1"])
        with pytest.raises(ExchangeAuthError, match="HTTP 401"):
            await stranger.list_fills("ord-1")
    finally:
        await stranger.close()
    assert fake.cancel_requests == []
    assert fake.jwt_failures == ["invalid token: InvalidSignatureError"] * 2


# Answers the fake never gives (httpx.MockTransport)


BASE_URL = "https://api.coinbase.test/api/v3/brokerage"


class Script:
    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, str):
            return httpx.Response(200, content=answer.encode(), headers={"Content-Type": "application/json"})
        return httpx.Response(200, json=answer)


def scripted(script: Script, key: ec.EllipticCurvePrivateKey) -> CoinbaseClient:
    return CoinbaseClient(
        BASE_URL,
        CoinbaseCredentials("organizations/o/apiKeys/k", key),
        retry=RetryPolicy(max_retries=0, sleep=no_sleep),
        transport=httpx.MockTransport(script.handle),
    )


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def bracket_order(**fields: Any) -> dict[str, Any]:
    order = {
        "order_id": "br-1",
        "product_id": BTC,
        "side": "SELL",
        "order_type": "BRACKET",
        "status": "OPEN",
        "filled_size": "0",
        "average_filled_price": "0",
        "total_fees": "0",
        "originating_order_id": "par-1",
        "order_configuration": {
            "trigger_bracket_gtc": {"base_size": "0.1", "limit_price": "9450.00", "stop_trigger_price": "8730.00"}
        },
    }
    return order | fields


def parent_order(**fields: Any) -> dict[str, Any]:
    order = {
        "order_id": "par-1",
        "client_order_id": "cid-1",
        "product_id": BTC,
        "side": "BUY",
        "order_type": "MARKET",
        "status": "FILLED",
        "filled_size": "0.1",
        "average_filled_price": "9000",
        "total_fees": "5.4",
    }
    return order | fields


async def test_the_requests_are_signed_for_their_paths_and_carry_coinbase_field_names(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    script = Script(
        {"results": [{"success": True, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON", "order_id": "br-1"}]},
        {"fills": [], "cursor": ""},
    )
    client = scripted(script, key)
    try:
        assert await client.cancel_orders(["br-1", "br-1"]) == {"br-1": CancelResult("br-1", True, "")}
        assert await client.list_fills("br-1") == []
    finally:
        await client.close()
    cancel, fills = script.requests
    assert json.loads(cancel.content) == {"order_ids": ["br-1"]}  # sent once
    assert fills.url.params.get_list("order_ids") == ["br-1"]
    uris = [
        jwt.decode(r.headers["Authorization"].removeprefix("Bearer "), key.public_key(), algorithms=["ES256"])["uri"]
        for r in script.requests
    ]
    assert uris == [
        "POST api.coinbase.test/api/v3/brokerage/orders/batch_cancel",
        "GET api.coinbase.test/api/v3/brokerage/orders/historical/fills",
    ]


async def test_the_bracket_is_found_in_list_orders_when_the_parent_does_not_name_it(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    listed = [parent_order(), bracket_order(client_order_id="")]
    script = Script(
        {"order": parent_order(attached_order_id="")},
        {"orders": listed, "has_next": False},
        {"order": bracket_order()},
    )
    client = scripted(script, key)
    try:
        found = await client.bracket_of("par-1", product_id=BTC, since=datetime(2026, 1, 1, tzinfo=UTC))
    finally:
        await client.close()
    assert found is not None
    assert (found.order_id, found.parent_order_id, found.status) == ("br-1", "par-1", "OPEN")
    assert script.requests[1].url.params["product_ids"] == BTC


async def test_a_parent_is_never_taken_for_its_bracket(key: ec.EllipticCurvePrivateKey) -> None:
    client = scripted(Script({"order": parent_order()}), key)
    try:
        with pytest.raises(ExchangeResponseError, match="par-1 is MARKET, not an attached bracket"):
            await client.get_bracket("par-1")
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("answer", "field"),
    [
        ({"order": bracket_order(filled_size="abc")}, "order.filled_size"),
        ({"order": bracket_order(total_fees=None)}, "order.total_fees"),
        (
            {"order": bracket_order(order_configuration={"trigger_bracket_gtc": {"limit_price": ""}})},
            "limit_price",
        ),
        (
            {"order": bracket_order(order_configuration={"trigger_bracket_gtc": {"stop_trigger_price": "-1"}})},
            "stop_trigger_price",
        ),
    ],
)
async def test_a_malformed_bracket_is_an_error(
    key: ec.EllipticCurvePrivateKey, answer: dict[str, Any], field: str
) -> None:
    client = scripted(Script(answer), key)
    try:
        with pytest.raises(ExchangeResponseError, match=f"malformed answer: .*{field}"):
            await client.get_bracket("br-1")
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({"results": []}, "no result for br-1"),
        ({"results": [{"success": True, "order_id": "other"}]}, "no result for br-1"),
        ({"results": [{"success": "yes", "order_id": "br-1"}]}, "results.0.success"),  # never read as a cancel
        ({"results": [{"success": 1, "order_id": "br-1"}]}, "results.0.success"),
        ({"results": [{"success": True}]}, "results.0.order_id"),
        ({}, "results"),
        ("<html>busy</html>", "not JSON"),
    ],
)
async def test_a_malformed_cancel_answer_is_an_error(
    key: ec.EllipticCurvePrivateKey, answer: Any, problem: str
) -> None:
    client = scripted(Script(answer), key)
    try:
        with pytest.raises(ExchangeResponseError, match=f"POST /orders/batch_cancel: malformed answer: .*{problem}"):
            await client.cancel_orders(["br-1"])
    finally:
        await client.close()


def fill(**fields: Any) -> dict[str, Any]:
    base = {
        "trade_id": "t-1",
        "order_id": "br-1",
        "price": "9450.00",
        "size": "0.05",
        "commission": "2.83",
        "side": "SELL",
        "trade_time": "2026-01-01T00:00:00Z",
        "size_in_quote": False,
    }
    return base | fields


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (fill(price="abc"), "fills.0.price"),
        (fill(size="0"), "fills.0.size"),
        (fill(commission="NaN"), "fills.0.commission"),
        (fill(commission=None), "fills.0.commission"),
        (fill(size_in_quote="no"), "fills.0.size_in_quote"),
    ],
)
async def test_a_malformed_fill_is_an_error(key: ec.EllipticCurvePrivateKey, bad: dict[str, Any], field: str) -> None:
    client = scripted(Script({"fills": [bad], "cursor": ""}), key)
    try:
        with pytest.raises(ExchangeResponseError, match=f"GET /orders/historical/fills: malformed answer: .*{field}"):
            await client.list_fills("br-1")
    finally:
        await client.close()


async def test_fills_are_read_from_every_page(key: ec.EllipticCurvePrivateKey) -> None:
    script = Script(
        {"fills": [fill(), fill(order_id="someone-else")], "cursor": "c-1"},
        {"fills": [fill(trade_id="t-2", price="9460.00", size="472.99", size_in_quote=True)], "cursor": "c-2"},
        {"fills": [], "cursor": "c-3"},
    )
    client = scripted(script, key)
    try:
        fills = await client.list_fills("br-1")
    finally:
        await client.close()
    assert [f.trade_id for f in fills] == ["t-1", "t-2"]
    assert [r.url.params.get("cursor") for r in script.requests] == [None, "c-1", "c-2"]
    assert fills[1] == Fill(
        "t-2", "br-1", Decimal("9460.00"), Decimal("472.99"), Decimal("2.83"), "SELL", "2026-01-01T00:00:00Z", True
    )
    size, average, fees = fill_totals(fills)
    assert size == Decimal("0.05") + Decimal("472.99") / Decimal("9460.00")
    assert average == (Decimal("0.05") * Decimal("9450.00") + Decimal("472.99")) / size
    assert fees == Decimal("5.66")
