"""Live trading on Coinbase Advanced Trade: market IOC orders, quote_size for BUY and base_size (rounded down to
the product's base_increment) for SELL, then the order is read back for fills and fees. Never falls back to
paper: a problem is FAILED, or PENDING when it is transient, when the credentials were refused or when the order
may exist on the exchange.

Which problem gives which outcome depends on how far the order got:
- refused credentials (401/403) at any step -> PENDING: the exchange refused the request, so nothing was placed,
  and the problem is the executor's key, not the trade. ``auth_failed`` turns the executor's readiness
  NOT_SERVING; once the key is fixed the same recommendation goes through (same client_order_id, one order);
- before it is sent (product rules, balance): transient -> PENDING; a rejected request or an unreadable answer ->
  FAILED (nothing was placed);
- sending it: transient or unreadable answer -> PENDING (the exchange may hold it; a retry with the same
  client_order_id finds it); a rejected request (another 4xx: not placed) -> FAILED;
- reading back an accepted order: any problem -> PENDING with the exchange order id (the order exists).
The client is anything with the CoinbaseClient methods used here (tests pass a fake); the wait between reads of a
still-open order is injectable."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Protocol

from common.lifecycle import ExecutionMode, OrderSide, OrderStatus
from executor_svc.coinbase_client import (
    ExchangeAuthError,
    ExchangeError,
    ExchangeRequestError,
    OrderAck,
    OrderState,
    ProductRules,
    TransientExchangeError,
)
from executor_svc.domain import OrderOutcome, OrderRequest

log = logging.getLogger(__name__)
OPEN_STATES = ("OPEN", "PENDING", "QUEUED", "UNKNOWN_ORDER_STATUS")
POLL_INTERVAL_SECONDS = 0.2
MAX_POLLS = 10


class ExchangeClient(Protocol):
    async def product(self, product_id: str) -> ProductRules: ...
    async def available_balance(self, currency: str) -> Decimal: ...
    async def create_market_order(
        self, client_order_id: str, product_id: str, side: str, *, quote_size: Decimal | None, base_size: Decimal | None
    ) -> OrderAck: ...
    async def get_order(self, order_id: str) -> OrderState: ...
    async def find_order(self, client_order_id: str, product_id: str, since: datetime) -> OrderState | None: ...


def _error_code(exc: ExchangeError) -> str:
    if isinstance(exc, TransientExchangeError):
        return "TRANSIENT"
    if isinstance(exc, ExchangeAuthError):
        return "UNAUTHORIZED"
    if isinstance(exc, ExchangeRequestError):
        return "REQUEST_REJECTED"
    return "BAD_RESPONSE"


class LiveBroker:
    mode = ExecutionMode.LIVE

    def __init__(
        self,
        client: ExchangeClient,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        poll_interval: float = POLL_INTERVAL_SECONDS,
        max_polls: int = MAX_POLLS,
    ) -> None:
        self.client = client
        self.auth_failed: str | None = None
        self._sleep = sleep
        self._poll_interval = poll_interval
        self._max_polls = max_polls

    async def execute(self, order: OrderRequest, ledger: object = None) -> OrderOutcome:
        """``ledger`` is not used (the paper broker settles against one); it keeps the Broker signature."""
        try:
            sizes = await self._sizes(order)
        except ExchangeError as exc:
            retry = isinstance(exc, TransientExchangeError | ExchangeAuthError)
            return self._problem(exc, OrderStatus.PENDING if retry else OrderStatus.FAILED, "")
        if isinstance(sizes, OrderOutcome):
            return sizes
        quote_size, base_size = sizes
        try:
            ack = await self.client.create_market_order(
                order.client_order_id, order.symbol, order.side, quote_size=quote_size, base_size=base_size
            )
        except ExchangeError as exc:
            # Another 4xx: the request itself was refused, nothing placed, and sending it again changes nothing.
            refused = isinstance(exc, ExchangeRequestError)
            return self._problem(exc, OrderStatus.FAILED if refused else OrderStatus.PENDING, "")
        if not ack.success:
            return OrderOutcome(
                OrderStatus.FAILED, error_code=ack.error, error_message=f"{ack.error}: {ack.message}".strip(": ")
            )
        self.auth_failed = None
        try:
            return await self._read_back(ack.order_id)
        except ExchangeError as exc:
            return self._problem(exc, OrderStatus.PENDING, ack.order_id)

    async def lookup(self, order: OrderRequest, since: datetime) -> OrderOutcome:
        """Resolve an order that may or may not have reached the exchange, without placing it: find it by its
        client_order_id (List Orders of its product since ``since``) and follow it; not there: CANCELLED (it was
        never placed). A problem asking is PENDING (asked again later)."""
        try:
            state = await self.client.find_order(order.client_order_id, order.symbol, since)
            if state is None:
                return OrderOutcome(
                    OrderStatus.CANCELLED,
                    error_code="NOT_FOUND",
                    error_message=(
                        f"no order with client_order_id {order.client_order_id} at the exchange since "
                        f"{since.isoformat(timespec='seconds')}: never placed, and not placed after its window"
                    ),
                )
            return await self._read_back(state.order_id)
        except ExchangeError as exc:
            return self._problem(exc, OrderStatus.PENDING, "")

    def _problem(self, exc: ExchangeError, status: OrderStatus, exchange_order_id: str) -> OrderOutcome:
        message = str(exc)
        if isinstance(exc, ExchangeAuthError):
            self.auth_failed = message
            if not exchange_order_id:
                message = f"{message}: no order placed; retryable once the Coinbase API key is fixed"
        if status == OrderStatus.PENDING and exchange_order_id:
            log.warning("order %s accepted but not read back: %s", exchange_order_id, exc)
        return OrderOutcome(
            status, exchange_order_id=exchange_order_id, error_code=_error_code(exc), error_message=message
        )

    async def _sizes(self, order: OrderRequest) -> tuple[Decimal | None, Decimal | None] | OrderOutcome:
        """(quote_size, base_size) of the order, rounded to the product's rules, or the FAILED outcome."""
        rules = await self.client.product(order.symbol)
        if order.side == OrderSide.BUY:
            quote_size = order.quote_size.quantize(Decimal("0.01"), rounding=ROUND_DOWN)
            if quote_size < rules.quote_min_size or quote_size <= 0:
                return OrderOutcome(
                    OrderStatus.FAILED,
                    error_code="BELOW_MIN_SIZE",
                    error_message=f"quote size {quote_size} < quote_min_size",
                )
            return quote_size, None
        increment = rules.base_increment
        base_size = (order.base_size / increment).to_integral_value(rounding=ROUND_DOWN) * increment
        if base_size < rules.base_min_size or base_size <= 0:
            return OrderOutcome(
                OrderStatus.FAILED, error_code="BELOW_MIN_SIZE", error_message=f"base size {base_size} < base_min_size"
            )
        available = await self.client.available_balance(order.symbol.split("-", 1)[0])
        if available < base_size:
            return OrderOutcome(
                OrderStatus.FAILED,
                error_code="INSUFFICIENT_FUND",
                error_message=f"available {available} < {base_size} to sell; no order placed",
            )
        return None, base_size

    async def _read_back(self, order_id: str) -> OrderOutcome:
        state = await self.client.get_order(order_id)
        for _ in range(self._max_polls):
            if state.status not in OPEN_STATES:
                break
            await self._sleep(self._poll_interval)
            state = await self.client.get_order(order_id)
        if state.filled_size > 0:
            return OrderOutcome(
                OrderStatus.EXECUTED,
                exchange_order_id=order_id,
                filled_size=state.filled_size,
                average_price=state.average_price,
                fees=state.total_fees,
            )
        if state.status in OPEN_STATES:
            return OrderOutcome(
                OrderStatus.PENDING,
                exchange_order_id=order_id,
                error_code="OPEN",
                error_message=f"order {order_id} still {state.status}",
            )
        return OrderOutcome(
            OrderStatus.FAILED,
            exchange_order_id=order_id,
            error_code=state.status,
            error_message=f"order {order_id} ended {state.status} without fills",
        )
