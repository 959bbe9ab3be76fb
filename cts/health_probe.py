"""Ask the four services for their gRPC health (grpc.health.v1) at the configured addresses."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.channels import create_channel
from common.config import Settings


@dataclass(frozen=True)
class Endpoint:
    name: str  # generator, bridge, orchestrator, executor
    module: str  # generator_svc ...
    health_name: str  # crypto_trading.v1.SignalGeneratorService ...
    address: str  # host:port


def endpoints(settings: Settings, host: str | None = None) -> list[Endpoint]:
    """The four services in start order (downstream first). With ``host``, every address is host:<its port>."""

    def addr(configured: str, port: int) -> str:
        return f"{host}:{port}" if host else configured

    return [
        Endpoint(
            "executor",
            "executor_svc",
            "crypto_trading.v1.TradeExecutorService",
            addr(settings.trade_executor_addr, settings.trade_executor_port),
        ),
        Endpoint(
            "orchestrator",
            "orchestrator_svc",
            "crypto_trading.v1.TradeOrchestratorService",
            addr(settings.trade_orchestrator_addr, settings.trade_orchestrator_port),
        ),
        Endpoint(
            "bridge",
            "bridge_svc",
            "crypto_trading.v1.SignalBridgeService",
            addr(settings.signal_bridge_addr, settings.signal_bridge_port),
        ),
        Endpoint(
            "generator",
            "generator_svc",
            "crypto_trading.v1.SignalGeneratorService",
            addr(settings.signal_generator_addr, settings.signal_generator_port),
        ),
    ]


async def check(endpoint: Endpoint, settings: Settings, timeout: float = 2.0) -> str:
    """SERVING / NOT_SERVING / UNREACHABLE (code)."""
    channel = create_channel(endpoint.address, settings)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=endpoint.health_name), timeout=timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
    except grpc.aio.AioRpcError as exc:
        return f"UNREACHABLE ({exc.code().name})"
    finally:
        await channel.close(None)


async def check_all(eps: list[Endpoint], settings: Settings) -> dict[str, str]:
    results = await asyncio.gather(*(check(ep, settings) for ep in eps))
    return {ep.name: status for ep, status in zip(eps, results, strict=True)}
