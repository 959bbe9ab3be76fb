"""The link to the executor: one persistent channel, one bidirectional ExecuteRecommendations call per cycle that
sends every claimed id at once and collects one result each, under a deadline. gRPC reconnects the channel with
backoff; an unreachable or slow executor is reported, never turned into a FAILED trade."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import grpc

from common.channels import create_channel
from common.config import Settings
from crypto_trading.v1 import executor_pb2, executor_pb2_grpc

log = logging.getLogger(__name__)


@dataclass
class LinkResult:
    results: dict[int, executor_pb2.ExecutionResult] = field(default_factory=dict)
    problem: str = ""  # non-empty: the executor could not be reached or did not answer in time


class ExecutorLink:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.address = settings.trade_executor_addr
        self.timeout = settings.executor_timeout_seconds
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> executor_pb2_grpc.TradeExecutorServiceAsyncStub:
        if self._channel is None:
            self._channel = create_channel(self.address, self.settings)
        stub: executor_pb2_grpc.TradeExecutorServiceAsyncStub = executor_pb2_grpc.TradeExecutorServiceStub(
            self._channel
        )
        return stub

    async def execute(self, ids: list[int]) -> LinkResult:
        out = LinkResult()
        if not ids:
            return out
        requests = [executor_pb2.ExecuteRecommendationsRequest(recommendation_id=i) for i in ids]
        call = self._stub().ExecuteRecommendations(iter(requests), timeout=self.timeout, wait_for_ready=False)
        try:
            async for response in call:
                out.results[response.result.recommendation_id] = response.result
                if len(out.results) == len(ids):
                    break
        except grpc.aio.AioRpcError as exc:
            out.problem = f"executor at {self.address} unreachable or too slow ({exc.code().name})"
        except asyncio.CancelledError:
            call.cancel()
            raise
        if not out.problem and len(out.results) < len(ids):
            out.problem = f"executor at {self.address} answered {len(out.results)} of {len(ids)}"
        return out

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None
