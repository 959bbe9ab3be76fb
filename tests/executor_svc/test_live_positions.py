"""Live positions against the fake Coinbase (issue 16), on SQLite and MariaDB: the BUY carries its take-profit /
stop-loss bracket and opens the position in the same transaction as its execution; the bracket's fill is recorded
once as the exit; the time limit and a SELL signal cancel the bracket, confirm it, then sell; a bracket that fills
while it is being cancelled wins and nothing more is sold; a crash between the BUY and its bookkeeping ends with
one position, one bracket and no second order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
from sqlalchemy import select, update

from common.clock import utc_now
from common.database import create_engine
from common.server import running_service
from common.tables import positions, trade_executions, trade_recommendations
from crypto_trading.v1 import common_pb2, executor_pb2, executor_pb2_grpc
from executor_svc.coinbase_auth import load_credentials
from executor_svc.coinbase_client import CoinbaseClient
from executor_svc.execution import Executor
from executor_svc.exits import ExitRules
from executor_svc.live_broker import LiveBroker
from executor_svc.repository import ExecutorRepository
from executor_svc.server import DEFINITION
from tests.executor_svc.test_service import crash_after_send, process, wait_for_status
from tests.support.fake_coinbase import FakeCoinbase, live_settings
from tests.support.rows import execution_row, rec_status
from tests.support.seed import seed_recommendation

EXECUTED = common_pb2.EXECUTION_STATUS_EXECUTED
FAILED = common_pb2.EXECUTION_STATUS_FAILED
CANCELLED = common_pb2.EXECUTION_STATUS_CANCELLED
SYMBOL = "BTC-USD"  # the fake's price: 9000
TAKE_PROFIT, STOP_LOSS = Decimal("9900.004"), Decimal("8500.001")  # rounded: 9900.00 (down), 8500.01 (up)
QUIET = {"position_check_interval_seconds": 3600, "reconcile_interval_seconds": 3600}


@pytest.fixture
def coins(fake: FakeCoinbase) -> FakeCoinbase:
    """The account holds no BTC but what it buys: a SELL while the bracket holds the coins is refused."""
    fake.balances["BTC"] = Decimal(0)
    return fake


async def seed_buy(engine: Any, **overrides: Any) -> int:
    values: dict[str, Any] = {"symbol": SYMBOL, "take_profit": TAKE_PROFIT, "stop_loss": STOP_LOSS} | overrides
    return await seed_recommendation(engine, **values)


async def seed_sell(engine: Any) -> int:
    return await seed_recommendation(engine, symbol=SYMBOL, signal_type="SELL", amount_crypto=Decimal("0.5"))


async def manage(port: int) -> executor_pb2.ManagePositionsResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = executor_pb2_grpc.TradeExecutorServiceStub(channel)
        return await stub.ManagePositions(executor_pb2.ManagePositionsRequest(), timeout=30)


async def position_rows(engine: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(positions).order_by(positions.c.id))).all())


async def exit_recommendations(engine: Any) -> list[Any]:
    query = select(trade_recommendations).where(trade_recommendations.c.exit_reason.is_not(None))
    async with engine.connect() as conn:
        return list((await conn.execute(query.order_by(trade_recommendations.c.id))).all())


async def executions_of_order(engine: Any, order_id: str) -> list[Any]:
    query = select(trade_executions).where(trade_executions.c.exchange_order_id == order_id)
    async with engine.connect() as conn:
        return list((await conn.execute(query)).all())


def sell_bodies(fake: FakeCoinbase) -> list[dict[str, Any]]:
    return [b for b in fake.order_bodies if b["side"] == "SELL"]


def racing(read: Callable[[str], Awaitable[Any]], barrier: asyncio.Barrier) -> Callable[[str], Awaitable[Any]]:
    """``read``, whose first call waits until the other racer has made its own."""
    waited = False

    async def wrapped(order_id: str) -> Any:
        nonlocal waited
        state = await read(order_id)
        if not waited:
            waited = True
            await asyncio.wait_for(barrier.wait(), 10)
        return state

    return wrapped


@dataclass
class Clock:
    now: datetime = field(default_factory=utc_now)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Live:
    executor: Executor
    client: CoinbaseClient
    clock: Clock


@pytest.fixture
async def live(database_url: str, coins: FakeCoinbase) -> AsyncIterator[Callable[[], Live]]:
    """Live executors built as the server builds them, each on its own engine and client, sharing one clock."""
    clock = Clock()
    made: list[tuple[Any, CoinbaseClient]] = []

    def build() -> Live:
        engine = create_engine(database_url)
        client = CoinbaseClient(
            coins.base_url, load_credentials(coins.key_name, coins.private_key_pem), max_retries=2, backoff=0.01
        )
        made.append((engine, client))
        executor = Executor(
            ExecutorRepository(engine),
            LiveBroker(client),
            clock,
            exit_rules=ExitRules(max_holding=timedelta(hours=24)),
        )
        return Live(executor, client, clock)

    yield build
    for engine, client in made:
        await client.close()
        await engine.dispose()


async def test_a_live_buy_carries_its_bracket_and_opens_the_position_with_its_execution(
    database_url: str, engine: Any, coins: FakeCoinbase
) -> None:
    buy = await seed_buy(engine)
    again = await seed_buy(engine, created_at=utc_now())
    async with running_service(DEFINITION, live_settings(database_url, coins, **QUIET)) as service:
        result = await process(service.port, buy)
        assert result.status == EXECUTED
        second = await process(service.port, again)  # a position is open in the symbol: nothing is sent
    (body,) = coins.order_bodies
    assert body["order_configuration"] == {"market_market_ioc": {"quote_size": "100.00"}}
    assert body["attached_order_configuration"] == {
        "trigger_bracket_gtc": {"limit_price": "9900.00", "stop_trigger_price": "8500.01"}  # no size: the parent's
    }
    bracket = coins.bracket_of(result.exchange_order_id)
    assert bracket["status"] == "OPEN"
    (row,) = await position_rows(engine)
    filled, price, fees = Decimal(result.filled_size), Decimal(result.average_price), Decimal(result.fees)
    assert (row.mode, row.symbol, row.status, row.open_key) == ("LIVE", SYMBOL, "OPEN", f"LIVE:{SYMBOL}")
    assert (row.quantity, row.entry_price, row.fees) == (filled, price, fees)
    assert row.entry_cost == (filled * price).quantize(Decimal("1e-8")) + fees
    assert (row.take_profit, row.stop_loss) == (Decimal("9900.00"), Decimal("8500.01"))
    assert (row.bracket_order_id, row.entry_recommendation_id) == (bracket["order_id"], buy)
    assert (await execution_row(engine, buy)).status == "EXECUTED"
    assert (second.status, await rec_status(engine, again)) == (FAILED, "FAILED")
    assert "position in BTC-USD is open" in second.error_reason
    assert (await execution_row(engine, again)).error_code == "POSITION_OPEN"
    assert coins.order_posts == 1


async def test_a_buy_refused_for_funds_fails_with_the_exchange_reason_and_is_never_retried(
    database_url: str, engine: Any, coins: FakeCoinbase
) -> None:
    coins.balances["USD"] = Decimal(10)
    buy = await seed_buy(engine)
    async with running_service(DEFINITION, live_settings(database_url, coins, **QUIET)) as service:
        result = await process(service.port, buy)
        replayed = await process(service.port, buy)
    assert (result.status, result.error_reason) == (FAILED, "INSUFFICIENT_FUND: no cash")
    assert replayed.replayed
    assert replayed.status == FAILED
    assert await rec_status(engine, buy) == "FAILED"
    assert (coins.order_posts, coins.distinct_orders()) == (1, 0)
    assert await position_rows(engine) == []


@pytest.mark.parametrize(
    ("leg", "price", "exit_price"),
    [
        ("take_profit", None, Decimal("9900.00")),
        ("stop_loss", Decimal("8400"), Decimal("8400")),  # a gap through the stop: the stop-limit fills below it
    ],
)
async def test_a_bracket_fill_is_recorded_once_as_the_exit(
    engine: Any, coins: FakeCoinbase, live: Callable[[], Live], leg: Any, price: Decimal | None, exit_price: Decimal
) -> None:
    one, two = live(), live()
    buy = await seed_buy(engine)
    bought = await one.executor.process(buy)
    coins.trigger_bracket(bought.exchange_order_id, leg, price)
    bracket = coins.bracket_of(bought.exchange_order_id)
    # Two executors at once, both seeing the open position and the filled bracket before either records it (a
    # barrier in their Get Order), then again (a restart): one exit.
    barrier = asyncio.Barrier(2)
    for racer in (one, two):
        racer.client.get_bracket = racing(racer.client.get_bracket, barrier)  # type: ignore[method-assign,assignment]
    (first, _), (second, _) = await asyncio.gather(one.executor.manage_positions(), two.executor.manage_positions())
    exits = [*first, *second]
    assert len(exits) == 1
    assert await one.executor.manage_positions() == ([], 0)
    (row,) = await position_rows(engine)
    (rec,) = await exit_recommendations(engine)
    (execution,) = await executions_of_order(engine, bracket["order_id"])
    assert (row.status, row.open_key, row.exit_reason, row.exit_price) == ("CLOSED", None, leg, exit_price)
    assert (rec.signal_id, rec.signal_type, rec.exit_reason, rec.execution_status) == (None, "SELL", leg, "EXECUTED")
    assert (row.exit_recommendation_id, exits[0].recommendation_id) == (rec.id, rec.id)
    assert (execution.recommendation_id, execution.status, execution.mode) == (rec.id, "EXECUTED", "LIVE")
    exit_fee = Decimal(bracket["total_fees"])
    proceeds = (row.quantity * exit_price).quantize(Decimal("1e-8"))
    assert row.realized_pnl == proceeds - exit_fee - row.entry_cost == exits[0].realized_pnl
    assert row.fees == (bought.fees or 0) + exit_fee
    assert coins.order_posts == 1  # the bracket sold: the executor sent nothing
    # The reconciliation knows the bracket and its recorded exit.
    report = await one.executor.reconcile(one.client, timedelta(hours=1))
    assert (report.unknown, report.mismatches) == ([], [])


async def test_the_time_limit_cancels_the_bracket_then_sells_what_is_held(
    engine: Any, coins: FakeCoinbase, live: Callable[[], Live]
) -> None:
    one = live()
    buy = await seed_buy(engine)
    bought = await one.executor.process(buy)
    bracket_id = coins.bracket_of(bought.exchange_order_id)["order_id"]
    one.clock.now += timedelta(hours=23)
    assert await one.executor.manage_positions() == ([], 1)  # not yet
    assert coins.cancel_requests == []
    one.clock.now += timedelta(hours=1, seconds=1)
    exits, still_open = await one.executor.manage_positions()
    assert still_open == 0
    (closed,) = exits
    assert coins.cancel_requests == [[bracket_id]]
    assert coins.orders[bracket_id]["status"] == "CANCELLED"
    (sell,) = sell_bodies(coins)  # accepted only once the bracket no longer held the coins
    assert Decimal(sell["order_configuration"]["market_market_ioc"]["base_size"]) == bought.filled_size
    (row,) = await position_rows(engine)
    (rec,) = await exit_recommendations(engine)
    assert (row.status, row.exit_reason, row.exit_recommendation_id) == ("CLOSED", "time_limit", rec.id)
    assert (rec.exit_reason, rec.execution_status, rec.signal_id) == ("time_limit", "EXECUTED", None)
    assert (closed.reason, closed.recommendation_id, closed.realized_pnl) == ("time_limit", rec.id, row.realized_pnl)
    assert coins.held("BTC") == 0
    assert coins.balances["BTC"] == 0


async def test_a_sell_signal_cancels_the_bracket_confirms_it_then_sells_the_position(
    database_url: str, engine: Any, coins: FakeCoinbase
) -> None:
    buy = await seed_buy(engine)
    sell = await seed_sell(engine)
    async with running_service(DEFINITION, live_settings(database_url, coins, **QUIET)) as service:
        bought = await process(service.port, buy)
        sold = await process(service.port, sell)
    bracket_id = coins.bracket_of(bought.exchange_order_id)["order_id"]
    assert sold.status == EXECUTED
    assert coins.cancel_requests == [[bracket_id]]
    assert coins.orders[bracket_id]["status"] == "CANCELLED"
    (body,) = sell_bodies(coins)  # the whole position, not the 0.5 the recommendation names
    assert Decimal(body["order_configuration"]["market_market_ioc"]["base_size"]) == Decimal(bought.filled_size)
    (row,) = await position_rows(engine)
    assert (row.status, row.exit_reason, row.exit_recommendation_id) == ("CLOSED", "signal", sell)
    proceeds = (Decimal(sold.filled_size) * Decimal(sold.average_price)).quantize(Decimal("1e-8"))
    assert row.realized_pnl == proceeds - Decimal(sold.fees) - row.entry_cost
    assert await exit_recommendations(engine) == []  # a signal's SELL is the exit: no other recommendation


@pytest.mark.parametrize("cancel_succeeds", [False, True])
async def test_a_bracket_that_fills_while_the_sell_cancels_it_wins_and_nothing_more_is_sold(
    database_url: str, engine: Any, coins: FakeCoinbase, cancel_succeeds: bool
) -> None:
    buy = await seed_buy(engine)
    sell = await seed_sell(engine)
    async with running_service(DEFINITION, live_settings(database_url, coins, **QUIET)) as service:
        bought = await process(service.port, buy)
        coins.fill_before_cancel(bought.exchange_order_id, "take_profit", cancel_succeeds=cancel_succeeds)
        result = await process(service.port, sell)
        await manage(service.port)  # the positions loop sees the same fill: still one exit
    bracket = coins.bracket_of(bought.exchange_order_id)
    assert bracket["status"] == "FILLED"
    assert (result.status, await rec_status(engine, sell)) == (CANCELLED, "CANCELLED")
    assert "position closed by take_profit" in result.error_reason
    assert sell_bodies(coins) == []
    assert coins.order_posts == 1
    (row,) = await position_rows(engine)
    (rec,) = await exit_recommendations(engine)
    assert (row.status, row.exit_reason, row.exit_recommendation_id) == ("CLOSED", "take_profit", rec.id)
    assert len(await executions_of_order(engine, bracket["order_id"])) == 1
    assert (await execution_row(engine, sell)).status == "CANCELLED"


async def test_a_sell_after_the_bracket_closed_the_position_is_cancelled_and_one_without_a_position_fails(
    database_url: str, engine: Any, coins: FakeCoinbase
) -> None:
    lone = await seed_recommendation(engine, symbol="ETH-USD", signal_type="SELL", amount_crypto=Decimal("1"))
    buy = await seed_buy(engine)
    async with running_service(DEFINITION, live_settings(database_url, coins, **QUIET)) as service:
        failed = await process(service.port, lone)
        bought = await process(service.port, buy)
        coins.trigger_bracket(bought.exchange_order_id, "stop_loss")
        await manage(service.port)
        late = await seed_sell(engine)
        result = await process(service.port, late)
    assert (failed.status, await rec_status(engine, lone)) == (FAILED, "FAILED")
    assert "no open LIVE position in ETH-USD" in failed.error_reason
    assert (await execution_row(engine, lone)).error_code == "NO_POSITION"
    assert (result.status, result.error_reason) == (CANCELLED, "position closed by stop_loss; nothing sold")
    assert coins.order_posts == 1
    assert coins.cancel_requests == []


async def test_a_crash_between_the_buy_and_its_bookkeeping_ends_with_one_position_one_bracket_no_second_order(
    database_url: str, engine: Any, coins: FakeCoinbase, monkeypatch: pytest.MonkeyPatch
) -> None:
    buy = await seed_buy(engine)
    await crash_after_send(database_url, coins, buy, monkeypatch)  # accepted, then the process dies
    assert (coins.distinct_orders(), await position_rows(engine)) == (2, [])  # the BUY and its bracket
    (parent,) = [o for o in coins.orders.values() if o["order_type"] == "MARKET"]
    async with running_service(DEFINITION, live_settings(database_url, coins, **QUIET)) as service:
        await wait_for_status(engine, buy, "EXECUTED")  # start-up recovery: the same client_order_id
        await manage(service.port)
        await manage(service.port)
    assert await rec_status(engine, buy) == "EXECUTED"
    (row,) = await position_rows(engine)
    assert (row.status, row.bracket_order_id) == ("OPEN", coins.bracket_of(parent["order_id"])["order_id"])
    assert (await execution_row(engine, buy)).exchange_order_id == parent["order_id"]
    assert coins.distinct_orders() == 2  # no second BUY, no second bracket
    assert coins.order_posts == 2
    assert coins.cancel_requests == []


async def test_a_position_that_lost_its_bracket_id_finds_it_and_follows_it(
    engine: Any, coins: FakeCoinbase, live: Callable[[], Live]
) -> None:
    one = live()
    bought = await one.executor.process(await seed_buy(engine))
    async with engine.begin() as conn:  # bookkeeping that never learnt the bracket's id
        await conn.execute(update(positions).values(bracket_order_id=None))
    bracket_id = coins.bracket_of(bought.exchange_order_id)["order_id"]
    assert await one.executor.manage_positions() == ([], 1)
    assert (await position_rows(engine))[0].bracket_order_id == bracket_id
    coins.trigger_bracket(bracket_id, "take_profit")
    (exit_,), still_open = await one.executor.manage_positions()
    assert (exit_.reason, still_open) == ("take_profit", 0)
