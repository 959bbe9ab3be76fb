"""Reading recommendations, executions and positions back in tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from common.tables import positions, trade_executions, trade_recommendations, trading_signals


async def rec_status(engine: AsyncEngine, rec_id: int) -> str:
    """trade_recommendations.execution_status of ``rec_id``."""
    async with engine.connect() as conn:
        query = select(trade_recommendations.c.execution_status).where(trade_recommendations.c.id == rec_id)
        return str((await conn.execute(query)).scalar_one())


async def execution_row(engine: AsyncEngine, rec_id: int) -> Any:
    """The trade_executions row of ``rec_id``, or None before the executor wrote one."""
    async with engine.connect() as conn:
        query = select(trade_executions).where(trade_executions.c.recommendation_id == rec_id)
        return (await conn.execute(query)).first()


async def states(engine: AsyncEngine, rec_id: int) -> tuple[str, str | None, Any]:
    """(the recommendation's status, its execution's status or None, the execution row or None)."""
    row = await execution_row(engine, rec_id)
    return await rec_status(engine, rec_id), (None if row is None else str(row.status)), row


async def position_rows(engine: AsyncEngine, symbol: str | None = None) -> list[Any]:
    """The positions rows (of ``symbol``, or all), oldest first."""
    query = select(positions).order_by(positions.c.id)
    if symbol is not None:
        query = query.where(positions.c.symbol == symbol)
    async with engine.connect() as conn:
        return list(await conn.execute(query))


async def wait_for_signals(engine: AsyncEngine, count: int, within: float) -> list[Any]:
    """The trading_signals rows once there are at least ``count`` (or what there is after ``within`` seconds)."""
    deadline = time.monotonic() + within
    rows: list[Any] = []
    while time.monotonic() < deadline:
        async with engine.connect() as conn:
            rows = list((await conn.execute(select(trading_signals))).all())
        if len(rows) >= count:
            break
        await asyncio.sleep(0.2)
    return rows
