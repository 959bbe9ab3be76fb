"""The benchmark scenarios (issue: benchmarks). Each runs real service processes over real gRPC against a fresh
database of the given engine and returns a JSON-able dict. Targets are goals reported next to the numbers, never
assertions."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import func, select, update

from bench.harness import Cluster, bench_database, rss_mb, summary_ms
from bench.seed import (
    seed_candles,
    seed_five_minute_candles,
    seed_prices,
    seed_recommendations,
    synthetic_symbols,
)
from common.database import create_engine
from common.lifecycle import ExecutionStatus
from common.services import service
from common.tables import system_control, trade_executions, trade_recommendations
from crypto_trading.v1 import (
    executor_pb2,
    executor_pb2_grpc,
    generator_pb2,
    generator_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
)
from testkit.loops import wait_for_first_cycle
from testkit.ports import free_port
from testkit.processes import PIPELINE_ENV, wait_serving

HOUR = 3600
FIVE_MINUTES = 300
HISTORY = 500
# CANDLE_GRANULARITY=FIVE_MINUTE: the generator reads this many hours of 5-minute candles per symbol
# (generation.FIVE_MINUTE_HISTORY_HOURS, HISTORY hourly bars and a day of room for gaps).
FIVE_MINUTE_HISTORY_HOURS = HISTORY + 24
# A paper BUY opens a position, one per symbol, at most MAX_OPEN_POSITIONS at once: the scenarios that push many
# BUYs through spread them over as many symbols and lift the limit (bench configuration only).
BENCH_ENV = PIPELINE_ENV | {"MAX_OPEN_POSITIONS": "10000"}


def _ts(start_time: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromSeconds(start_time)
    return stamp


async def _generation_rpc(symbols: list[str], cluster: Cluster, last_start: int, steps: int) -> list[float]:
    """Generate for ``symbols`` on ``steps + 1`` consecutive closed candles, oldest first, each call writing new
    signals (as_of is the close time of the candle, so it is the latest closed one). The newest seeded candle is
    left out: the generator's start-up cycle has already written its signals."""
    samples = []
    async with grpc.aio.insecure_channel(cluster.address("generator")) as channel:
        stub = generator_pb2_grpc.SignalGeneratorServiceStub(channel)
        for i in range(steps + 1):
            candle_start = last_start - (steps - i + 1) * HOUR
            started = time.perf_counter()
            response = await stub.Generate(
                generator_pb2.GenerateRequest(symbols=symbols, as_of=_ts(candle_start + HOUR)), timeout=60
            )
            elapsed = time.perf_counter() - started
            if i > 0:  # the first call warms the caches
                samples.append(elapsed)
            if not response.signals:
                raise RuntimeError(f"Generate wrote no signals: {list(response.skipped)[:3]}")
    return samples


async def _five_minute_generation_rpc(symbols: list[str], cluster: Cluster, last_end: int, steps: int) -> list[float]:
    """Generate for ``symbols`` at ``steps + 1`` consecutive 5-minute anchors, oldest first, each call writing new
    signals on the hourly bars ending at its anchor (as_of a minute after the anchor's candle closed)."""
    samples = []
    async with grpc.aio.insecure_channel(cluster.address("generator")) as channel:
        stub = generator_pb2_grpc.SignalGeneratorServiceStub(channel)
        for i in range(steps + 1):
            anchor = last_end - (steps - i + 1) * FIVE_MINUTES
            started = time.perf_counter()
            response = await stub.Generate(
                generator_pb2.GenerateRequest(symbols=symbols, as_of=_ts(anchor + 60)), timeout=120
            )
            elapsed = time.perf_counter() - started
            if i > 0:  # the first call warms the caches (it reads every symbol's 524 hours of candles)
                samples.append(elapsed)
            if not any(s.created for s in response.signals):
                raise RuntimeError(f"Generate wrote no signals: {list(response.skipped)[:3]}")
    return samples


def _pandas_baseline(database_url: str, symbols: list[str], steps: int) -> list[float]:
    """The baseline the issue names: a plain per-symbol pandas loop over the same features and model
    (in-process, candles already in memory)."""
    import pandas as pd

    from common.config import load_settings
    from generator_svc.features import FEATURE_NAMES, compute_features
    from generator_svc.model_store import load_model

    settings = load_settings({})
    model = load_model(settings.model_dir, settings.model_path)

    async def load() -> dict[str, pd.DataFrame]:
        from generator_svc.candle_repository import load_candles

        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                result: dict[str, pd.DataFrame] = await load_candles(conn, symbols, "ONE_HOUR", None, None)
                return result
        finally:
            await engine.dispose()

    frames = asyncio.run(load())
    samples = []
    for i in range(steps):
        started = time.perf_counter()
        for symbol in symbols:
            df = frames[symbol]
            window = df.iloc[: len(df) - steps + i].tail(HISTORY)
            features = compute_features(window.reset_index(drop=True))
            model.predict_proba(features[list(FEATURE_NAMES)].tail(1).to_numpy())
        samples.append(time.perf_counter() - started)
    return samples


