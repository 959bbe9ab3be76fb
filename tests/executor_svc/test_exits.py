"""The protective exit rules (executor_svc.exits), shared by the executor and `cts backtest`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from common.lifecycle import ExecutionMode, ExitReason
from executor_svc.exits import Candle, ExitRules, decide_exit
from executor_svc.positions import Position

HOUR = 3600
T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
RULES = ExitRules(max_holding=timedelta(hours=24))


def position(opened_at: datetime = T0) -> Position:
    return Position(
        mode=ExecutionMode.PAPER,
        symbol="ETH-USD",
        quantity=Decimal("0.05"),
        entry_price=Decimal("2000"),
        entry_cost=Decimal("100.6"),
        stop_loss=Decimal("1960"),
        take_profit=Decimal("2080"),
        opened_at=opened_at,
        entry_recommendation_id=1,
    )


def candle(hours_after_t0: int, o: str, h: str, lo: str, c: str) -> Candle:
    """The hourly candle that starts ``hours_after_t0`` hours after T0."""
    start = int(T0.timestamp()) + hours_after_t0 * HOUR
    return Candle(start, HOUR, Decimal(o), Decimal(h), Decimal(lo), Decimal(c))


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_nothing_happens_between_the_levels() -> None:
    candles = [candle(0, "2000", "2050", "1970", "2010")]
    assert decide_exit(position(), candles, at(1), RULES, Decimal("2010")) is None


def test_low_at_the_stop_fills_at_the_stop() -> None:
    decision = decide_exit(position(), [candle(0, "2000", "2010", "1955", "1990")], at(1), RULES, None)
    assert decision is not None
    assert (decision.reason, decision.market_price) == (ExitReason.STOP_LOSS, Decimal("1960"))


def test_high_at_the_target_fills_at_the_target() -> None:
    decision = decide_exit(position(), [candle(0, "2000", "2080", "1990", "2070")], at(1), RULES, None)
    assert decision is not None
    assert (decision.reason, decision.market_price) == (ExitReason.TAKE_PROFIT, Decimal("2080"))


def test_stop_and_target_in_one_candle_counts_as_the_stop() -> None:
    decision = decide_exit(position(), [candle(0, "2000", "2100", "1900", "2050")], at(1), RULES, None)
    assert decision is not None
    assert (decision.reason, decision.market_price) == (ExitReason.STOP_LOSS, Decimal("1960"))


def test_a_gap_through_the_stop_fills_at_the_open() -> None:
    candles = [candle(0, "2000", "2010", "1990", "2000"), candle(1, "1900", "1950", "1880", "1940")]
    decision = decide_exit(position(), candles, at(2), RULES, None)
    assert decision is not None
    assert (decision.reason, decision.market_price) == (ExitReason.STOP_LOSS, Decimal("1900"))


def test_only_candles_that_closed_after_the_entry_and_by_now_count() -> None:
    before_entry = candle(-1, "2000", "2000", "1000", "2000")  # closed at T0, when the position opened
    not_closed_yet = candle(1, "2000", "3000", "2000", "2000")  # closes at T0 + 2 h
    assert decide_exit(position(), [before_entry, not_closed_yet], at(1.5), RULES, None) is None
    # a position opened inside a candle (a capped order filled 30 s after the close) is checked on that candle
    decision = decide_exit(position(at(0.01)), [candle(0, "2000", "2100", "1990", "2000")], at(1), RULES, None)
    assert decision is not None
    assert decision.reason == ExitReason.TAKE_PROFIT


def test_the_first_candle_that_reaches_a_level_decides() -> None:
    candles = [candle(1, "2000", "2090", "1990", "2000"), candle(0, "2000", "2000", "1950", "1990")]
    decision = decide_exit(position(), candles, at(2), RULES, None)
    assert decision is not None
    assert decision.reason == ExitReason.STOP_LOSS


def test_time_limit_closes_at_the_latest_price() -> None:
    quiet = [candle(h, "2000", "2010", "1990", "2000") for h in range(24)]
    assert decide_exit(position(), quiet[:23], at(23), RULES, Decimal("2000")) is None
    decision = decide_exit(position(), quiet, at(24), RULES, Decimal("2001.5"))
    assert decision is not None
    assert (decision.reason, decision.market_price) == (ExitReason.TIME_LIMIT, Decimal("2001.5"))
    assert decide_exit(position(), quiet, at(24), ExitRules(max_holding=None), Decimal("2001.5")) is None


def test_the_levels_win_over_the_time_limit() -> None:
    candles = [candle(h, "2000", "2010", "1990", "2000") for h in range(23)] + [
        candle(23, "2000", "2000", "1900", "1950")
    ]
    decision = decide_exit(position(), candles, at(24), RULES, Decimal("1950"))
    assert decision is not None
    assert decision.reason == ExitReason.STOP_LOSS
