"""Replay of historical candles (MARKET_DATA_SOURCE=replay, the embedded default).

The replay walks a time line of candle start times and releases one candle (one hour of market time) every
``seconds_per_candle`` wall seconds; the generator runs one cycle per released candle, as of that candle's close.
The wall clock is injected, so tests drive it without sleeping."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


def training_period(card: Mapping[str, Any]) -> tuple[int, int] | None:
    """[start, end) of the candles the model was fitted and validated on (its card's split: train_from to
    test_from), Unix seconds; None when the card does not say."""
    split = card.get("split") or {}
    start, end = split.get("train_from"), split.get("test_from")
    if not start or not end:
        return None
    return int(datetime.fromisoformat(start).timestamp()), int(datetime.fromisoformat(end).timestamp())


def out_of_sample(starts: Sequence[int], card: Mapping[str, Any]) -> list[int]:
    """The candle starts outside the model's training period: the replay and `cts backtest` never show the model
    trading on candles it was fitted or validated on (earlier and later candles are both out of sample)."""
    period = training_period(card)
    if period is None:
        return list(starts)
    return [t for t in starts if not period[0] <= t < period[1]]


@dataclass
class ReplayClock:
    timeline: Sequence[int]  # candle start times, ascending
    seconds_per_candle: float
    position: int = 0  # index of the next candle to release
    step: int = 3600  # the candles' length (CANDLE_GRANULARITY) in seconds

    def resume_after(self, market_time: datetime | None) -> None:
        """Continue after a previous run that had reached ``market_time`` (a candle close)."""
        if market_time is None:
            return
        last_start = int(market_time.timestamp()) - self.step
        while self.position < len(self.timeline) and self.timeline[self.position] <= last_start:
            self.position += 1

    @property
    def current(self) -> datetime | None:
        """Close time of the last released candle: the replay's market time (None before the first release)."""
        if self.position == 0 or not self.timeline:
            return None
        return datetime.fromtimestamp(self.timeline[self.position - 1] + self.step, UTC)

    @property
    def progress(self) -> str:
        """Released over total candles of the timeline ("released/total"), as `cts up` shows it."""
        return f"{self.position}/{len(self.timeline)}"

    @property
    def finished(self) -> bool:
        return self.position >= len(self.timeline)

    def release(self) -> datetime | None:
        """Release the next candle: returns its close time (the as_of of the cycle), or None at the end."""
        if self.finished:
            return None
        start = self.timeline[self.position]
        self.position += 1
        return datetime.fromtimestamp(start + self.step, UTC)

    def due(self, started_wall: float, now_wall: float, released: int) -> int:
        """How many candles should have been released ``now_wall - started_wall`` seconds after the start, given
        ``released`` so far (at least one per call when the pace is 0)."""
        if self.seconds_per_candle <= 0:
            return 1
        return max(0, int((now_wall - started_wall) / self.seconds_per_candle) + 1 - released)
