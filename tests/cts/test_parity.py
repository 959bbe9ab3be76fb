"""Parity: a replay of the four services (what `make run` runs) to the end of its candles and `cts backtest` over
the same candles end with the same trades and the same equity, to the cent: on hourly candles, and on 5-minute
candles (a signal every 5 minutes on hourly bars anchored at the latest 5-minute close).

The settings make every rule bite: low BUY thresholds (more signals), tight stop-loss and take-profit (both exits),
a short time limit, at most 2 open positions (max_positions refusals), 1 trade per cap window (the orchestrator's
30-second cycles within a candle)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge_svc.server import DEFINITION as BRIDGE
from common.config import Settings
from common.control import ControlKey
from common.database import create_engine
from common.migrate import upgrade
from common.server import running_service
from common.tables import (
    market_candles,
    paper_balances,
    positions,
    system_control,
    trade_executions,
    trade_recommendations,
    trading_signals,
)
from cts.backtest import BacktestResult, run_backtest
from cts.candle_data import SHARED_CANDLES_DIR
from executor_svc.server import DEFINITION as EXECUTOR
from generator_svc.candle_repository import insert_candles, load_candles
from generator_svc.model_store import load_model
from generator_svc.replay import training_period
from generator_svc.server import DEFINITION as GENERATOR
from orchestrator_svc.server import DEFINITION as ORCHESTRATOR
from testkit.ports import free_ports
from tests.conftest import make_settings
from tests.support.seed import bundled, seed_bundled

WARMUP = 520  # hours of history before the first replayed candle
CENT = Decimal("0.01")
MODELS = Path("models")
Trade = tuple[datetime, str, str, Decimal, Decimal, Decimal, str]


def parity_settings(url: str, ports: list[int], **overrides: Any) -> Settings:
    generator, bridge, orchestrator, executor = ports
    values: dict[str, Any] = {
        "market_data_source": "replay",
        "replay_seconds_per_candle": 0,
        "replay_warmup_candles": WARMUP,
        "signal_generator_port": generator,
        "signal_bridge_port": bridge,
        "trade_orchestrator_port": orchestrator,
        "trade_executor_port": executor,
        "signal_bridge_addr": f"127.0.0.1:{bridge}",
        "trade_orchestrator_addr": f"127.0.0.1:{orchestrator}",
        "trade_executor_addr": f"127.0.0.1:{executor}",
        "buy_threshold": 0.3,
        "bridge_min_confidence": 0.3,
        "stop_loss_percent": Decimal("1"),
        "take_profit_percent": Decimal("1.5"),
        "max_holding_hours": 2,
        "max_open_positions": 2,
        "max_trades_per_window": 1,
        "model_dir": MODELS,
    }
    return make_settings(url, **(values | overrides))


async def replay(settings: Settings) -> None:
    async with (
        running_service(EXECUTOR, settings, port=settings.trade_executor_port),
        running_service(ORCHESTRATOR, settings, port=settings.trade_orchestrator_port),
        running_service(BRIDGE, settings, port=settings.signal_bridge_port),
        running_service(GENERATOR, settings, port=settings.signal_generator_port),
    ):
        engine = create_engine(settings.database_url)
        try:
            progress = None
            for _ in range(6000):
                async with engine.connect() as conn:
                    query = select(system_control.c.value).where(system_control.c.key == ControlKey.REPLAY_PROGRESS)
                    progress = (await conn.execute(query)).scalar_one_or_none()
                if progress and progress.split("/")[0] == progress.split("/")[1] and progress != "0/0":
                    return
                await asyncio.sleep(0.1)
            raise AssertionError(f"the replay did not finish: {progress}")
        finally:
            await engine.dispose()


@dataclass
class Outcome:
    replayed: list[Trade]
    refused: int
    equity: Decimal
    backtested: list[Trade]
    result: BacktestResult


async def replay_and_backtest(
    tmp_path: Path, symbols: tuple[str, ...], seed: Callable[[AsyncEngine], Awaitable[None]], **overrides: Any
) -> Outcome:
    url = f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}"
    engine = create_engine(url)
    await upgrade(engine)
    await seed(engine)
    settings = parity_settings(url, free_ports(4), **overrides)
    await replay(settings)
    granularity = settings.candle_granularity
    async with engine.connect() as conn:
        first_signal = (await conn.execute(select(func.min(trading_signals.c.candle_time)))).scalar_one()
        rows = (
            await conn.execute(
                select(
                    trade_executions.c.completed_at,
                    trade_executions.c.symbol,
                    trade_executions.c.side,
                    trade_executions.c.status,
                    trade_executions.c.filled_size,
                    trade_executions.c.average_price,
                    trade_executions.c.fees,
                    trade_recommendations.c.exit_reason,
                )
                .join(trade_recommendations, trade_recommendations.c.id == trade_executions.c.recommendation_id)
                .order_by(trade_executions.c.completed_at, trade_executions.c.id)
            )
        ).all()
        cash = (
            await conn.execute(select(paper_balances.c.available).where(paper_balances.c.asset == "USD"))
        ).scalar_one_or_none()
        still_open = (
            await conn.execute(select(positions.c.symbol, positions.c.quantity).where(positions.c.status == "OPEN"))
        ).all()
        last_close = {
            s: (
                await conn.execute(
                    select(market_candles.c.close)
                    .where(market_candles.c.symbol == s, market_candles.c.granularity == granularity)
                    .order_by(market_candles.c.start_time.desc())
                    .limit(1)
                )
            ).scalar_one()
            for s in symbols
        }
        candles = await load_candles(conn, list(symbols), granularity, None, None)
    await engine.dispose()

    replayed = [
        (
            completed.replace(tzinfo=UTC),
            symbol,
            side,
            Decimal(size),
            Decimal(price),
            Decimal(fee),
            exit_reason or ("" if side == "BUY" else "signal"),
        )
        for completed, symbol, side, status, size, price, fee, exit_reason in rows
        if status == "EXECUTED"
    ]
    start_cash = settings.paper_starting_cash_usd if cash is None else cash
    equity = start_cash + sum((q * last_close[s] for s, q in still_open), Decimal(0))
    result = run_backtest(candles, load_model(MODELS), settings, start=first_signal.replace(tzinfo=UTC))
    backtested = [
        (t.time, t.symbol, t.side.value, t.size, t.price, t.fee, t.exit_reason)
        for t in result.trades
        if t.status == "EXECUTED"
    ]
    return Outcome(replayed, sum(1 for r in rows if r.status != "EXECUTED"), equity, backtested, result)


def money(value: Any) -> Decimal:
    return Decimal(value).quantize(CENT)


def assert_same(outcome: Outcome) -> None:
    assert outcome.replayed == outcome.backtested
    assert outcome.refused == outcome.result.metrics["refused_recommendations"]
    assert money(outcome.equity) == money(Decimal(str(outcome.result.equity.iloc[-1])))


async def test_hourly_replay_and_backtest_make_the_same_trades(tmp_path: Path) -> None:
    symbols = ("ETH-USD", "LTC-USD", "XRP-USD")
    replayed_hours = 160
    start = datetime(2018, 5, 1, tzinfo=UTC)

    async def seed(engine: AsyncEngine) -> None:
        for symbol in symbols:  # the same hours of every symbol
            frame = bundled(symbol)
            first = int(frame.index[frame["timestamp"] >= int(start.timestamp())][0])
            rows = WARMUP + replayed_hours
            await seed_bundled(engine, symbol, rows, end_index=first + rows)

    outcome = await replay_and_backtest(tmp_path, symbols, seed)
    backtested, result = outcome.backtested, outcome.result
    # Every rule was exercised (otherwise the comparison proves little).
    assert len(backtested) >= 10, backtested
    assert {"stop_loss", "take_profit", "time_limit"} <= {t[6] for t in backtested}
    assert result.metrics["skipped_signals"].get("max_positions", 0) > 0
    # Two entries in one hour: the second waited for the next 30-second cycle (the trade cap in market time).
    assert any(later[0] - earlier[0] == timedelta(seconds=30) for earlier, later in itertools.pairwise(backtested))
    assert_same(outcome)


async def test_five_minute_replay_and_backtest_make_the_same_trades(tmp_path: Path) -> None:
    symbols = ("DOGE-USD", "SOL-USD", "AVAX-USD", "LINK-USD")
    directory = SHARED_CANDLES_DIR.parent / "binance_2024h1"
    period = training_period(load_model(MODELS).card)
    assert period is not None
    test_from = period[1]  # the replay never releases the model's own training period: it starts here
    hours = 24

    async def seed(engine: AsyncEngine) -> None:
        for symbol in symbols:
            frame = pd.read_csv(directory / f"{symbol}_5m.csv.gz").sort_values("timestamp")
            part = frame[
                (frame["timestamp"] >= test_from - (WARMUP + 10) * 3600)
                & (frame["timestamp"] < test_from + hours * 3600)
            ]
            rows = list(part[["timestamp", "open", "high", "low", "close", "volume"]].itertuples(index=False))
            async with engine.begin() as conn:
                await insert_candles(conn, symbol, "FIVE_MINUTE", rows, "csv")

    outcome = await replay_and_backtest(
        tmp_path,
        symbols,
        seed,
        candle_granularity="FIVE_MINUTE",
        stop_loss_percent=Decimal("0.5"),
        take_profit_percent=Decimal("0.5"),
        max_holding_hours=1,
    )
    assert len(outcome.backtested) >= 4, outcome.result.metrics
    assert outcome.result.metrics["exits"], outcome.result.metrics  # positions were closed by a protective exit
    assert_same(outcome)
