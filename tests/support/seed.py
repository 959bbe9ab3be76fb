"""Seeding helpers shared by the service tests: real candles (../shared/data/candles) and recommendations
written with SQLAlchemy."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from common.clock import utc_now
from common.tables import market_candles, trade_recommendations
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
    async with engine.begin() as conn:
        await conn.execute(
            insert(market_candles).values(
                symbol=symbol,
                granularity="ONE_HOUR",
                start_time=start_time,
                open=Decimal(close),
                high=Decimal(close),
                low=Decimal(close),
                close=Decimal(close),
                volume=Decimal(1),
                source="csv",
            )
        )


async def seed_recommendation(engine: AsyncEngine, **overrides: Any) -> int:
    now = utc_now() - timedelta(seconds=10)
    row: dict[str, Any] = {
        "signal_id": None,
        "symbol": "BTC-USD",
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
