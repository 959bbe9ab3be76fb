"""`cts migrate` adopts a MariaDB database created by the original deployment guide's DDL (issue 2), with rows in
it: every original row and value survives, the project's schema is complete, the back-fills hold the unique keys,
a second run changes nothing, and incompatible tables change nothing and are named."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from common.database import create_engine
from common.migrate import SchemaIncompatible, current_revision, head_revision, upgrade
from common.tables import metadata, trading_signals
from migrations.adopt import DUPLICATE_CANDLE, ORIGINAL_COLUMNS
from testkit.databases import MYSQL_SERVER_URL, create_mysql_database, drop_mysql_database
from tests.conftest import IN_CI

# The deployment guide's DDL, verbatim (issue 2).
GUIDE_DDL = [
    """CREATE TABLE trading_signals (
    id INT AUTO_INCREMENT PRIMARY KEY,
    timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    symbol VARCHAR(50) NOT NULL,
    price DECIMAL(15,8) DEFAULT 0.0,
    signal_type ENUM('BUY', 'SELL', 'HOLD') NOT NULL,
    model VARCHAR(100),
    confidence DECIMAL(6,4) NOT NULL,
    threshold DECIMAL(6,4) DEFAULT 0.8,
    regime VARCHAR(50) DEFAULT 'bull',
    model_version VARCHAR(100),
    features_used INT DEFAULT 79,
    xgboost_confidence DECIMAL(6,4),
    data_source VARCHAR(100) DEFAULT 'database',
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    is_mock TINYINT(1) DEFAULT 0,
    processed TINYINT(1) DEFAULT 0,
    prediction DECIMAL(6,4)
)""",
    """CREATE TABLE trade_recommendations (
    id INT AUTO_INCREMENT PRIMARY KEY,
    signal_id INT,
    symbol VARCHAR(50) NOT NULL,
    signal_type ENUM('BUY', 'SELL', 'HOLD', 'STRONG_BUY', 'STRONG_SELL') NOT NULL,
    amount_usd DECIMAL(15,8) NOT NULL,
    confidence DECIMAL(6,4) NOT NULL,
    reasoning TEXT,
    execution_status ENUM('PENDING', 'EXECUTED', 'FAILED', 'CANCELLED') DEFAULT 'PENDING',
    entry_price DECIMAL(15,8),
    stop_loss DECIMAL(15,8),
    take_profit DECIMAL(15,8),
    position_size_percent DECIMAL(5,2),
    amount_crypto DECIMAL(20,8),
    is_mock TINYINT(1) DEFAULT 0,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    executed_at TIMESTAMP NULL,
    INDEX idx_signal_id (signal_id),
    INDEX idx_symbol (symbol),
    INDEX idx_status (execution_status),
    INDEX idx_created_at (created_at)
)""",
]
SYMBOLS = ("BTC-USD", "ETH-USD", "LTC-USD", "XRP-USD")
START = datetime(2025, 3, 1, 0, 2, 30)  # naive UTC, as the sessions run in UTC
SIGNALS_PER_SYMBOL = 600  # every 5 minutes: 12 signals per hourly candle, 2,400 signals
RECOMMENDATIONS = 1200


@pytest.fixture
async def guide_database() -> AsyncIterator[str]:
    """An empty MariaDB database (no tables, no Alembic history), dropped afterwards."""
    try:
        url = await create_mysql_database("cts_adopt", migrated=False)
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"MariaDB is required under CI=true but is not reachable: {exc}")
        pytest.skip(f"MariaDB not reachable at {MYSQL_SERVER_URL}: {type(exc).__name__}")
    try:
        yield url
    finally:
        await drop_mysql_database(url)


def _signal_rows() -> list[dict[str, Any]]:
    rows = []
    for i in range(SIGNALS_PER_SYMBOL):
        for k, symbol in enumerate(SYMBOLS):
            at = START + timedelta(minutes=5 * i, seconds=k)
            rows.append(
                {
                    "ts": at,
                    "symbol": symbol,
                    "price": f"{1000 + i}.12345678",
                    "signal_type": ("BUY", "SELL", "HOLD")[(i + k) % 3],
                    "model": "xgboost_realistic",
                    "confidence": f"0.{6000 + (i * 7 + k) % 3999}",
                    "is_mock": (i + k) % 5 == 0,
                    "processed": i % 2,
                    "created": at,
                }
            )
    return rows


def _recommendation_rows() -> list[dict[str, Any]]:
    rows = []
    for i in range(RECOMMENDATIONS):
        symbol = SYMBOLS[i % 4]
        # Every 40th recommendation repeats the signal of the one before it (the original bridge's double insert);
        # a few have no signal at all.
        signal_id = None if i % 97 == 0 else (i if i % 40 == 0 else i + 1)
        status = ("EXECUTED", "FAILED", "CANCELLED", "PENDING")[i % 4 if i < 1100 else 3]
        at = START + timedelta(minutes=5 * i)
        rows.append(
            {
                "signal_id": signal_id,
                "symbol": symbol,
                "signal_type": ("BUY", "SELL", "STRONG_BUY", "STRONG_SELL", "HOLD")[(i // 4) % 5],
                "amount_usd": "100.00000000",
                "confidence": "0.7312",
                "reasoning": f"old row {i}",
                "status": status,
                "entry_price": "9000.5",
                "amount_crypto": "0.01111111",
                "is_mock": i % 2,
                "created": at,
                "updated": at + timedelta(seconds=30),
                "executed": at + timedelta(seconds=20) if status == "EXECUTED" else None,
            }
        )
    return rows


async def _create_guide_tables(engine: AsyncEngine, ddl: list[str]) -> None:
    async with engine.begin() as conn:
        for statement in ddl:
            await conn.execute(text(statement))
        await conn.execute(
            text(
                "INSERT INTO trading_signals (timestamp, symbol, price, signal_type, model, confidence, is_mock, "
                "processed, created_at) VALUES (:ts, :symbol, :price, :signal_type, :model, :confidence, :is_mock, "
                ":processed, :created)"
            ),
            _signal_rows(),
        )
        # Two signals without any time (NULL timestamp and created_at): nothing to derive a candle from.
        await conn.execute(
            text(
                "INSERT INTO trading_signals (timestamp, symbol, signal_type, confidence, created_at) "
                "VALUES (NULL, 'BTC-USD', 'BUY', 0.9, NULL)"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO trade_recommendations (signal_id, symbol, signal_type, amount_usd, confidence, "
                "reasoning, execution_status, entry_price, amount_crypto, is_mock, created_at, updated_at, "
                "executed_at) VALUES (:signal_id, :symbol, :signal_type, :amount_usd, :confidence, :reasoning, "
                ":status, :entry_price, :amount_crypto, :is_mock, :created, :updated, :executed)"
            ),
            _recommendation_rows(),
        )


async def _rows(engine: AsyncEngine, table: str, columns: list[str] | None = None) -> dict[Any, tuple[Any, ...]]:
    names = ", ".join(f"`{c}`" for c in columns) if columns else "*"
    async with engine.connect() as conn:
        result = await conn.execute(text(f"SELECT {names} FROM {table} ORDER BY 1"))
        return {row[0]: tuple(row) for row in result}  # keyed by the first column (id)


async def _snapshot(engine: AsyncEngine) -> dict[str, dict[Any, tuple[Any, ...]]]:
    """Every row of every table."""
    async with engine.connect() as conn:
        tables = [r[0] for r in await conn.execute(text("SHOW TABLES"))]
    return {table: await _rows(engine, table) for table in tables}


def _cts_migrate(url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EXECUTION_MODE", "MARKET_DATA_SOURCE")}
    env["DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "cts", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )


@pytest.mark.mysql
@pytest.mark.slow
async def test_adopts_the_guide_database_with_rows(guide_database: str) -> None:
    engine = create_engine(guide_database)
    try:
        await _create_guide_tables(engine, GUIDE_DDL)
        signals_before = await _rows(engine, "trading_signals", list(ORIGINAL_COLUMNS["trading_signals"]))
        recs_before = await _rows(engine, "trade_recommendations", list(ORIGINAL_COLUMNS["trade_recommendations"]))
        assert len(signals_before) + len(recs_before) > 3000

        proc = await asyncio.to_thread(_cts_migrate, guide_database)
        assert proc.returncode == 0, proc.stderr
        assert await current_revision(engine) == head_revision()

        # The schema is exactly the project's.
        def diff(sync_conn: Any) -> list[Any]:
            context = MigrationContext.configure(sync_conn, opts={"compare_type": False})
            return list(compare_metadata(context, metadata))

        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []

        # No signal lost or changed.
        assert await _rows(engine, "trading_signals", list(ORIGINAL_COLUMNS["trading_signals"])) == signals_before
        # No recommendation lost or changed: the duplicates of a signal_id moved, unchanged, to the archive.
        columns = list(ORIGINAL_COLUMNS["trade_recommendations"])
        live = await _rows(engine, "trade_recommendations", columns)
        archived = await _rows(engine, "trade_recommendations_archive", columns)
        assert not set(live) & set(archived)
        assert {**live, **archived} == recs_before
        duplicates = {i for i, row in recs_before.items() if row[1] is not None and row[1] in _earlier(recs_before, i)}
        assert len(duplicates) > 20  # about every 40th
        assert set(archived) == duplicates
        async with engine.connect() as conn:
            result = await conn.execute(text("SELECT id, status_reason FROM trade_recommendations_archive"))
            reasons: dict[int, str] = {r[0]: r[1] for r in result}
        for rec_id in duplicates:
            kept = min(i for i, row in recs_before.items() if row[1] == recs_before[rec_id][1])
            assert f"duplicate of recommendation {kept} " in reasons[rec_id]

        await _check_signal_backfill(engine, signals_before)
        await _check_pending_backfill(engine, live)

        async with engine.connect() as conn:
            installation = (
                await conn.execute(text("SELECT value FROM system_control WHERE `key` = 'installation_id'"))
            ).scalar_one()
        assert uuid.UUID(installation)

        # A second run does nothing.
        before = await _snapshot(engine)
        again = await asyncio.to_thread(_cts_migrate, guide_database)
        assert again.returncode == 0, again.stderr
        assert await _snapshot(engine) == before

        # The unique keys now hold: the generator's idempotent insert is refused for a back-filled candle.
        first = signals_before[1]
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(
                    insert(trading_signals).values(
                        symbol=first[2],
                        signal_type="BUY",
                        confidence=0.7,
                        candle_time=datetime(2025, 2, 28, 23, 0, tzinfo=UTC),
                    )
                )
    finally:
        await engine.dispose()


def _earlier(rows: dict[int, tuple[Any, ...]], rec_id: int) -> set[Any]:
    return {row[1] for i, row in rows.items() if i < rec_id}


async def _check_signal_backfill(engine: AsyncEngine, before: dict[int, tuple[Any, ...]]) -> None:
    async with engine.connect() as conn:
        rows = {
            r.id: r
            for r in await conn.execute(text("SELECT id, symbol, candle_time, processed_reason FROM trading_signals"))
        }
    first_of_candle: dict[tuple[str, datetime], int] = {}
    for signal_id, row in sorted(before.items()):
        stamp = row[1] or row[13]
        if stamp is None:
            assert rows[signal_id].candle_time is None
            assert rows[signal_id].processed_reason is None
            continue
        candle = stamp.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        first_of_candle.setdefault((row[2], candle), signal_id)
    firsts = set(first_of_candle.values())
    assert len(firsts) == len(SYMBOLS) * SIGNALS_PER_SYMBOL // 12
    for (symbol, candle), signal_id in first_of_candle.items():
        assert (rows[signal_id].symbol, rows[signal_id].candle_time) == (symbol, candle)
        assert rows[signal_id].processed_reason is None
    for signal_id, signal in rows.items():
        if signal_id not in firsts and (before[signal_id][1] or before[signal_id][13]) is not None:
            assert (signal.candle_time, signal.processed_reason) == (None, DUPLICATE_CANDLE)


async def _check_pending_backfill(engine: AsyncEngine, live: dict[int, tuple[Any, ...]]) -> None:
    async with engine.connect() as conn:
        result = await conn.execute(text("SELECT id, pending_key FROM trade_recommendations"))
        keys: dict[int, str | None] = {r[0]: r[1] for r in result}
    side = {"BUY": "BUY", "STRONG_BUY": "BUY", "SELL": "SELL", "STRONG_SELL": "SELL"}
    newest: dict[str, int] = {}
    for rec_id, row in live.items():
        if row[7] == "PENDING" and row[3] in side:
            key = f"{row[2]}:{side[row[3]]}"
            newest[key] = max(newest.get(key, 0), rec_id)
    assert len(newest) == 8
    assert {rec_id: key for rec_id, key in keys.items() if key is not None} == {v: k for k, v in newest.items()}


@pytest.mark.mysql
async def test_incompatible_tables_change_nothing_and_are_named(guide_database: str) -> None:
    ddl = [
        GUIDE_DDL[0]
        .replace("price DECIMAL(15,8)", "price DOUBLE")
        .replace("signal_type ENUM('BUY', 'SELL', 'HOLD')", "signal_type VARCHAR(10)")
        .replace(",\n    prediction DECIMAL(6,4)", ""),
        GUIDE_DDL[1].replace("symbol VARCHAR(50) NOT NULL", "symbol VARCHAR(50)"),
    ]
    engine = create_engine(guide_database)
    try:
        await _create_guide_tables(engine, ddl)
        before = await _snapshot(engine)
        async with engine.connect() as conn:
            schema_before = (
                await conn.execute(
                    text(
                        "SELECT table_name, column_name, column_type FROM information_schema.columns "
                        "WHERE table_schema = DATABASE() ORDER BY 1, 2"
                    )
                )
            ).all()

        proc = await asyncio.to_thread(_cts_migrate, guide_database)
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("cts migrate:"))
        assert len(lines) - start == 5, proc.stderr  # a heading and one line per difference
        assert "nothing was changed" in lines[start]
        assert "trading_signals.price: is double, expected decimal(15,8)" in proc.stderr
        assert "trading_signals.signal_type: is varchar(10), expected enum('BUY','SELL','HOLD')" in proc.stderr
        assert "trading_signals.prediction: missing" in proc.stderr
        assert "trade_recommendations.symbol: allows NULL, expected NOT NULL" in proc.stderr
        assert "root:" not in proc.stderr or "***" in proc.stderr

        assert await _snapshot(engine) == before  # no alembic_version, no new table, no row touched
        async with engine.connect() as conn:
            schema_after = (
                await conn.execute(
                    text(
                        "SELECT table_name, column_name, column_type FROM information_schema.columns "
                        "WHERE table_schema = DATABASE() ORDER BY 1, 2"
                    )
                )
            ).all()
        assert schema_after == schema_before
        with pytest.raises(SchemaIncompatible) as info:
            await upgrade(engine)
        assert len(info.value.differences) == 4
    finally:
        await engine.dispose()


async def test_sqlite_refuses_existing_tables_without_history(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE trading_signals (id INTEGER PRIMARY KEY, symbol TEXT)"))
        with pytest.raises(SchemaIncompatible, match="MySQL/MariaDB only"):
            await upgrade(engine)
        assert await current_revision(engine) is None
    finally:
        await engine.dispose()
