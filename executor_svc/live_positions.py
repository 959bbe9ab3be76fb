"""Live positions on Coinbase: the BUY that opens one with its exits attached, the bracket that closes it, the time
limit, and the SELL that cancels the bracket before it sells. Plain domain code: the database is a
:class:`LivePositionStore` (executor_svc.repository.ExecutorRepository), the exchange a :class:`BracketExchange`
(executor_svc.coinbase_client.CoinbaseClient) and the orders go through the live broker (executor_svc.live_broker);
the clock and the wait between reads are injected.

- BUY: refused (FAILED POSITION_OPEN, nothing sent) while a LIVE position in the symbol is open. Otherwise one market
  order that carries its take-profit / stop-loss bracket (the broker rounds both to the product's quote_increment).
  Executed: the position (quantity = filled size, entry = average price, entry_cost = filled x price + fees, the
  bracket's order id) is written by ``complete_live`` in the same transaction as the execution and the
  recommendation; ``positions.entry_recommendation_id`` UNIQUE makes a second write (a restart) a no-op. After a
  crash the same client_order_id answers the same order (and its bracket), so there is never a second BUY.
- The bracket fills (followed by :meth:`LivePositions.manage`, one Get Order per open position): the exit is
  recorded once, in one transaction (an exit SELL recommendation with exit_reason take_profit / stop_loss and no
  signal, an EXECUTED execution carrying the bracket's order id, the position CLOSED with its P&L); the position's
  OPEN status is the guard, so two executors or a restart record it once.
- Time limit (ExitRules.max_holding): an exit SELL recommendation (time_limit) is written and executed like any live
  SELL (below).
- A live SELL (a signal, or the time limit) on an open LIVE position: it claims the position (one closing SELL at a
  time, across replicas), cancels the bracket (POST /orders/batch_cancel), reads it until it is no longer live,
  then sells what is held. A bracket that filled meanwhile wins: its exit is recorded, the SELL ends CANCELLED
  ("position closed by take_profit") and nothing more is sold. Without an open LIVE position: FAILED NO_POSITION,
  nothing sent (CANCELLED when a protective exit closed the position after the SELL was recommended).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from common.clock import Clock
from common.lifecycle import ExecutionMode, ExecutionStatus, ExitReason, OrderSide, OrderStatus
from executor_svc.coinbase_client import BracketState, CancelResult, ExchangeError
from executor_svc.domain import (
    ExecutionRecord,
    ExecutionResult,
    OrderOutcome,
    OrderRequest,
    PositionExit,
    Recommendation,
)
from executor_svc.exits import ExitRules
from executor_svc.live_broker import LiveOrderOutcome
from executor_svc.positions import USD_QUANTUM, ClosedPosition, Position, close_position, open_position

log = logging.getLogger(__name__)
LIVE = ExecutionMode.LIVE
LOOKUP_MARGIN = timedelta(minutes=5)  # List Orders from a little before the entry was recorded (clock skew)
CANCEL_POLLS = 10  # reads of a bracket after its cancel, before the SELL is left PENDING (retried later)
CANCEL_POLL_SECONDS = 0.2
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class BracketFill:
    """What an attached bracket sold, and which leg sold it."""

    order_id: str
    reason: ExitReason
    filled_size: Decimal
    average_price: Decimal
    fees: Decimal

    @property
    def proceeds(self) -> Decimal:
        return (self.filled_size * self.average_price).quantize(USD_QUANTUM)


@dataclass(frozen=True)
class LiveExecution:
    """A live order's outcome and what it does to the positions (written with it by ``complete_live``)."""

    outcome: OrderOutcome
    opened: Position | None = None
    closed: ClosedPosition | None = None