async def generation(name: str, engine_name: str, tmp: Path, quick: bool) -> dict[str, Any]:
    """Generate on hourly candles (CANDLE_GRANULARITY=ONE_HOUR) and, as in production, on hourly bars anchored at
    the latest closed 5-minute candle (FIVE_MINUTE: 5-minute candles, a new anchor each call)."""
    steps = 5 if quick else 30
    out: dict[str, Any] = {"target": "5-minute anchored: 20 symbols p50 <= 20 ms; 200 symbols p50 <= 100 ms (MariaDB)"}
    for count in (20,) if quick else (20, 200):
        async with bench_database(engine_name, tmp) as url:
            engine = create_engine(url)
            symbols = synthetic_symbols(count)
            last_start = await seed_candles(engine, symbols, HISTORY + steps + 2)
            await engine.dispose()
            cluster = Cluster(url, tmp / f"logs-{name}-{engine_name}-{count}", BENCH_ENV | {"BUY_THRESHOLD": "0.5"})
            await cluster.start(["generator"])
            try:
                samples = await _generation_rpc(symbols, cluster, last_start, steps)
            finally:
                await cluster.stop()
            out[f"generate_{count}_symbols"] = summary_ms(samples)
            if count == 20:
                baseline = await asyncio.to_thread(_pandas_baseline, url, symbols, min(steps, 10))
                out["baseline_pandas_loop_20_symbols"] = summary_ms(baseline)
        async with bench_database(engine_name, tmp) as url:
            engine = create_engine(url)
            symbols = synthetic_symbols(count)
            hours = FIVE_MINUTE_HISTORY_HOURS + (steps + 2) * FIVE_MINUTES // HOUR + 1
            last_end = await seed_five_minute_candles(engine, symbols, hours)
            await engine.dispose()
            cluster = Cluster(
                url,
                tmp / f"logs-{name}-{engine_name}-{count}-5m",
                BENCH_ENV | {"BUY_THRESHOLD": "0.5", "CANDLE_GRANULARITY": "FIVE_MINUTE"},
            )
            await cluster.start(["generator"])
            try:
                samples = await _five_minute_generation_rpc(symbols, cluster, last_end, steps)
            finally:
                await cluster.stop()
            out[f"generate_5m_anchored_{count}_symbols"] = summary_ms(samples)
    return out


async def _execution_of(engine: Any, signal_id: int) -> Any:
    async with engine.connect() as conn:
        row = await conn.execute(
            select(trade_executions.c.completed_at)
            .join(trade_recommendations, trade_recommendations.c.id == trade_executions.c.recommendation_id)
            .where(trade_recommendations.c.signal_id == signal_id, trade_executions.c.completed_at.is_not(None))
        )
        return row.first()


async def signal_to_order(name: str, engine_name: str, tmp: Path, quick: bool) -> dict[str, Any]:
    """Generator commit of a BUY signal -> executor commit of its paper execution, through the nudges only (the
    loops are parked at 24 h). t0 = the arrival of Generate's response (the signal's
    commit precedes it by one response transit, ~0.3 ms here; trading_signals.created_at cannot serve, its original
    type keeps whole seconds on MySQL); t1 = trade_executions.completed_at (microseconds), stamped by the executor
    just before its commit. Both come from the same host clock.

    Each round signals a symbol of its own: an executed BUY opens a position, and the bridge refuses a BUY of a
    symbol that holds one (position_open). The candles are seeded once the generator's start-up cycle has run (on
    an empty database), so no symbol holds a position before its round."""
    rounds = 20 if quick else 200
    async with bench_database(engine_name, tmp) as url:
        engine = create_engine(url)
        symbols = synthetic_symbols(rounds)
        metrics_port = free_port()
        env = BENCH_ENV | {f"{service('generator').env_prefix}_METRICS_PORT": str(metrics_port)}
        cluster = Cluster(url, tmp / f"logs-{name}-{engine_name}", env)
        await cluster.start()
        await wait_for_first_cycle(metrics_port, "generator")  # the next one is a day later
        last_start = await seed_candles(engine, symbols, HISTORY + 2)
        samples: list[float] = []
        missing = 0
        not_buy = 0
        try:
            async with grpc.aio.insecure_channel(cluster.address("generator")) as channel:
                stub = generator_pb2_grpc.SignalGeneratorServiceStub(channel)
                as_of = last_start  # the close of the candle before the newest
                for symbol in symbols:
                    response = await stub.Generate(
                        generator_pb2.GenerateRequest(symbols=[symbol], as_of=_ts(as_of)), timeout=30
                    )
                    t0 = datetime.now(UTC)
                    signal = next((s for s in response.signals if s.created), None)
                    if signal is None or signal.signal_type != 1:  # SIGNAL_TYPE_BUY (P(sell) > 0.6 gives SELL)
                        not_buy += 1
                        continue
                    row = None
                    for _ in range(400):
                        row = await _execution_of(engine, signal.id)
                        if row is not None:
                            break
                        await asyncio.sleep(0.005)
                    if row is None:
                        missing += 1
                        continue
                    samples.append((row.completed_at - t0).total_seconds())
        finally:
            await cluster.stop()
            await engine.dispose()
    return {
        "target": "p50 <= 7 ms, p99 <= 15 ms (MariaDB)",
        "latency": summary_ms(samples),
        "buy_signals_without_order": missing,
        "signals_not_buy": not_buy,
    }


