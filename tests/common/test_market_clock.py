"""The clock of the trading rules: market time in replay, the wall clock in production (common.market_clock)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from common.control import ControlKey, write_control
from common.market_clock import MarketClock

WALL = datetime(2026, 11, 26, 12, tzinfo=UTC)


async def test_replay_reads_the_market_time_the_replay_has_reached(engine: Any) -> None:
    clock = MarketClock(engine, wall=lambda: WALL)
    await clock.refresh()
    assert clock() == WALL  # nothing released yet
    market = datetime(2018, 5, 1, 13, 0, 30, tzinfo=UTC)
    async with engine.begin() as conn:
        await write_control(conn, ControlKey.REPLAY_CLOCK, market.isoformat(), "test", WALL)
    assert clock() == WALL  # read at refresh, not at every call
    await clock.refresh()
    assert clock() == market
    assert clock.replay


async def test_production_is_the_wall_clock_whatever_the_database_says(engine: Any) -> None:
    async with engine.begin() as conn:
        await write_control(conn, ControlKey.REPLAY_CLOCK, "2018-05-01T13:00:00+00:00", "test", WALL)
    clock = MarketClock(None, wall=lambda: WALL)
    await clock.refresh()
    assert clock() == WALL
    assert not clock.replay
