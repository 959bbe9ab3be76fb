"""The replay's calls to the other three services (generator_svc.replay_conductor.Pipeline over gRPC)."""

from __future__ import annotations

import grpc

from common.channels import create_channel
from common.config import Settings, executor_deadline_seconds
from crypto_trading.v1 import (
    bridge_pb2,
    bridge_pb2_grpc,
    executor_pb2,
    executor_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
)
from generator_svc.replay_conductor import OrchestrateOutcome

STEP_TIMEOUT_SECONDS = 30.0


class GrpcPipeline:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._orchestrate_timeout = executor_deadline_seconds(settings) + STEP_TIMEOUT_SECONDS

    def _channel(self, address: str) -> grpc.aio.Channel:
        if address not in self._channels:
            self._channels[address] = create_channel(address, self._settings)
        return self._channels[address]

    async def manage_positions(self) -> None:
        stub = executor_pb2_grpc.TradeExecutorServiceStub(self._channel(self._settings.trade_executor_addr))
        await stub.ManagePositions(executor_pb2.ManagePositionsRequest(), timeout=STEP_TIMEOUT_SECONDS)

    async def bridge(self) -> None:
        stub = bridge_pb2_grpc.SignalBridgeServiceStub(self._channel(self._settings.signal_bridge_addr))
        await stub.Bridge(bridge_pb2.BridgeRequest(), timeout=STEP_TIMEOUT_SECONDS)

    async def orchestrate(self) -> OrchestrateOutcome:
        stub = orchestrator_pb2_grpc.TradeOrchestratorServiceStub(self._channel(self._settings.trade_orchestrator_addr))
        response = await stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=self._orchestrate_timeout)
        if response.executor_unreachable:
            raise RuntimeError(f"the executor is unreachable: {response.executor_error}")
        return OrchestrateOutcome(remaining=response.remaining, halted=response.halted)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()
