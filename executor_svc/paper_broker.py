"""Paper trading: market orders filled at the latest candle close (in replay mode: the close of the candle the
replay has reached) with slippage and the taker fee, against the paper portfolio in the database. SELL needs
paper holdings, BUY needs paper cash."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Protocol

from common.clock import Clock
from common.lifecycle import ExecutionMode, OrderSide, OrderStatus
from executor_svc.domain import OrderOutcome, OrderRequest
from executor_svc.paper_fill import paper_fill


class PaperLedger(Protocol):
    async def market_price(self, symbol: str, granularity: str, replay: bool) -> Decimal | None: ...
    async def balance(self, asset: str, starting_cash: Decimal, now: object) -> Decimal: ...
    async def set_balance(self, asset: str, available: Decimal, now: object) -> None: ...


class PaperBroker:
    mode = ExecutionMode.PAPER

    def __init__(
        self,
        *,
        slippage_bps: Decimal,
        fee_rate: Decimal,
        starting_cash: Decimal,
        granularity: str,
        replay: bool,
        clock: Clock,
    ) -> None:
        self.slippage_bps = slippage_bps
        self.fee_rate = fee_rate
        self.starting_cash = starting_cash
        self.granularity = granularity
        self.replay = replay
        self.clock = clock

    async def lookup(self, order: OrderRequest, since: datetime) -> OrderOutcome:
        """Paper orders settle in the transaction that decides them: none is ever left to look up."""
        return OrderOutcome(OrderStatus.CANCELLED, error_code="NOT_FOUND", error_message="no paper order to look up")

    async def execute(self, order: OrderRequest, ledger: PaperLedger) -> OrderOutcome:
        now = self.clock()
        price = await ledger.market_price(order.symbol, self.granularity, self.replay)
        if price is None or price <= 0:
            return OrderOutcome(
                OrderStatus.FAILED, error_code="NO_MARKET_PRICE", error_message=f"no candle price for {order.symbol}"
            )
        fill = paper_fill(
            side=order.side,
            market_price=price,
            quote_size=order.quote_size,
            base_size=order.base_size,
            slippage_bps=self.slippage_bps,
            fee_rate=self.fee_rate,
        )
        if fill.size <= 0:
            return OrderOutcome(
                OrderStatus.FAILED, error_code="INVALID_SIZE", error_message="order size rounds to zero"
            )
        base = order.symbol.split("-", 1)[0]
        cash = await ledger.balance("USD", self.starting_cash, now)
        held = await ledger.balance(base, self.starting_cash, now)
        if order.side == OrderSide.BUY:
            cost = fill.quote_total + fill.fee
            if cost > cash:
                return OrderOutcome(
                    OrderStatus.FAILED, error_code="INSUFFICIENT_FUND", error_message=f"paper cash {cash} < {cost} USD"
                )
            await ledger.set_balance("USD", cash - cost, now)
            await ledger.set_balance(base, held + fill.size, now)
        else:
            if fill.size > held:
                return OrderOutcome(
                    OrderStatus.FAILED,
                    error_code="INSUFFICIENT_FUND",
                    error_message=f"paper holdings {held} {base} < {fill.size} to sell",
                )
            await ledger.set_balance(base, held - fill.size, now)
            await ledger.set_balance("USD", cash + fill.quote_total - fill.fee, now)
        return OrderOutcome(
            OrderStatus.EXECUTED,
            exchange_order_id=f"paper-{order.client_order_id}",
            filled_size=fill.size,
            average_price=fill.price,
            fees=fill.fee,
        )
