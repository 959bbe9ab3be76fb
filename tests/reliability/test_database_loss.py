"""Kill the services' MariaDB connections (KILL CONNECTION) mid-run: health goes NOT_SERVING (if it notices at all),
then SERVING again; nothing is lost or duplicated; no process needs a restart.

The executor, the orchestrator and the bridge run as real processes against one MariaDB database. The test kills
every connection to that database twice: once between two orchestration cycles (idle pooled connections: the
pool's pre-ping must replace them without a single failed RPC) and once repeatedly while a large Orchestrate is
streaming recommendations to the executor (transactions die half-way: they must roll back, stay PENDING, and be
executed exactly once by later cycles).

A paper BUY opens a position and a symbol holds one at a time: every seeded BUY is on a symbol of its own (with a
price), and MAX_OPEN_POSITIONS is lifted so the bridge still admits the signals' BUYs."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.clock import utc_now
from common.database import create_engine
from common.tables import market_candles, paper_balances, trade_executions, trade_recommendations, trading_signals
from crypto_trading.v1 import bridge_pb2, bridge_pb2_grpc, orchestrator_pb2, orchestrator_pb2_grpc
from testkit.databases import MYSQL_SERVER_URL, clear_tables
from testkit.ports import address, free_ports
from testkit.processes import PIPELINE_ENV, SERVING, ServiceProcess, ServiceProcesses, health_status, stopped_at_the_end
from tests.support import outcomes

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

HOUR = 3600
SYMBOLS = ["K000-USD", "K001-USD", "K002-USD"]
PRICES = {"K000-USD": Decimal("20000"), "K001-USD": Decimal("1500"), "K002-USD": Decimal("0.5")}
STARTING_CASH = Decimal("1000000000")
USD_QUANTUM = Decimal("0.00000001")
RECOVERY_SECONDS = 15.0
KILLING_SECONDS = 1.5
ENV = PIPELINE_ENV | {
    "PAPER_STARTING_CASH_USD": str(STARTING_CASH),
    # A claim whose cycle died with its connection is taken over after this long.
    "CLAIM_TTL_SECONDS": "3",
    "EXECUTOR_TIMEOUT_SECONDS": "10",
    "MAX_OPEN_POSITIONS": "10000",
}
LEVELS = list(PRICES.values())  # the seeded BUYs' prices, in turn


def _candles(prices: dict[str, Decimal]) -> list[dict[str, Any]]:
    """One candle per symbol (the last closed hour), at its price: what paper fills use."""
    start = (int(utc_now().timestamp()) // HOUR - 1) * HOUR
    return [
        {
            "symbol": symbol,
            "granularity": "ONE_HOUR",
            "start_time": start,
            "open": price,
            "high": price,
            "low": price,
            "close": price,
            "volume": Decimal(1),
            "source": "csv",
        }
        for symbol, price in prices.items()
    ]


async def _seed_prices(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(market_candles), _candles(PRICES))


async def _seed_recommendations(engine: AsyncEngine, count: int, first_signal_id: int) -> list[int]:
    """``count`` PENDING $10 BUYs (distinct signal ids), each on a symbol of its own with a price."""
    now = utc_now() - timedelta(seconds=5)
    prices = {f"B{first_signal_id + i}-USD": LEVELS[i % len(LEVELS)] for i in range(count)}
    rows = [
        {
            "signal_id": first_signal_id + i,
            "symbol": symbol,
            "pending_key": f"{symbol}:BUY",
            "signal_type": "BUY",
            "amount_usd": Decimal("10"),
            "confidence": Decimal("0.7000"),
            "entry_price": price,
            "amount_crypto": Decimal("0.0001"),
            "execution_status": "PENDING",
            "is_mock": True,
            "created_at": now,
            "updated_at": now,
        }
        for i, (symbol, price) in enumerate(prices.items())
    ]
    r = trade_recommendations.c
    async with engine.begin() as conn:
        await conn.execute(insert(market_candles), _candles(prices))
        await conn.execute(insert(trade_recommendations), rows)
        ids = await conn.execute(select(r.id).where(r.signal_id.between(first_signal_id, first_signal_id + count - 1)))
        return sorted(ids.scalars())


async def _seed_signals(engine: AsyncEngine) -> list[int]:
    """One fresh BUY signal per symbol of SYMBOLS (no position yet: a BUY of a symbol with one is refused)."""
    now = utc_now()
    candle = (int(now.timestamp()) // HOUR - 1) * HOUR
    ids = []
    async with engine.begin() as conn:
        for symbol, price in PRICES.items():
            result = await conn.execute(
                insert(trading_signals).values(
                    symbol=symbol,
                    price=price,
                    signal_type="BUY",
                    confidence=Decimal("0.8000"),
                    model="test",
                    candle_time=datetime.fromtimestamp(candle, UTC),
                    timestamp=now,
                    created_at=now,
                    processed=False,
                )
            )
            ids.append(int(result.inserted_primary_key[0]))  # type: ignore[index]
    return ids


async def _sessions(conn: AsyncConnection, database: str) -> list[int]:
    query = text("SELECT id FROM information_schema.PROCESSLIST WHERE db = :db AND id <> CONNECTION_ID()")
    return [int(i) for i in (await conn.execute(query, {"db": database})).scalars()]


async def _kill_connections(database: str, *, wait: bool = True) -> int:
    """KILL CONNECTION every session whose default database is ``database``; returns how many were killed. With
    ``wait``, returns once none of them is left (KILL only flags the session; the server ends it a moment later)."""
    admin = create_engine(f"{MYSQL_SERVER_URL}/mysql", pool_size=1)
    killed: list[int] = []
    try:
        async with admin.connect() as conn:
            for session in await _sessions(conn, database):
                try:
                    await conn.execute(text(f"KILL CONNECTION {session}"))
                    killed.append(session)
                except DBAPIError:  # 1094 unknown thread id: it ended by itself meanwhile
                    pass
            deadline = time.monotonic() + 10
            while wait and set(killed) & set(await _sessions(conn, database)):
                assert time.monotonic() < deadline, "killed sessions did not go away"
                await asyncio.sleep(0.02)
    finally:
        await admin.dispose()
    return len(killed)


async def _keep_killing(database: str, seconds: float) -> int:
    kills = 0
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        kills += await _kill_connections(database, wait=False)
        await asyncio.sleep(0.05)
    # The last sessions are really gone before the test goes on.
    return kills + await _kill_connections(database)


class Watch:
    """Polls the health of every service on its own full name and remembers every status seen."""

    def __init__(self, services: list[ServiceProcess]) -> None:
        self.services = services
        self.seen: dict[str, set[int]] = defaultdict(set)

    async def statuses(self) -> dict[str, int]:
        answers = await asyncio.gather(*(health_status(s.address, s.full_service_name) for s in self.services))
        out = dict(zip((s.name for s in self.services), answers, strict=True))
        for name, status in out.items():
            self.seen[name].add(status)
        return out

    async def all_serving(self, within: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < within:
            if set((await self.statuses()).values()) == {SERVING}:
                return time.monotonic() - started
            await asyncio.sleep(0.1)
        raise AssertionError(f"not every service SERVING again within {within}s: {await self.statuses()}")


async def _retry(call: Callable[[], Any], errors: list[grpc.StatusCode], within: float) -> Any:
    """``call`` until it answers (RPC errors are recorded in ``errors``), for at most ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            errors.append(exc.code())
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _orchestrate_all(
    stub: orchestrator_pb2_grpc.TradeOrchestratorServiceStub,
    engine: AsyncEngine,
    errors: list[grpc.StatusCode],
    within: float = RECOVERY_SECONDS,
) -> list[orchestrator_pb2.OrchestrateResponse]:
    """Orchestrate until nothing is PENDING (RPC failures are recorded and retried)."""
    r = trade_recommendations.c
    responses = []
    deadline = time.monotonic() + within
    while True:
        response = await _retry(
            lambda: stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=30), errors, within
        )
        responses.append(response)
        async with engine.connect() as conn:
            pending = (
                await conn.execute(
                    select(func.count()).select_from(trade_recommendations).where(r.execution_status == "PENDING")
                )
            ).scalar_one()
        if pending == 0:
            return responses
        assert time.monotonic() < deadline, f"{pending} recommendation(s) still PENDING after {within}s"
        await asyncio.sleep(0.2)


