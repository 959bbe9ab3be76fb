"""Shared fixtures: clean migrated databases on SQLite and MariaDB, settings, and running services.

MariaDB tests need 127.0.0.1:3306 (root, empty password; override with TEST_MYSQL_URL). Each test session creates
its own uniquely named database and drops it at the end. Without CI=true they are skipped when MariaDB is down;
with CI=true they fail instead."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import text

from common.config import Settings, load_settings
from common.database import create_engine
from common.migrate import upgrade
from common.tables import metadata

MYSQL_SERVER_URL = os.environ.get("TEST_MYSQL_URL", "mysql+asyncmy://root:@127.0.0.1:3306")
T = TypeVar("T")
IN_CI = os.environ.get("CI", "").lower() == "true"


async def _mysql_exec(statements: list[str], database: str = "mysql") -> None:
    engine = create_engine(f"{MYSQL_SERVER_URL}/{database}")
    try:
        async with engine.begin() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


def run_in_thread(coro_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even when called inside a running event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coro_factory())).result()


@pytest.fixture(scope="session")
def mysql_database() -> Iterator[str]:
    """A uniquely named, migrated MariaDB database for this test session, dropped at the end."""
    name = f"cts_test_{uuid.uuid4().hex[:10]}"
    try:
        run_in_thread(lambda: _mysql_exec([f"CREATE DATABASE {name}"]))
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"MariaDB is required under CI=true but is not reachable: {exc}")
        pytest.skip(f"MariaDB not reachable at {MYSQL_SERVER_URL}: {type(exc).__name__}")
    url = f"{MYSQL_SERVER_URL}/{name}"

    async def migrate() -> None:
        engine = create_engine(url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    run_in_thread(migrate)
    yield url
    run_in_thread(lambda: _mysql_exec([f"DROP DATABASE IF EXISTS {name}"]))


async def clear_tables(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                await conn.execute(table.delete())
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A clean, migrated database: a fresh SQLite file, or the session's MariaDB database emptied."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'crypto_prices.db'}"
        engine = create_engine(url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()
        yield url
    else:
        url = request.getfixturevalue("mysql_database")
        await clear_tables(url)
        yield url


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> str:
    """A clean, migrated SQLite database only (for tests where the engine does not matter)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'crypto_prices.db'}"
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    return url


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for an in-process service: no metrics server, fast health checks, short grace."""
    base: dict[str, Any] = {
        "database_url": database_url,
        "signal_generator_metrics_port": 0,
        "signal_bridge_metrics_port": 0,
        "trade_orchestrator_metrics_port": 0,
        "trade_executor_metrics_port": 0,
        "health_check_interval_seconds": 0.2,
        "shutdown_grace_seconds": 1.0,
    }
    base.update(overrides)
    return load_settings({}, **base)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)
