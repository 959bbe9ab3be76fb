"""A small client on the generated typed stubs (checked by `mypy --strict` in CI).

.venv/bin/python examples/typed_client.py            # health of the four services on localhost
.venv/bin/python examples/typed_client.py --halt-status
"""

from __future__ import annotations

import argparse
import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from crypto_trading.v1 import orchestrator_pb2, orchestrator_pb2_grpc

SERVICES = {
    "crypto_trading.v1.SignalGeneratorService": "localhost:8025",
    "crypto_trading.v1.SignalBridgeService": "localhost:8022",
    "crypto_trading.v1.TradeOrchestratorService": "localhost:8023",
    "crypto_trading.v1.TradeExecutorService": "localhost:8024",
}


async def health(name: str, address: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=3)
        except grpc.aio.AioRpcError as exc:
            return f"unreachable ({exc.code().name})"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


async def halt_status(address: str) -> orchestrator_pb2.TradingHalt:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = orchestrator_pb2_grpc.TradeOrchestratorServiceStub(channel)
        response: orchestrator_pb2.GetTradingHaltResponse = await stub.GetTradingHalt(
            orchestrator_pb2.GetTradingHaltRequest(), timeout=3
        )
        return response.halt


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--halt-status", action="store_true")
    args = parser.parse_args()
    if args.halt_status:
        halt = await halt_status(SERVICES["crypto_trading.v1.TradeOrchestratorService"])
        print(f"halted={halt.halted} reason={halt.reason!r}")
        return
    for name, address in SERVICES.items():
        print(f"{address:16} {name:45} {await health(name, address)}")


if __name__ == "__main__":
    asyncio.run(main())
