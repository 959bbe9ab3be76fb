"""Protective exits of a long position (pure): stop-loss, take-profit and the time limit, decided on closed candles.

One implementation for the executor (paper positions, every POSITION_CHECK_INTERVAL_SECONDS and once per replayed
candle) and `cts backtest`:

- Only candles that closed after the position opened and at or before ``now`` are looked at, oldest first; the
  first one that reaches a level decides.
- The candle opened at or below the stop (a gap through it): filled at the open. Otherwise low <= stop: filled at
  the stop. Otherwise high >= take-profit: filled at the take-profit. A candle that reached both counts as the stop
  (its path inside the hour is unknown: the conservative assumption).
- No level reached and the position is older than MAX_HOLDING_HOURS: closed at the latest price (0 disables it).

The price returned is the market price the SELL fills at; the paper fill then applies the same slippage and fee as
for entries (executor_svc.paper_fill)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from common.lifecycle import ExitReason
from executor_svc.positions import Position


@dataclass(frozen=True)
class Candle:
    start: int  # Unix seconds
    seconds: int  # its length
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal

    @property
    def closes_at(self) -> datetime:
        return datetime.fromtimestamp(self.start + self.seconds, UTC)


@dataclass(frozen=True)
class ExitDecision:
    reason: ExitReason
    market_price: Decimal  # the price the SELL fills at (before slippage)
    detail: str  # what happened, for the recommendation's reasoning and the log


@dataclass(frozen=True)
class ExitRules:
    max_holding: timedelta | None  # None: no time limit


def candles_to_check(position: Position, candles: Sequence[Candle], now: datetime) -> list[Candle]:
    """The candles that closed after the position opened and at or before ``now``, oldest first."""
    return sorted(
        (c for c in candles if position.opened_at < c.closes_at <= now),
        key=lambda c: c.start,
    )


def barrier_exit(position: Position, candle: Candle) -> ExitDecision | None:
    """The stop-loss or take-profit that ``candle`` reached, if any."""
    stop, target = position.stop_loss, position.take_profit
    when = candle.closes_at.isoformat(timespec="minutes")
    if stop is not None and candle.open <= stop:
        return ExitDecision(
            ExitReason.STOP_LOSS, candle.open, f"candle to {when} opened at {candle.open}, below the stop {stop}"
        )
    if stop is not None and candle.low <= stop:
        return ExitDecision(ExitReason.STOP_LOSS, stop, f"candle to {when} fell to {candle.low} <= stop {stop}")
    if target is not None and candle.high >= target:
        return ExitDecision(
            ExitReason.TAKE_PROFIT, target, f"candle to {when} rose to {candle.high} >= target {target}"
        )
    return None


def decide_exit(
    position: Position,
    candles: Sequence[Candle],
    now: datetime,
    rules: ExitRules,
    latest_price: Decimal | None,
) -> ExitDecision | None:
    """Whether ``position`` is to be closed at ``now``, why, and at which market price."""
    for candle in candles_to_check(position, candles, now):
        decision = barrier_exit(position, candle)
        if decision is not None:
            return decision
    if (
        rules.max_holding is not None
        and latest_price is not None
        and latest_price > 0
        and now - position.opened_at >= rules.max_holding
    ):
        hours = rules.max_holding.total_seconds() / 3600
        return ExitDecision(
            ExitReason.TIME_LIMIT, latest_price, f"open {position.held_for(now):.1f} h >= limit {hours:g} h"
        )
    return None