async def _update_commit_rate(url: str, n: int) -> float:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(system_control.insert().values(key="bench", value="0"))
        started = time.perf_counter()
        for i in range(n):
            async with engine.begin() as conn:
                await conn.execute(update(system_control).where(system_control.c.key == "bench").values(value=str(i)))
        return n / (time.perf_counter() - started)
    finally:
        await engine.dispose()


async def throughput(name: str, engine_name: str, tmp: Path, quick: bool) -> dict[str, Any]:
    """PENDING recommendations executed end to end (orchestrator -> executor stream -> paper fills) per second,
    with the cap lifted. Baseline: single-row UPDATE + COMMIT rate of the same database and driver."""
    count = 500 if quick else 3000
    async with bench_database(engine_name, tmp) as url:
        engine = create_engine(url)
        symbols = synthetic_symbols(count)  # one BUY per symbol: each opens a position
        await seed_prices(engine, symbols)
        await seed_recommendations(engine, symbols)
        cluster = Cluster(url, tmp / f"logs-{name}-{engine_name}", BENCH_ENV)
        await cluster.start(["executor", "orchestrator"])
        try:
            async with grpc.aio.insecure_channel(cluster.address("orchestrator")) as channel:
                stub = orchestrator_pb2_grpc.TradeOrchestratorServiceStub(channel)
                started = time.perf_counter()
                for _ in range(10_000):
                    response = await stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=120)
                    if response.executor_unreachable:
                        raise RuntimeError(response.executor_error)
                    if response.remaining == 0 and not response.outcomes:
                        break
                elapsed = time.perf_counter() - started
            async with engine.connect() as conn:
                executed = (
                    await conn.execute(
                        select(func.count())
                        .select_from(trade_recommendations)
                        .where(trade_recommendations.c.execution_status == ExecutionStatus.EXECUTED)
                    )
                ).scalar_one()
        finally:
            await cluster.stop()
            await engine.dispose()
        baseline = await _update_commit_rate(url, 300 if quick else 2000)
    return {
        "target": ">= 4,000 recommendations/s and >= 4x the UPDATE+COMMIT baseline (MariaDB)",
        "recommendations": count,
        "executed": int(executed),
        "per_second": round(executed / elapsed, 1),
        "baseline_update_commit_per_second": round(baseline, 1),
    }


async def grpc_overhead(name: str, engine_name: str, tmp: Path, quick: bool) -> dict[str, Any]:
    """ProcessRecommendation p50 (a fresh paper execution each call) against a bare grpc.aio RPC."""
    count = 50 if quick else 300
    async with bench_database(engine_name, tmp) as url:
        engine = create_engine(url)
        symbols = synthetic_symbols(count)  # one BUY per symbol: each opens a position
        await seed_prices(engine, symbols)
        ids = await seed_recommendations(engine, symbols)
        await engine.dispose()
        cluster = Cluster(url, tmp / f"logs-{name}-{engine_name}", BENCH_ENV)
        await cluster.start(["executor"])
        port = free_port()
        echo = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.echo_server", str(port))
        try:
            await wait_serving(f"127.0.0.1:{port}", "")
            process_samples = []
            async with grpc.aio.insecure_channel(cluster.address("executor")) as channel:
                stub = executor_pb2_grpc.TradeExecutorServiceStub(channel)
                for rec_id in ids:
                    started = time.perf_counter()
                    await stub.ProcessRecommendation(
                        executor_pb2.ProcessRecommendationRequest(recommendation_id=rec_id), timeout=30
                    )
                    process_samples.append(time.perf_counter() - started)
            echo_samples = []
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                for _ in range(count + 50):
                    started = time.perf_counter()
                    await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                    echo_samples.append(time.perf_counter() - started)
        finally:
            echo.terminate()
            await echo.wait()
            await cluster.stop()
    process = summary_ms(process_samples[5:])
    bare = summary_ms(echo_samples[50:])
    return {
        "target": "ProcessRecommendation p50 <= 2.5 ms (MariaDB)",
        "process_recommendation": process,
        "bare_grpc_aio_rpc": bare,
        "ratio_p50": round(process["p50_ms"] / bare["p50_ms"], 1),
    }