class LivePositionStore(Protocol):
    """What live positions need from the database (executor_svc.repository.ExecutorRepository)."""

    async def open_positions(self, mode: ExecutionMode) -> list[Position]: ...
    async def open_position_of(self, mode: ExecutionMode, symbol: str) -> Position | None: ...
    async def latest_exit(self, mode: ExecutionMode, symbol: str, since: datetime) -> ExitReason | None: ...
    async def claim_position(self, position_id: int, recommendation_id: int, now: datetime) -> int | None: ...
    async def execution(self, recommendation_id: int) -> ExecutionRecord | None: ...
    async def set_bracket(self, position_id: int, bracket_order_id: str, now: datetime) -> None: ...
    async def record_bracket_exit(
        self,
        position: Position,
        fill: BracketFill,
        close: Callable[[int], ClosedPosition],
        client_order_id: Callable[[int], str],
        reasoning: str,
        now: datetime,
    ) -> ClosedPosition | None: ...
    async def live_exit_recommendation(
        self, position: Position, reason: ExitReason, market_price: Decimal, reasoning: str, now: datetime
    ) -> Recommendation | None: ...
    async def latest_closes(self, symbols: Sequence[str], granularity: str, until: datetime) -> dict[str, Decimal]: ...


class BracketExchange(Protocol):
    async def get_bracket(self, bracket_order_id: str) -> BracketState: ...
    async def bracket_of(self, parent_order_id: str, *, product_id: str, since: datetime) -> BracketState | None: ...
    async def cancel_orders(self, order_ids: Iterable[str]) -> dict[str, CancelResult]: ...


class OrderPlacer(Protocol):
    """The live broker (executor_svc.live_broker.LiveBroker)."""

    async def execute(self, order: OrderRequest, ledger: Any) -> OrderOutcome: ...
    async def lookup(self, order: OrderRequest, since: datetime) -> OrderOutcome: ...


def bracket_leg(state: BracketState, position: Position) -> ExitReason:
    """Which exit a filled bracket was: Coinbase's trigger status or the prices it reports, else the position's own
    levels (the side of their midpoint where the fill lies)."""
    leg = state.leg
    if leg is not None:
        return ExitReason(leg)
    if position.take_profit is not None and position.stop_loss is not None:
        middle = position.take_profit + position.stop_loss
        return ExitReason.TAKE_PROFIT if state.average_price * 2 >= middle else ExitReason.STOP_LOSS
    return ExitReason.TAKE_PROFIT if state.average_price >= position.entry_price else ExitReason.STOP_LOSS


def sold_out(state: BracketState, position: Position) -> bool:
    """The bracket sold the whole position (FILLED, or ended having sold all of it)."""
    return state.status == "FILLED" or (not state.is_live and state.filled_size >= position.quantity)


