"""Read-only queries behind `cts status` and the `cts up` dashboard: one snapshot of the whole system, from any
database (SQLite or MySQL)."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from common.clock import as_utc, utc_now
from common.control import ControlKey, decode_halt, decode_replay_clock, read_control
from common.lifecycle import ACTIONABLE_SIGNALS, OrderStatus, PositionStatus
from common.tables import (
    market_candles,
    orchestrator_dispatches,
    paper_balances,
    positions,
    trade_executions,
    trade_recommendations,
    trade_recommendations_archive,
    trading_signals,
    trading_signals_archive,
)

TABLE_AGE_COLUMNS = {
    trading_signals: trading_signals.c.created_at,
    trade_recommendations: trade_recommendations.c.created_at,
    trade_executions: trade_executions.c.created_at,
    trading_signals_archive: trading_signals_archive.c.created_at,
    trade_recommendations_archive: trade_recommendations_archive.c.created_at,
    market_candles: market_candles.c.ingested_at,
}


@dataclass(frozen=True)
class TradeLine:
    recommendation_id: int
    symbol: str
    side: str
    status: str
    mode: str
    filled_size: Decimal | None
    average_price: Decimal | None  # the fill price
    fees: Decimal | None
    error: str | None
    at: datetime | None
    signal_price: Decimal | None = None  # the price of the signal the recommendation came from
    exit_reason: str = ""  # a SELL that closed a position: signal, stop_loss, take_profit, time_limit


@dataclass(frozen=True)
class PositionLine:
    """An open position (the positions table), valued at the latest (or replayed) close, with its protective
    levels."""

    symbol: str
    quantity: Decimal
    entry_price: Decimal | None  # average cost per unit of what is held, fees included
    price: Decimal | None
    stop_loss: Decimal | None
    take_profit: Decimal | None
    opened_at: datetime | None = None

    @property
    def value_usd(self) -> Decimal | None:
        return None if self.price is None else self.quantity * self.price

    @property
    def unrealized_pnl(self) -> Decimal | None:
        if self.price is None or self.entry_price is None:
            return None
        return (self.price - self.entry_price) * self.quantity

    @property
    def unrealized_pnl_percent(self) -> Decimal | None:
        if self.price is None or not self.entry_price:
            return None
        return (self.price / self.entry_price - 1) * 100


@dataclass(frozen=True)
class SignalLine:
    symbol: str
    signal_type: str
    confidence: Decimal
    price: Decimal | None
    candle_time: datetime | None
    processed_reason: str | None


@dataclass(frozen=True)
class ReplayProgress:
    released: int
    total: int

    @property
    def finished(self) -> bool:
        return self.total > 0 and self.released >= self.total

    @property
    def fraction(self) -> float:
        return self.released / self.total if self.total else 0.0


@dataclass(frozen=True)
class Holding:
    asset: str
    quantity: Decimal
    price: Decimal | None  # USD per unit at the latest known (or replayed) candle close
    value_usd: Decimal | None


@dataclass(frozen=True)
class TableSize:
    name: str
    rows: int
    oldest: datetime | None


@dataclass
class StatusSnapshot:
    signals_by_type: dict[str, int] = field(default_factory=dict)
    recommendations_by_status: dict[str, int] = field(default_factory=dict)
    executions_by_status: dict[str, int] = field(default_factory=dict)
    latest_trades: list[TradeLine] = field(default_factory=list)
    holdings: list[Holding] = field(default_factory=list)
    starting_cash: Decimal = Decimal(0)
    equity_usd: Decimal | None = None
    fees_paid: Decimal = Decimal(0)
    tables: list[TableSize] = field(default_factory=list)
    trading_halted: bool = False
    halt_reason: str = ""
    replay_clock: datetime | None = None
    replay_progress: ReplayProgress | None = None
    positions: list[PositionLine] = field(default_factory=list)
    latest_signals: list[SignalLine] = field(default_factory=list)
    cash_usd: Decimal | None = None
    trades_in_cap_window: int = 0
    reconciliation: dict[str, Any] | None = None  # the live executor's last report (executor_svc.reconciliation)

    @property
    def profit_and_loss(self) -> Decimal | None:
        if self.equity_usd is None:
            return None
        return self.equity_usd - self.starting_cash

    @property
    def profit_and_loss_percent(self) -> Decimal | None:
        pnl = self.profit_and_loss
        if pnl is None or not self.starting_cash:
            return None
        return pnl / self.starting_cash * 100


async def _counts(conn: AsyncConnection, column: object) -> dict[str, int]:
    rows = await conn.execute(select(column, func.count()).group_by(column))  # type: ignore[call-overload]
    return {str(key): int(count) for key, count in rows}


async def _control(conn: AsyncConnection, key: ControlKey) -> str | None:
    return await read_control(conn, key)


async def _latest_close(conn: AsyncConnection, symbol: str, until: datetime | None) -> Decimal | None:
    query = select(market_candles.c.close).where(market_candles.c.symbol == symbol)
    if until is not None:
        query = query.where(market_candles.c.start_time <= int(until.timestamp()))
    row = await conn.execute(query.order_by(market_candles.c.start_time.desc()).limit(1))
    value = row.scalar_one_or_none()
    return Decimal(value) if value is not None else None


def _replay_progress(value: str | None) -> ReplayProgress | None:
    released, sep, total = (value or "").partition("/")
    if not sep or not released.isdigit() or not total.isdigit():
        return None
    return ReplayProgress(int(released), int(total))


async def _open_positions(conn: AsyncConnection) -> list[Any]:
    """The open positions (every mode), oldest first."""
    p = positions.c
    query = (
        select(p.symbol, p.quantity, p.entry_cost, p.stop_loss, p.take_profit, p.opened_at)
        .where(p.status == PositionStatus.OPEN.value)
        .order_by(p.opened_at, p.id)
    )
    return list(await conn.execute(query))


async def read_snapshot(
    conn: AsyncConnection,
    *,
    starting_cash: Decimal,
    trades: int = 8,
    signals: int = 8,
    cap_window_seconds: float | None = None,
    now: datetime | None = None,
) -> StatusSnapshot:
    snap = StatusSnapshot(starting_cash=starting_cash)
    snap.signals_by_type = await _counts(conn, trading_signals.c.signal_type)
    snap.recommendations_by_status = await _counts(conn, trade_recommendations.c.execution_status)
    snap.executions_by_status = await _counts(conn, trade_executions.c.status)

    halt = decode_halt(await _control(conn, ControlKey.TRADING_HALT))
    snap.trading_halted, snap.halt_reason = halt.halted, halt.reason
    snap.replay_clock = decode_replay_clock(await _control(conn, ControlKey.REPLAY_CLOCK))
    snap.replay_progress = _replay_progress(await _control(conn, ControlKey.REPLAY_PROGRESS))
    report = await _control(conn, ControlKey.RECONCILIATION)
    if report:
        with contextlib.suppress(ValueError):
            snap.reconciliation = json.loads(report)
    if cap_window_seconds is not None:
        since = (now or utc_now()) - timedelta(seconds=cap_window_seconds)
        dispatched = await conn.execute(select(func.count()).where(orchestrator_dispatches.c.dispatched_at >= since))
        snap.trades_in_cap_window = int(dispatched.scalar_one())

    rows = await conn.execute(
        select(
            trade_executions.c.recommendation_id,
            trade_executions.c.symbol,
            trade_executions.c.side,
            trade_executions.c.status,
            trade_executions.c.mode,
            trade_executions.c.filled_size,
            trade_executions.c.average_price,
            trade_executions.c.fees,
            trade_executions.c.error_message,
            func.coalesce(trade_executions.c.completed_at, trade_executions.c.updated_at),
            trading_signals.c.price,
            trade_recommendations.c.exit_reason,
        )
        .select_from(
            trade_executions.outerjoin(
                trade_recommendations, trade_recommendations.c.id == trade_executions.c.recommendation_id
            ).outerjoin(trading_signals, trading_signals.c.id == trade_recommendations.c.signal_id)
        )
        .order_by(trade_executions.c.id.desc())
        .limit(trades)
    )
    snap.latest_trades = [
        TradeLine(
            rec, symbol, side, status, mode, size, price, fees, error, as_utc(at) if at else None, signal_price, exit_
        )
        for rec, symbol, side, status, mode, size, price, fees, error, at, signal_price, exit_ in rows
    ]
    signal_rows = await conn.execute(
        select(
            trading_signals.c.symbol,
            trading_signals.c.signal_type,
            trading_signals.c.confidence,
            trading_signals.c.price,
            trading_signals.c.candle_time,
            trading_signals.c.processed_reason,
        )
        .where(trading_signals.c.signal_type.in_(ACTIONABLE_SIGNALS))
        .order_by(trading_signals.c.id.desc())
        .limit(signals)
    )
    snap.latest_signals = [
        SignalLine(symbol, kind, confidence, price, as_utc(candle) if candle is not None else None, reason)
        for symbol, kind, confidence, price, candle, reason in signal_rows
    ]
    fees = await conn.execute(
        select(func.sum(trade_executions.c.fees)).where(trade_executions.c.status == OrderStatus.EXECUTED)
    )
    snap.fees_paid = Decimal(fees.scalar_one() or 0)

    for symbol, held, cost, stop, target, opened in await _open_positions(conn):
        snap.positions.append(
            PositionLine(
                symbol,
                held,
                cost / held if held else None,
                await _latest_close(conn, symbol, snap.replay_clock),
                stop,
                target,
                as_utc(opened),
            )
        )
    balances = (await conn.execute(select(paper_balances.c.asset, paper_balances.c.available))).all()
    equity = Decimal(0)
    for asset, quantity in sorted(balances):
        if asset == "USD":
            price: Decimal | None = Decimal(1)
            snap.cash_usd = quantity
        else:
            price = await _latest_close(conn, f"{asset}-USD", snap.replay_clock)
        value = (quantity * price).quantize(Decimal("0.01")) if price is not None else None
        snap.holdings.append(Holding(asset, quantity, price, value))
        equity += value or Decimal(0)
    if not balances:  # the paper portfolio starts as cash; its rows appear with the first paper order
        equity = snap.cash_usd = starting_cash
    snap.equity_usd = equity

    for table, column in TABLE_AGE_COLUMNS.items():
        count, oldest = (await conn.execute(select(func.count(), func.min(column)).select_from(table))).one()
        snap.tables.append(TableSize(table.name, int(count), as_utc(oldest) if oldest is not None else None))
    return snap
