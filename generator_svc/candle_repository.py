"""All SQL on market_candles (ingest, the generator's candle reads, backtest and training reads)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Float, and_, bindparam, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncConnection

from common.sql import insert_ignore
from common.tables import market_candles

COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
_c = market_candles.c


async def insert_candles(
    conn: AsyncConnection, symbol: str, granularity: str, rows: Iterable[Sequence[Any]], source: str
) -> int:
    """Insert (start_time, open, high, low, close, volume) rows; existing candles (same symbol, granularity,
    start) are left as they are. Returns how many were new."""
    values = [
        {
            "symbol": symbol,
            "granularity": granularity,
            "start_time": int(r[0]),
            "open": Decimal(str(r[1])),
            "high": Decimal(str(r[2])),
            "low": Decimal(str(r[3])),
            "close": Decimal(str(r[4])),
            "volume": Decimal(str(r[5])),
            "source": source,
        }
        for r in rows
    ]
    if not values:
        return 0
    count = select(func.count()).select_from(market_candles).where(_c.symbol == symbol, _c.granularity == granularity)
    before = int((await conn.execute(count)).scalar_one())
    for start in range(0, len(values), 2000):
        await conn.execute(insert_ignore(conn, market_candles), values[start : start + 2000])
    return int((await conn.execute(count)).scalar_one()) - before


def _frame(rows: Iterable[Any]) -> pd.DataFrame:
    data = [(r.start_time, float(r.open), float(r.high), float(r.low), float(r.close), float(r.volume)) for r in rows]
    return pd.DataFrame(data, columns=list(COLUMNS))


async def load_candles(
    conn: AsyncConnection,
    symbols: Sequence[str],
    granularity: str,
    since_start_time: int | None,
    until_start_time: int | None,
) -> dict[str, pd.DataFrame]:
    """Candles of ``symbols`` with since <= start_time <= until (either bound optional), oldest first, as
    DataFrames with columns timestamp (Unix seconds), open, high, low, close, volume (floats)."""
    query = select(_c.symbol, _c.start_time, _c.open, _c.high, _c.low, _c.close, _c.volume).where(
        _c.symbol.in_(list(symbols)), _c.granularity == granularity
    )
    if since_start_time is not None:
        query = query.where(_c.start_time >= since_start_time)
    if until_start_time is not None:
        query = query.where(_c.start_time <= until_start_time)
    rows = (await conn.execute(query.order_by(_c.symbol, _c.start_time))).all()
    grouped: dict[str, list[Any]] = {s: [] for s in symbols}
    for row in rows:
        grouped[row.symbol].append(row)
    return {symbol: _frame(found) for symbol, found in grouped.items()}


def _arrays_query(since: bool) -> Any:
    """The generator's candle read, built once per variant (SQLAlchemy then only executes it): prices as floats
    straight from the driver (the arrays are floats), not through Money's Decimal."""
    prices = [
        type_coerce(column, Float()).label(column.name) for column in (_c.open, _c.high, _c.low, _c.close, _c.volume)
    ]
    query = select(_c.symbol, _c.start_time, *prices).where(
        _c.symbol.in_(bindparam("symbols", expanding=True)),
        _c.granularity == bindparam("granularity"),
        _c.start_time <= bindparam("until"),
    )
    if since:
        query = query.where(_c.start_time >= bindparam("since"))
    return query.order_by(_c.symbol, _c.start_time)


_ARRAYS = {False: _arrays_query(False), True: _arrays_query(True)}


async def load_candle_arrays(
    conn: AsyncConnection,
    symbols: Sequence[str],
    granularity: str,
    since_start_time: int | None,
    until_start_time: int,
) -> dict[str, np.ndarray]:
    """The generator's read: like ``load_candles`` but each symbol's candles as one (n, 6) float array in COLUMNS
    order, oldest first (no DataFrame per symbol)."""
    params: dict[str, Any] = {"symbols": list(symbols), "granularity": granularity, "until": until_start_time}
    if since_start_time is not None:
        params["since"] = since_start_time
    rows = await conn.execute(_ARRAYS[since_start_time is not None], params)
    grouped: dict[str, list[tuple[float, ...]]] = {s: [] for s in symbols}
    for symbol, *values in rows:
        grouped[symbol].append(tuple(values))
    return {
        symbol: np.array(found, dtype=float) if found else np.empty((0, len(COLUMNS)))
        for symbol, found in grouped.items()
    }