async def memory_and_startup(name: str, engine_name: str, tmp: Path, quick: bool) -> dict[str, Any]:
    """Start-up (process start -> health SERVING) and RSS after a warm-up through the whole pipeline."""
    async with bench_database(engine_name, tmp) as url:
        engine = create_engine(url)
        symbols = synthetic_symbols(20)
        last_start = await seed_candles(engine, symbols, HISTORY + 10)
        await engine.dispose()
        cluster = Cluster(url, tmp / f"logs-{name}-{engine_name}", BENCH_ENV)
        await cluster.start()
        try:
            startup = {n: round(s.startup_s, 2) for n, s in cluster.services.items()}
            await _generation_rpc(symbols, cluster, last_start, 5)
            async with grpc.aio.insecure_channel(cluster.address("orchestrator")) as channel:
                stub = orchestrator_pb2_grpc.TradeOrchestratorServiceStub(channel)
                await stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=60)
            await asyncio.sleep(1)
            rss = {n: rss_mb(s.process.pid) for n, s in cluster.services.items()}
        finally:
            await cluster.stop()
    return {
        "target": "RSS generator <= 180 MB, others <= 90 MB; start-up <= 1.5 s each",
        "startup_seconds": startup,
        "rss_mb": rss,
    }


BINANCE_2024H1 = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "binance_2024h1"


def _hourly_markets() -> dict[str, Any]:
    import pandas as pd

    out = {}
    for path in sorted(BINANCE_2024H1.glob("*_1h.csv.gz")):
        frame = pd.read_csv(path).sort_values("timestamp").drop_duplicates("timestamp").reset_index(drop=True)
        out[path.name.split("_", 1)[0]] = frame[["timestamp", "open", "high", "low", "close", "volume"]]
    return out


async def backtest(name: str, engine_name: str, tmp: Path, quick: bool) -> dict[str, Any]:
    """`cts backtest`'s engine (cts.backtest.run_backtest: features, model, positions, exits, the cap in market
    time) on the 20 markets x 6 months of hourly candles of ../shared/data/binance_2024h1, all of it decided
    (no start). No database: run once, for the sqlite column."""
    if engine_name != "sqlite":
        return {"skipped": "in memory: no database"}
    from common.config import load_settings
    from cts.backtest import run_backtest
    from generator_svc.model_store import load_model

    markets = await asyncio.to_thread(_hourly_markets)
    model = load_model(Path("models"))
    settings = load_settings({})
    samples = []
    for _ in range(1 if quick else 3):
        started = time.perf_counter()
        result = await asyncio.to_thread(run_backtest, markets, model, settings)
        samples.append(time.perf_counter() - started)
    return {
        "target": "<= 5 s",
        "markets": len(markets),
        "hours": int(result.equity.size),
        "trades": result.metrics["trades"],
        "wall": summary_ms(samples),
        "range_s": [round(min(samples), 2), round(max(samples), 2)],
    }


async def training(name: str, engine_name: str, tmp: Path, quick: bool) -> dict[str, Any]:
    """`cts train --candles ../shared/data/binance_2024h1` (20 markets, 5-minute candles, all 12 phases, four
    walk-forward folds; XGBoost hist on the CPU), wall time. No database: run once, for the sqlite column."""
    if engine_name != "sqlite":
        return {"skipped": "no database"}
    samples = []
    for i in range(1 if quick else 3):
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cts",
            "train",
            "--candles",
            str(BINANCE_2024H1),
            "--output",
            str(tmp / f"models-{i}"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"cts train failed: {err.decode()[-300:]}")
        samples.append(time.perf_counter() - started)
    return {"wall": summary_ms(samples), "range_s": [round(min(samples), 1), round(max(samples), 1)]}
