"""Benchmark data: synthetic symbols cut from the real candles of ../shared/data/candles (hourly) and
../shared/data/binance_2024h1 (5-minute), and bulk recommendations."""

from __future__ import annotations

import asyncio
import csv
import gzip
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from common.clock import utc_now
from common.lifecycle import ExecutionStatus
from common.tables import market_candles, trade_recommendations
from cts.candle_data import SHARED_CANDLES_DIR, SHARED_FIVE_MINUTE_DIR

CANDLE_DIR = SHARED_CANDLES_DIR
FIVE_MINUTE_DIR = SHARED_FIVE_MINUTE_DIR
HOUR = 3600
FIVE_MINUTES = 300


def _read(path: Path) -> list[tuple[int, str, str, str, str, str]]:
    with gzip.open(path, "rt", newline="") as fh:
        reader = csv.DictReader(fh)
        return [(int(r["timestamp"]), r["open"], r["high"], r["low"], r["close"], r["volume"]) for r in reader]


def synthetic_symbols(count: int, prefix: str = "B") -> list[str]:
    return [f"{prefix}{i:04d}-USD" for i in range(count)]


async def seed_candles(engine: AsyncEngine, symbols: list[str], candles: int) -> int:
    """Give each symbol ``candles`` consecutive hourly candles ending at the same hour (a window of a real series,
    different per symbol, re-timed to a common clock). Returns the start time of the last candle."""
    series = await asyncio.to_thread(lambda: [_read(p) for p in sorted(CANDLE_DIR.glob("*.csv.gz"))])
    last_start = (int(utc_now().timestamp()) // HOUR - 1) * HOUR
    first_start = last_start - (candles - 1) * HOUR
    async with engine.begin() as conn:
        for i, symbol in enumerate(symbols):
            source = series[i % len(series)]
            offset = (i * 97) % max(1, len(source) - candles)
            window = source[offset : offset + candles]
            rows = [
                {
                    "symbol": symbol,
                    "granularity": "ONE_HOUR",
                    "start_time": first_start + k * HOUR,
                    "open": Decimal(o),
                    "high": Decimal(h),
                    "low": Decimal(lo),
                    "close": Decimal(c),
                    "volume": Decimal(v),
                    "source": "csv",
                }
                for k, (_, o, h, lo, c, v) in enumerate(window)
            ]
            await conn.execute(insert(market_candles), rows)
    return last_start


async def seed_five_minute_candles(engine: AsyncEngine, symbols: list[str], hours: int) -> int:
    """Give each symbol ``hours`` hours of consecutive 5-minute candles ending at the latest closed one (a window of
    a real 5-minute series, different per symbol, re-timed to a common clock). Returns the end of the last candle
    (the anchor of the newest hourly bar)."""
    series = await asyncio.to_thread(lambda: [_read(p) for p in sorted(FIVE_MINUTE_DIR.glob("*_5m.csv.gz"))])
    candles = hours * HOUR // FIVE_MINUTES
    last_end = int(utc_now().timestamp()) // FIVE_MINUTES * FIVE_MINUTES
    first_start = last_end - candles * FIVE_MINUTES
    for i, symbol in enumerate(symbols):
        source = series[i % len(series)]
        offset = (i * 997) % max(1, len(source) - candles)
        rows = [
            {
                "symbol": symbol,
                "granularity": "FIVE_MINUTE",
                "start_time": first_start + k * FIVE_MINUTES,
                "open": Decimal(o),
                "high": Decimal(h),
                "low": Decimal(lo),
                "close": Decimal(c),
                "volume": Decimal(v),
                "source": "csv",
            }
            for k, (_, o, h, lo, c, v) in enumerate(source[offset : offset + candles])
        ]
        async with engine.begin() as conn:
            await conn.execute(insert(market_candles), rows)
    return last_end


async def seed_prices(engine: AsyncEngine, symbols: list[str], price: str = "9000") -> None:
    """One candle per symbol (the last closed hour) at ``price``: what paper fills are priced at."""
    start = (int(utc_now().timestamp()) // HOUR - 1) * HOUR
    value = Decimal(price)
    rows = [
        {
            "symbol": symbol,
            "granularity": "ONE_HOUR",
            "start_time": start,
            "open": value,
            "high": value,
            "low": value,
            "close": value,
            "volume": Decimal(1),
            "source": "csv",
        }
        for symbol in symbols
    ]
    async with engine.begin() as conn:
        for first in range(0, len(rows), 1000):
            await conn.execute(insert(market_candles), rows[first : first + 1000])


async def seed_recommendations(engine: AsyncEngine, symbols: list[str]) -> list[int]:
    """One PENDING BUY recommendation of $10 per symbol (distinct signal ids): a paper BUY opens a position, and a
    symbol holds one position at a time, so many recommendations need as many symbols (with a price each:
    :func:`seed_prices`)."""
    now = utc_now() - timedelta(seconds=5)
    rows = [
        {
            "signal_id": 1_000_000 + i,
            "symbol": symbol,
            "signal_type": "BUY",
            "amount_usd": Decimal("10"),
            "confidence": Decimal("0.7000"),
            "entry_price": Decimal("9000"),
            "amount_crypto": Decimal("0.00111111"),
            "execution_status": ExecutionStatus.PENDING,
            "pending_key": f"{symbol}:BUY",
            "is_mock": True,
            "created_at": now,
            "updated_at": now,
        }
        for i, symbol in enumerate(symbols)
    ]
    async with engine.begin() as conn:
        for start in range(0, len(rows), 1000):
            await conn.execute(insert(trade_recommendations), rows[start : start + 1000])
    async with engine.connect() as conn:
        ids = (await conn.execute(select(trade_recommendations.c.id).order_by(trade_recommendations.c.id))).scalars()
        return list(ids)
