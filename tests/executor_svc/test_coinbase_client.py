"""The Coinbase trading client through httpx.MockTransport (no server, no sleeping): a fresh JWT per request
bound to its method, host and path; the shared retry policy (429/5xx/transport errors, Retry-After); fast
failures (401/403 -> ExchangeAuthError, other 4xx -> ExchangeRequestError); answers read into typed values where a
malformed or missing number is an error, never 0."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from common.http_retry import RetryPolicy
from executor_svc.coinbase_auth import CoinbaseCredentials, CoinbaseJWTAuth
from executor_svc.coinbase_client import (
    CoinbaseClient,
    ExchangeAuthError,
    ExchangeRequestError,
    ExchangeResponseError,
    OrderAck,
    TransientExchangeError,
)

BASE_URL = "https://api.coinbase.test:8443/api/v3/brokerage"
KEY_NAME = "organizations/org-1/apiKeys/key-1"

Answer = httpx.Response | Exception
Handler = Callable[[httpx.Request], Answer]


class Exchange:
    """A scripted exchange: answers from ``script`` in order (then ``default``), every request kept."""

    def __init__(self, *script: Answer, default: Handler | None = None) -> None:
        self.script = list(script)
        self.default = default
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.script.pop(0) if self.script else self.default(request) if self.default else None
        if answer is None:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def client_for(exchange: Exchange, key: ec.EllipticCurvePrivateKey, max_retries: int = 3) -> CoinbaseClient:
    retry = RetryPolicy(max_retries=max_retries, backoff=1.0, sleep=exchange.sleep, jitter=lambda: 0.5)
    return CoinbaseClient(
        BASE_URL, CoinbaseCredentials(KEY_NAME, key), retry=retry, transport=httpx.MockTransport(exchange.handle)
    )


def ok(body: Any) -> httpx.Response:
    return httpx.Response(200, json=body)


def raw(body: str, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=body.encode(), headers={"Content-Type": "application/json"})


def order(**fields: Any) -> dict[str, Any]:
    base = {
        "order_id": "ord-1",
        "status": "FILLED",
        "filled_size": "0.00111",
        "average_filled_price": "90000.01",
        "total_fees": "0.5994",
    }
    return {"order": {**base, **fields}}


PRODUCT = {
    "product_id": "BTC-USD",
    "base_increment": "0.00000001",
    "base_min_size": "0.00001",
    "quote_min_size": "1",
    "quote_increment": "0.01",
}


def claims(request: httpx.Request, key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    header = request.headers["Authorization"]
    assert header.startswith("Bearer ")
    token = header.removeprefix("Bearer ")
    head = jwt.get_unverified_header(token)
    assert (head["alg"], head["kid"], head["typ"]) == ("ES256", KEY_NAME, "JWT")
    assert len(head["nonce"]) == 32
    decoded: dict[str, Any] = jwt.decode(token, key.public_key(), algorithms=["ES256"])
    return decoded


async def test_every_request_carries_a_fresh_jwt_bound_to_its_method_host_and_path(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    exchange = Exchange(
        ok(PRODUCT),
        ok({"accounts": [], "has_next": False}),
        ok({"success": True, "success_response": {"order_id": "ord-1"}}),
        ok(order()),
    )
    client = client_for(exchange, key)
    try:
        await client.product("BTC-USD")
        await client.available_balance("BTC")
        await client.create_market_order("cid-1", "BTC-USD", "BUY", quote_size=Decimal("10"), base_size=None)
        await client.get_order("ord-1")
    finally:
        await client.close()
    uris = [claims(r, key)["uri"] for r in exchange.requests]
    assert uris == [
        "GET api.coinbase.test:8443/api/v3/brokerage/products/BTC-USD",
        "GET api.coinbase.test:8443/api/v3/brokerage/accounts",  # the query string is not part of it
        "POST api.coinbase.test:8443/api/v3/brokerage/orders",
        "GET api.coinbase.test:8443/api/v3/brokerage/orders/historical/ord-1",
    ]
    assert exchange.requests[1].url.params["limit"] == "250"
    for request in exchange.requests:
        signed = claims(request, key)
        assert (signed["iss"], signed["sub"]) == ("cdp", KEY_NAME)
        assert signed["exp"] - signed["nbf"] == 120
    tokens = [r.headers["Authorization"] for r in exchange.requests]
    assert len(set(tokens)) == len(tokens)


async def test_a_retried_request_is_signed_again(key: ec.EllipticCurvePrivateKey) -> None:
    exchange = Exchange(httpx.Response(500), httpx.Response(429), ok(PRODUCT))
    client = client_for(exchange, key)
    try:
        await client.product("BTC-USD")
    finally:
        await client.close()
    tokens = {r.headers["Authorization"] for r in exchange.requests}
    assert len(exchange.requests) == 3
    assert len(tokens) == 3


def test_the_jwt_uses_the_injected_clock_and_the_default_port_is_left_out(key: ec.EllipticCurvePrivateKey) -> None:
    auth = CoinbaseJWTAuth(CoinbaseCredentials(KEY_NAME, key), clock=lambda: 1_700_000_000.7)
    request = httpx.Request("delete", "https://api.coinbase.com:443/api/v3/brokerage/orders/a%2Fb?x=1")
    signed = next(auth.sync_auth_flow(request))
    token = signed.headers["Authorization"].removeprefix("Bearer ")
    decoded = jwt.decode(token, key.public_key(), algorithms=["ES256"], options={"verify_exp": False})  # 2023
    assert decoded["nbf"] == 1_700_000_000
    assert decoded["exp"] == 1_700_000_120
    assert decoded["uri"] == "DELETE api.coinbase.com/api/v3/brokerage/orders/a%2Fb"
    assert "REDACTED" in repr(auth)
    assert KEY_NAME not in repr(auth)


async def test_429_5xx_and_transport_errors_are_retried_honouring_retry_after(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    exchange = Exchange(
        httpx.Response(429, text="<html>Too Many Requests</html>", headers={"Retry-After": "7"}),
        httpx.ConnectError("refused"),
        httpx.Response(503),
        ok(order()),
    )
    client = client_for(exchange, key)
    try:
        state = await client.get_order("ord-1")
    finally:
        await client.close()
    assert state.status == "FILLED"
    assert exchange.sleeps == [7.0, 2.0, 4.0]  # Retry-After, then backoff 1 s x 2**n (jitter pinned to x1)


async def test_retries_are_bounded_then_transient(key: ec.EllipticCurvePrivateKey) -> None:
    exchange = Exchange(default=lambda _: httpx.Response(500))
    client = client_for(exchange, key, max_retries=2)
    try:
        with pytest.raises(TransientExchangeError, match=r"GET /products/BTC-USD: HTTP 500 after 3 attempts"):
            await client.product("BTC-USD")
    finally:
        await client.close()
    assert len(exchange.requests) == 3
    assert exchange.sleeps == [1.0, 2.0]


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_credentials_fail_at_once(key: ec.EllipticCurvePrivateKey, status: int) -> None:
    exchange = Exchange(httpx.Response(status, json={"error": "UNAUTHENTICATED"}))
    client = client_for(exchange, key)
    try:
        with pytest.raises(ExchangeAuthError, match=f"HTTP {status}") as info:
            await client.check_auth()
    finally:
        await client.close()
    assert len(exchange.requests) == 1
    assert exchange.sleeps == []
    token = exchange.requests[0].headers["Authorization"].removeprefix("Bearer ")
    assert token not in str(info.value)
    assert "Bearer" not in str(info.value)


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_other_4xx_fail_at_once(key: ec.EllipticCurvePrivateKey, status: int) -> None:
    exchange = Exchange(httpx.Response(status, json={"error": "INVALID_ARGUMENT"}))
    client = client_for(exchange, key)
    try:
        with pytest.raises(ExchangeRequestError, match=f"HTTP {status} to POST /orders"):
            await client.create_market_order("cid", "BTC-USD", "SELL", quote_size=None, base_size=Decimal("0.1"))
    finally:
        await client.close()
    assert len(exchange.requests) == 1
    assert exchange.sleeps == []


async def test_orders_are_sent_as_market_ioc_with_decimal_strings(key: ec.EllipticCurvePrivateKey) -> None:
    exchange = Exchange(
        ok({"success": True, "success_response": {"order_id": "ord-b"}}),
        ok({"success": True, "order_id": "ord-s"}),  # the older place of the id
        ok({"success": False, "error_response": {"error": "INSUFFICIENT_FUND", "message": "no cash"}}),
        ok({"success": False, "failure_reason": "UNKNOWN_FAILURE_REASON"}),
    )
    client = client_for(exchange, key)
    try:
        buy = await client.create_market_order("c1", "BTC-USD", "BUY", quote_size=Decimal("1E+2"), base_size=None)
        sell = await client.create_market_order("c2", "BTC-USD", "SELL", quote_size=None, base_size=Decimal("1E-7"))
        refused = await client.create_market_order("c3", "BTC-USD", "BUY", quote_size=Decimal("5"), base_size=None)
        bare = await client.create_market_order("c4", "BTC-USD", "BUY", quote_size=Decimal("5"), base_size=None)
    finally:
        await client.close()
    assert buy == OrderAck(True, "ord-b", "", "")
    assert sell == OrderAck(True, "ord-s", "", "")
    assert refused == OrderAck(False, "", "INSUFFICIENT_FUND", "no cash")
    assert bare == OrderAck(False, "", "UNKNOWN_FAILURE_REASON", "")
    bodies = [json.loads(r.content) for r in exchange.requests[:2]]
    assert bodies[0] == {
        "client_order_id": "c1",
        "product_id": "BTC-USD",
        "side": "BUY",
        "order_configuration": {"market_market_ioc": {"quote_size": "100"}},
    }
    assert bodies[1]["order_configuration"] == {"market_market_ioc": {"base_size": "0.0000001"}}  # never 1E-7


async def test_a_market_order_needs_its_size(key: ec.EllipticCurvePrivateKey) -> None:
    client = client_for(Exchange(), key)
    try:
        with pytest.raises(ValueError, match="quote_size"):
            await client.create_market_order("c", "BTC-USD", "BUY", quote_size=None, base_size=Decimal(1))
        with pytest.raises(ValueError, match="base_size"):
            await client.create_market_order("c", "BTC-USD", "SELL", quote_size=Decimal(1), base_size=None)
    finally:
        await client.close()


async def test_an_accepted_order_without_an_id_is_a_malformed_answer(key: ec.EllipticCurvePrivateKey) -> None:
    client = client_for(Exchange(ok({"success": True, "success_response": {}})), key)
    try:
        with pytest.raises(ExchangeResponseError, match="success without an order_id"):
            await client.create_market_order("c", "BTC-USD", "BUY", quote_size=Decimal(10), base_size=None)
    finally:
        await client.close()


async def test_numbers_stay_exact_decimals(key: ec.EllipticCurvePrivateKey) -> None:
    exchange = Exchange(
        raw(
            '{"order": {"order_id": "o", "status": "FILLED", "filled_size": 0.1000000000000000055511151231257827,'
            ' "average_filled_price": "12345.678901234567890", "total_fees": 0}}'
        )
    )
    client = client_for(exchange, key)
    try:
        state = await client.get_order("o")
    finally:
        await client.close()
    assert state.filled_size == Decimal("0.1000000000000000055511151231257827")  # a JSON number, not via float
    assert state.average_price == Decimal("12345.678901234567890")
    assert state.total_fees == Decimal(0)
    assert all(type(v) is Decimal for v in (state.filled_size, state.average_price, state.total_fees))


@pytest.mark.parametrize(
    ("answer", "field"),
    [
        (order(filled_size="abc"), "order.filled_size"),
        (order(filled_size=""), "order.filled_size"),
        (order(filled_size=None), "order.filled_size"),
        (order(total_fees="NaN"), "order.total_fees"),
        (order(average_filled_price="-1"), "order.average_filled_price"),
        (order(filled_size=True), "order.filled_size"),
        ({"order": {"order_id": "o", "status": "FILLED", "filled_size": "1", "total_fees": "0"}}, "average_filled"),
        ({"orders": []}, "order: Field required"),
    ],
)
async def test_a_malformed_or_missing_number_in_an_order_is_an_error(
    key: ec.EllipticCurvePrivateKey, answer: dict[str, Any], field: str
) -> None:
    exchange = Exchange(ok(answer))
    client = client_for(exchange, key)
    try:
        with pytest.raises(ExchangeResponseError, match=f"GET /orders/historical/o: malformed answer: .*{field}"):
            await client.get_order("o")
    finally:
        await client.close()
    assert len(exchange.requests) == 1  # an unreadable 2xx is not retried
    assert exchange.sleeps == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"base_increment": ""}, "base_increment"),
        ({"base_increment": "0"}, "base_increment"),  # would divide by zero
        ({"base_min_size": "1,5"}, "base_min_size"),
        ({"quote_min_size": None}, "quote_min_size"),
        ({"quote_increment": "0"}, "quote_increment"),  # no price is a multiple of it
        ({"quote_increment": "1e"}, "quote_increment"),
        ({"quote_increment": None}, "quote_increment"),
    ],
)
async def test_malformed_product_rules_are_an_error(
    key: ec.EllipticCurvePrivateKey, changes: dict[str, Any], field: str
) -> None:
    client = client_for(Exchange(ok({**PRODUCT, **changes})), key)
    try:
        with pytest.raises(ExchangeResponseError, match=field):
            await client.product("BTC-USD")
    finally:
        await client.close()


async def test_product_rules_are_read(key: ec.EllipticCurvePrivateKey) -> None:
    client = client_for(Exchange(ok({**PRODUCT, "price": ""})), key)  # price is not used: an empty one is fine
    try:
        rules = await client.product("BTC-USD")
    finally:
        await client.close()
    assert (rules.base_increment, rules.base_min_size, rules.quote_min_size, rules.quote_increment) == (
        Decimal("0.00000001"),
        Decimal("0.00001"),
        Decimal(1),
        Decimal("0.01"),
    )


def account(currency: str, value: Any) -> dict[str, Any]:
    return {"currency": currency, "available_balance": {"value": value, "currency": currency}}


async def test_available_balance_sums_every_page(key: ec.EllipticCurvePrivateKey) -> None:
    exchange = Exchange(
        ok({"accounts": [account("BTC", "0.5"), account("USD", "10")], "has_next": True, "cursor": "next-1"}),
        ok({"accounts": [account("BTC", "0.25")], "has_next": False, "cursor": ""}),
    )
    client = client_for(exchange, key)
    try:
        assert await client.available_balance("BTC") == Decimal("0.75")
    finally:
        await client.close()
    assert "cursor" not in exchange.requests[0].url.params
    assert exchange.requests[1].url.params["cursor"] == "next-1"


@pytest.mark.parametrize(
    "body",
    [
        '{"accounts": [{"currency": "BTC", "available_balance": {"value": "lots"}}]}',
        '{"accounts": [{"currency": "BTC", "available_balance": {}}]}',
        '{"accounts": [{"currency": "BTC"}]}',
        '{"accounts": [], "has_next": true}',
        "<html>maintenance</html>",
        "",
    ],
)
async def test_unreadable_accounts_are_an_error_not_a_zero_balance(key: ec.EllipticCurvePrivateKey, body: str) -> None:
    client = client_for(Exchange(raw(body)), key)
    try:
        with pytest.raises(ExchangeResponseError, match="GET /accounts: malformed answer"):
            await client.available_balance("BTC")
    finally:
        await client.close()
