"""Parity: a replay of the four services (what `make run` runs) to the end of its candles and `cts backtest` over
the same candles end with the same trades and the same equity, to the cent.

The settings make every rule bite: low BUY thresholds (more signals), tight stop-loss and take-profit (both
exits), a short time limit, at most 2 open positions (max_positions refusals), 1 trade per cap window (the
orchestrator's 30-second cycles within an hour)."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

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
from cts.backtest import run_backtest
from executor_svc.server import DEFINITION as EXECUTOR
from generator_svc.candle_repository import load_candles
from generator_svc.model_store import load_model
from generator_svc.server import DEFINITION as GENERATOR
from orchestrator_svc.server import DEFINITION as ORCHESTRATOR
from testkit.ports import free_ports
from tests.conftest import make_settings
from tests.support.seed import bundled, seed_bundled

SYMBOLS = ("ETH-USD", "LTC-USD", "XRP-USD")
WARMUP = 520
REPLAYED = 160
CENT = Decimal("0.01")
START = datetime(2018, 5, 1, tzinfo=UTC)


def parity_settings(url: str, ports: list[int]) -> Settings:
    generator, bridge, orchestrator, executor = ports
    return make_settings(
        url,
        market_data_source="replay",
        replay_seconds_per_candle=0,
        replay_warmup_candles=WARMUP,
        signal_generator_port=generator,
        signal_bridge_port=bridge,
        trade_orchestrator_port=orchestrator,
        trade_executor_port=executor,
        signal_bridge_addr=f"127.0.0.1:{bridge}",
        trade_orchestrator_addr=f"127.0.0.1:{orchestrator}",
        trade_executor_addr=f"127.0.0.1:{executor}",
        buy_threshold=0.3,
        bridge_min_confidence=0.3,
        stop_loss_percent=Decimal("1"),
        take_profit_percent=Decimal("1.5"),
        max_holding_hours=2,
        max_open_positions=2,
        max_trades_per_window=1,
        model_dir=Path("models"),
    )


async def replay(settings: Settings) -> None:
    async with (
        running_service(EXECUTOR, settings, port=settings.trade_executor_port),
        running_service(ORCHESTRATOR, settings, port=settings.trade_orchestrator_port),
        running_service(BRIDGE, settings, port=settings.signal_bridge_port),
        running_service(GENERATOR, settings, port=settings.signal_generator_port),
    ):
        engine = create_engine(settings.database_url)
        try:
            for _ in range(3000):
                async with engine.connect() as conn:
                    query = select(system_control.c.value).where(system_control.c.key == ControlKey.REPLAY_PROGRESS)
                    progress = (await conn.execute(query)).scalar_one_or_none()
                if progress and progress.split("/")[0] == progress.split("/")[1] and progress != "0/0":
                    return
                await asyncio.sleep(0.1)
            raise AssertionError(f"the replay did not finish: {progress}")
        finally:
            await engine.dispose()


def money(value: Any) -> Decimal:
    return Decimal(value).quantize(CENT)


async def test_a_replay_and_the_backtest_make_the_same_trades(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}"
    engine = create_engine(url)
    await upgrade(engine)
    for symbol in SYMBOLS:  # the same hours of every symbol
        frame = bundled(symbol)
        first = int(frame.index[frame["timestamp"] >= int(START.timestamp())][0])
        await seed_bundled(engine, symbol, WARMUP + REPLAYED, end_index=first + WARMUP + REPLAYED)
    settings = parity_settings(url, free_ports(4))
    await replay(settings)

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
        ).scalar_one()
        still_open = (
            await conn.execute(select(positions.c.symbol, positions.c.quantity).where(positions.c.status == "OPEN"))
        ).all()
        last_close = {
            s: (
                await conn.execute(
                    select(market_candles.c.close)
                    .where(market_candles.c.symbol == s)
                    .order_by(market_candles.c.start_time.desc())
                    .limit(1)
                )
            ).scalar_one()
            for s in SYMBOLS
        }
        candles = await load_candles(conn, list(SYMBOLS), "ONE_HOUR", None, None)
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
    refused = [r for r in rows if r.status != "EXECUTED"]
    equity = cash + sum((q * last_close[s] for s, q in still_open), Decimal(0))

    result = run_backtest(candles, load_model(Path("models")), settings, start=first_signal.replace(tzinfo=UTC))
    backtested = [
        (t.time, t.symbol, t.side.value, t.size, t.price, t.fee, t.exit_reason)
        for t in result.trades
        if t.status == "EXECUTED"
    ]
    # Every rule was exercised (otherwise the comparison proves little).
    reasons = {t[6] for t in backtested}
    assert len(backtested) >= 10, backtested
    assert {"stop_loss", "take_profit", "time_limit"} <= reasons, reasons
    assert result.metrics["skipped_signals"].get("max_positions", 0) > 0
    # Two entries in one hour: the second waited for the next 30-second cycle (the trade cap in market time).
    assert any(later[0] - earlier[0] == timedelta(seconds=30) for earlier, later in itertools.pairwise(backtested))

    assert replayed == backtested
    assert len(refused) == result.metrics["refused_recommendations"]
    assert money(equity) == money(Decimal(str(result.equity.iloc[-1])))
    assert datetime.fromisoformat(str(result.equity.index[-1])) > first_signal.replace(tzinfo=UTC)
