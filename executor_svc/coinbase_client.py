"""Coinbase Advanced Trade REST client (httpx) for the executor: orders, order status, accounts, products.

Every request is signed with a fresh JWT (executor_svc.coinbase_auth.CoinbaseJWTAuth). 429 (the body may be HTML),
5xx, timeouts and network errors are retried by the shared policy (common.http_retry: bounded, exponential backoff
with jitter, Retry-After honoured) and then raise TransientExchangeError; 401/403 raise ExchangeAuthError; other
4xx raise ExchangeRequestError at once. A 2xx answer is read into a typed model: one that is not JSON or lacks a
field or has a malformed number raises ExchangeResponseError (never a silent 0). Messages never contain
credentials or tokens.

Bracket orders (take-profit and stop-loss attached to a market BUY). What Coinbase documents, and where:
- Create Order (POST /orders, docs.cdp.coinbase.com/api-reference/advanced-trade-api/rest-api/orders/create-order
  and .../preview-orders): ``attached_order_configuration`` is "the configuration of the attached order. Only
  TriggerBracketGtc is eligible. Size field must be omitted as the size of the attached order is the same as that of
  the parent order". So a BUY carries ``{"order_configuration": {"market_market_ioc": {"quote_size": "100"}},
  "attached_order_configuration": {"trigger_bracket_gtc": {"limit_price": "<take profit>", "stop_trigger_price":
  "<stop loss>"}}}`` with decimal strings. The official SDK (coinbase-advanced-py 1.8.4,
  coinbase/rest/types/orders_types.py) names the same fields: TriggerBracketGtc(base_size, limit_price,
  stop_trigger_price). A stop that triggers becomes a stop-limit SELL whose limit lies below the trigger (Coinbase
  documents 5 %), so a stop-loss can fill below ``stop_trigger_price``.
- The attached order is an order of its own: the create answer's ``success_response.attached_order_id`` (SDK:
  CreateOrderSuccess.attached_order_id), and an order read by Get Order / List Orders carries
  ``attached_order_id`` (on the parent) and ``originating_order_id`` (on the attached order) (SDK: Order; the Get
  Order example in the API reference shows both). Its ``order_type`` is "BRACKET" (the OrderType enum: MARKET,
  LIMIT, STOP, STOP_LIMIT, BRACKET, ...); ``status`` is one of PENDING, OPEN, FILLED, CANCELLED, EXPIRED, FAILED,
  QUEUED, CANCEL_QUEUED, UNKNOWN_ORDER_STATUS; ``trigger_status`` STOP_PENDING / STOP_TRIGGERED tells whether the
  stop fired. Its ``order_configuration.trigger_bracket_gtc`` holds the two prices and the base size.
- Cancel Orders (POST /orders/batch_cancel with ``{"order_ids": [...]}``, .../orders/cancel-order; SDK
  cancel_orders and CancelOrderObject): ``{"results": [{"success": bool, "failure_reason": str, "order_id":
  str}]}``; failure reasons include ORDER_IS_FULLY_FILLED, UNKNOWN_CANCEL_ORDER, DUPLICATE_CANCEL_REQUEST,
  ORDER_IS_BEING_REPLACED, NOT_ALLOWED_TO_CANCEL (UNKNOWN_CANCEL_FAILURE_REASON is the enum's default, also sent
  with success). Success means the cancel was *initiated*: the order's own status confirms it.
- List Fills (GET /orders/historical/fills?order_ids=..., .../orders/list-fills; SDK get_fills and Fill):
  ``{"fills": [{"entry_id", "trade_id", "order_id", "trade_time", "trade_type", "price", "size", "commission",
  "product_id", "side", "size_in_quote", ...}], "cursor": str}``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, Literal, TypeVar

import httpx
from pydantic import StrictBool

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
FILLS_PAGE_SIZE = 250
MAX_PAGES = 40  # of one paged listing (accounts, orders, fills)
BRACKET_ORDER_TYPE = "BRACKET"
STOP_TRIGGERED = "STOP_TRIGGERED"
# Statuses of an order that may still fill (Coinbase's OrderExecutionStatus less the final ones).
LIVE_STATUSES = frozenset({"PENDING", "OPEN", "QUEUED", "CANCEL_QUEUED", "UNKNOWN_ORDER_STATUS"})


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
    attached_order_id: str = ""  # the bracket's own order id, when the order carried one and Coinbase named it


@dataclass(frozen=True)
class OrderState:
    order_id: str
    status: str
    filled_size: Decimal
    average_price: Decimal
    total_fees: Decimal
    attached_order_id: str = ""  # on a parent: its attached bracket ("" when none or not known yet)
    originating_order_id: str = ""  # on an attached bracket: its parent


@dataclass(frozen=True)
class ListedOrder:
    """An order as List Orders reports it: enough to match it to an execution and to record its outcome."""

    order_id: str
    client_order_id: str
    product_id: str
    side: str
    state: OrderState
    order_type: str = ""  # MARKET, BRACKET, ... ("" when Coinbase did not say)
    originating_order_id: str = ""  # set on an attached bracket: the order that carried it

    @property
    def is_attached_bracket(self) -> bool:
        return bool(self.originating_order_id) or self.order_type == BRACKET_ORDER_TYPE


@dataclass(frozen=True)
class ProductRules:
    base_increment: Decimal
    base_min_size: Decimal
    quote_min_size: Decimal
    # Prices must be multiples of it. product() always reads it from Coinbase; the default only serves rules built
    # by hand (tests) that never price anything.
    quote_increment: Decimal = Decimal("0.01")


def round_to_increment(price: Decimal, increment: Decimal, *, up: bool) -> Decimal:
    """``price`` as a multiple of ``increment`` (a product's quote_increment): the next one up or down (a multiple
    stays as it is). The result carries the increment's exponent, so it prints as Coinbase expects ("65000.00",
    "0.00001234"), never in exponent form."""
    if not increment.is_finite() or increment <= 0:
        raise ValueError(f"increment must be a positive number, not {increment}")
    if not price.is_finite():
        raise ValueError(f"price must be a number, not {price}")
    steps = (price / increment).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR)
    return (steps * increment).quantize(increment)


@dataclass(frozen=True)
class Bracket:
    """The exits attached to a BUY: a take-profit limit SELL and a stop-loss trigger, both in quote currency.

    Sent as ``trigger_bracket_gtc`` {limit_price: take_profit, stop_trigger_price: stop_loss}, without a size (it
    is the parent's). Build it with ``for_product`` so both prices are valid for the product."""

    take_profit: Decimal
    stop_loss: Decimal

    def __post_init__(self) -> None:
        if not (self.take_profit.is_finite() and self.stop_loss.is_finite()):
            raise ValueError("bracket prices must be numbers")
        if self.stop_loss <= 0:
            raise ValueError(f"stop_loss {self.stop_loss} must be positive")
        if self.take_profit <= self.stop_loss:
            raise ValueError(f"take_profit {self.take_profit} must be above stop_loss {self.stop_loss}")

    @classmethod
    def for_product(cls, take_profit: Decimal, stop_loss: Decimal, quote_increment: Decimal) -> Bracket:
        """Both prices rounded to ``quote_increment``, each toward the entry: the take-profit DOWN and the stop-loss
        UP. Neither exit then sits further from the entry than asked: the target is reached no later, and the stop
        fires no later, so the loss never exceeds the configured stop distance (the cost: at most one increment of
        profit). ValueError when the rounded prices no longer make a bracket (take_profit <= stop_loss)."""
        return cls(
            take_profit=round_to_increment(take_profit, quote_increment, up=False),
            stop_loss=round_to_increment(stop_loss, quote_increment, up=True),
        )

    def configuration(self) -> dict[str, dict[str, str]]:
        """The ``attached_order_configuration`` of the Create Order body."""
        return {
            "trigger_bracket_gtc": {
                "limit_price": format(self.take_profit, "f"),
                "stop_trigger_price": format(self.stop_loss, "f"),
            }
        }


ExitLeg = Literal["take_profit", "stop_loss"]


@dataclass(frozen=True)
class BracketState:
    """An attached bracket as Coinbase reports it (Get Order / List Orders of the bracket's own order).

    - ``is_live`` (OPEN, PENDING, QUEUED, CANCEL_QUEUED, UNKNOWN_ORDER_STATUS): it may still sell; the coins it
      covers are on hold (not in the available balance).
    - FILLED: it sold ``filled_size`` at ``average_price`` paying ``total_fees``; ``leg`` says which exit.
    - CANCELLED / EXPIRED / FAILED: it is over; ``filled_size`` may still be > 0 (a partial fill before the end):
      that much was sold, the rest is held again as available coins."""

    order_id: str
    parent_order_id: str
    product_id: str
    status: str
    filled_size: Decimal
    average_price: Decimal
    total_fees: Decimal
    take_profit: Decimal | None  # limit_price, when the answer carries the configuration
    stop_loss: Decimal | None  # stop_trigger_price, likewise
    trigger_status: str = ""

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES

    @property
    def leg(self) -> ExitLeg | None:
        """Which exit sold (None when nothing was sold): the stop when Coinbase says it triggered, else the side of
        the midpoint between stop and target where the average price lies (a stop-limit may fill below the stop, a
        take-profit limit at or above the target)."""
        if self.filled_size <= 0:
            return None
        if self.trigger_status == STOP_TRIGGERED:
            return "stop_loss"
        if self.take_profit is None or self.stop_loss is None:
            return None
        return "take_profit" if self.average_price * 2 >= self.take_profit + self.stop_loss else "stop_loss"


@dataclass(frozen=True)
class CancelResult:
    """One order's result of a batch cancel. ``success``: the cancel was initiated (confirm with the order's
    status); otherwise ``failure_reason`` says why (ORDER_IS_FULLY_FILLED: it filled first)."""

    order_id: str
    success: bool
    failure_reason: str  # "" when success


@dataclass(frozen=True)
class Fill:
    trade_id: str
    order_id: str
    price: Decimal
    size: Decimal  # in base currency, or in quote currency when size_in_quote
    commission: Decimal
    side: str
    trade_time: str
    size_in_quote: bool = False

    @property
    def base_size(self) -> Decimal:
        return self.size / self.price if self.size_in_quote else self.size


def fill_totals(fills: Iterable[Fill]) -> tuple[Decimal, Decimal, Decimal]:
    """(base size, volume-weighted average price, commission) of ``fills`` (zeros when there are none)."""
    size = value = fees = Decimal(0)
    for fill in fills:
        size += fill.base_size
        value += fill.base_size * fill.price
        fees += fill.commission
    return size, (value / size if size else Decimal(0)), fees


# The answers, as far as the executor reads them (Coinbase sends numbers as decimal strings).


class _SuccessResponse(ExchangeModel):
    order_id: str = ""
    attached_order_id: str = ""


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


class _TriggerBracket(ExchangeModel):
    limit_price: PositiveDecimal | None = None
    stop_trigger_price: PositiveDecimal | None = None


class _Configuration(ExchangeModel):
    trigger_bracket_gtc: _TriggerBracket | None = None
    trigger_bracket_gtd: _TriggerBracket | None = None


class _Detailed(_Order):
    """An order with what links a parent and its bracket."""

    product_id: str = ""
    order_type: str = ""
    trigger_status: str = ""
    attached_order_id: str = ""
    originating_order_id: str = ""
    order_configuration: _Configuration | None = None

    def state(self) -> OrderState:
        return OrderState(
            self.order_id,
            self.status,
            self.filled_size,
            self.average_filled_price,
            self.total_fees,
            attached_order_id=self.attached_order_id,
            originating_order_id=self.originating_order_id,
        )

    def is_bracket(self) -> bool:
        config = self.order_configuration
        has_bracket_config = config is not None and (
            config.trigger_bracket_gtc is not None or config.trigger_bracket_gtd is not None
        )
        return bool(self.originating_order_id) or self.order_type == BRACKET_ORDER_TYPE or has_bracket_config

    def bracket(self) -> BracketState:
        config = self.order_configuration or _Configuration()
        prices = config.trigger_bracket_gtc or config.trigger_bracket_gtd or _TriggerBracket()
        return BracketState(
            order_id=self.order_id,
            parent_order_id=self.originating_order_id,
            product_id=self.product_id,
            status=self.status,
            filled_size=self.filled_size,
            average_price=self.average_filled_price,
            total_fees=self.total_fees,
            take_profit=prices.limit_price,
            stop_loss=prices.stop_trigger_price,
            trigger_status=self.trigger_status,
        )


class _OrderAnswer(ExchangeModel):
    order: _Detailed


class _Listed(_Detailed):
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
    quote_increment: PositiveDecimal


class _CancelResult(ExchangeModel):
    success: StrictBool  # "yes" or 1 is not a cancel
    failure_reason: str = ""
    order_id: str


class _CancelAnswer(ExchangeModel):
    results: list[_CancelResult]


class _Fill(ExchangeModel):
    trade_id: str = ""
    order_id: str
    price: PositiveDecimal
    size: PositiveDecimal
    commission: NonNegativeDecimal
    side: str = ""
    trade_time: str = ""
    size_in_quote: StrictBool = False


class _FillsAnswer(ExchangeModel):
    fills: list[_Fill]
    cursor: str = ""


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
        self,
        client_order_id: str,
        product_id: str,
        side: str,
        *,
        quote_size: Decimal | None,
        base_size: Decimal | None,
        bracket: Bracket | None = None,
    ) -> OrderAck:
        """A market IOC order: BUY by ``quote_size``, SELL by ``base_size``. A BUY may carry ``bracket``: Coinbase
        then attaches a take-profit/stop-loss SELL of the size bought (its id: ``OrderAck.attached_order_id`` when
        Coinbase names it, else bracket_of). A repeated client_order_id returns the existing order."""
        if bracket is not None and side != "BUY":
            raise ValueError("only a BUY carries a bracket")
        if side == "BUY":
            if quote_size is None:
                raise ValueError("a BUY market order needs quote_size")
            config = {"quote_size": format(quote_size, "f")}
        else:
            if base_size is None:
                raise ValueError("a SELL market order needs base_size")
            config = {"base_size": format(base_size, "f")}
        body: dict[str, Any] = {
            "client_order_id": client_order_id,
            "product_id": product_id,
            "side": side,
            "order_configuration": {"market_market_ioc": config},
        }
        if bracket is not None:
            body["attached_order_configuration"] = bracket.configuration()
        path = "/orders"
        answer = await self._request(_CreateOrderAnswer, "POST", path, json=body)
        if answer.success:
            success = answer.success_response or _SuccessResponse()
            order_id = success.order_id or answer.order_id
            if not order_id:
                raise ExchangeResponseError(f"Coinbase POST {path}: malformed answer: success without an order_id")
            return OrderAck(True, order_id, "", "", attached_order_id=success.attached_order_id)
        error = answer.error_response or _ErrorResponse()
        return OrderAck(
            False,
            "",
            error.error or answer.failure_reason or "UNKNOWN_FAILURE_REASON",
            error.message or error.error_details,
        )

    async def get_order(self, order_id: str) -> OrderState:
        return (await self._request(_OrderAnswer, "GET", f"/orders/historical/{order_id}")).order.state()

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
                o.state(),
                order_type=o.order_type,
                originating_order_id=o.originating_order_id,
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
            quote_increment=product.quote_increment,
        )

    async def get_bracket(self, bracket_order_id: str) -> BracketState:
        """The attached bracket ``bracket_order_id`` (Get Order). ExchangeResponseError when that order is not an
        attached bracket (so a parent's FILLED is never taken for its exit's)."""
        path = f"/orders/historical/{bracket_order_id}"
        order = (await self._request(_OrderAnswer, "GET", path)).order
        if not order.is_bracket():
            kind = order.order_type or "an order"
            raise ExchangeResponseError(f"Coinbase GET {path}: {order.order_id} is {kind}, not an attached bracket")
        return order.bracket()

    async def bracket_of(self, parent_order_id: str, *, product_id: str, since: datetime) -> BracketState | None:
        """The bracket attached to ``parent_order_id``, or None when Coinbase shows none (yet: it appears once the
        parent is accepted; a parent without fills never gets a live one). Reads the parent's attached_order_id
        (Get Order) and follows it; when the parent does not name one, looks for the order whose
        originating_order_id is the parent among List Orders of ``product_id`` since ``since`` (the parent's
        creation, or earlier)."""
        parent = await self.get_order(parent_order_id)
        if parent.attached_order_id:
            return await self.get_bracket(parent.attached_order_id)
        listed = await self.list_orders(since=since, product_id=product_id)
        children = {o.order_id for o in listed if o.originating_order_id == parent_order_id}
        if len(children) > 1:
            raise ExchangeResponseError(
                f"Coinbase GET /orders/historical/batch: {len(children)} orders attached to {parent_order_id}"
            )
        return await self.get_bracket(children.pop()) if children else None

    async def cancel_orders(self, order_ids: Iterable[str]) -> dict[str, CancelResult]:
        """Cancel orders (POST /orders/batch_cancel): each id's result. A success only says the cancel was
        initiated: read the order (get_bracket) until it is no longer live; it may still have filled. An answer
        without a result for an id sent is malformed (ExchangeResponseError). No ids: no request."""
        ids = list(dict.fromkeys(order_ids))
        if not ids:
            return {}
        path = "/orders/batch_cancel"
        answer = await self._request(_CancelAnswer, "POST", path, json={"order_ids": ids})
        results = {
            r.order_id: CancelResult(r.order_id, r.success, "" if r.success else r.failure_reason or "UNKNOWN")
            for r in answer.results
        }
        missing = [order_id for order_id in ids if order_id not in results]
        if missing:
            raise ExchangeResponseError(f"Coinbase POST {path}: malformed answer: no result for {', '.join(missing)}")
        return {order_id: results[order_id] for order_id in ids}

    async def list_fills(self, order_id: str) -> list[Fill]:
        """Every fill of ``order_id`` (GET /orders/historical/fills?order_ids=..., every page)."""
        path = "/orders/historical/fills"
        params: dict[str, Any] = {"order_ids": order_id, "limit": FILLS_PAGE_SIZE}
        fills: list[Fill] = []
        for _ in range(MAX_PAGES):
            page = await self._request(_FillsAnswer, "GET", path, params=params)
            fills += [
                Fill(f.trade_id, f.order_id, f.price, f.size, f.commission, f.side, f.trade_time, f.size_in_quote)
                for f in page.fills
                if f.order_id == order_id
            ]
            if not page.cursor or not page.fills:
                return fills
            params = {**params, "cursor": page.cursor}
        raise ExchangeResponseError(f"Coinbase GET {path}: more than {MAX_PAGES} pages of fills")

    async def check_auth(self) -> None:
        """An authenticated call (GET /accounts); raises on failure."""
        await self._request(_AccountsAnswer, "GET", "/accounts", params={"limit": 1})
