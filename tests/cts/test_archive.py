from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, insert, select

from common.clock import utc_now
from common.database import create_engine
from common.errors import InvalidArgumentError
from common.tables import (
    trade_recommendations,
    trade_recommendations_archive,
    trading_signals,
    trading_signals_archive,
)
from cts.archive import archive, parse_age


async def _seed(url: str) -> None:
    now = utc_now()
    engine = create_engine(url)
    async with engine.begin() as conn:
        for i in range(7):
            old = i < 5
            created = now - timedelta(days=40 if old else 1)
            result = await conn.execute(
                insert(trading_signals).values(
                    symbol=f"S{i}-USD",
                    price=Decimal("1.5"),
                    signal_type="BUY",
                    confidence=Decimal("0.7"),
                    processed=i != 4,  # an old but unprocessed signal must stay
                    created_at=created,
                    timestamp=created,
                )
            )
            signal_id = result.inserted_primary_key[0]  # type: ignore[index]
            await conn.execute(
                insert(trade_recommendations).values(
                    signal_id=signal_id,
                    symbol=f"S{i}-USD",
                    signal_type="BUY",
                    amount_usd=Decimal(100),
                    confidence=Decimal("0.7"),
                    execution_status="PENDING" if i == 3 else "EXECUTED",  # an old PENDING one must stay
                    created_at=created,
                )
            )
    await engine.dispose()


async def _count(url: str, table: object) -> int:
    engine = create_engine(url)
    async with engine.connect() as conn:
        value = (await conn.execute(select(func.count()).select_from(table))).scalar_one()  # type: ignore[arg-type]
    await engine.dispose()
    return int(value)


def test_parse_age() -> None:
    assert parse_age("30d") == timedelta(days=30)
    assert parse_age("12h") == timedelta(hours=12)
    assert parse_age("2w") == timedelta(weeks=2)
    for bad in ("", "30", "0d", "-1d", "3y", "30 days"):
        with pytest.raises(InvalidArgumentError):
            parse_age(bad)


async def test_dry_run_changes_nothing(database_url: str) -> None:
    await _seed(database_url)
    engine = create_engine(database_url)
    try:
        reports = await archive(engine, utc_now() - timedelta(days=30), dry_run=True)
    finally:
        await engine.dispose()
    assert [(r.table, r.eligible_before, r.moved) for r in reports] == [
        ("trading_signals", 4, 0),
        ("trade_recommendations", 4, 0),
    ]
    assert await _count(database_url, trading_signals) == 7
    assert await _count(database_url, trading_signals_archive) == 0


async def test_archive_moves_only_eligible_rows_in_batches_and_resumes(database_url: str) -> None:
    await _seed(database_url)
    engine = create_engine(database_url)
    cutoff = utc_now() - timedelta(days=30)
    try:
        # Interrupted after one batch of 3 ...
        first = await archive(engine, cutoff, batch=3, max_batches=1)
        assert [r.moved for r in first] == [3, 3]
        assert all(r.consistent for r in first)
        # ... and resumed: the rest moves, nothing twice.
        second = await archive(engine, cutoff, batch=3)
        assert [r.moved for r in second] == [1, 1]
        assert all(r.consistent for r in second)
        async with engine.connect() as conn:
            live_signals = {
                (r.symbol, r.processed)
                for r in await conn.execute(select(trading_signals.c.symbol, trading_signals.c.processed))
            }
            archived = list(await conn.execute(select(trading_signals_archive)))
            live_recs = {
                (r.symbol, r.execution_status)
                for r in await conn.execute(
                    select(trade_recommendations.c.symbol, trade_recommendations.c.execution_status)
                )
            }
            archived_recs = (
                await conn.execute(select(func.count()).select_from(trade_recommendations_archive))
            ).scalar_one()
    finally:
        await engine.dispose()
    assert live_signals == {("S4-USD", False), ("S5-USD", True), ("S6-USD", True)}
    assert len(archived) == 4
    assert {r.symbol for r in archived} == {"S0-USD", "S1-USD", "S2-USD", "S3-USD"}
    assert all(r.price == Decimal("1.5") and r.confidence == Decimal("0.7") for r in archived)
    assert live_recs == {("S3-USD", "PENDING"), ("S5-USD", "EXECUTED"), ("S6-USD", "EXECUTED")}
    assert archived_recs == 4


async def test_bad_batch_is_rejected(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        with pytest.raises(InvalidArgumentError):
            await archive(engine, utc_now(), batch=0)
    finally:
        await engine.dispose()
