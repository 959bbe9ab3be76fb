"""Scratch databases: a migrated SQLite file, or a uniquely named, migrated MariaDB database that is dropped
afterwards. MariaDB is 127.0.0.1:3306 as root without a password unless TEST_MYSQL_URL names another server."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlalchemy import text

from common.database import create_engine
from common.migrate import upgrade
from common.tables import metadata

MYSQL_SERVER_URL = os.environ.get("TEST_MYSQL_URL", "mysql+asyncmy://root:@127.0.0.1:3306")
Engine = Literal["sqlite", "mysql"]
T = TypeVar("T")


async def migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def migrated_sqlite(path: Path) -> str:
    """A migrated SQLite database at ``path`` (a new file), as a URL."""
    url = sqlite_url(path)
    await migrate(url)
    return url


async def _mysql_exec(statement: str) -> None:
    engine = create_engine(f"{MYSQL_SERVER_URL}/mysql")
    try:
        async with engine.begin() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def create_mysql_database(prefix: str, *, migrated: bool = True) -> str:
    """A new MariaDB database named ``<prefix>_<random>`` (migrated unless told otherwise), as a URL; raises when
    the server is not reachable."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    await _mysql_exec(f"CREATE DATABASE {name}")
    url = f"{MYSQL_SERVER_URL}/{name}"
    if migrated:
        try:
            await migrate(url)
        except BaseException:
            await drop_mysql_database(url)
            raise
    return url


async def drop_mysql_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    await _mysql_exec(f"DROP DATABASE IF EXISTS {name}")


@asynccontextmanager
async def scratch_database(engine: Engine, directory: Path, prefix: str = "cts_scratch") -> AsyncIterator[str]:
    """A fresh migrated database of either engine (its URL), removed afterwards when it is a MariaDB one."""
    if engine == "sqlite":
        yield await migrated_sqlite(directory / f"{prefix}-{uuid.uuid4().hex[:8]}.db")
        return
    url = await create_mysql_database(prefix)
    try:
        yield url
    finally:
        await drop_mysql_database(url)


async def clear_tables(url: str) -> None:
    """Delete every row of every table (children first): a migrated database as good as new."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                await conn.execute(table.delete())
    finally:
        await engine.dispose()


def run_in_thread(coro_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even when called inside a running event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coro_factory())).result()
