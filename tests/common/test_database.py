"""common.database on SQLite: a transaction waiting for the writer lock never stalls the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from common.database import create_engine


@pytest.fixture
async def engines(sqlite_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    first, second = create_engine(sqlite_url), create_engine(sqlite_url)
    try:
        yield first, second
    finally:
        await first.dispose()
        await second.dispose()


async def test_a_waiting_writer_leaves_its_connection_free_for_the_event_loop(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """The stall of the bridge replica test, made deterministic. A cursor of connection B with a statement in use
    is finalized on the event loop thread (as the garbage collector does with the cursor of a failed statement)
    while B waits for the writer lock that A holds. Finalizing needs B's mutex; SQLite's busy handler holds it
    while it sleeps. With one long busy wait the loop stopped there and A, driven by the same loop, could never
    commit: every RPC stalled until the busy timeout. Now B waits in short slices."""
    first, second = engines
    async with second.connect() as waiting:
        driver = (await waiting.get_raw_connection()).driver_connection  # the aiosqlite connection
        assert driver is not None
        stale = await driver.execute("SELECT 1 UNION ALL SELECT 2")  # a statement in use
        # One more call, so B's worker thread lets go of its references to the stale cursor: ours is the last.
        await (await driver.execute("SELECT 3")).close()
        async with first.begin() as holder:  # A takes the writer lock (BEGIN IMMEDIATE)
            await holder.execute(text("UPDATE system_control SET value = value"))
            begin = asyncio.create_task(waiting.begin().start())  # B's BEGIN IMMEDIATE waits for A
            await asyncio.sleep(0.3)
            assert not begin.done()
            started = time.monotonic()
            del stale  # the last reference: sqlite3 resets the statement, under B's mutex, on this thread
            blocked = time.monotonic() - started
        await asyncio.wait_for(begin, 5)  # A committed: B gets the lock
        await waiting.rollback()
    assert blocked < 1.0  # one slice at most (it was the whole busy timeout)
