"""Live trading on Coinbase Advanced Trade: market IOC orders, quote_size for BUY and base_size (rounded down to
the product's base_increment) for SELL, then the order is read back for fills and fees. Never falls back to
paper: a problem is FAILED (or PENDING when it is transient)."""

from __future__ import annotations

import asyncio
import logging
from decimal import ROUND_DOWN, Decimal

from executor_svc.coinbase_client import (
    CoinbaseClient,
    ExchangeAuthError,
    ExchangeRequestError,
    TransientExchangeError,
)
from executor_svc.domain import OrderOutcome, OrderRequest

log = logging.getLogger(__name__)
OPEN_STATES = ("OPEN", "PENDING", "QUEUED", "UNKNOWN_ORDER_STATUS")


class LiveBroker:
    mode = "LIVE"

    def __init__(self, client: CoinbaseClient) -> None:
        self.client = client
        self.auth_failed: str | None = None

    async def execute(self, order: OrderRequest, ledger: object = None) -> OrderOutcome:
        try:
            return await self._execute(order)
        except TransientExchangeError as exc:
            return OrderOutcome("PENDING", error_code="TRANSIENT", error_message=str(exc))
        except ExchangeAuthError as exc:
            self.auth_failed = str(exc)
            return OrderOutcome("FAILED", error_code="UNAUTHORIZED", error_message=str(exc))
        except ExchangeRequestError as exc:
            return OrderOutcome("FAILED", error_code="REQUEST_REJECTED", error_message=str(exc))

    async def _execute(self, order: OrderRequest) -> OrderOutcome:
        rules = await self.client.product(order.symbol)
        quote_size: Decimal | None = None
        base_size: Decimal | None = None
        if order.side == "BUY":
            quote_size = order.quote_size.quantize(Decimal("0.01"), rounding=ROUND_DOWN)
            if quote_size < rules.quote_min_size or quote_size <= 0:
                return OrderOutcome(
                    "FAILED", error_code="BELOW_MIN_SIZE", error_message=f"quote size {quote_size} < quote_min_size"
                )
        else:
            increment = rules.base_increment
            base_size = (order.base_size / increment).to_integral_value(rounding=ROUND_DOWN) * increment
            if base_size < rules.base_min_size or base_size <= 0:
                return OrderOutcome(
                    "FAILED", error_code="BELOW_MIN_SIZE", error_message=f"base size {base_size} < base_min_size"
                )
            available = await self.client.available_balance(order.symbol.split("-", 1)[0])
            if available < base_size:
                return OrderOutcome(
                    "FAILED",
                    error_code="INSUFFICIENT_FUND",
                    error_message=f"available {available} < {base_size} to sell; no order placed",
                )
        ack = await self.client.create_market_order(
            order.client_order_id, order.symbol, order.side, quote_size=quote_size, base_size=base_size
        )
        if not ack.success:
            return OrderOutcome("FAILED", error_code=ack.error, error_message=f"{ack.error}: {ack.message}".strip(": "))
        self.auth_failed = None
        state = await self.client.get_order(ack.order_id)
        for _ in range(10):
            if state.status not in OPEN_STATES:
                break
            await asyncio.sleep(0.2)
            state = await self.client.get_order(ack.order_id)
        if state.filled_size > 0:
            return OrderOutcome(
                "EXECUTED",
                exchange_order_id=ack.order_id,
                filled_size=state.filled_size,
                average_price=state.average_price,
                fees=state.total_fees,
            )
        if state.status in OPEN_STATES:
            return OrderOutcome(
                "PENDING",
                exchange_order_id=ack.order_id,
                error_code="OPEN",
                error_message=f"order {ack.order_id} still {state.status}",
            )
        return OrderOutcome(
            "FAILED",
            exchange_order_id=ack.order_id,
            error_code=state.status,
            error_message=f"order {ack.order_id} ended {state.status} without fills",
        )
