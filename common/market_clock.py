"""The clock of the trading rules: wall-clock time in production, the replay's market time in replay.

In replay (`make run`, MARKET_DATA_SOURCE=replay) the generator's replay conducts the pipeline one released candle
at a time and writes the market time it has reached to system_control (REPLAY_CLOCK); the bridge, the
orchestrator and the executor read it at the start of every cycle and request (:meth:`MarketClock.refresh`), so
the bridge's signal age, the orchestrator's pending window and trade cap, paper fill prices and protective exits
all run on market time. In production :meth:`refresh` does nothing and the clock is the wall clock."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from common.clock import Clock, utc_now
from common.control import ControlKey, decode_replay_clock, read_control


class MarketClock:
    def __init__(self, engine: AsyncEngine | None = None, wall: Clock = utc_now) -> None:
        """``engine``: replay (read the market time from it); None: production (the wall clock)."""
        self._engine = engine
        self._wall = wall
        self._market: datetime | None = None

    @property
    def replay(self) -> bool:
        return self._engine is not None

    async def refresh(self) -> None:
        if self._engine is None:
            return
        async with self._engine.connect() as conn:
            value = decode_replay_clock(await read_control(conn, ControlKey.REPLAY_CLOCK))
        if value is not None:
            self._market = value

    def __call__(self) -> datetime:
        """Market time in replay once the replay has released a candle; the wall clock otherwise."""
        return self._market if self._market is not None else self._wall()
