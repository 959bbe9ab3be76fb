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
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import generate_latest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bridge_svc.server import DEFINITION as BRIDGE
from common.server import running_service
from common.service_host import HTTP_HEALTH_TIMEOUT_SECONDS, LIVENESS_SERVICE_NAME, ServiceDefinition, ServiceHost
from crypto_trading.v1.bridge_pb2 import BridgeRequest
from crypto_trading.v1.bridge_pb2_grpc import SignalBridgeServiceStub
from crypto_trading.v1.executor_pb2 import ProcessRecommendationRequest
from crypto_trading.v1.executor_pb2_grpc import TradeExecutorServiceStub
from executor_svc.server import DEFINITION as EXECUTOR
from orchestrator_svc.server import DEFINITION as ORCHESTRATOR
from tests.conftest import make_settings
from tests.support.fake_coinbase import FakeCoinbase, live_settings
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


# --- the metrics port: /health (readiness, as gRPC health reports it), /live (liveness), /metrics --------------


async def http_get(port: int, path: str) -> tuple[int, dict[str, object]]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"http://127.0.0.1:{port}{path}")
    return response.status_code, response.json()


@pytest.mark.parametrize("definition", LIGHT_SERVICES, ids=lambda d: d.name)
async def test_metrics_port_answers_health_live_and_metrics(definition: ServiceDefinition, database_url: str) -> None:
    async with running_service(definition, make_settings(database_url), metrics_port=0) as service:
        assert service.metrics is not None
        port = service.metrics.port
        code, body = await http_get(port, "/health")
        assert (code, body) == (
            200,
            {"service": definition.full_service_name, "name": definition.name, "status": "SERVING"},
        )
        assert await health_status(service.port, definition.full_service_name) == SERVING
        code, body = await http_get(port, "/live")
        assert code == 200
        assert body["status"] == "ALIVE"
        assert await health_status(service.port, LIVENESS_SERVICE_NAME) == SERVING
        async with httpx.AsyncClient(timeout=10) as client:
            metrics = await client.get(f"http://127.0.0.1:{port}/metrics")
        assert metrics.status_code == 200
        assert f'cts_health_serving{{service="{definition.name}"}} 1.0' in metrics.text
        assert "cts_rpc_latency_seconds" in metrics.text
    assert f'cts_health_serving{{service="{definition.name}"}} 0.0' in generate_latest().decode()


async def test_health_is_503_with_the_reason_while_live_stays_200(tmp_path: Path) -> None:
    """Database unreachable: gRPC health and /health say NOT_SERVING (503, with the reason); the liveness name and
    /live still say the process is alive, so Kubernetes takes the pod out of the Service but does not restart it."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    url = f"sqlite+aiosqlite:///{blocker}/db.sqlite"
    host = ServiceHost(BRIDGE, make_settings(url), create_async_engine(url))
    await host.start(port=0, host="127.0.0.1")
    port = host.start_metrics(0, "127.0.0.1")
    try:
        assert await health_status(host.port, BRIDGE.full_service_name) == NOT_SERVING
        code, body = await http_get(port, "/health")
        assert code == 503
        assert body["status"] == "NOT_SERVING"
        assert body["service"] == BRIDGE.full_service_name
        assert "database" in str(body["reason"])
        assert await health_status(host.port, LIVENESS_SERVICE_NAME) == SERVING
        assert (await http_get(port, "/live"))[0] == 200
    finally:
        await host.stop(grace=0.5)
    assert host.metrics is None  # the metrics port closes with the service
    assert await host.health_report() == {
        "service": BRIDGE.full_service_name,
        "name": "bridge",
        "status": "NOT_SERVING",
        "reason": "shutting down",
    }
    assert (await host.health_report(LIVENESS_SERVICE_NAME))["status"] == "NOT_SERVING"
    with pytest.raises(httpx.ConnectError):
        await http_get(port, "/health")


async def test_a_stuck_event_loop_is_neither_ready_nor_live(database_url: str) -> None:
    async with running_service(BRIDGE, make_settings(database_url), metrics_port=0) as service:
        assert service.metrics is not None
        port = service.metrics.port

        def blocked_probe(path: str) -> httpx.Response:
            return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10)

        probe = asyncio.get_running_loop().run_in_executor(None, blocked_probe, "/live")
        time.sleep(HTTP_HEALTH_TIMEOUT_SECONDS + 0.5)  # noqa: ASYNC251 - the point: the event loop is stuck
        response = await probe
        assert response.status_code == 503
        assert response.json()["status"] == "UNKNOWN"


def test_metrics_port_in_use_stops_the_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = dict(os.environ)
        env.update(
            DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
            SIGNAL_BRIDGE_PORT=str(_free_port()),
            SIGNAL_BRIDGE_METRICS_PORT=str(taken.getsockname()[1]),
            BIND_HOST="127.0.0.1",
        )
        result = subprocess.run(
            [sys.executable, "-m", "bridge_svc"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    assert result.returncode == 1
    assert "cannot start: cannot serve metrics on 127.0.0.1:" in result.stderr


async def test_a_coinbase_outage_makes_the_live_executor_unready_but_never_dead(database_url: str) -> None:
    """Liveness never depends on Coinbase: the live executor whose credentials Coinbase refuses is NOT_SERVING
    (readiness, /health 503) while the liveness name and /live say the process is alive."""
    fake = FakeCoinbase().start()
    fake.faults.extend(["401"] * 50)
    settings = live_settings(database_url, fake, coinbase_max_retries=1)
    try:
        async with running_service(EXECUTOR, settings, metrics_port=0) as service:
            assert service.metrics is not None
            assert await health_status(service.port, EXECUTOR.full_service_name) == NOT_SERVING
            code, body = await http_get(service.metrics.port, "/health")
            assert (code, body["status"]) == (503, "NOT_SERVING")
            assert "Coinbase" in str(body["reason"])
            assert fake.private_key_pem.splitlines()[1] not in str(body)
            assert await health_status(service.port, LIVENESS_SERVICE_NAME) == SERVING
            assert (await http_get(service.metrics.port, "/live"))[0] == 200
    finally:
        fake.stop()
