"""Coinbase Advanced Trade REST client (httpx) for the executor: orders, order status, accounts, products.

Every request is signed with a fresh JWT (executor_svc.coinbase_auth.CoinbaseJWTAuth). 429 (the body may be HTML),
5xx, timeouts and network errors are retried by the shared policy (common.http_retry: bounded, exponential backoff
with jitter, Retry-After honoured) and then raise TransientExchangeError; 401/403 raise ExchangeAuthError; other
4xx raise ExchangeRequestError at once. A 2xx answer is read into a typed model: one that is not JSON or lacks a
field or has a malformed number raises ExchangeResponseError (never a silent 0). Messages never contain
credentials or tokens."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import httpx

from common.exchange_json import (
    ExchangeModel,
    MalformedResponse,
    Model,
    NonNegativeDecimal,
    PositiveDecimal,
    parse,
)
from common.http_retry import RetriesExhausted, RetryPolicy
from common.metrics import EXCHANGE_ERRORS
from executor_svc.coinbase_auth import CoinbaseCredentials, CoinbaseJWTAuth

log = logging.getLogger(__name__)
ACCOUNTS_PAGE_SIZE = 250
ORDERS_PAGE_SIZE = 250
MAX_PAGES = 40  # of one paged listing (accounts, orders)


class ExchangeError(Exception):
    pass


class TransientExchangeError(ExchangeError):
    """Rate limited, server error or timeout after the allowed retries: try again later with the same id."""


class ExchangeAuthError(ExchangeError):
    """401/403: the credentials were refused."""


class ExchangeRequestError(ExchangeError):
    """Another 4xx: the request itself is wrong."""


class ExchangeResponseError(ExchangeError):
    """A 2xx answer that cannot be read (not JSON, a field missing, a malformed number). What the exchange did is
    unknown: after an order was sent this is not a failure of the order."""


@dataclass(frozen=True)
class OrderAck:
    success: bool
    order_id: str
    error: str  # error_response.error when success is false
    message: str


@dataclass(frozen=True)
class OrderState:
    order_id: str
    status: str
    filled_size: Decimal
    average_price: Decimal
    total_fees: Decimal


@dataclass(frozen=True)
class ListedOrder:
    """An order as List Orders reports it: enough to match it to an execution and to record its outcome."""

    order_id: str
    client_order_id: str
    product_id: str
    side: str
    state: OrderState


@dataclass(frozen=True)
class ProductRules:
    base_increment: Decimal
    base_min_size: Decimal
    quote_min_size: Decimal


# The answers, as far as the executor reads them (Coinbase sends numbers as decimal strings).


class _SuccessResponse(ExchangeModel):
    order_id: str = ""


class _ErrorResponse(ExchangeModel):
    error: str = ""
    message: str = ""
    error_details: str = ""


class _CreateOrderAnswer(ExchangeModel):
    success: bool
    order_id: str = ""  # older answers put it here
    success_response: _SuccessResponse | None = None
    error_response: _ErrorResponse | None = None
    failure_reason: str = ""


class _Order(ExchangeModel):
    order_id: str
    status: str
    filled_size: NonNegativeDecimal
    average_filled_price: NonNegativeDecimal
    total_fees: NonNegativeDecimal


class _OrderAnswer(ExchangeModel):
    order: _Order


class _Listed(_Order):
    client_order_id: str = ""
    product_id: str
    side: str


class _Page(ExchangeModel):
    has_next: bool = False
    cursor: str = ""


P = TypeVar("P", bound=_Page)


class _OrdersAnswer(_Page):
    orders: list[_Listed]


class _Balance(ExchangeModel):
    value: NonNegativeDecimal


class _Account(ExchangeModel):
    currency: str
    available_balance: _Balance


class _AccountsAnswer(_Page):
    accounts: list[_Account]


class _Product(ExchangeModel):
    base_increment: PositiveDecimal
    base_min_size: NonNegativeDecimal
    quote_min_size: NonNegativeDecimal


class CoinbaseClient:
    def __init__(
        self,
        base_url: str,
        credentials: CoinbaseCredentials,
        *,
        timeout: float = 10.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``retry`` replaces the policy that ``max_retries`` and ``backoff`` describe (tests inject its sleep)."""
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy(max_retries=max_retries, backoff=backoff)
        self.http = httpx.AsyncClient(timeout=timeout, transport=transport, auth=CoinbaseJWTAuth(credentials))

    async def close(self) -> None:
        await self.http.aclose()

    async def _request(
        self, model: type[Model], method: str, path: str, *, json: Any = None, params: Any = None
    ) -> Model:
        what = f"Coinbase {method} {path}"
        url = f"{self.base_url}{path}"

        def count(kind: str) -> None:
            EXCHANGE_ERRORS.labels(kind).inc()

        try:
            response = await self.retry.send(
                lambda: self.http.request(method, url, json=json, params=params), what=what, on_problem=count
            )
        except RetriesExhausted as exc:
            raise TransientExchangeError(str(exc)) from None
        if response.status_code in (401, 403):
            count("auth")
            raise ExchangeAuthError(f"Coinbase refused the credentials (HTTP {response.status_code})")
        if response.status_code >= 400:
            count("request")
            raise ExchangeRequestError(f"Coinbase answered HTTP {response.status_code} to {method} {path}")
        try:
            return parse(model, response.content)
        except MalformedResponse as exc:
            count("bad_response")
            raise ExchangeResponseError(f"{what}: malformed answer: {exc}") from None

    async def create_market_order(
        self, client_order_id: str, product_id: str, side: str, *, quote_size: Decimal | None, base_size: Decimal | None
    ) -> OrderAck:
        if side == "BUY":
            if quote_size is None:
                raise ValueError("a BUY market order needs quote_size")
            config = {"quote_size": format(quote_size, "f")}
        else:
            if base_size is None:
                raise ValueError("a SELL market order needs base_size")
            config = {"base_size": format(base_size, "f")}
        body = {
            "client_order_id": client_order_id,
            "product_id": product_id,
            "side": side,
            "order_configuration": {"market_market_ioc": config},
        }
        path = "/orders"
        answer = await self._request(_CreateOrderAnswer, "POST", path, json=body)
        if answer.success:
            order_id = (answer.success_response.order_id if answer.success_response else "") or answer.order_id
            if not order_id:
                raise ExchangeResponseError(f"Coinbase POST {path}: malformed answer: success without an order_id")
            return OrderAck(True, order_id, "", "")
        error = answer.error_response or _ErrorResponse()
        return OrderAck(
            False,
            "",
            error.error or answer.failure_reason or "UNKNOWN_FAILURE_REASON",
            error.message or error.error_details,
        )

    async def get_order(self, order_id: str) -> OrderState:
        order = (await self._request(_OrderAnswer, "GET", f"/orders/historical/{order_id}")).order
        return OrderState(
            order_id=order.order_id,
            status=order.status,
            filled_size=order.filled_size,
            average_price=order.average_filled_price,
            total_fees=order.total_fees,
        )

    async def list_orders(self, *, since: datetime, product_id: str | None = None) -> list[ListedOrder]:
        """Every order created since ``since`` (of one product, or all): GET /orders/historical/batch, every page."""
        params: dict[str, Any] = {"start_date": since.astimezone(UTC).isoformat(), "limit": ORDERS_PAGE_SIZE}
        if product_id:
            params["product_ids"] = product_id
        return [
            ListedOrder(
                o.order_id,
                o.client_order_id,
                o.product_id,
                o.side,
                OrderState(o.order_id, o.status, o.filled_size, o.average_filled_price, o.total_fees),
            )
            async for page in self._pages(_OrdersAnswer, "/orders/historical/batch", params, "orders")
            for o in page.orders
        ]

    async def _pages(self, model: type[P], path: str, params: dict[str, Any], noun: str) -> AsyncIterator[P]:
        """Every page of a cursor-paged GET (at most MAX_PAGES)."""
        for _ in range(MAX_PAGES):
            page = await self._request(model, "GET", path, params=params)
            yield page
            if not page.has_next:
                return
            if not page.cursor:
                raise ExchangeResponseError(f"Coinbase GET {path}: malformed answer: has_next without a cursor")
            params = {**params, "cursor": page.cursor}
        raise ExchangeResponseError(f"Coinbase GET {path}: more than {MAX_PAGES} pages of {noun}")

    async def find_order(self, client_order_id: str, product_id: str, since: datetime) -> OrderState | None:
        """The order this client_order_id placed (List Orders of the product since ``since``), or None."""
        for order in await self.list_orders(since=since, product_id=product_id):
            if order.client_order_id == client_order_id:
                return order.state
        return None

    async def available_balance(self, currency: str) -> Decimal:
        """The available balance of ``currency`` over all accounts (every page of GET /accounts)."""
        total = Decimal(0)
        async for page in self._pages(_AccountsAnswer, "/accounts", {"limit": ACCOUNTS_PAGE_SIZE}, "accounts"):
            total += sum((a.available_balance.value for a in page.accounts if a.currency == currency), Decimal(0))
        return total

    async def product(self, product_id: str) -> ProductRules:
        product = await self._request(_Product, "GET", f"/products/{product_id}")
        return ProductRules(
            base_increment=product.base_increment,
            base_min_size=product.base_min_size,
            quote_min_size=product.quote_min_size,
        )

    async def check_auth(self) -> None:
        """An authenticated call (GET /accounts); raises on failure."""
        await self._request(_AccountsAnswer, "GET", "/accounts", params={"limit": 1})
