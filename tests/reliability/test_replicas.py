"""Two generators, two bridges, two orchestrators and two executors against one MariaDB, 500 pending
recommendations with the cap lifted: each executed exactly once, no signal or recommendation duplicated.

A paper BUY opens a position and a symbol holds one position at a time: the 500 seeded BUYs are on 500 symbols of
their own (each with a price), and MAX_OPEN_POSITIONS is lifted so the bridges still admit the pipeline's BUYs.

Every service runs as its own process; generator A nudges bridge A, which nudges orchestrator A, which streams to
executor A (and likewise for B), all sharing one database. The test drives both replicas of every service at once
over real gRPC: Orchestrate on both orchestrators (in small batches, so the two claim from the same pending set),
Generate on both generators for the same symbols and candles, Bridge on both bridges."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from common.clock import utc_now
from common.database import create_engine
from common.services import SERVICE_NAMES, service
from common.tables import (
    market_candles,
    orchestrator_dispatches,
    paper_balances,
    trade_executions,
    trade_recommendations,
    trading_signals,
)
from crypto_trading.v1 import (
    bridge_pb2,
    bridge_pb2_grpc,
    generator_pb2,
    generator_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
)
from testkit.databases import clear_tables
from testkit.loops import wait_for_first_cycle
from testkit.ports import address, free_ports
from testkit.processes import PIPELINE_ENV, ServiceProcess, ServiceProcesses, stopped_at_the_end
from tests.support import outcomes
from tests.support.seed import bundled

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

HOUR = 3600
SYMBOLS = ["R000-USD", "R001-USD", "R002-USD"]
BUNDLED = ["BTC-USD", "ETH-USD", "LTC-USD"]
HISTORY = 260  # > MIN_HISTORY + 1 candles, so every symbol can be signalled on its last few candles
GENERATED_CANDLES = 4  # Generate on each of the newest candles, both generators at once
RECOMMENDATIONS = 500
STARTING_CASH = Decimal("1000000000")
USD_QUANTUM = Decimal("0.00000001")
ORCHESTRATE_BATCH = 40
SEEDED_SYMBOLS = [f"P{i:03d}-USD" for i in range(RECOMMENDATIONS)]
CLUSTER_ENV = PIPELINE_ENV | {
    "SELL_THRESHOLD": "0.99",
    "PAPER_STARTING_CASH_USD": str(STARTING_CASH),
    "MAX_OPEN_POSITIONS": "10000",
}


def _stamp(seconds: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromSeconds(seconds)
    return stamp


async def _seed_candles(engine: AsyncEngine) -> int:
    """HISTORY hourly candles per synthetic symbol (a window of a bundled series re-timed to end at the latest
    closed hour). Returns the start time of the newest candle."""
    last_start = (int(utc_now().timestamp()) // HOUR - 1) * HOUR
    first_start = last_start - (HISTORY - 1) * HOUR
    frames = await asyncio.to_thread(lambda: [bundled(s).tail(HISTORY) for s in BUNDLED])
    async with engine.begin() as conn:
        for symbol, frame in zip(SYMBOLS, frames, strict=True):
            rows = [
                {
                    "symbol": symbol,
                    "granularity": "ONE_HOUR",
                    "start_time": first_start + k * HOUR,
                    "open": Decimal(str(r.open)),
                    "high": Decimal(str(r.high)),
                    "low": Decimal(str(r.low)),
                    "close": Decimal(str(r.close)),
                    "volume": Decimal(str(r.volume)),
                    "source": "csv",
                }
                for k, r in enumerate(frame.itertuples(index=False))
            ]
            await conn.execute(insert(market_candles), rows)
    return last_start


async def _seed_recommendations(engine: AsyncEngine, price_start: int) -> list[int]:
    """RECOMMENDATIONS PENDING $10 BUYs (distinct signal ids), one per symbol of SEEDED_SYMBOLS, each with a candle
    (close 9000) starting at ``price_start``."""
    now = utc_now() - timedelta(seconds=5)
    price = Decimal("9000")
    candles = [
        {
            "symbol": symbol,
            "granularity": "ONE_HOUR",
            "start_time": price_start,
            "open": price,
            "high": price,
            "low": price,
            "close": price,
            "volume": Decimal(1),
            "source": "csv",
        }
        for symbol in SEEDED_SYMBOLS
    ]
    rows = [
        {
            "signal_id": 1_000_000 + i,
            "symbol": symbol,
            "pending_key": f"{symbol}:BUY",
            "signal_type": "BUY",
            "amount_usd": Decimal("10"),
            "confidence": Decimal("0.7000"),
            "entry_price": Decimal("9000"),
            "amount_crypto": Decimal("0.00111111"),
            "execution_status": "PENDING",
            "is_mock": True,
            "created_at": now,
            "updated_at": now,
        }
        for i, symbol in enumerate(SEEDED_SYMBOLS)
    ]
    async with engine.begin() as conn:
        await conn.execute(insert(market_candles), candles)
        await conn.execute(insert(trade_recommendations), rows)
        ids = await conn.execute(
            select(trade_recommendations.c.id).where(trade_recommendations.c.signal_id >= 1_000_000)
        )
        return sorted(ids.scalars())


def _start_cluster(processes: ServiceProcesses) -> tuple[dict[str, list[ServiceProcess]], list[int]]:
    """Two replicas of each service; replica X of every service talks to replica X of the next one. Returns them
    and the orchestrators' metrics ports."""
    free = free_ports(10)
    ports = {kind: free[2 * k : 2 * k + 2] for k, kind in enumerate(SERVICE_NAMES)}
    metrics = free[8:10]
    started: dict[str, list[ServiceProcess]] = {kind: [] for kind in ports}
    for replica, suffix in enumerate("ab"):
        peers = {f"{service(kind).env_prefix}_ADDR": address(ports[kind][replica]) for kind in SERVICE_NAMES}
        for kind in SERVICE_NAMES:
            env = dict(peers)
            if kind == "orchestrator":
                env["TRADE_ORCHESTRATOR_METRICS_PORT"] = str(metrics[replica])
            started[kind].append(processes.spawn(kind, f"{kind}-{suffix}", ports[kind][replica], env))
    return started, metrics


