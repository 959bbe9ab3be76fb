"""All SQL of the executor: trade_executions, the recommendation's status, the paper portfolio, candle prices."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.clock import as_utc
from common.sql import insert_ignore
from common.tables import market_candles, paper_balances, system_control, trade_executions, trade_recommendations
from executor_svc.domain import ExecutionRecord, OrderOutcome, Recommendation

_e = trade_executions.c
_r = trade_recommendations.c


def _record(row: Any) -> ExecutionRecord:
    return ExecutionRecord(
        recommendation_id=row.recommendation_id,
        client_order_id=row.client_order_id,
        exchange_order_id=row.exchange_order_id or "",
        mode=row.mode,
        status=row.status,
        symbol=row.symbol,
        side=row.side,
        filled_size=row.filled_size,
        average_price=row.average_price,
        fees=row.fees,
        error_code=row.error_code or "",
        error_message=row.error_message or "",
        completed_at=row.completed_at,
    )


class ExecutorRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def recommendation(self, recommendation_id: int) -> Recommendation | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(trade_recommendations).where(_r.id == recommendation_id))).first()
        if row is None:
            return None
        return Recommendation(
            id=row.id,
            symbol=row.symbol,
            signal_type=row.signal_type,
            amount_usd=row.amount_usd,
            amount_crypto=row.amount_crypto,
            entry_price=row.entry_price,
            status=row.execution_status or "PENDING",
            status_reason=row.status_reason or "",
        )

    async def execution(self, recommendation_id: int) -> ExecutionRecord | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(trade_executions).where(_e.recommendation_id == recommendation_id))
            ).first()
        return _record(row) if row is not None else None

    async def unfinished(self) -> list[int]:
        """Executions left PENDING/SUBMITTED (for example by a crash)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(_e.recommendation_id).where(_e.status.in_(("PENDING", "SUBMITTED"))))
            return list(rows.scalars())

    async def create_execution(self, rec: Recommendation, client_order_id: str, mode: str, now: datetime) -> None:
        """Commit the execution row before anything is sent (a concurrent or earlier row wins: no duplicate)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                insert_ignore(conn, trade_executions),
                {
                    "recommendation_id": rec.id,
                    "client_order_id": client_order_id,
                    "mode": mode,
                    "status": "PENDING",
                    "symbol": rec.symbol,
                    "side": rec.side,
                    "quote_size": rec.amount_usd if rec.side == "BUY" else None,
                    "base_size": rec.amount_crypto if rec.side == "SELL" else None,
                    "is_mock": mode == "PAPER",
                    "created_at": now,
                    "updated_at": now,
                },
            )

    @asynccontextmanager
    async def unit(self, recommendation_id: int) -> AsyncIterator[ExecutionUnit]:
        """One transaction holding the execution row (FOR UPDATE; SQLite: the writer lock) until it commits."""
        async with self.engine.begin() as conn:
            yield ExecutionUnit(conn, recommendation_id)


class ExecutionUnit:
    """Operations inside the transaction that sends and completes one execution (also the paper ledger)."""

    def __init__(self, conn: AsyncConnection, recommendation_id: int) -> None:
        self.conn = conn
        self.recommendation_id = recommendation_id

    async def lock(self) -> ExecutionRecord | None:
        query = select(trade_executions).where(_e.recommendation_id == self.recommendation_id)
        if self.conn.dialect.name != "sqlite":
            query = query.with_for_update()
        row = (await self.conn.execute(query)).first()
        return _record(row) if row is not None else None

    async def note_attempt(self, message: str, now: datetime) -> None:
        await self.conn.execute(
            update(trade_executions)
            .where(_e.recommendation_id == self.recommendation_id)
            .values(attempts=_e.attempts + 1, error_message=message[:2000], updated_at=now)
        )

    async def complete(self, outcome: OrderOutcome, now: datetime) -> None:
        await self.conn.execute(
            update(trade_executions)
            .where(_e.recommendation_id == self.recommendation_id)
            .values(
                status=outcome.status,
                exchange_order_id=outcome.exchange_order_id or None,
                filled_size=outcome.filled_size,
                average_price=outcome.average_price,
                fees=outcome.fees,
                error_code=outcome.error_code or None,
                error_message=outcome.error_message[:2000] or None,
                attempts=_e.attempts + 1,
                updated_at=now,
                completed_at=now,
            )
        )
        await self.conn.execute(
            update(trade_recommendations)
            .where(_r.id == self.recommendation_id)
            .values(
                execution_status=outcome.status,
                executed_at=now if outcome.status == "EXECUTED" else None,
                status_reason=(outcome.error_message or None),
                pending_key=None,
                claimed_by=None,
                claimed_until=None,
                updated_at=now,
            )
        )

    # --- the paper ledger ---
    async def market_price(self, symbol: str, granularity: str, replay: bool) -> Decimal | None:
        query = select(market_candles.c.close).where(
            market_candles.c.symbol == symbol, market_candles.c.granularity == granularity
        )
        if replay:
            clock = (
                await self.conn.execute(select(system_control.c.value).where(system_control.c.key == "replay_clock"))
            ).scalar_one_or_none()
            if clock:
                until = int(as_utc(datetime.fromisoformat(clock)).timestamp()) - 3600
                query = query.where(market_candles.c.start_time <= until)
        row = await self.conn.execute(query.order_by(market_candles.c.start_time.desc()).limit(1))
        value = row.scalar_one_or_none()
        return Decimal(value) if value is not None else None

    async def balance(self, asset: str, starting_cash: Decimal, now: datetime) -> Decimal:
        if asset == "USD":
            await self.conn.execute(
                insert_ignore(self.conn, paper_balances),
                {"asset": "USD", "available": starting_cash, "updated_at": now},
            )
        query = select(paper_balances.c.available).where(paper_balances.c.asset == asset)
        if self.conn.dialect.name != "sqlite":
            query = query.with_for_update()
        value = (await self.conn.execute(query)).scalar_one_or_none()
        return Decimal(value) if value is not None else Decimal(0)

    async def set_balance(self, asset: str, available: Decimal, now: datetime) -> None:
        result = await self.conn.execute(
            update(paper_balances).where(paper_balances.c.asset == asset).values(available=available, updated_at=now)
        )
        if result.rowcount == 0:
            await self.conn.execute(insert(paper_balances), {"asset": asset, "available": available, "updated_at": now})


def dumps(value: Any) -> str:
    return json.dumps(value, default=str)