async def test_services_survive_killed_database_connections(mysql_database: str, tmp_path: Path) -> None:
    await clear_tables(mysql_database)
    database = make_url(mysql_database).database
    assert database
    engine = create_engine(mysql_database)
    processes = ServiceProcesses(mysql_database, tmp_path / "logs", ENV)
    async with stopped_at_the_end(processes, engine):
        await _seed_prices(engine)
        executor_port, orchestrator_port, bridge_port = free_ports(3)
        peers = {
            "TRADE_EXECUTOR_ADDR": address(executor_port),
            "TRADE_ORCHESTRATOR_ADDR": address(orchestrator_port),
        }
        services = [
            processes.spawn("executor", "executor", executor_port, peers),
            processes.spawn("orchestrator", "orchestrator", orchestrator_port, peers),
            processes.spawn("bridge", "bridge", bridge_port, peers),
        ]
        await processes.wait_serving(within=60)
        pids = {s.name: s.process.pid for s in services}
        watch = Watch(services)
        errors: list[grpc.StatusCode] = []  # RPC failures outside the killing spree: there must be none
        midrun_errors: list[grpc.StatusCode] = []  # Orchestrate failures while connections were being killed
        midrun: list[orchestrator_pb2.OrchestrateResponse] = []

        async with (
            grpc.aio.insecure_channel(address(orchestrator_port)) as orchestrator_channel,
            grpc.aio.insecure_channel(address(bridge_port)) as bridge_channel,
        ):
            orchestrator = orchestrator_pb2_grpc.TradeOrchestratorServiceStub(orchestrator_channel)
            bridge = bridge_pb2_grpc.SignalBridgeServiceStub(bridge_channel)

            # 1. A normal run: every connection pool is warm.
            first = await _seed_recommendations(engine, 60, 2_000_000)
            await _orchestrate_all(orchestrator, engine, errors)

            # 2. Kill every (idle) connection of the database, then use every service again: the pools' pre-ping
            #    must replace the dead connections before anyone notices.
            killed = await _kill_connections(database)
            assert killed >= len(services), f"only {killed} connection(s) found to kill"
            recovery = await watch.all_serving(RECOVERY_SECONDS)
            second = await _seed_recommendations(engine, 60, 3_000_000)
            signals = await _seed_signals(engine)
            bridged = await _retry(
                lambda: bridge.Bridge(bridge_pb2.BridgeRequest(signal_ids=signals), timeout=30), errors, 10
            )
            assert len(bridged.recommendations) == len(signals), bridged
            await _orchestrate_all(orchestrator, engine, errors)

            # 3. Kill every connection again and again (every 50 ms for 1.5 s) while 400 recommendations are being
            #    claimed, streamed to the executor and settled: cycles die half-way; then all must recover.
            third = await _seed_recommendations(engine, 400, 4_000_000)
            killing = asyncio.create_task(_keep_killing(database, KILLING_SECONDS))
            while not killing.done():
                try:
                    midrun.append(await orchestrator.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=30))
                except grpc.aio.AioRpcError as exc:
                    midrun_errors.append(exc.code())
                await asyncio.sleep(0.02)
            kills = await killing
            await watch.all_serving(RECOVERY_SECONDS)
            await _orchestrate_all(orchestrator, engine, errors, within=RECOVERY_SECONDS + 5)

        for service in services:
            assert service.running, f"{service.name} exited:\n{service.log_tail()}"
            assert service.process.pid == pids[service.name]
        assert not errors, f"RPCs failed outside the killing spree: {errors}"
        assert kills >= len(services)
        assert midrun_errors or any(outcomes.retry_later(m) for m in midrun), "the killing spree interrupted no cycle"

        r = trade_recommendations.c
        async with engine.connect() as conn:
            statuses = dict((await conn.execute(select(r.id, r.execution_status))).tuples().all())
            claimed = (await conn.execute(select(r.id).where(r.claimed_by.is_not(None)))).scalars().all()
            executions = (await conn.execute(select(trade_executions))).all()
            usd = (
                await conn.execute(select(paper_balances.c.available).where(paper_balances.c.asset == "USD"))
            ).scalar_one()
        made = [rec.id for rec in bridged.recommendations]
        everything = first + second + made + third
        assert sorted(statuses) == sorted(everything)
        assert set(statuses.values()) == {"EXECUTED"}, Counter(statuses.values())
        assert claimed == []
        per_recommendation = Counter(x.recommendation_id for x in executions)
        assert len(executions) == len(everything)
        assert set(per_recommendation) == set(everything)
        assert {x.status for x in executions} == {"EXECUTED"}
        spent = sum(
            (Decimal(x.filled_size) * Decimal(x.average_price)).quantize(USD_QUANTUM) + Decimal(x.fees)
            for x in executions
        )
        assert Decimal(usd) == STARTING_CASH - spent
        print(
            f"health back {recovery:.2f}s after the idle kill ({killed} sessions); {kills} sessions killed mid-run; "
            f"statuses seen {dict(watch.seen)}; mid-run RPC failures {Counter(c.name for c in midrun_errors)}"
        )

        # A lost database is a transient condition: UNAVAILABLE (retryable), never INTERNAL or UNKNOWN.
        assert {c.name for c in midrun_errors} <= {"UNAVAILABLE"}, Counter(c.name for c in midrun_errors)

        dropped = [m.executor_error for m in midrun if "answered" in m.executor_error]

    # The stream answers every request even while the database is being lost (an UNAVAILABLE item, status
    # PENDING), so the orchestrator never sees "answered n of m".
    assert not dropped, dropped[:3]
