"""Paper positions through a real gRPC channel on SQLite and MariaDB: a paper BUY opens one position with the
recommendation's stop-loss and take-profit; ManagePositions closes it on a later candle at the stop (at the open
on a gap through it), at the take-profit (a candle that reached both counts as the stop), or by the time limit.
Each exit is one SELL recommendation (no signal, exit_reason set) with one execution, in the same transaction as
the closed position and the paper balances; nothing is closed twice, even by two executors at once.

The executor runs in replay mode with the market time set in system_control (REPLAY_CLOCK), as the replay does:
candles then "close" when the test says so, and no wall-clock positions loop runs beside the RPCs."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from common.clock import utc_now
from common.config import Settings
from common.control import ControlKey, write_control
from common.server import running_service
from common.tables import paper_balances, trade_executions, trade_recommendations
from crypto_trading.v1 import common_pb2, executor_pb2, executor_pb2_grpc
from executor_svc.server import DEFINITION
from tests.conftest import make_settings
from tests.executor_svc.test_service import EXECUTED, FAILED, process
from tests.support.rows import execution_row, position_rows, rec_status
from tests.support.seed import seed_candle, seed_recommendation

HOUR = 3600
EIGHT = Decimal("0.00000001")
# Two days ago, on the hour: the market time of the entries (all of it in the past of the wall clock).
BASE = (int(utc_now().timestamp()) // HOUR - 48) * HOUR
ENTRY = Decimal(100)  # the close of the candle before the entry: the BUY's market price
STOP, TARGET = Decimal(98), Decimal(104)
REASONS = {
    "stop_loss": common_pb2.EXIT_REASON_STOP_LOSS,
    "take_profit": common_pb2.EXIT_REASON_TAKE_PROFIT,
    "time_limit": common_pb2.EXIT_REASON_TIME_LIMIT,
}


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def executor_settings(database_url: str, **overrides: Any) -> Settings:
    return make_settings(database_url, market_data_source="replay", **overrides)


async def set_market_time(engine: AsyncEngine, seconds: int) -> None:
    """What the replay does before each step: the market time the services run on."""
    async with engine.begin() as conn:
        await write_control(conn, ControlKey.REPLAY_CLOCK, at(seconds).isoformat(), "test")


async def manage(port: int) -> executor_pb2.ManagePositionsResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = executor_pb2_grpc.TradeExecutorServiceStub(channel)
        return await stub.ManagePositions(executor_pb2.ManagePositionsRequest(), timeout=30)


async def balances(engine: AsyncEngine) -> dict[str, Decimal]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(paper_balances.c.asset, paper_balances.c.available))
        return {asset: Decimal(available) for asset, available in rows}


async def counts(engine: AsyncEngine) -> tuple[int, int]:
    """(recommendations, executions)."""
    async with engine.connect() as conn:
        recs = (await conn.execute(select(func.count()).select_from(trade_recommendations))).scalar_one()
        executions = (await conn.execute(select(func.count()).select_from(trade_executions))).scalar_one()
        return int(recs), int(executions)


async def recommendation(engine: AsyncEngine, rec_id: int) -> Any:
    async with engine.connect() as conn:
        query = select(trade_recommendations).where(trade_recommendations.c.id == rec_id)
        return (await conn.execute(query)).one()


@dataclass(frozen=True)
class Entry:
    symbol: str
    recommendation_id: int
    result: executor_pb2.ExecutionResult


async def buy(engine: AsyncEngine, port: int, symbol: str, *, low_before: Decimal = ENTRY) -> Entry:
    """The candle before BASE (close ENTRY; its low ``low_before``), the market at BASE, and a paper BUY of $100
    with stop STOP and target TARGET, executed."""
    await seed_candle(engine, symbol, BASE - HOUR, str(ENTRY), str(ENTRY), str(low_before), str(ENTRY))
    await set_market_time(engine, BASE)
    rec = await seed_recommendation(
        engine,
        symbol=symbol,
        amount_usd=Decimal(100),
        entry_price=ENTRY,
        amount_crypto=Decimal(1),
        stop_loss=STOP,
        take_profit=TARGET,
    )
    result = await process(port, rec)
    assert result.status == EXECUTED, result
    return Entry(symbol, rec, result)


def entry_cost(entry: Entry) -> Decimal:
    r = entry.result
    return (Decimal(r.filled_size) * Decimal(r.average_price)).quantize(EIGHT) + Decimal(r.fees)


async def test_a_paper_buy_opens_one_position(database_url: str, engine: AsyncEngine) -> None:
    settings = executor_settings(database_url)
    async with running_service(DEFINITION, settings) as service:
        # The candle before the entry fell through the stop: it closed before the position opened, so it counts not.
        entry = await buy(engine, service.port, "AAA-USD", low_before=Decimal(90))
        again = await seed_recommendation(engine, symbol="AAA-USD", amount_usd=Decimal(50))
        refused = await process(service.port, again)
        await set_market_time(engine, BASE + HOUR)  # an hour later, without a new candle
        managed = await manage(service.port)

    slipped = (ENTRY * (1 + settings.paper_slippage_bps / 10_000)).quantize(Decimal("1e-10"))
    size = (Decimal(100) / slipped).quantize(EIGHT, ROUND_DOWN)
    fee = ((size * slipped).quantize(EIGHT) * settings.paper_taker_fee_rate).quantize(EIGHT)
    assert (Decimal(entry.result.average_price), Decimal(entry.result.filled_size)) == (slipped, size)
    assert Decimal(entry.result.fees) == fee
    assert refused.status == FAILED
    assert "position in AAA-USD is open" in refused.error_reason
    assert (await execution_row(engine, again)).error_code == "POSITION_OPEN"
    assert (list(managed.exits), managed.open_positions) == ([], 1)

    (position,) = await position_rows(engine)
    assert (position.mode, position.symbol, position.status, position.open_key) == (
        "PAPER",
        "AAA-USD",
        "OPEN",
        "PAPER:AAA-USD",
    )
    assert (position.quantity, position.entry_price) == (size, slipped)
    assert position.entry_cost == (size * slipped).quantize(EIGHT) + fee == entry_cost(entry)
    assert (position.stop_loss, position.take_profit) == (STOP, TARGET)
    assert position.opened_at == at(BASE)  # market time
    assert position.entry_recommendation_id == entry.recommendation_id
    assert position.fees == fee
    assert (position.closed_at, position.exit_reason, position.realized_pnl) == (None, None, None)
    cash = await balances(engine)
    assert cash["USD"] == settings.paper_starting_cash_usd - position.entry_cost
    assert cash["AAA"] == position.quantity


@pytest.mark.parametrize(
    ("candle", "reason", "market_price"),
    [
        ((100, 101, 97, 99), "stop_loss", STOP),
        ((96, 97, 95, 96), "stop_loss", Decimal(96)),  # a gap through the stop: filled at the open
        ((100, 105, 99, "104.5"), "take_profit", TARGET),
        ((100, 105, 97, 101), "stop_loss", STOP),  # both in one candle: the stop (conservative)
    ],
    ids=["stop", "gap", "target", "both"],
)
async def test_a_later_candle_closes_the_position_once(
    database_url: str,
    engine: AsyncEngine,
    candle: tuple[Any, Any, Any, Any],
    reason: str,
    market_price: Decimal,
) -> None:
    settings = executor_settings(database_url)
    async with running_service(DEFINITION, settings) as service:
        entry = await buy(engine, service.port, "BBB-USD")
        # A SELL signal's recommendation waiting for the orchestrator: the protective exit sells the position first.
        pending_sell = await seed_recommendation(
            engine,
            symbol="BBB-USD",
            signal_id=424_242,
            signal_type="SELL",
            pending_key="BBB-USD:SELL",
            amount_crypto=Decimal(entry.result.filled_size),
        )
        # A candle before the market time has not closed yet: nothing happens.
        await seed_candle(engine, "BBB-USD", BASE, *(str(v) for v in candle))
        not_yet = await manage(service.port)
        await set_market_time(engine, BASE + HOUR)
        before = await counts(engine)
        managed = await manage(service.port)
        after = await counts(engine)
        again = await manage(service.port)
        late = await process(service.port, pending_sell)

    assert (list(not_yet.exits), not_yet.open_positions) == ([], 1)
    assert after == (before[0] + 1, before[1] + 1)  # one SELL recommendation, one execution
    assert (list(again.exits), again.open_positions) == ([], 0)
    assert await counts(engine) == after  # nothing more: not the second call, not the cancelled SELL
    (closed,) = managed.exits
    assert managed.open_positions == 0

    quantity = Decimal(entry.result.filled_size)
    exit_price = (market_price * (1 - settings.paper_slippage_bps / 10_000)).quantize(Decimal("1e-10"))
    proceeds = (quantity * exit_price).quantize(EIGHT)
    exit_fee = (proceeds * settings.paper_taker_fee_rate).quantize(EIGHT)
    pnl = proceeds - exit_fee - entry_cost(entry)
    assert closed.symbol == "BBB-USD"
    assert closed.reason == REASONS[reason]
    assert (Decimal(closed.exit_price), Decimal(closed.quantity)) == (exit_price, quantity)
    assert Decimal(closed.realized_pnl) == pnl

    sell = await recommendation(engine, closed.recommendation_id)
    assert (sell.signal_id, sell.symbol, sell.signal_type) == (None, "BBB-USD", "SELL")
    assert (sell.exit_reason, sell.execution_status, sell.amount_crypto) == (reason, "EXECUTED", quantity)
    execution = await execution_row(engine, closed.recommendation_id)
    assert (execution.side, execution.status, execution.mode) == ("SELL", "EXECUTED", "PAPER")
    assert (execution.filled_size, execution.average_price, execution.fees) == (quantity, exit_price, exit_fee)

    (position,) = await position_rows(engine)
    assert position.id == closed.position_id
    assert (position.status, position.open_key, position.exit_reason) == ("CLOSED", None, reason)
    assert (position.exit_recommendation_id, position.exit_price) == (closed.recommendation_id, exit_price)
    assert position.closed_at == at(BASE + HOUR)
    assert position.realized_pnl == pnl
    assert position.fees == Decimal(entry.result.fees) + exit_fee
    cash = await balances(engine)
    assert cash["USD"] == settings.paper_starting_cash_usd + pnl
    assert cash["BBB"] == 0

    # The SELL signal's recommendation was cancelled with the exit; executing it later sells nothing.
    assert await rec_status(engine, pending_sell) == "CANCELLED"
    assert (await recommendation(engine, pending_sell)).status_reason == f"position closed by {reason}"
    assert late.status == common_pb2.EXECUTION_STATUS_CANCELLED
    assert await execution_row(engine, pending_sell) is None


async def test_the_time_limit_closes_at_the_latest_close(database_url: str, engine: AsyncEngine) -> None:
    settings = executor_settings(database_url, max_holding_hours=2)
    async with running_service(DEFINITION, settings) as service:
        entry = await buy(engine, service.port, "CCC-USD")
        await seed_candle(engine, "CCC-USD", BASE, "101", "102", "99", "101")  # within the stop and the target
        await seed_candle(engine, "CCC-USD", BASE + HOUR, "101", "103", "100", "102")
        await set_market_time(engine, BASE + HOUR)
        early = await manage(service.port)  # open one hour of two
        await set_market_time(engine, BASE + 2 * HOUR)
        managed = await manage(service.port)
        again = await manage(service.port)

    assert (list(early.exits), early.open_positions) == ([], 1)
    (closed,) = managed.exits
    assert (list(again.exits), again.open_positions) == ([], 0)
    assert closed.reason == common_pb2.EXIT_REASON_TIME_LIMIT
    exit_price = (Decimal(102) * (1 - settings.paper_slippage_bps / 10_000)).quantize(Decimal("1e-10"))
    assert Decimal(closed.exit_price) == exit_price
    (position,) = await position_rows(engine)
    assert (position.status, position.exit_reason, position.exit_price) == ("CLOSED", "time_limit", exit_price)
    assert position.closed_at == at(BASE + 2 * HOUR)
    sell = await recommendation(engine, closed.recommendation_id)
    assert (sell.signal_id, sell.exit_reason, sell.execution_status) == (None, "time_limit", "EXECUTED")
    cash = await balances(engine)
    assert cash["USD"] == settings.paper_starting_cash_usd + position.realized_pnl
    assert position.realized_pnl == Decimal(closed.realized_pnl)
    assert position.realized_pnl == (
        (Decimal(entry.result.filled_size) * exit_price).quantize(EIGHT)
        - (await execution_row(engine, closed.recommendation_id)).fees
        - entry_cost(entry)
    )


async def test_two_executors_racing_close_each_position_once(database_url: str, engine: AsyncEngine) -> None:
    symbols = [f"X{i}-USD" for i in range(5)]
    settings = executor_settings(database_url)
    async with running_service(DEFINITION, settings) as one, running_service(DEFINITION, settings) as two:
        entries = [await buy(engine, one.port, symbol) for symbol in symbols]
        for symbol in symbols:
            await seed_candle(engine, symbol, BASE, "100", "100", "97", "97")  # through every stop
        await set_market_time(engine, BASE + HOUR)
        answers = await asyncio.gather(*(manage(port) for port in (one.port, two.port) * 3))

    exits = [e for answer in answers for e in answer.exits]
    assert sorted(e.symbol for e in exits) == symbols  # each closed once, by one of the calls
    assert all(e.reason == common_pb2.EXIT_REASON_STOP_LOSS for e in exits)
    positions = await position_rows(engine)
    assert {(p.symbol, p.status) for p in positions} == {(s, "CLOSED") for s in symbols}
    assert sorted(p.exit_recommendation_id for p in positions) == sorted(e.recommendation_id for e in exits)
    async with engine.connect() as conn:
        sells = (
            await conn.execute(
                select(trade_recommendations.c.symbol).where(trade_recommendations.c.exit_reason.is_not(None))
            )
        ).scalars()
        executed = (
            await conn.execute(
                select(trade_executions.c.recommendation_id, trade_executions.c.side).where(
                    trade_executions.c.side == "SELL"
                )
            )
        ).all()
    assert Counter(sells) == Counter(symbols)
    assert sorted(rec for rec, _ in executed) == sorted(e.recommendation_id for e in exits)
    cash = await balances(engine)
    assert cash["USD"] == settings.paper_starting_cash_usd + sum((p.realized_pnl for p in positions), Decimal(0))
    assert all(cash[s.split("-")[0]] == 0 for s in symbols)
    assert sum((entry_cost(e) for e in entries), Decimal(0)) == sum((p.entry_cost for p in positions), Decimal(0))