class LivePositions:
    def __init__(
        self,
        store: LivePositionStore,
        broker: OrderPlacer,
        exchange: BracketExchange,
        clock: Clock,
        rules: ExitRules,
        client_order_id: Callable[[int], str],
        *,
        granularity: str = "ONE_HOUR",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        poll_interval: float = CANCEL_POLL_SECONDS,
        max_polls: int = CANCEL_POLLS,
    ) -> None:
        self.store = store
        self.broker = broker
        self.exchange = exchange
        self.clock = clock
        self.rules = rules
        self.client_order_id = client_order_id
        self.granularity = granularity
        self._sleep = sleep
        self._poll_interval = poll_interval
        self._max_polls = max_polls

    # --- one live recommendation -------------------------------------------------------------------------------

    async def execute(
        self, rec: Recommendation, order: OrderRequest, *, since: datetime | None, past_window: bool
    ) -> LiveExecution:
        """Place (or find) the order of ``rec``. ``since``: None for a first attempt (nothing can have been sent),
        else where to look for an order an earlier attempt may have placed; ``past_window``: only look, never place."""
        if order.side == OrderSide.BUY:
            return await self._buy(rec, order, since, past_window)
        return await self._sell(rec, order, since, past_window)

    async def _buy(
        self, rec: Recommendation, order: OrderRequest, since: datetime | None, past_window: bool
    ) -> LiveExecution:
        held = await self.store.open_position_of(LIVE, rec.symbol)
        if held is not None and since is None:
            return LiveExecution(
                OrderOutcome(
                    OrderStatus.FAILED,
                    error_code="POSITION_OPEN",
                    error_message=(
                        f"a LIVE position in {rec.symbol} is open (bought by recommendation "
                        f"{held.entry_recommendation_id}); no order placed"
                    ),
                )
            )
        if since is not None and (past_window or held is not None):
            # It may have reached the exchange; a position is open or its window is over: find it, never place it.
            outcome = await self.broker.lookup(order, since)
        else:
            outcome = await self.broker.execute(order, None)
        if outcome.status != OrderStatus.EXECUTED or not outcome.filled_size or not outcome.average_price:
            return LiveExecution(outcome)
        if held is not None:
            log.error(
                "recommendation %d bought %s %s while position %s was open: recorded, no second position opened",
                rec.id,
                outcome.filled_size,
                rec.symbol,
                held.id,
                extra={"recommendation_id": rec.id, "symbol": rec.symbol},
            )
            return LiveExecution(outcome)
        bracket_id, stop_loss, take_profit = "", order.stop_loss, order.take_profit
        if isinstance(outcome, LiveOrderOutcome):
            bracket_id = outcome.bracket_order_id
            if outcome.bracket is not None:  # the prices Coinbase holds (rounded to the quote_increment)
                stop_loss, take_profit = outcome.bracket.stop_loss, outcome.bracket.take_profit
        position = open_position(
            mode=LIVE,
            symbol=rec.symbol,
            filled_size=outcome.filled_size,
            average_price=outcome.average_price,
            quote_total=(outcome.filled_size * outcome.average_price).quantize(USD_QUANTUM),
            fee=outcome.fees or Decimal(0),
            stop_loss=stop_loss,
            take_profit=take_profit,
            opened_at=self.clock(),
            recommendation_id=rec.id,
        )
        return LiveExecution(outcome, opened=replace(position, bracket_order_id=bracket_id))

    async def _sell(
        self, rec: Recommendation, order: OrderRequest, since: datetime | None, past_window: bool
    ) -> LiveExecution:
        position = await self.store.open_position_of(LIVE, rec.symbol)
        if position is None or position.id is None:
            closed_by = await self.store.latest_exit(LIVE, rec.symbol, rec.created_at or EPOCH)
            if closed_by is not None and closed_by != ExitReason.SIGNAL:  # a protective exit came first
                return LiveExecution(
                    OrderOutcome(
                        OrderStatus.CANCELLED,
                        error_code="POSITION_CLOSED",
                        error_message=f"position closed by {closed_by}; nothing sold",
                    )
                )
            return LiveExecution(
                OrderOutcome(
                    OrderStatus.FAILED,
                    error_code="NO_POSITION",
                    error_message=f"no open LIVE position in {rec.symbol} to sell; no order placed",
                )
            )
        claimant = await self.store.claim_position(position.id, rec.id, self.clock())
        if claimant is not None:
            return LiveExecution(
                OrderOutcome(
                    OrderStatus.CANCELLED,
                    error_code="POSITION_CLOSING",
                    error_message=(
                        f"position {position.id} in {rec.symbol} is being closed by recommendation {claimant}; "
                        "no order placed"
                    ),
                )
            )
        try:
            bracket = await self._release_bracket(position)
        except ExchangeError as exc:  # retried later: nothing was sold
            return LiveExecution(
                OrderOutcome(
                    OrderStatus.PENDING,
                    error_code="BRACKET",
                    error_message=f"cancelling the bracket of position {position.id}: {exc}; nothing sold yet",
                )
            )
        if bracket is not None and bracket.is_live:
            return LiveExecution(
                OrderOutcome(
                    OrderStatus.PENDING,
                    error_code="BRACKET",
                    error_message=(
                        f"bracket {bracket.order_id} still {bracket.status} after its cancel; nothing sold yet"
                    ),
                )
            )
        if bracket is not None and sold_out(bracket, position):
            closed = await self._record_fill(position, bracket)
            reason = closed.reason if closed is not None else bracket_leg(bracket, position)
            return LiveExecution(
                OrderOutcome(
                    OrderStatus.CANCELLED,
                    error_code="BRACKET_FILLED",
                    error_message=(
                        f"position closed by {reason}: bracket {bracket.order_id} sold {bracket.filled_size} at "
                        f"{bracket.average_price}; nothing more sold"
                    ),
                )
            )
        partial = bracket.filled_size if bracket is not None else Decimal(0)
        sell = replace(order, base_size=position.quantity - partial)
        outcome: OrderOutcome | None = None
        if since is not None:  # an earlier attempt may have sold already: find that order first
            outcome = await self.broker.lookup(sell, since)
            if outcome.status == OrderStatus.CANCELLED and outcome.error_code == "NOT_FOUND" and not past_window:
                outcome = None
        if outcome is None:
            outcome = await self.broker.execute(sell, None)
        if outcome.status != OrderStatus.EXECUTED or not outcome.filled_size or outcome.average_price is None:
            if outcome.status == OrderStatus.FAILED and bracket is not None:
                log.error(
                    "position %s in %s is no longer protected: its bracket was cancelled and the SELL failed: %s",
                    position.id,
                    rec.symbol,
                    outcome.error_message,
                    extra={"recommendation_id": rec.id, "symbol": rec.symbol},
                )
            return LiveExecution(outcome)
        quote_total = (outcome.filled_size * outcome.average_price).quantize(USD_QUANTUM)
        fees, size = outcome.fees or Decimal(0), outcome.filled_size
        if bracket is not None and partial > 0:  # the bracket sold part of it before its cancel
            quote_total += (partial * bracket.average_price).quantize(USD_QUANTUM)
            fees += bracket.total_fees
            size += partial
        closed = close_position(
            position,
            reason=order.exit_reason,
            average_price=(quote_total / size).quantize(Decimal("1e-10")),
            quote_total=quote_total,
            fee=fees,
            closed_at=self.clock(),
            recommendation_id=rec.id,
        )
        return LiveExecution(outcome, closed=closed)

    async def _release_bracket(self, position: Position) -> BracketState | None:
        """Cancel the position's bracket and read it until it is no longer live (a cancel only starts there). None
        when the position has no bracket. A bracket still live after the reads is returned as it is."""
        bracket_id = position.bracket_order_id or await self._find_bracket(position)
        if not bracket_id:
            return None
        state = await self.exchange.get_bracket(bracket_id)
        if not state.is_live:
            return state
        results = await self.exchange.cancel_orders([bracket_id])
        log.info(
            "position %s: cancel of bracket %s: %s",
            position.id,
            bracket_id,
            results.get(bracket_id),
            extra={"symbol": position.symbol},
        )
        for _ in range(self._max_polls):
            state = await self.exchange.get_bracket(bracket_id)
            if not state.is_live:
                break
            await self._sleep(self._poll_interval)
        return state

    async def _find_bracket(self, position: Position) -> str:
        """The bracket of a position whose bookkeeping lacks it (a crash, an answer that did not name it): the
        entry order's attached bracket, stored on the position. "" when Coinbase shows none."""
        if position.take_profit is None or position.stop_loss is None:  # bought without levels: no bracket
            return ""
        entry = await self.store.execution(position.entry_recommendation_id)
        if entry is None or not entry.exchange_order_id or position.id is None:
            return ""
        since = (entry.created_at or position.opened_at) - LOOKUP_MARGIN
        state = await self.exchange.bracket_of(entry.exchange_order_id, product_id=position.symbol, since=since)
        if state is None:
            return ""
        await self.store.set_bracket(position.id, state.order_id, self.clock())
        log.info(
            "position %s in %s: found its bracket %s",
            position.id,
            position.symbol,
            state.order_id,
            extra={"symbol": position.symbol},
        )
        return state.order_id

    async def _record_fill(self, position: Position, state: BracketState) -> ClosedPosition | None:
        """Record the bracket's fill as the position's exit (once: None when it was recorded already)."""
        fill = BracketFill(
            order_id=state.order_id,
            reason=bracket_leg(state, position),
            filled_size=state.filled_size,
            average_price=state.average_price,
            fees=state.total_fees,
        )
        now = self.clock()

        def close(recommendation_id: int) -> ClosedPosition:
            return close_position(
                position,
                reason=fill.reason,
                average_price=fill.average_price,
                quote_total=fill.proceeds,
                fee=fill.fees,
                closed_at=now,
                recommendation_id=recommendation_id,
            )

        level = position.take_profit if fill.reason == ExitReason.TAKE_PROFIT else position.stop_loss
        reasoning = (
            f"Exit ({fill.reason}): the bracket {fill.order_id} on Coinbase sold {fill.filled_size} at "
            f"{fill.average_price} (level {level})"
        )
        closed = await self.store.record_bracket_exit(position, fill, close, self.client_order_id, reasoning, now)
        if closed is not None:
            log.info(
                "Position %s %s closed by %s at %s (P&L %s USD)",
                position.id,
                position.symbol,
                fill.reason,
                fill.average_price,
                closed.realized_pnl,
                extra={
                    "recommendation_id": closed.exit_recommendation_id,
                    "symbol": position.symbol,
                    "exit_reason": fill.reason.value,
                },
            )
        return closed

    # --- the positions loop ------------------------------------------------------------------------------------

    async def manage(self, process: Callable[[int], Awaitable[ExecutionResult]]) -> tuple[list[PositionExit], int]:
        """Follow every open LIVE position: record a filled bracket as its exit, close a position past the time
        limit (``process`` executes its exit SELL recommendation). Returns the exits and how many are still open."""
        exits: list[PositionExit] = []
        for position in await self.store.open_positions(LIVE):
            try:
                closed = await self._follow(position, process)
            except ExchangeError as exc:
                log.warning(
                    "position %s in %s: Coinbase: %s (checked again next time)",
                    position.id,
                    position.symbol,
                    exc,
                    extra={"symbol": position.symbol},
                )
                continue
            if closed is not None:
                exits.append(
                    PositionExit(
                        position,
                        closed.reason,
                        closed.exit_recommendation_id,
                        closed.exit_price,
                        position.quantity,
                        closed.realized_pnl,
                    )
                )
        return exits, len(await self.store.open_positions(LIVE))

    async def _follow(
        self, position: Position, process: Callable[[int], Awaitable[ExecutionResult]]
    ) -> ClosedPosition | None:
        bracket_id = position.bracket_order_id or await self._find_bracket(position)
        if bracket_id:
            state = await self.exchange.get_bracket(bracket_id)
            if sold_out(state, position):
                return await self._record_fill(position, state)
            if not state.is_live:
                log.warning(
                    "position %s in %s: its bracket %s is %s (sold %s): the position is not protected",
                    position.id,
                    position.symbol,
                    bracket_id,
                    state.status,
                    state.filled_size,
                    extra={"symbol": position.symbol},
                )
        now = self.clock()
        limit = self.rules.max_holding
        if limit is None or now - position.opened_at < limit:
            return None
        latest = (await self.store.latest_closes([position.symbol], self.granularity, now)).get(position.symbol)
        price = latest if latest is not None and latest > 0 else position.entry_price
        hours = limit.total_seconds() / 3600
        reasoning = f"Exit ({ExitReason.TIME_LIMIT}): open {position.held_for(now):.1f} h >= limit {hours:g} h"
        rec = await self.store.live_exit_recommendation(position, ExitReason.TIME_LIMIT, price, reasoning, now)
        if rec is None:  # closed meanwhile
            return None
        result = await process(rec.id)
        if result.status != ExecutionStatus.EXECUTED or result.average_price is None:
            return None
        size = result.filled_size or position.quantity
        proceeds = (size * result.average_price).quantize(USD_QUANTUM)
        return close_position(
            position,
            reason=ExitReason.TIME_LIMIT,
            average_price=result.average_price,
            quote_total=proceeds,
            fee=result.fees or Decimal(0),
            closed_at=now,
            recommendation_id=rec.id,
        )
