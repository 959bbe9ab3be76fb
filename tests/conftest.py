"""Shared fixtures: clean migrated databases on SQLite and MariaDB, settings, and running services.

MariaDB tests need 127.0.0.1:3306 (root, empty password; override with TEST_MYSQL_URL). Each test session creates
its own uniquely named database and drops it at the end. Without CI=true they are skipped when MariaDB is down;
with CI=true they fail instead."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from common.config import Settings, load_settings
from common.database import create_engine
from common.services import SERVICES
from testkit.databases import (
    MYSQL_SERVER_URL,
    clear_tables,
    create_mysql_database,
    drop_mysql_database,
    migrate,
    migrated_sqlite,
    run_in_thread,
)

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def mysql_database() -> Iterator[str]:
    """A uniquely named, migrated MariaDB database for this test session, dropped at the end."""
    try:
        url = run_in_thread(lambda: create_mysql_database("cts_test", migrated=False))
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"MariaDB is required under CI=true but is not reachable: {exc}")
        pytest.skip(f"MariaDB not reachable at {MYSQL_SERVER_URL}: {type(exc).__name__}")
    run_in_thread(lambda: migrate(url))
    yield url
    run_in_thread(lambda: drop_mysql_database(url))


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A clean, migrated database: a fresh SQLite file, or the session's MariaDB database emptied."""
    if request.param == "sqlite":
        yield await migrated_sqlite(tmp_path / "crypto_prices.db")
    else:
        url = request.getfixturevalue("mysql_database")
        await clear_tables(url)
        yield url


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> str:
    """A clean, migrated SQLite database only (for tests where the engine does not matter)."""
    return await migrated_sqlite(tmp_path / "crypto_prices.db")


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[Any]:
    """An engine on the test database, with a BTC-USD price (the executor's paper fills need one)."""
    from tests.support.seed import seed_price

    engine = create_engine(database_url)
    await seed_price(engine, "BTC-USD", "9000")
    yield engine
    await engine.dispose()


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for an in-process service: no metrics server, fast health checks, short grace, candles from the
    database (not the replay)."""
    base: dict[str, Any] = {
        "database_url": database_url,
        **{info.setting("metrics_port"): 0 for info in SERVICES},
        "health_check_interval_seconds": 0.2,
        "shutdown_grace_seconds": 1.0,
        # Candles already in the database, wall-clock time; tests of the replay ask for "replay".
        "market_data_source": "database",
        # Exits and reconciliation run when a test asks (a loop would race the test for the fake Coinbase's faults).
        "position_check_interval_seconds": 3600,
        "reconcile_interval_seconds": 3600,
    }
    base.update(overrides)
    return load_settings({}, **base)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)
