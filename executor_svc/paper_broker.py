"""Paper trading: market orders filled at the latest candle close (in replay: the close of the last candle the
replay has released; a protective exit: at its stop-loss or take-profit) with slippage and the taker fee, against
the paper portfolio and positions in the database.

:func:`settle_paper_order` is the whole decision (fill, cash, position), pure, shared with `cts backtest`:
- BUY: refused when a position in the symbol is open (POSITION_OPEN) or the cash does not cover it with the fee
  (INSUFFICIENT_FUND); otherwise it opens the position with the recommendation's stop-loss and take-profit.
- SELL: refused without an open position (NO_POSITION); otherwise it sells the whole position and closes it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from common.clock import Clock
from common.lifecycle import ExecutionMode, OrderSide, OrderStatus
from executor_svc.domain import OrderOutcome, OrderRequest
from executor_svc.paper_fill import paper_fill
from executor_svc.positions import ClosedPosition, Position, close_position, open_position

CASH = "USD"


@dataclass(frozen=True)
class PaperSettled:
    outcome: OrderOutcome
    cash: Decimal  # USD after the order
    opened: Position | None = None
    closed: ClosedPosition | None = None


def settle_paper_order(
    order: OrderRequest,
    *,
    market_price: Decimal,
    position: Position | None,
    cash: Decimal,
    now: datetime,
    slippage_bps: Decimal,
    fee_rate: Decimal,
    mode: ExecutionMode = ExecutionMode.PAPER,
) -> PaperSettled:
    """Fill ``order`` at ``market_price`` against ``cash`` and the open ``position`` of its symbol (or None)."""
    if market_price <= 0:
        return PaperSettled(_failed("NO_MARKET_PRICE", f"no usable price for {order.symbol}"), cash)
    if order.side == OrderSide.BUY:
        if position is not None:
            return PaperSettled(
                _failed(
                    "POSITION_OPEN",
                    f"a {mode} position in {order.symbol} is open since {position.opened_at.isoformat()}",
                ),
                cash,
            )
        fill = paper_fill(
            side=OrderSide.BUY,
            market_price=market_price,
            quote_size=order.quote_size,
            base_size=Decimal(0),
            slippage_bps=slippage_bps,
            fee_rate=fee_rate,
        )
        if fill.size <= 0:
            return PaperSettled(_failed("INVALID_SIZE", "order size rounds to zero"), cash)
        cost = fill.quote_total + fill.fee
        if cost > cash:
            return PaperSettled(_failed("INSUFFICIENT_FUND", f"paper cash {cash} < {cost} USD"), cash)
        opened = open_position(
            mode=mode,
            symbol=order.symbol,
            filled_size=fill.size,
            average_price=fill.price,
            quote_total=fill.quote_total,
            fee=fill.fee,
            stop_loss=order.stop_loss,
            take_profit=order.take_profit,
            opened_at=now,
            recommendation_id=order.recommendation_id,
        )
        return PaperSettled(_executed(order, fill.size, fill.price, fill.fee), cash - cost, opened=opened)
    if position is None:
        return PaperSettled(_failed("NO_POSITION", f"no open {mode} position in {order.symbol} to sell"), cash)
    fill = paper_fill(
        side=OrderSide.SELL,
        market_price=market_price,
        quote_size=Decimal(0),
        base_size=position.quantity,
        slippage_bps=slippage_bps,
        fee_rate=fee_rate,
    )
    closed = close_position(
        position,
        reason=order.exit_reason,
        average_price=fill.price,
        quote_total=fill.quote_total,
        fee=fill.fee,
        closed_at=now,
        recommendation_id=order.recommendation_id,
    )
    return PaperSettled(
        _executed(order, fill.size, fill.price, fill.fee), cash + fill.quote_total - fill.fee, closed=closed
    )


def _failed(code: str, message: str) -> OrderOutcome:
    return OrderOutcome(OrderStatus.FAILED, error_code=code, error_message=message)


def _executed(order: OrderRequest, size: Decimal, price: Decimal, fee: Decimal) -> OrderOutcome:
    return OrderOutcome(
        OrderStatus.EXECUTED,
        exchange_order_id=f"paper-{order.client_order_id}",
        filled_size=size,
        average_price=price,
        fees=fee,
    )


class PaperLedger(Protocol):
    async def preload(
        self,
        mode: ExecutionMode,
        symbols: Sequence[str],
        granularity: str,
        replay: bool,
        starting_cash: Decimal,
        now: datetime,
    ) -> None: ...
    async def market_price(self, symbol: str, granularity: str, replay: bool) -> Decimal | None: ...
    async def balance(self, asset: str, starting_cash: Decimal, now: datetime) -> Decimal: ...
    async def set_balance(self, asset: str, available: Decimal, now: datetime) -> None: ...
    async def open_position(self, mode: ExecutionMode, symbol: str) -> Position | None: ...
    def position_opened(self, position: Position) -> None: ...
    def position_closed(self, closed: ClosedPosition) -> None: ...


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

    async def preload(self, ledger: PaperLedger, symbols: Sequence[str]) -> None:
        """Read what a batch of orders over ``symbols`` needs at once (prices, positions, balances)."""
        await ledger.preload(self.mode, symbols, self.granularity, self.replay, self.starting_cash, self.clock())

    async def execute(self, order: OrderRequest, ledger: PaperLedger) -> OrderOutcome:
        now = self.clock()
        price = order.market_price or await ledger.market_price(order.symbol, self.granularity, self.replay)
        if price is None or price <= 0:
            return _failed("NO_MARKET_PRICE", f"no candle price for {order.symbol}")
        cash = await ledger.balance(CASH, self.starting_cash, now)  # USD first: every batch locks it first
        position = await ledger.open_position(self.mode, order.symbol)
        settled = settle_paper_order(
            order,
            market_price=price,
            position=position,
            cash=cash,
            now=now,
            slippage_bps=self.slippage_bps,
            fee_rate=self.fee_rate,
        )
        if settled.outcome.status != OrderStatus.EXECUTED:
            return settled.outcome
        base = order.symbol.split("-", 1)[0]
        held = await ledger.balance(base, self.starting_cash, now)
        size = settled.outcome.filled_size or Decimal(0)
        await ledger.set_balance(CASH, settled.cash, now)
        if settled.opened is not None:
            await ledger.set_balance(base, held + size, now)
            ledger.position_opened(settled.opened)
        if settled.closed is not None:
            await ledger.set_balance(base, max(held - size, Decimal(0)), now)
            ledger.position_closed(settled.closed)
        return settled.outcome
