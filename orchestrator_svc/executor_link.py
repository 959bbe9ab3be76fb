"""The link to the executor: one persistent channel, one bidirectional ExecuteRecommendations call per cycle that
sends every claimed id at once and collects one result each, under a deadline. gRPC reconnects the channel with
backoff; an unreachable or slow executor is reported, never turned into a FAILED trade."""

from __future__ import annotations

import asyncio
import logging

import grpc

from common.channels import create_channel
from common.config import Settings
from common.lifecycle import order_side_from_proto, status_from_proto
from crypto_trading.v1 import executor_pb2, executor_pb2_grpc
from orchestrator_svc.cycle import ExecutionReport, LinkResult

log = logging.getLogger(__name__)
# The executor's own problems: the recommendation stays PENDING and is retried.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL})
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def to_report(message: executor_pb2.ExecutionResult) -> ExecutionReport:
    """The typed report of one stream item. An item the executor could not process carries a google.rpc.Status
    (older executors: only the deprecated error_code name)."""
    code: grpc.StatusCode | None = None
    if message.HasField("error") and message.error.code != grpc.StatusCode.OK.value[0]:
        code = _CODES.get(message.error.code, grpc.StatusCode.UNKNOWN)
    elif message.error_code:
        code = grpc.StatusCode.__members__.get(message.error_code, grpc.StatusCode.UNKNOWN)
    return ExecutionReport(
        recommendation_id=message.recommendation_id,
        status=status_from_proto(message.status),
        error_code=code.name if code is not None else "",
        retryable=code in RETRYABLE,
        reason=message.error_reason,
        symbol=message.symbol,
        side=order_side_from_proto(message.order_side),
        filled_size=message.filled_size,
        average_price=message.average_price,
        exchange_order_id=message.exchange_order_id,
    )


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
                out.reports[response.result.recommendation_id] = to_report(response.result)
                if len(out.reports) == len(ids):
                    break
        except grpc.aio.AioRpcError as exc:
            out.problem = f"executor at {self.address} unreachable or too slow ({exc.code().name})"
        except asyncio.CancelledError:
            call.cancel()
            raise
        if not out.problem and len(out.reports) < len(ids):
            out.problem = f"executor at {self.address} answered {len(out.reports)} of {len(ids)}"
        return out

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None
