"""Getting candles into market_candles: candle CSVs (`cts ingest --source csv`) or Coinbase
(`--source coinbase`, and the production generator before each cycle). Idempotent: re-ingesting the same range
changes nothing. Real gaps stay gaps: nothing is interpolated or forward-filled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.ext.asyncio import AsyncEngine

from common.candles import FILE_SUFFIX, candle_file_pattern, candle_seconds
from generator_svc.candle_repository import insert_candles

Progress = Callable[[str, int, int], None]  # (symbol, rows done, rows total)


def read_csv(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    missing = {"timestamp", "open", "high", "low", "close", "volume"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {', '.join(sorted(missing))}")
    return frame.sort_values("timestamp").drop_duplicates("timestamp")


async def ingest_csv(
    engine: AsyncEngine,
    directory: Path,
    *,
    symbols: list[str] | None = None,
    granularity: str = "ONE_HOUR",
    progress: Progress | None = None,
) -> dict[str, int]:
    """Load the candle files of ``granularity`` in ``directory`` (<SYMBOL>_1h.csv.gz as ONE_HOUR,
    <SYMBOL>_5m.csv.gz as FIVE_MINUTE); returns new rows per symbol."""
    if granularity not in FILE_SUFFIX:
        raise ValueError(f"no candle files of granularity {granularity} (only {', '.join(FILE_SUFFIX)})")
    inserted: dict[str, int] = {}
    paths = await asyncio.to_thread(lambda: sorted(directory.glob(candle_file_pattern(granularity))))
    for path in paths:
        symbol = path.name.split("_", 1)[0].upper()
        if symbols and symbol not in symbols:
            continue
        frame = await asyncio.to_thread(read_csv, path)
        rows = list(frame[["timestamp", "open", "high", "low", "close", "volume"]].itertuples(index=False))
        inserted[symbol] = 0
        for start in range(0, len(rows), 5000):
            async with engine.begin() as conn:
                inserted[symbol] += await insert_candles(conn, symbol, granularity, rows[start : start + 5000], "csv")
            if progress is not None:
                progress(symbol, min(start + 5000, len(rows)), len(rows))
    return inserted


async def ingest_coinbase(
    engine: AsyncEngine,
    client: Any,
    symbols: list[str],
    start: int,
    end: int,
    *,
    granularity: str = "ONE_HOUR",
    progress: Progress | None = None,
) -> dict[str, int]:
    """Fetch [start, end) candles of ``symbols`` from Coinbase; returns new rows per symbol."""
    inserted: dict[str, int] = {}
    for i, symbol in enumerate(symbols):
        candles = await client.candles(symbol, start, end, granularity)
        rows = [(c.start, c.open, c.high, c.low, c.close, c.volume) for c in candles]
        async with engine.begin() as conn:
            inserted[symbol] = await insert_candles(conn, symbol, granularity, rows, "coinbase")
        if progress is not None:
            progress(symbol, i + 1, len(symbols))
    return inserted


async def ingest_coinbase_recent(
    engine: AsyncEngine, settings: Any, *, symbols: list[str] | None, days: int, progress: Progress | None = None
) -> dict[str, int]:
    """The last ``days`` of candles for ``symbols`` (default: the top USD products by 24 h volume)."""
    import time

    from generator_svc.market_data import CoinbaseMarketClient
    from generator_svc.universe import UniverseRules, top_tradable

    client = CoinbaseMarketClient(settings.coinbase_api_base_url)
    try:
        if not symbols:
            products = await client.list_products()
            rules = UniverseRules(
                settings.universe_size, 0, frozenset(settings.symbol_allowlist), frozenset(settings.symbol_denylist)
            )
            symbols = top_tradable(products, rules)
        step = candle_seconds(settings.candle_granularity)
        end = int(time.time()) // step * step  # the candle starting at `end` is still open
        return await ingest_coinbase(
            engine, client, symbols, end - days * 86400, end, granularity=settings.candle_granularity, progress=progress
        )
    finally:
        await client.close()