async def _count(engine: AsyncEngine, query: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def _quiet(engine: AsyncEngine) -> bool:
    """Nothing PENDING, no unprocessed BUY/SELL signal, no claim held."""
    r, s = trade_recommendations.c, trading_signals.c
    pending = await _count(
        engine, select(func.count()).select_from(trade_recommendations).where(r.execution_status == "PENDING")
    )
    claimed = await _count(
        engine, select(func.count()).select_from(trade_recommendations).where(r.claimed_by.is_not(None))
    )
    unprocessed = await _count(
        engine,
        select(func.count())
        .select_from(trading_signals)
        .where(s.processed.is_not(True), s.signal_type.in_(("BUY", "SELL"))),
    )
    return pending == 0 and claimed == 0 and unprocessed == 0


async def test_replicas_execute_each_recommendation_once(mysql_database: str, tmp_path: Path) -> None:
    await clear_tables(mysql_database)
    engine = create_engine(mysql_database)
    processes = ServiceProcesses(mysql_database, tmp_path / "logs", CLUSTER_ENV)
    async with stopped_at_the_end(processes, engine):
        last_start = await _seed_candles(engine)
        cluster, metrics_ports = _start_cluster(processes)
        await processes.wait_serving(within=90)
        # The orchestrators' own loop runs its first (full-cap) cycle 5 s after start-up (the next a day later):
        # let it pass first.
        await asyncio.gather(*(wait_for_first_cycle(port, "orchestrator") for port in metrics_ports))
        seeded = await _seed_recommendations(engine, last_start)
        assert len(seeded) == RECOMMENDATIONS

        channels = {s.name: grpc.aio.insecure_channel(s.address) for pair in cluster.values() for s in pair}
        try:
            orchestrators = [
                orchestrator_pb2_grpc.TradeOrchestratorServiceStub(channels[s.name]) for s in cluster["orchestrator"]
            ]
            generators = [generator_pb2_grpc.SignalGeneratorServiceStub(channels[s.name]) for s in cluster["generator"]]
            bridges = [bridge_pb2_grpc.SignalBridgeServiceStub(channels[s.name]) for s in cluster["bridge"]]

            generated: list[tuple[generator_pb2.GenerateResponse, ...]] = []
            bridged: list[bridge_pb2.BridgeResponse] = []
            orchestrated: list[orchestrator_pb2.OrchestrateResponse] = []
            producing = True
            racing = asyncio.Event()  # set once both orchestrators are claiming from the seeded set

            async def generate() -> None:
                for step in range(GENERATED_CANDLES - 1, -1, -1):  # oldest first, the newest candle last
                    as_of = _stamp(last_start - step * HOUR + HOUR)
                    request = generator_pb2.GenerateRequest(symbols=SYMBOLS, as_of=as_of)
                    pair = await asyncio.gather(*(g.Generate(request, timeout=60) for g in generators))
                    generated.append(tuple(pair))
                    # Both bridges at once on the signals just written (the generators' nudges race them too).
                    named = bridge_pb2.BridgeRequest(signal_ids=sorted({x.id for r in pair for x in r.signals}))
                    bridged.extend(await asyncio.gather(*(b.Bridge(named, timeout=60) for b in bridges)))

            async def bridge() -> None:
                for _ in range(GENERATED_CANDLES + 3):
                    bridged.extend(
                        await asyncio.gather(*(b.Bridge(bridge_pb2.BridgeRequest(), timeout=60) for b in bridges))
                    )
                    await asyncio.sleep(0.3)

            async def orchestrate() -> None:
                request = orchestrator_pb2.OrchestrateRequest(max_trades=ORCHESTRATE_BATCH)
                deadline = time.monotonic() + 40
                while time.monotonic() < deadline:
                    pair = await asyncio.gather(*(o.Orchestrate(request, timeout=60) for o in orchestrators))
                    orchestrated.extend(pair)
                    racing.set()
                    if all(r.remaining == 0 and not outcomes.executed(r) for r in pair):
                        if not producing:
                            return
                        await asyncio.sleep(0.05)  # nothing to claim until the pipeline adds some
                raise AssertionError("recommendations still pending after 40 s")

            async def produce() -> None:
                nonlocal producing
                await racing.wait()
                try:
                    await asyncio.gather(generate(), bridge())
                finally:
                    producing = False

            await asyncio.gather(orchestrate(), produce())

            # Nudges (generator -> bridge -> orchestrator) may still be on their way: wait until all is quiet.
            deadline = time.monotonic() + 20
            while not await _quiet(engine):
                assert time.monotonic() < deadline, "the pipeline did not settle within 20 s"
                await asyncio.gather(
                    *(o.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=60) for o in orchestrators)
                )
                await asyncio.sleep(0.3)
        finally:
            for channel in channels.values():
                await channel.close(None)

        for replicas in cluster.values():
            for service in replicas:
                assert service.running, f"{service.name} died:\n{service.log_tail()}"

        # --- the RPC answers ---
        for response in orchestrated:
            assert not response.executor_unreachable, response.executor_error
            assert not outcomes.failed(response), outcomes.failed(response)
        reported = Counter(o.recommendation_id for r in orchestrated for o in outcomes.executed(r))
        assert not [i for i, n in reported.items() if n > 1], "a recommendation was reported executed twice"
        by_orchestrator = [
            {o.recommendation_id for r in orchestrated[k::2] for o in outcomes.executed(r)} for k in range(2)
        ]
        # Both raced for the same rows (which one wins each claim is up to the scheduler, so neither is required to
        # win any): what one executed, the other never did.
        assert by_orchestrator[0] | by_orchestrator[1]
        assert not by_orchestrator[0] & by_orchestrator[1]

        signal_ids: dict[tuple[str, int], set[int]] = {}
        creators: Counter[tuple[str, int]] = Counter()
        for answers in generated:
            for answer in answers:
                assert len(answer.signals) == len(SYMBOLS), answer.skipped
                for signal in answer.signals:
                    key = (signal.symbol, signal.candle_time.seconds)
                    signal_ids.setdefault(key, set()).add(signal.id)
                    creators[key] += signal.created
        assert len(signal_ids) == len(SYMBOLS) * GENERATED_CANDLES
        assert all(len(ids) == 1 for ids in signal_ids.values()), "two generators wrote the same candle twice"

        bridged_signals = Counter(rec.signal_id for response in bridged for rec in response.recommendations)
        assert not [i for i, n in bridged_signals.items() if n > 1], "two bridges made a recommendation of one signal"

        # --- the database ---
        r, s, d = trade_recommendations.c, trading_signals.c, orchestrator_dispatches.c
        async with engine.connect() as conn:
            duplicate_signals = (
                await conn.execute(
                    select(s.symbol, s.candle_time, func.count())
                    .group_by(s.symbol, s.candle_time)
                    .having(func.count() > 1)
                )
            ).all()
            assert duplicate_signals == []
            stored_ids = {
                (row.symbol, int(row.candle_time.timestamp())): row.id
                for row in await conn.execute(select(s.id, s.symbol, s.candle_time))
            }
            for key, ids in signal_ids.items():
                assert stored_ids[key] in ids
            duplicate_recommendations = (
                await conn.execute(
                    select(r.signal_id, func.count())
                    .where(r.signal_id.is_not(None))
                    .group_by(r.signal_id)
                    .having(func.count() > 1)
                )
            ).all()
            assert duplicate_recommendations == []

            actionable = (
                await conn.execute(
                    select(s.id, s.processed, s.processed_reason).where(s.signal_type.in_(("BUY", "SELL")))
                )
            ).all()
            recommendations = {row.id: row for row in await conn.execute(select(r.id, r.signal_id, r.execution_status))}
            executions = (await conn.execute(select(trade_executions))).all()
            dispatches = Counter((await conn.execute(select(d.recommendation_id))).scalars())
            balances = {
                row.asset: Decimal(row.available)
                for row in await conn.execute(select(paper_balances.c.asset, paper_balances.c.available))
            }

        pipeline = [i for i in recommendations if i not in set(seeded)]
        assert pipeline, "the generators and bridges should have added recommendations of their own"
        assert {row.execution_status for row in recommendations.values()} == {"EXECUTED"}
        made_from = {row.signal_id for row in recommendations.values()}
        for row in actionable:
            assert row.processed, f"signal {row.id} was never bridged"
            assert (row.id in made_from) != (row.processed_reason is not None), row

        per_recommendation = Counter(x.recommendation_id for x in executions)
        assert len(executions) == len(per_recommendation) == RECOMMENDATIONS + len(pipeline)
        assert set(per_recommendation) == set(recommendations)
        for x in executions:
            assert x.status == recommendations[x.recommendation_id].execution_status
        assert all(dispatches[i] == 1 for i in recommendations), "a recommendation was dispatched twice"
        assert by_orchestrator[0] | by_orchestrator[1] <= set(recommendations)

        expected_usd = STARTING_CASH
        expected_held: defaultdict[str, Decimal] = defaultdict(Decimal)
        for x in executions:
            if x.status != "EXECUTED":
                continue
            quote = (Decimal(x.filled_size) * Decimal(x.average_price)).quantize(USD_QUANTUM)
            base = x.symbol.split("-", 1)[0]
            if x.side == "BUY":
                expected_usd -= quote + Decimal(x.fees)
                expected_held[base] += Decimal(x.filled_size)
            else:
                expected_usd += quote - Decimal(x.fees)
                expected_held[base] -= Decimal(x.filled_size)
        assert balances["USD"] == expected_usd
        for base, held in expected_held.items():
            assert balances[base] == held, base

        doubly_created = sorted(key for key, n in creators.items() if n > 1)

    # Exactly one generator reports each racing signal as created (and logs and nudges it).
    assert not doubly_created, doubly_created
