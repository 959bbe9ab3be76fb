"""Seeding helpers shared by the service tests: real candles (../shared/data/candles) and recommendations
written with SQLAlchemy."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from common.clock import utc_now
from common.lifecycle import ExecutionMode, PositionStatus, open_position_key
from common.tables import market_candles, positions, trade_recommendations
from cts.candle_data import SHARED_CANDLES_DIR
from generator_svc.candle_repository import insert_candles

CANDLES = SHARED_CANDLES_DIR  # ../shared/data/candles: CI has it beside the clone


def bundled(symbol: str) -> pd.DataFrame:
    return pd.read_csv(CANDLES / f"{symbol}_1h.csv.gz").sort_values("timestamp").reset_index(drop=True)


async def seed_bundled(engine: AsyncEngine, symbol: str, rows: int, end_index: int | None = None) -> pd.DataFrame:
    """Insert ``rows`` consecutive real candles of ``symbol`` ending at ``end_index``; returns them."""
    frame = bundled(symbol)
    end = len(frame) if end_index is None else end_index
    part = frame.iloc[max(0, end - rows) : end]
    async with engine.begin() as conn:
        await insert_candles(conn, symbol, "ONE_HOUR", list(part.itertuples(index=False)), "csv")
    return part.reset_index(drop=True)


async def seed_price(engine: AsyncEngine, symbol: str, close: str, start_time: int = 3600 * 1000) -> None:
    await seed_candle(engine, symbol, start_time, close, close, close, close)


async def seed_candle(
    engine: AsyncEngine, symbol: str, start_time: int, open_: str, high: str, low: str, close: str
) -> None:
    """One ONE_HOUR candle of ``symbol`` starting at ``start_time`` (Unix seconds)."""
    async with engine.begin() as conn:
        await conn.execute(
            insert(market_candles).values(
                symbol=symbol,
                granularity="ONE_HOUR",
                start_time=start_time,
                open=Decimal(open_),
                high=Decimal(high),
                low=Decimal(low),
                close=Decimal(close),
                volume=Decimal(1),
                source="csv",
            )
        )


_symbols = itertools.count(1)


async def seed_recommendation(engine: AsyncEngine, **overrides: Any) -> int:
    """A PENDING BUY of $100 (override any column). Without a ``symbol``, on a symbol of its own with a price of 9000
    (a paper BUY opens a position: a second BUY of the same symbol would be refused)."""
    now = utc_now() - timedelta(seconds=10)
    if "symbol" not in overrides:
        overrides["symbol"] = f"R{next(_symbols):05d}-USD"
        await seed_price(engine, overrides["symbol"], "9000")
    row: dict[str, Any] = {
        "signal_id": None,
        "signal_type": "BUY",
        "amount_usd": Decimal("100"),
        "confidence": Decimal("0.7000"),
        "entry_price": Decimal("9000"),
        "amount_crypto": Decimal("0.01111111"),
        "execution_status": "PENDING",
        "created_at": now,
        "updated_at": now,
    }
    row.update(overrides)
    async with engine.begin() as conn:
        result = await conn.execute(insert(trade_recommendations).values(**row))
        return int(result.inserted_primary_key[0])  # type: ignore[index]


async def seed_buys(engine: AsyncEngine, count: int, price: str = "9000", **overrides: Any) -> list[int]:
    """``count`` PENDING BUY recommendations, each for a symbol of its own with a price (a paper BUY opens a
    position, and a second BUY of a symbol with an open position is refused)."""
    ids = []
    for _ in range(count):
        symbol = f"B{next(_symbols):05d}-USD"
        await seed_price(engine, symbol, price)
        ids.append(await seed_recommendation(engine, symbol=symbol, **overrides))
    return ids


_entry_recommendations = itertools.count(700_000_001)


async def seed_position(
    engine: AsyncEngine,
    symbol: str,
    quantity: str = "0.5",
    *,
    entry_price: str = "100",
    mode: ExecutionMode = ExecutionMode.PAPER,
    stop_loss: str | None = None,
    take_profit: str | None = None,
    opened_at: datetime | None = None,
    entry_recommendation_id: int | None = None,
) -> int:
    """An OPEN position row of ``quantity`` units bought at ``entry_price`` (entry_cost = their value, no fee),
    written directly; returns its id. Without ``entry_recommendation_id``, one no recommendation has."""
    opened = opened_at or utc_now() - timedelta(hours=1)
    quantity_d, entry_d = Decimal(quantity), Decimal(entry_price)
    row: dict[str, Any] = {
        "mode": mode.value,
        "symbol": symbol,
        "status": PositionStatus.OPEN.value,
        "open_key": open_position_key(mode, symbol),
        "quantity": quantity_d,
        "entry_price": entry_d,
        "entry_cost": (quantity_d * entry_d).quantize(Decimal("0.00000001")),
        "stop_loss": None if stop_loss is None else Decimal(stop_loss),
        "take_profit": None if take_profit is None else Decimal(take_profit),
        "opened_at": opened,
        "entry_recommendation_id": entry_recommendation_id or next(_entry_recommendations),
        "fees": Decimal(0),
        "updated_at": opened,
    }
    async with engine.begin() as conn:
        result = await conn.execute(insert(positions).values(**row))
        return int(result.inserted_primary_key[0])  # type: ignore[index]
