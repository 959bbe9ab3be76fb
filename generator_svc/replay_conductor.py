"""The replay conducts the pipeline on market time, one released candle at a time (MARKET_DATA_SOURCE=replay).

For each released candle (its close is the market time T), in this order, each step waiting for the previous:
1. the executor protects the open positions at T (stop-loss, take-profit, time limit: ManagePositions);
2. the generator writes the signals of the candle (created at T);
3. the bridge turns the eligible signals into recommendations at T;
4. the orchestrator runs a cycle at T, T + 30 s, T + 60 s, ... (ORCHESTRATOR_INTERVAL_SECONDS) until nothing is
   pending or the candle's hour is used up, so the trade cap (3 per 30 s) applies in market time.
The market time is written to system_control (REPLAY_CLOCK) before each step; the services read it there. A step
that fails (a service restarting) is retried until it succeeds: market time waits for the pipeline, never the other
way round. `cts backtest` runs the same steps in the same order over the same rules (cts.backtest), which is what
makes a replay and a backtest over the same candles end with the same trades."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class OrchestrateOutcome:
    remaining: int  # recommendations still PENDING
    halted: bool


class Pipeline(Protocol):
    async def manage_positions(self) -> None: ...
    async def bridge(self) -> None: ...
    async def orchestrate(self) -> OrchestrateOutcome: ...


def orchestration_times(as_of: datetime, step: timedelta, candle: timedelta) -> list[datetime]:
    """The market times of the orchestrator cycles after a candle closing at ``as_of``: every ``step`` within the
    candle's length (T, T + 30 s, ..., T + 59 min 30 s for hourly candles and 30 s cycles)."""
    count = max(1, int(candle / step))
    return [as_of + step * k for k in range(count)]


class ReplayConductor:
    def __init__(
        self,
        pipeline: Pipeline,
        set_market_time: Callable[[datetime], Awaitable[None]],
        *,
        step: timedelta,
        candle: timedelta,
        retry_seconds: float = 1.0,
    ) -> None:
        self.pipeline = pipeline
        self.set_market_time = set_market_time
        self.step = step
        self.candle = candle
        self.retry_seconds = retry_seconds

    async def before_signals(self, as_of: datetime) -> None:
        """Step 1 (the market time is already ``as_of``)."""
        await self._until_done("ManagePositions", self.pipeline.manage_positions)

    async def after_signals(self, as_of: datetime) -> None:
        """Steps 3 and 4."""
        await self._until_done("Bridge", self.pipeline.bridge)
        for i, when in enumerate(orchestration_times(as_of, self.step, self.candle)):
            if i:
                await self.set_market_time(when)
            outcome = await self._until_done("Orchestrate", self.pipeline.orchestrate)
            if outcome.remaining == 0 or outcome.halted:
                break

    async def _until_done(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        failures = 0
        while True:
            try:
                return await call()
            except Exception as exc:  # a service down or restarting: market time waits for it
                failures += 1
                if failures == 1 or failures % 30 == 0:
                    log.warning("replay waits: %s failed (%s); retrying every %ss", what, exc, self.retry_seconds)
                await asyncio.sleep(self.retry_seconds)
