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
still-open order is injectable.

A BUY that names both protective levels (OrderRequest.take_profit and stop_loss) carries them as an attached
trigger_bracket_gtc (one order; Coinbase sizes the bracket like the parent), both prices rounded to the product's
quote_increment (executor_svc.coinbase_client.Bracket.for_product); levels that make no bracket (only one of them,
or a target not above the stop once rounded) are FAILED before anything is sent. The outcome then names the
bracket's own order id (LiveOrderOutcome.bracket_order_id) when Coinbase did, and the prices it was sent with."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Protocol

from common.lifecycle import ExecutionMode, OrderSide, OrderStatus
from executor_svc.coinbase_client import (
    Bracket,
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


@dataclass(frozen=True)
class LiveOrderOutcome(OrderOutcome):
    """A live order's outcome with the bracket it carried (a BUY with exits): its order id ("" when Coinbase has not
    named it: executor_svc.live_positions finds it with bracket_of) and the rounded prices it was sent with."""

    bracket_order_id: str = ""
    bracket: Bracket | None = None


def replace_outcome(outcome: OrderOutcome, *, bracket_order_id: str, bracket: Bracket | None) -> LiveOrderOutcome:
    return LiveOrderOutcome(
        outcome.status,
        exchange_order_id=outcome.exchange_order_id,
        filled_size=outcome.filled_size,
        average_price=outcome.average_price,
        fees=outcome.fees,
        error_code=outcome.error_code,
        error_message=outcome.error_message,
        bracket_order_id=bracket_order_id,
        bracket=bracket,
    )


class ExchangeClient(Protocol):
    async def product(self, product_id: str) -> ProductRules: ...
    async def available_balance(self, currency: str) -> Decimal: ...
    async def create_market_order(
        self,
        client_order_id: str,
        product_id: str,
        side: str,
        *,
        quote_size: Decimal | None,
        base_size: Decimal | None,
        bracket: Bracket | None = None,
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
        quote_size, base_size, bracket = sizes
        try:
            ack = await self.client.create_market_order(
                order.client_order_id,
                order.symbol,
                order.side,
                quote_size=quote_size,
                base_size=base_size,
                bracket=bracket,
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
            return await self._read_back(ack.order_id, ack.attached_order_id, bracket)
        except ExchangeError as exc:
            outcome = self._problem(exc, OrderStatus.PENDING, ack.order_id)
            return replace_outcome(outcome, bracket_order_id=ack.attached_order_id, bracket=bracket)

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

    async def _sizes(self, order: OrderRequest) -> tuple[Decimal | None, Decimal | None, Bracket | None] | OrderOutcome:
        """(quote_size, base_size, bracket) of the order, rounded to the product's rules, or the FAILED outcome."""
        rules = await self.client.product(order.symbol)
        if order.side == OrderSide.BUY:
            quote_size = order.quote_size.quantize(Decimal("0.01"), rounding=ROUND_DOWN)
            if quote_size < rules.quote_min_size or quote_size <= 0:
                return OrderOutcome(
                    OrderStatus.FAILED,
                    error_code="BELOW_MIN_SIZE",
                    error_message=f"quote size {quote_size} < quote_min_size",
                )
            bracket = self._bracket(order, rules)
            if isinstance(bracket, OrderOutcome):
                return bracket
            return quote_size, None, bracket
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
        return None, base_size, None

    @staticmethod
    def _bracket(order: OrderRequest, rules: ProductRules) -> Bracket | OrderOutcome | None:
        """The exits a BUY carries (None without levels), rounded to the product's quote_increment."""
        if order.take_profit is None and order.stop_loss is None:
            return None
        if order.take_profit is None or order.stop_loss is None:
            return OrderOutcome(
                OrderStatus.FAILED,
                error_code="INVALID_BRACKET",
                error_message="a protected BUY needs both a take-profit and a stop-loss; no order placed",
            )
        try:
            return Bracket.for_product(order.take_profit, order.stop_loss, rules.quote_increment)
        except ValueError as exc:
            return OrderOutcome(
                OrderStatus.FAILED,
                error_code="INVALID_BRACKET",
                error_message=f"take-profit {order.take_profit} / stop-loss {order.stop_loss}: {exc}; no order placed",
            )

    async def _read_back(
        self, order_id: str, bracket_order_id: str = "", bracket: Bracket | None = None
    ) -> LiveOrderOutcome:
        state = await self.client.get_order(order_id)
        for _ in range(self._max_polls):
            if state.status not in OPEN_STATES:
                break
            await self._sleep(self._poll_interval)
            state = await self.client.get_order(order_id)
        bracket_order_id = bracket_order_id or state.attached_order_id
        if state.filled_size > 0:
            return LiveOrderOutcome(
                OrderStatus.EXECUTED,
                exchange_order_id=order_id,
                filled_size=state.filled_size,
                average_price=state.average_price,
                fees=state.total_fees,
                bracket_order_id=bracket_order_id,
                bracket=bracket,
            )
        if state.status in OPEN_STATES:
            return LiveOrderOutcome(
                OrderStatus.PENDING,
                exchange_order_id=order_id,
                error_code="OPEN",
                error_message=f"order {order_id} still {state.status}",
                bracket_order_id=bracket_order_id,
                bracket=bracket,
            )
        return LiveOrderOutcome(
            OrderStatus.FAILED,
            exchange_order_id=order_id,
            error_code=state.status,
            error_message=f"order {order_id} ended {state.status} without fills",
            bracket_order_id=bracket_order_id,
            bracket=bracket,
        )
