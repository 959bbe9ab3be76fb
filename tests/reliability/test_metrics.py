"""Each service exposes Prometheus metrics on its metrics port; a scrape shows RPC latency and loop cycles."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client import REGISTRY

from common.server import running_service
from crypto_trading.v1 import bridge_pb2, bridge_pb2_grpc, orchestrator_pb2, orchestrator_pb2_grpc
from orchestrator_svc.server import DEFINITION as ORCHESTRATOR
from testkit.ports import free_ports
from tests.common.test_server import SERVING, wait_for_status
from tests.conftest import make_settings


@pytest.mark.slow
def test_bridge_metrics_are_scraped(tmp_path: Path) -> None:
    grpc_port, metrics_port = free_ports(2)
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        SIGNAL_BRIDGE_PORT=str(grpc_port),
        SIGNAL_BRIDGE_METRICS_PORT=str(metrics_port),
        BIND_HOST="127.0.0.1",
        BRIDGE_INTERVAL_SECONDS="0.2",
        # Wall-clock loops (in replay the replay conducts the bridge: no loop of its own).
        MARKET_DATA_SOURCE="database",
    )
    subprocess.run([sys.executable, "-m", "cts", "migrate"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen([sys.executable, "-m", "bridge_svc"], env=env, stderr=subprocess.DEVNULL)
    try:
        assert asyncio.run(wait_for_status(grpc_port, "", SERVING, within=30)) == SERVING

        async def call() -> None:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                stub = bridge_pb2_grpc.SignalBridgeServiceStub(channel)
                await stub.Bridge(bridge_pb2.BridgeRequest(), timeout=10)
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.Bridge(bridge_pb2.BridgeRequest(signal_ids=[-1]), timeout=10)

        asyncio.run(call())
        time.sleep(0.5)
        body = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        health = httpx.get(f"http://127.0.0.1:{metrics_port}/health", timeout=5)
        live = httpx.get(f"http://127.0.0.1:{metrics_port}/live", timeout=5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    bridge_method = "/crypto_trading.v1.SignalBridgeService/Bridge"
    assert f'cts_rpc_latency_seconds_count{{code="OK",method="{bridge_method}"}} 1.0' in body
    assert f'cts_rpc_latency_seconds_count{{code="INVALID_ARGUMENT",method="{bridge_method}"}} 1.0' in body
    assert "cts_loop_cycle_seconds_count" in body
    assert "cts_recommendations_total" in body or "cts_signals_total" in body
    assert 'cts_health_serving{service="bridge"} 1.0' in body
    # The guide's health check on the metrics port: the gRPC health status as JSON, 200 only when SERVING.
    assert health.status_code == 200
    assert health.json() == {"service": "crypto_trading.v1.SignalBridgeService", "name": "bridge", "status": "SERVING"}
    assert (live.status_code, live.json()["status"]) == (200, "ALIVE")


async def test_the_trading_halt_gauge_follows_the_kill_switch(database_url: str) -> None:
    """cts_trading_halted (the CtsTradingHalted alert) is what an orchestrator cycle read from the database."""
    async with (
        running_service(ORCHESTRATOR, make_settings(database_url)) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        stub = orchestrator_pb2_grpc.TradeOrchestratorServiceStub(channel)
        await stub.SetTradingHalt(
            orchestrator_pb2.SetTradingHaltRequest(halted=True, reason="metrics test", actor="test"), timeout=10
        )
        assert (await stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=30)).halted
        assert REGISTRY.get_sample_value("cts_trading_halted") == 1.0
        await stub.SetTradingHalt(orchestrator_pb2.SetTradingHaltRequest(halted=False, reason="ok"), timeout=10)
        assert not (await stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=30)).halted
        assert REGISTRY.get_sample_value("cts_trading_halted") == 0.0
