"""Ask the four services for their gRPC health (grpc.health.v1) at the configured addresses."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.channels import create_channel
from common.config import Settings
from common.services import SERVICES


@dataclass(frozen=True)
class Endpoint:
    name: str  # generator, bridge, orchestrator, executor
    module: str  # generator_svc ...
    health_name: str  # crypto_trading.v1.SignalGeneratorService ...
    address: str  # host:port


def endpoints(settings: Settings, host: str | None = None) -> list[Endpoint]:
    """The four services in start order (downstream first). With ``host``, every address is host:<its port>."""
    return [
        Endpoint(
            info.name,
            info.package,
            info.full_service_name,
            f"{host}:{info.port(settings)}" if host else info.addr(settings),
        )
        for info in SERVICES
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
