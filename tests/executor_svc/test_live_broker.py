"""LiveBroker with a fake exchange client (no HTTP, no sleeping): order sizing and rounding, refusals before
anything is sent, read-back of fills, and which exchange problem leaves the recommendation FAILED or PENDING
(refused credentials: PENDING, retryable once the key is fixed)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from common.lifecycle import OrderSide, OrderStatus
from executor_svc.coinbase_client import (
    Bracket,
    ExchangeAuthError,
    ExchangeError,
    ExchangeRequestError,
    ExchangeResponseError,
    OrderAck,
    OrderState,
    ProductRules,
    TransientExchangeError,
)
from executor_svc.domain import OrderOutcome, OrderRequest
from executor_svc.live_broker import LiveBroker, LiveOrderOutcome

RULES = ProductRules(base_increment=Decimal("0.0001"), base_min_size=Decimal("0.001"), quote_min_size=Decimal("1"))


def filled(order_id: str = "ord-1", size: str = "0.0011") -> OrderState:
    return OrderState(order_id, "FILLED", Decimal(size), Decimal("90000"), Decimal("0.59"))


class FakeClient:
    """Answers like CoinbaseClient; a problem can be planted per method (raised on its next call)."""

    def __init__(self, *, balance: str = "10", states: list[OrderState] | None = None) -> None:
        self.balance = Decimal(balance)
        self.states = states if states is not None else [filled()]
        self.ack = OrderAck(True, "ord-1", "", "")
        self.problems: dict[str, ExchangeError] = {}
        self.calls: list[str] = []
        self.orders: list[tuple[str, str, str, Decimal | None, Decimal | None]] = []
        self.brackets: list[Bracket | None] = []  # the bracket each order carried
        self.found: OrderState | None = None  # what find_order (List Orders by client_order_id) answers

    def _call(self, name: str) -> None:
        self.calls.append(name)
        problem = self.problems.pop(name, None)
        if problem is not None:
            raise problem

    async def product(self, product_id: str) -> ProductRules:
        self._call("product")
        return RULES

    async def available_balance(self, currency: str) -> Decimal:
        self._call(f"balance:{currency}")
        return self.balance

    async def create_market_order(
        self,
        client_order_id: str,
        product_id: str,
        side: str,
        *,
        quote_size: Decimal | None,
        base_size: Decimal | None,
        bracket: Bracket | None = None,
    ) -> OrderAck:
        self._call("order")
        self.orders.append((client_order_id, product_id, side, quote_size, base_size))
        self.brackets.append(bracket)
        return self.ack

    async def get_order(self, order_id: str) -> OrderState:
        self._call("get_order")
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    async def find_order(self, client_order_id: str, product_id: str, since: datetime) -> OrderState | None:
        self._call("find_order")
        return self.found


class Sleeps:
    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


def buy(usd: str = "100.129") -> OrderRequest:
    return OrderRequest(7, "cid-7", "BTC-USD", OrderSide.BUY, quote_size=Decimal(usd), base_size=Decimal(0))


def sell(units: str = "0.123456") -> OrderRequest:
    return OrderRequest(8, "cid-8", "ETH-USD", OrderSide.SELL, quote_size=Decimal(0), base_size=Decimal(units))


def broker(client: FakeClient, sleeps: Sleeps | None = None) -> LiveBroker:
    return LiveBroker(client, sleep=sleeps or Sleeps(), poll_interval=0.2, max_polls=3)


async def test_buy_spends_whole_cents_and_reads_the_fill_back() -> None:
    client = FakeClient()
    outcome = await broker(client).execute(buy())
    assert client.orders == [("cid-7", "BTC-USD", "BUY", Decimal("100.12"), None)]  # rounded down to the cent
    assert outcome == LiveOrderOutcome(
        OrderStatus.EXECUTED,
        exchange_order_id="ord-1",
        filled_size=Decimal("0.0011"),
        average_price=Decimal("90000"),
        fees=Decimal("0.59"),
    )
    assert client.calls == ["product", "order", "get_order"]  # a BUY needs no balance check
    assert client.brackets == [None]  # no levels: no bracket


async def test_sell_rounds_down_to_the_increment_and_checks_the_balance_first() -> None:
    client = FakeClient(balance="0.2")
    outcome = await broker(client).execute(sell())
    assert client.orders == [("cid-8", "ETH-USD", "SELL", None, Decimal("0.1234"))]
    assert client.calls == ["product", "balance:ETH", "order", "get_order"]
    assert outcome.status == "EXECUTED"


@pytest.mark.parametrize(
    ("order", "code"),
    [
        (buy("0.999"), "BELOW_MIN_SIZE"),  # 0.99 < quote_min_size 1
        (buy("0"), "BELOW_MIN_SIZE"),
        (sell("0.00099"), "BELOW_MIN_SIZE"),  # rounds to 0.0009 < base_min_size 0.001
        (sell("5"), "INSUFFICIENT_FUND"),  # 5 to sell, 1 available
    ],
)
async def test_refusals_place_no_order(order: OrderRequest, code: str) -> None:
    client = FakeClient(balance="1")
    outcome = await broker(client).execute(order)
    assert (outcome.status, outcome.error_code) == ("FAILED", code)
    assert client.orders == []
    if code == "INSUFFICIENT_FUND":
        assert "no order placed" in outcome.error_message


async def test_a_rejected_order_fails_with_the_exchange_reason() -> None:
    client = FakeClient()
    client.ack = OrderAck(False, "", "INVALID_SIZE_PRECISION", "too precise")
    outcome = await broker(client).execute(buy())
    assert outcome == OrderOutcome(
        OrderStatus.FAILED, error_code="INVALID_SIZE_PRECISION", error_message="INVALID_SIZE_PRECISION: too precise"
    )
    assert "get_order" not in client.calls


async def test_an_open_order_is_polled_with_the_injected_sleep_until_filled() -> None:
    open_state = OrderState("ord-1", "OPEN", Decimal(0), Decimal(0), Decimal(0))
    client = FakeClient(states=[open_state, open_state, filled()])
    sleeps = Sleeps()
    outcome = await broker(client, sleeps).execute(buy())
    assert outcome.status == "EXECUTED"
    assert sleeps.seconds == [0.2, 0.2]
    assert client.calls.count("get_order") == 3


async def test_an_order_still_open_after_the_polls_stays_pending_with_its_exchange_id() -> None:
    client = FakeClient(states=[OrderState("ord-1", "QUEUED", Decimal(0), Decimal(0), Decimal(0))])
    sleeps = Sleeps()
    outcome = await broker(client, sleeps).execute(buy())
    assert (outcome.status, outcome.error_code, outcome.exchange_order_id) == ("PENDING", "OPEN", "ord-1")
    assert len(sleeps.seconds) == 3  # max_polls


async def test_an_order_that_ended_without_fills_fails() -> None:
    client = FakeClient(states=[OrderState("ord-1", "CANCELLED", Decimal(0), Decimal(0), Decimal(0))])
    outcome = await broker(client).execute(buy())
    assert (outcome.status, outcome.error_code, outcome.exchange_order_id) == ("FAILED", "CANCELLED", "ord-1")


@pytest.mark.parametrize(
    ("step", "problem", "status", "code", "order_id"),
    [
        # Before anything is sent: only a transient problem or refused credentials are worth retrying.
        ("product", TransientExchangeError("HTTP 429 after 5 attempts"), "PENDING", "TRANSIENT", ""),
        ("product", ExchangeAuthError("HTTP 401"), "PENDING", "UNAUTHORIZED", ""),  # the key, not the trade
        ("product", ExchangeRequestError("HTTP 404"), "FAILED", "REQUEST_REJECTED", ""),
        ("product", ExchangeResponseError("malformed answer"), "FAILED", "BAD_RESPONSE", ""),
        # Sending: the exchange may hold the order unless it answered 4xx; refused credentials are retryable.
        ("order", TransientExchangeError("ReadTimeout after 5 attempts"), "PENDING", "TRANSIENT", ""),
        ("order", ExchangeResponseError("body is not JSON"), "PENDING", "BAD_RESPONSE", ""),
        ("order", ExchangeAuthError("HTTP 401"), "PENDING", "UNAUTHORIZED", ""),
        ("order", ExchangeAuthError("HTTP 403"), "PENDING", "UNAUTHORIZED", ""),
        ("order", ExchangeRequestError("HTTP 400"), "FAILED", "REQUEST_REJECTED", ""),
        # Reading back an accepted order: it exists, so never FAILED.
        ("get_order", TransientExchangeError("HTTP 500 after 5 attempts"), "PENDING", "TRANSIENT", "ord-1"),
        ("get_order", ExchangeResponseError("order.filled_size"), "PENDING", "BAD_RESPONSE", "ord-1"),
        ("get_order", ExchangeRequestError("HTTP 404"), "PENDING", "REQUEST_REJECTED", "ord-1"),
        ("get_order", ExchangeAuthError("HTTP 401"), "PENDING", "UNAUTHORIZED", "ord-1"),
    ],
)
async def test_exchange_problems_by_step(
    step: str, problem: ExchangeError, status: str, code: str, order_id: str
) -> None:
    client = FakeClient()
    client.problems[step] = problem
    outcome = await broker(client).execute(buy())
    assert (outcome.status, outcome.error_code, outcome.exchange_order_id) == (status, code, order_id)
    assert outcome.error_message.startswith(str(problem))
    assert client.calls.count("order") == (0 if step == "product" else 1)


@pytest.mark.parametrize("step", ["product", "order"])
async def test_refused_credentials_leave_the_order_pending_and_the_same_order_goes_through_later(step: str) -> None:
    """401/403: the exchange refused the request, so nothing was placed; it is the key, not the trade: PENDING
    (retryable), and once the key works the same order (same client_order_id) is placed once."""
    client = FakeClient()
    live = broker(client)
    client.problems[step] = ExchangeAuthError("Coinbase refused the credentials (HTTP 401)")
    refused = await live.execute(buy())
    assert (refused.status, refused.error_code, refused.exchange_order_id) == ("PENDING", "UNAUTHORIZED", "")
    assert refused.error_message == (
        "Coinbase refused the credentials (HTTP 401): no order placed; retryable once the Coinbase API key is fixed"
    )
    assert live.auth_failed == "Coinbase refused the credentials (HTTP 401)"
    assert client.calls == (["product"] if step == "product" else ["product", "order"])
    later = await live.execute(buy())
    assert (later.status, later.exchange_order_id) == ("EXECUTED", "ord-1")
    assert {o[0] for o in client.orders} == {"cid-7"}
    assert live.auth_failed is None


async def test_refused_credentials_while_reading_back_keep_the_exchange_order() -> None:
    client = FakeClient()
    client.problems["get_order"] = ExchangeAuthError("Coinbase refused the credentials (HTTP 403)")
    live = broker(client)
    outcome = await live.execute(buy())
    assert (outcome.status, outcome.exchange_order_id) == ("PENDING", "ord-1")
    assert outcome.error_message == "Coinbase refused the credentials (HTTP 403)"  # it was placed: no "no order"
    assert live.auth_failed == "Coinbase refused the credentials (HTTP 403)"


async def test_refused_credentials_are_remembered_until_an_order_is_accepted() -> None:
    client = FakeClient()
    live = broker(client)
    client.problems["product"] = ExchangeAuthError("Coinbase refused the credentials (HTTP 401)")
    await live.execute(buy())
    assert live.auth_failed == "Coinbase refused the credentials (HTTP 401)"
    assert (await live.execute(buy())).status == "EXECUTED"
    assert live.auth_failed is None


async def test_the_ledger_argument_is_accepted_and_ignored() -> None:
    outcome = await broker(FakeClient()).execute(buy(), object())
    assert outcome.status == "EXECUTED"


async def test_lookup_follows_an_order_found_by_its_client_order_id() -> None:
    client = FakeClient(states=[filled()])
    client.found = filled()
    outcome = await LiveBroker(client).lookup(buy(), datetime(2026, 1, 1, tzinfo=UTC))
    assert outcome.status == OrderStatus.EXECUTED
    assert "create_market_order" not in client.calls  # never placed again


async def test_lookup_of_an_order_that_never_reached_the_exchange_is_cancelled_not_placed() -> None:
    client = FakeClient()
    outcome = await LiveBroker(client).lookup(buy(), datetime(2026, 1, 1, tzinfo=UTC))
    assert outcome.status == OrderStatus.CANCELLED
    assert "never placed" in outcome.error_message
    assert client.calls == ["find_order"]


async def test_lookup_that_cannot_ask_stays_pending() -> None:
    client = FakeClient()
    client.problems["find_order"] = TransientExchangeError("HTTP 503")
    outcome = await LiveBroker(client).lookup(buy(), datetime(2026, 1, 1, tzinfo=UTC))
    assert outcome.status == OrderStatus.PENDING


def protected_buy(take_profit: str | None = "93001.237", stop_loss: str | None = "87000.004") -> OrderRequest:
    return OrderRequest(
        7,
        "cid-7",
        "BTC-USD",
        OrderSide.BUY,
        quote_size=Decimal("100"),
        base_size=Decimal(0),
        take_profit=None if take_profit is None else Decimal(take_profit),
        stop_loss=None if stop_loss is None else Decimal(stop_loss),
    )


async def test_a_buy_with_levels_carries_its_bracket_rounded_to_the_quote_increment() -> None:
    client = FakeClient()
    client.ack = OrderAck(True, "ord-1", "", "", attached_order_id="br-1")
    outcome = await broker(client).execute(protected_buy())
    # quote_increment 0.01: the take-profit rounded down, the stop-loss up (both toward the entry)
    assert client.brackets == [Bracket(take_profit=Decimal("93001.23"), stop_loss=Decimal("87000.01"))]
    assert isinstance(outcome, LiveOrderOutcome)
    assert (outcome.status, outcome.bracket_order_id) == ("EXECUTED", "br-1")
    assert outcome.bracket == client.brackets[0]


async def test_the_bracket_id_comes_from_the_parent_when_the_answer_does_not_name_it() -> None:
    parent = OrderState(
        "ord-1", "FILLED", Decimal("0.0011"), Decimal("90000"), Decimal("0.59"), attached_order_id="br-9"
    )
    client = FakeClient(states=[parent])
    outcome = await broker(client).execute(protected_buy())
    assert isinstance(outcome, LiveOrderOutcome)
    assert outcome.bracket_order_id == "br-9"


@pytest.mark.parametrize(
    ("take_profit", "stop_loss"),
    [
        ("93000", None),  # one level is no bracket
        (None, "87000"),
        ("87000.004", "87000.001"),  # rounded, the target is no longer above the stop
    ],
)
async def test_levels_that_make_no_bracket_place_no_order(take_profit: str | None, stop_loss: str | None) -> None:
    client = FakeClient()
    outcome = await broker(client).execute(protected_buy(take_profit, stop_loss))
    assert (outcome.status, outcome.error_code) == ("FAILED", "INVALID_BRACKET")
    assert "no order placed" in outcome.error_message
    assert client.orders == []


async def test_a_sell_never_carries_a_bracket() -> None:
    client = FakeClient(balance="1")
    order = OrderRequest(
        8,
        "cid-8",
        "BTC-USD",
        OrderSide.SELL,
        quote_size=Decimal(0),
        base_size=Decimal("0.01"),
        take_profit=Decimal("93000"),
        stop_loss=Decimal("87000"),
    )
    assert (await broker(client).execute(order)).status == "EXECUTED"
    assert client.brackets == [None]
