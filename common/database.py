"""Engine creation and database health. Engines are created by the service at start-up, never at import."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import greenlet_spawn

T = TypeVar("T")

# The database cannot be reached (connection refused or lost, pool exhausted): retryable, never a verdict on the
# request itself.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeoutError)


# MySQL/MariaDB lock wait timeout and deadlock: the transaction was rolled back and is safe to run again.
LOCK_CONFLICT_CODES = frozenset({1205, 1213})


def is_database_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, DATABASE_UNAVAILABLE)


def is_lock_conflict(exc: BaseException) -> bool:
    """A MySQL/MariaDB deadlock or lock wait timeout (retry the whole transaction)."""
    args: tuple[Any, ...] = getattr(getattr(exc, "orig", None), "args", ())
    return isinstance(exc, OperationalError) and bool(args) and args[0] in LOCK_CONFLICT_CODES


READ_ONLY_OPTION = "cts_read_only"  # execution option: on SQLite, BEGIN (deferred) instead of BEGIN IMMEDIATE

# SQLite: how long a transaction waits for the single writer lock in all (then "database is locked": UNAVAILABLE),
# and the most one wait inside SQLite may last. SQLite's busy handler sleeps inside sqlite3_step holding the
# connection's mutex, and anything else that touches that connection meanwhile waits for the mutex, including the
# garbage collector finalizing one of its old cursors on the event loop thread (an exception's traceback cycle
# keeps a failed statement's cursor alive until then). With one 30 s busy wait, the event loop then stopped until
# the wait ran out, and the transaction holding the lock, also driven by that loop, could not finish to release
# it: a 30 s stall of every RPC in the process. So SQLite waits in short slices and the rest of the wait is a
# loop of retries driven by the event loop (see _begin_immediate).
SQLITE_LOCK_WAIT_SECONDS = 30.0
SQLITE_BUSY_SLICE_MS = 20


def create_engine(database_url: str, *, pool_size: int = 5) -> AsyncEngine:
    """An async engine for SQLite (aiosqlite) or MySQL/MariaDB (asyncmy), with the session settings both need.

    - MySQL: every session runs in UTC (``time_zone = '+00:00'``) so TIMESTAMP columns hold UTC, and
      READ COMMITTED so claims with ``FOR UPDATE SKIP LOCKED`` see each other's commits.
    - SQLite: WAL, and ``BEGIN IMMEDIATE`` for every transaction (retried for up to SQLITE_LOCK_WAIT_SECONDS),
      so the four processes of the embedded default queue for the single writer instead of failing with
      "database is locked".
    """
    url = make_url(database_url)
    if url.drivername.startswith("sqlite"):
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # The connect-time timeout covers the PRAGMAs of _on_connect (switching a new file to WAL takes the lock).
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_LOCK_WAIT_SECONDS})
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        isolation_level="READ COMMITTED",
        connect_args={"init_command": "SET time_zone = '+00:00'", "connect_timeout": 5},
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SLICE_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Read-only work (the health ping) takes no lock at all: it must never queue behind, or hold up, a writer.
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN")
            return
        if not connection.connection.dbapi_connection.run_async(_begin_immediate):
            # Still locked at the deadline (or another error): the last try raises SQLAlchemy's wrapped error.
            connection.exec_driver_sql("BEGIN IMMEDIATE")


async def _begin_immediate(driver_connection: Any) -> bool:
    """``BEGIN IMMEDIATE`` on the aiosqlite connection, retried while the writer lock is held elsewhere: each try
    waits at most SQLITE_BUSY_SLICE_MS inside SQLite, and between tries the connection's mutex is free. True once
    the lock is taken; False at SQLITE_LOCK_WAIT_SECONDS or on any other error."""
    deadline = time.monotonic() + SQLITE_LOCK_WAIT_SECONDS
    while True:
        try:
            await driver_connection.execute_fetchall("BEGIN IMMEDIATE")  # one round trip to its thread
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.001)  # never a busy loop, where SQLite answers BUSY without waiting
            continue
        except sqlite3.Error:
            return False
        return True


async def ping(engine: AsyncEngine, limit_seconds: float = 3.0) -> str | None:
    """None if the database answers ``SELECT 1`` within ``limit_seconds``, else a short problem description
    (without credentials). On SQLite the ping takes no write lock, so it never queues behind a writer."""
    try:
        async with asyncio.timeout(limit_seconds):
            async with engine.connect() as conn:
                conn = await conn.execution_options(**{READ_ONLY_OPTION: True})
                await conn.execute(text("SELECT 1"))
    except TimeoutError:
        return "database did not answer within the timeout"
    except Exception as exc:  # any driver error means "not reachable"
        return f"database unreachable: {type(exc).__name__}"
    return None


def describe_url(database_url: str) -> str:
    """The URL with the password hidden, for logs."""
    return make_url(database_url).render_as_string(hide_password=True)


async def run_in_greenlet(work: Callable[[], T]) -> T:
    """Run synchronous SQLAlchemy work (a checkout, its statements, the commit, the checkin) in one greenlet: one
    switch for the whole unit instead of one per awaited call of the asyncio API (the hot paths of the bridge and
    the orchestrator). The project's one use of sqlalchemy.util.greenlet_spawn, which SQLAlchemy's asyncio layer
    runs on but does not document for direct use (SQLAlchemy is pinned)."""
    return await greenlet_spawn(work)
