"""The shared server host, exercised through each real service over a real gRPC channel."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bridge_svc.server import DEFINITION as BRIDGE
from common.server import ServiceDefinition, ServiceHost, running_service
from crypto_trading.v1.bridge_pb2 import BridgeRequest
from crypto_trading.v1.bridge_pb2_grpc import SignalBridgeServiceStub
from crypto_trading.v1.executor_pb2 import ProcessRecommendationRequest
from crypto_trading.v1.executor_pb2_grpc import TradeExecutorServiceStub
from executor_svc.server import DEFINITION as EXECUTOR
from orchestrator_svc.server import DEFINITION as ORCHESTRATOR
from tests.conftest import make_settings
from tests.support.tcp_proxy import TcpProxy

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# The generator needs the model; its start-up is tested in tests/generator_svc.
LIGHT_SERVICES = [BRIDGE, ORCHESTRATOR, EXECUTOR]


async def health_status(port: int, service: str = "") -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return int(response.status)


async def wait_for_status(port: int, service: str, wanted: int, within: float = 10.0) -> int:
    deadline = time.monotonic() + within
    status = -1
    while time.monotonic() < deadline:
        try:
            status = await health_status(port, service)
        except grpc.aio.AioRpcError:
            status = -1
        if status == wanted:
            return status
        await asyncio.sleep(0.1)
    return status


@pytest.mark.parametrize("definition", LIGHT_SERVICES, ids=lambda d: d.name)
async def test_health_and_reflection(definition: ServiceDefinition, database_url: str) -> None:
    async with running_service(definition, make_settings(database_url)) as service:
        assert await health_status(service.port) == SERVING
        assert await health_status(service.port, definition.full_service_name) == SERVING
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND

            reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            names = []
            async for response in reflect.ServerReflectionInfo(iter([request])):
                names = [s.name for s in response.list_services_response.service]
            assert definition.full_service_name in names
            assert "grpc.health.v1.Health" in names


@pytest.mark.mysql
async def test_health_follows_the_database(mysql_database: str) -> None:
    """Database lost -> NOT_SERVING; database back -> SERVING, without a restart."""
    url = make_url(mysql_database)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 3306)
    await proxy.start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        async with (
            running_service(BRIDGE, make_settings(proxied)) as service,
            running_service(EXECUTOR, make_settings(proxied)) as executor,
        ):
            assert await health_status(service.port, BRIDGE.full_service_name) == SERVING
            proxy.cut()
            assert await wait_for_status(service.port, BRIDGE.full_service_name, NOT_SERVING) == NOT_SERVING
            assert await health_status(service.port) == NOT_SERVING
            async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await SignalBridgeServiceStub(channel).Bridge(BridgeRequest(), timeout=30)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # retryable, not INTERNAL
            async with grpc.aio.insecure_channel(f"127.0.0.1:{executor.port}") as channel:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await TradeExecutorServiceStub(channel).ProcessRecommendation(
                        ProcessRecommendationRequest(recommendation_id=1), timeout=30
                    )
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "database unavailable" in (info.value.details() or "")
            proxy.restore()
            assert await wait_for_status(service.port, BRIDGE.full_service_name, SERVING) == SERVING
    finally:
        await proxy.close()


async def test_not_serving_when_database_unreachable_at_start(tmp_path: Path) -> None:
    # A SQLite file below a regular file can never be opened: the database is unreachable from the start.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    url = f"sqlite+aiosqlite:///{blocker}/db.sqlite"
    host = ServiceHost(BRIDGE, make_settings(url), create_async_engine(url))
    await host.start(port=0, host="127.0.0.1")
    try:
        assert await health_status(host.port) == NOT_SERVING
        assert await health_status(host.port, BRIDGE.full_service_name) == NOT_SERVING
        assert host.problem is not None
        assert "database" in host.problem
    finally:
        await host.stop(grace=0.5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sigterm_stops_gracefully(tmp_path: Path) -> None:
    """A real process: serves health on its port, then SIGTERM -> exit 0."""
    port = _free_port()
    db = tmp_path / "crypto_prices.db"
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{db}",
        SIGNAL_BRIDGE_PORT=str(port),
        SIGNAL_BRIDGE_METRICS_PORT="0",
        BIND_HOST="127.0.0.1",
    )
    subprocess.run([sys.executable, "-m", "cts", "migrate"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen([sys.executable, "-m", "bridge_svc"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        status = asyncio.run(wait_for_status(port, "", SERVING, within=30))
        assert status == SERVING
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert "stopped" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