async def all_candles(conn: AsyncConnection, granularity: str) -> dict[str, pd.DataFrame]:
    symbols = list((await conn.execute(select(_c.symbol).where(_c.granularity == granularity).distinct())).scalars())
    return await load_candles(conn, sorted(symbols), granularity, None, None)


async def latest_start_times(conn: AsyncConnection, granularity: str, symbols: Sequence[str]) -> dict[str, int]:
    """Start time of each symbol's newest stored candle (symbols without candles are absent)."""
    query = (
        select(_c.symbol, func.max(_c.start_time))
        .where(_c.symbol.in_(list(symbols)), _c.granularity == granularity)
        .group_by(_c.symbol)
    )
    return {symbol: int(latest) for symbol, latest in (await conn.execute(query)).all()}


async def known_symbols(conn: AsyncConnection, granularity: str, symbols: Sequence[str]) -> set[str]:
    """Which of ``symbols`` have at least one candle."""
    query = select(_c.symbol).where(_c.symbol.in_(list(symbols)), _c.granularity == granularity).distinct()
    return set((await conn.execute(query)).scalars())


async def history_counts(
    conn: AsyncConnection, granularity: str, until_start_time: int, since_start_time: int | None = None
) -> dict[str, int]:
    """Candles per symbol that started at or before ``until_start_time`` (and after ``since_start_time``)."""
    conditions = [_c.granularity == granularity, _c.start_time <= until_start_time]
    if since_start_time is not None:
        conditions.append(_c.start_time > since_start_time)
    query = select(_c.symbol, func.count()).where(*conditions).group_by(_c.symbol)
    return {symbol: int(count) for symbol, count in await conn.execute(query)}


async def usd_volume_24h(conn: AsyncConnection, granularity: str, until_start_time: int) -> dict[str, Decimal]:
    """Sum of close x volume over the 24 hours of candles up to ``until_start_time``, per symbol."""
    query = (
        select(_c.symbol, func.sum(_c.close * _c.volume))
        .where(
            and_(
                _c.granularity == granularity,
                _c.start_time <= until_start_time,
                _c.start_time > until_start_time - 24 * 3600,
            )
        )
        .group_by(_c.symbol)
    )
    return {symbol: Decimal(str(total or 0)) for symbol, total in await conn.execute(query)}


async def time_range(conn: AsyncConnection, granularity: str) -> Mapping[str, tuple[int, int, int]]:
    """Per symbol: (first start_time, last start_time, candle count)."""
    query = (
        select(_c.symbol, func.min(_c.start_time), func.max(_c.start_time), func.count())
        .where(_c.granularity == granularity)
        .group_by(_c.symbol)
    )
    return {s: (int(lo), int(hi), int(n)) for s, lo, hi, n in await conn.execute(query)}


async def nth_start_time(conn: AsyncConnection, symbol: str, granularity: str, n: int) -> int | None:
    """The start_time of the symbol's n-th candle (1-based), or None if it has fewer."""
    query = (
        select(_c.start_time)
        .where(_c.symbol == symbol, _c.granularity == granularity)
        .order_by(_c.start_time)
        .offset(n - 1)
        .limit(1)
    )
    value = (await conn.execute(query)).scalar_one_or_none()
    return int(value) if value is not None else None


async def candle_starts_between(conn: AsyncConnection, granularity: str, low: int, high: int) -> list[int]:
    """Distinct candle start times (any symbol) in [low, high], ascending: the replay's time line."""
    query = (
        select(_c.start_time)
        .where(_c.granularity == granularity, _c.start_time >= low, _c.start_time <= high)
        .distinct()
        .order_by(_c.start_time)
    )
    return [int(v) for v in (await conn.execute(query)).scalars()]
