"""A stand-in trade executor for orchestrator tests (never shipped): a real gRPC server on a free port with the
executor's health name (SERVING or NOT_SERVING, switchable) whose ExecuteRecommendations (and ProcessRecommendation)
record the ids they receive and hold the call, answering nothing, until released (an executor stuck on a slow
exchange)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from common.services import EXECUTOR
from crypto_trading.v1 import executor_pb2, executor_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HoldingExecutor(executor_pb2_grpc.TradeExecutorServiceServicer):
    def __init__(self) -> None:
        self.received: list[int] = []
        self.streams = 0
        self.got_requests = asyncio.Event()  # set when a stream's requests have all been read
        self.release = asyncio.Event()  # set it to end every held stream (with no answer)

    async def ProcessRecommendation(
        self, request: executor_pb2.ProcessRecommendationRequest, context: Any
    ) -> executor_pb2.ProcessRecommendationResponse:
        self.received.append(request.recommendation_id)
        self.got_requests.set()
        await self.release.wait()
        await context.abort(grpc.StatusCode.UNAVAILABLE, "the stand-in executor executes nothing")
        raise AssertionError("unreachable")

    async def ManagePositions(
        self, request: executor_pb2.ManagePositionsRequest, context: Any
    ) -> executor_pb2.ManagePositionsResponse:
        return executor_pb2.ManagePositionsResponse()

    async def ExecuteRecommendations(
        self, request_iterator: AsyncIterator[executor_pb2.ExecuteRecommendationsRequest], context: Any
    ) -> AsyncIterator[executor_pb2.ExecuteRecommendationsResponse]:
        self.streams += 1
        async for request in request_iterator:
            self.received.append(request.recommendation_id)
        self.got_requests.set()
        await self.release.wait()
        return
        yield  # an async generator: a stream that ends without an answer


class FakeExecutor:
    def __init__(self, port: int, servicer: HoldingExecutor, health: HealthServicer) -> None:
        self.port = port
        self.servicer = servicer
        self._health = health

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def set_status(self, status: int) -> None:
        for name in ("", EXECUTOR.full_service_name):
            await self._health.set(name, status)


@asynccontextmanager
async def running_fake_executor(status: int = SERVING) -> AsyncIterator[FakeExecutor]:
    server = grpc.aio.server()
    servicer = HoldingExecutor()
    health = HealthServicer()
    executor_pb2_grpc.add_TradeExecutorServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    fake = FakeExecutor(port, servicer, health)
    await fake.set_status(status)
    await server.start()
    try:
        yield fake
    finally:
        servicer.release.set()
        await server.stop(grace=0.5)
