"""Read-only queries behind `cts status` and the `cts up` dashboard: one snapshot of the whole system, from any
database (SQLite or MySQL)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from common.clock import as_utc
from common.tables import (
    market_candles,
    paper_balances,
    system_control,
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
    average_price: Decimal | None
    fees: Decimal | None
    error: str | None
    at: datetime | None


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

    @property
    def profit_and_loss(self) -> Decimal | None:
        if self.equity_usd is None or not self.holdings:
            return None
        return self.equity_usd - self.starting_cash


async def _counts(conn: AsyncConnection, column: object) -> dict[str, int]:
    rows = await conn.execute(select(column, func.count()).group_by(column))  # type: ignore[call-overload]
    return {str(key): int(count) for key, count in rows}


async def _control(conn: AsyncConnection, key: str) -> str | None:
    row = await conn.execute(select(system_control.c.value).where(system_control.c.key == key))
    return row.scalar_one_or_none()


async def _latest_close(conn: AsyncConnection, symbol: str, until: datetime | None) -> Decimal | None:
    query = select(market_candles.c.close).where(market_candles.c.symbol == symbol)
    if until is not None:
        query = query.where(market_candles.c.start_time <= int(until.timestamp()))
    row = await conn.execute(query.order_by(market_candles.c.start_time.desc()).limit(1))
    value = row.scalar_one_or_none()
    return Decimal(value) if value is not None else None


async def read_snapshot(conn: AsyncConnection, *, starting_cash: Decimal, trades: int = 8) -> StatusSnapshot:
    snap = StatusSnapshot(starting_cash=starting_cash)
    snap.signals_by_type = await _counts(conn, trading_signals.c.signal_type)
    snap.recommendations_by_status = await _counts(conn, trade_recommendations.c.execution_status)
    snap.executions_by_status = await _counts(conn, trade_executions.c.status)

    halt = await _control(conn, "trading_halt")
    if halt:
        try:
            value = json.loads(halt)
            snap.trading_halted = bool(value.get("halted", False))
            snap.halt_reason = str(value.get("reason", ""))
        except (ValueError, AttributeError):
            snap.trading_halted = halt.strip().lower() in ("1", "true", "yes")
    clock = await _control(conn, "replay_clock")
    if clock:
        try:
            snap.replay_clock = as_utc(datetime.fromisoformat(clock))
        except ValueError:
            snap.replay_clock = None

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
            trade_executions.c.updated_at,
        )
        .order_by(trade_executions.c.id.desc())
        .limit(trades)
    )
    snap.latest_trades = [TradeLine(*row) for row in rows]
    fees = await conn.execute(select(func.sum(trade_executions.c.fees)).where(trade_executions.c.status == "EXECUTED"))
    snap.fees_paid = Decimal(fees.scalar_one() or 0)

    balances = (await conn.execute(select(paper_balances.c.asset, paper_balances.c.available))).all()
    equity = Decimal(0)
    for asset, quantity in sorted(balances):
        if asset == "USD":
            price: Decimal | None = Decimal(1)
        else:
            price = await _latest_close(conn, f"{asset}-USD", snap.replay_clock)
        value = (quantity * price).quantize(Decimal("0.01")) if price is not None else None
        snap.holdings.append(Holding(asset, quantity, price, value))
        equity += value or Decimal(0)
    snap.equity_usd = equity if snap.holdings else None

    for table, column in TABLE_AGE_COLUMNS.items():
        count, oldest = (await conn.execute(select(func.count(), func.min(column)).select_from(table))).one()
        snap.tables.append(TableSize(table.name, int(count), as_utc(oldest) if oldest is not None else None))
    return snap
