"""Secrets never reach the logs: a live-mode run of real executor and orchestrator processes against the fake
Coinbase, with DEBUG logs (httpx, the Coinbase client, gRPC wiring), prints neither the private key nor any JWT
that was sent."""

from __future__ import annotations

import asyncio
import os
import sys
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

from common.database import create_engine
from crypto_trading.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from testkit.ports import free_ports
from tests.common.test_server import SERVING, wait_for_status
from tests.support import outcomes
from tests.support.fake_coinbase import FakeCoinbase
from tests.support.seed import seed_recommendation


@pytest.mark.slow
async def test_live_run_with_debug_logs_prints_no_key_and_no_jwt(database_url: str, tmp_path: Path) -> None:
    fake = FakeCoinbase().start()
    engine = create_engine(database_url)
    procs: list[asyncio.subprocess.Process] = []
    try:
        ids = [await seed_recommendation(engine, amount_usd=Decimal(20 + i)) for i in range(3)]  # a symbol each
        executor_port, orchestrator_port, m1, m2 = free_ports(4)
        env = dict(os.environ)
        env.update(
            DATABASE_URL=database_url,
            BIND_HOST="127.0.0.1",
            LOG_LEVEL="DEBUG",
            LOG_FORMAT="json",
            EXECUTION_MODE="live",
            MARKET_DATA_SOURCE="coinbase",
            COINBASE_API_BASE_URL=fake.base_url,
            COINBASE_API_KEY_NAME=fake.key_name,
            COINBASE_API_PRIVATE_KEY=fake.private_key_pem,
            TRADE_EXECUTOR_PORT=str(executor_port),
            TRADE_EXECUTOR_METRICS_PORT=str(m1),
            TRADE_EXECUTOR_ADDR=f"127.0.0.1:{executor_port}",
            TRADE_ORCHESTRATOR_PORT=str(orchestrator_port),
            TRADE_ORCHESTRATOR_METRICS_PORT=str(m2),
            ORCHESTRATOR_INTERVAL_SECONDS="3600",
        )
        logs = {name: tmp_path / f"{name}.log" for name in ("executor", "orchestrator")}
        for name, module in (("executor", "executor_svc"), ("orchestrator", "orchestrator_svc")):
            with logs[name].open("wb") as out:
                procs.append(
                    await asyncio.create_subprocess_exec(sys.executable, "-m", module, env=env, stdout=out, stderr=out)
                )
        assert await wait_for_status(executor_port, "", SERVING, within=30) == SERVING
        assert await wait_for_status(orchestrator_port, "", SERVING, within=30) == SERVING
        fake.faults.extend(["429", "500"])  # retries log at DEBUG/WARNING too
        async with grpc.aio.insecure_channel(f"127.0.0.1:{orchestrator_port}") as channel:
            stub = orchestrator_pb2_grpc.TradeOrchestratorServiceStub(channel)
            response = await stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=60)
        assert sorted(o.recommendation_id for o in outcomes.executed(response)) == sorted(ids)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            await asyncio.wait_for(proc.wait(), 30)
        fake.stop()
        await engine.dispose()
    text = "\n".join(path.read_text() for path in logs.values())
    assert "Successfully executed recommendation" in text  # the logs are real and at DEBUG
    assert '"levelname": "DEBUG"' in text or '"level": "DEBUG"' in text
    assert fake.seen_tokens, "the fake exchange saw no request"
    key_lines = [line for line in fake.private_key_pem.splitlines() if line and not line.startswith("-----")]
    assert not any(line in text for line in key_lines)
    assert not any(token in text for token in fake.seen_tokens)
    assert not any(token.split(".")[2] in text for token in fake.seen_tokens)  # not even the signature part
