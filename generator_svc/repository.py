"""All SQL of the generator on trading_signals and system_control (candle SQL: candle_repository.py)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from common.control import ControlKey, read_control, write_control
from common.sql import insert_ignore
from common.tables import trading_signals

_s = trading_signals.c
# Built once (SQLAlchemy then only executes it).
_EXISTING = select(trading_signals).where(
    _s.symbol.in_(bindparam("symbols", expanding=True)), _s.candle_time.in_(bindparam("times", expanding=True))
)


@dataclass(frozen=True)
class SignalRow:
    id: int
    symbol: str
    signal_type: str
    confidence: Decimal
    price: Decimal
    model: str
    model_version: str
    candle_time: datetime
    buy_probability: Decimal
    sell_probability: Decimal
    hold_probability: Decimal
    threshold: Decimal
    regime: str
    data_source: str
    is_mock: bool


def _row(r: Any) -> SignalRow:
    return SignalRow(
        id=r.id,
        symbol=r.symbol,
        signal_type=r.signal_type,
        confidence=r.confidence,
        price=r.price,
        model=r.model or "",
        model_version=r.model_version or "",
        candle_time=r.candle_time,
        buy_probability=r.buy_probability,
        sell_probability=r.sell_probability,
        hold_probability=r.hold_probability,
        threshold=r.threshold,
        regime=r.regime or "",
        data_source=r.data_source or "",
        is_mock=bool(r.is_mock),
    )


async def existing_signals(
    conn: AsyncConnection, keys: Sequence[tuple[str, datetime]]
) -> dict[tuple[str, datetime], tuple[SignalRow, str | None]]:
    """Signals already written for these (symbol, candle_time) pairs, with the generator call that wrote each."""
    if not keys:
        return {}
    symbols = sorted({k[0] for k in keys})
    times = sorted({k[1] for k in keys})
    wanted = set(keys)
    out = {}
    for r in await conn.execute(_EXISTING, {"symbols": symbols, "times": times}):
        row = _row(r)
        if (row.symbol, row.candle_time) in wanted:
            out[(row.symbol, row.candle_time)] = (row, r.generated_by)
    return out


async def insert_signals(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert signal rows; a row whose (symbol, candle_time) exists already (another replica, a retry) is
    skipped by the unique key instead of failing."""
    if not rows:
        return
    await conn.execute(insert_ignore(conn, trading_signals), list(rows))


class GeneratorRepository:
    """The generator's database port (used by generation.SignalGenerator through the GeneratorStore protocol)."""

    def __init__(self, engine: Any, granularity: str) -> None:
        self.engine = engine
        self.granularity = granularity
        self.instance = f"{socket.gethostname()[:60]}:{os.getpid()}"

    async def known_symbols(self, symbols: Sequence[str]) -> set[str]:
        from generator_svc.candle_repository import known_symbols

        async with self.engine.connect() as conn:
            return await known_symbols(conn, self.granularity, symbols)

    async def candidates(self, until_start_time: int) -> tuple[dict[str, int], dict[str, Decimal]]:
        """(history count, 24 h USD volume) per symbol with candles up to ``until_start_time``."""
        from generator_svc.candle_repository import history_counts, usd_volume_24h
        from generator_svc.generation import COLD_FETCH_HOURS, FIVE_MINUTE_HISTORY_HOURS

        async with self.engine.connect() as conn:
            # Only the window a cycle reads counts (counting every candle of six months of 5-minute data on each
            # cycle would be its slowest query).
            hours = COLD_FETCH_HOURS if self.granularity == "ONE_HOUR" else FIVE_MINUTE_HISTORY_HOURS
            since = until_start_time - hours * 3600
            counts = await history_counts(conn, self.granularity, until_start_time, since)
            volumes = await usd_volume_24h(conn, self.granularity, until_start_time)
        return counts, volumes

    async def candles(self, symbols: Sequence[str], since: int | None, until: int) -> dict[str, Any]:
        from generator_svc.candle_repository import load_candle_arrays

        async with self.engine.connect() as conn:
            return await load_candle_arrays(conn, symbols, self.granularity, since, until)

    async def latest_candle_starts(self, symbols: Sequence[str]) -> dict[str, int]:
        from generator_svc.candle_repository import latest_start_times

        async with self.engine.connect() as conn:
            return await latest_start_times(conn, self.granularity, symbols)

    async def store_candles(self, symbol: str, rows: Sequence[Sequence[Any]], source: str) -> int:
        """Insert (start, open, high, low, close, volume) rows; candles already stored are left as they are."""
        from generator_svc.candle_repository import insert_candles

        async with self.engine.begin() as conn:
            return await insert_candles(conn, symbol, self.granularity, rows, source)

    async def save_signals(
        self, rows: Sequence[dict[str, Any]]
    ) -> tuple[dict[tuple[str, datetime], SignalRow], set[tuple[str, datetime]]]:
        """Insert the rows not yet present; returns (every row for these keys, the keys this call created). Each
        call stamps its rows with a unique ``generated_by``, so when replicas race on a candle only the one whose
        insert won reports it as created."""
        keys = [(r["symbol"], r["candle_time"]) for r in rows]
        token = f"{self.instance}:{uuid.uuid4().hex[:12]}"
        async with self.engine.begin() as conn:
            await insert_signals(conn, [{**r, "generated_by": token} for r in rows])
            found = await existing_signals(conn, keys)
        created = {key for key, (_, writer) in found.items() if writer == token}
        return {key: row for key, (row, _) in found.items()}, created

    async def set_control(self, key: ControlKey, value: str) -> None:
        await self.set_controls({key: value})

    async def set_controls(self, values: Mapping[ControlKey, str]) -> None:
        """Write several system_control keys in one transaction."""
        async with self.engine.begin() as conn:
            for key, value in values.items():
                await write_control(conn, key, value, "generator")

    async def get_control(self, key: ControlKey) -> str | None:
        async with self.engine.connect() as conn:
            return await read_control(conn, key)

    async def replay_timeline(self, warmup: int, not_before: int | None = None) -> list[int]:
        """Candle start times to replay, up to the last candle: from the first point where some symbol has
        ``warmup`` candles of history, and not before ``not_before`` (the start of the model's out-of-sample test
        period, so the demo never shows the model trading on data it was trained on)."""
        from generator_svc.candle_repository import candle_starts_between, nth_start_time, time_range

        async with self.engine.connect() as conn:
            ranges = await time_range(conn, self.granularity)
            if not ranges:
                return []
            starts = [await nth_start_time(conn, s, self.granularity, warmup) for s in ranges]
            ready = [s for s in starts if s is not None]
            end = max(hi for _, hi, _ in ranges.values())
            begin = min(ready) if ready else end
            if not_before is not None:
                begin = max(begin, not_before)
            return await candle_starts_between(conn, self.granularity, begin, end)
