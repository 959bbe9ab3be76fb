"""The link to the executor: one persistent channel, one bidirectional ExecuteRecommendations call per cycle that
sends every claimed id at once and collects one result each, under a deadline (common.config.executor_deadline_seconds:
in live mode it covers the executor's Coinbase attempt budget). Before a cycle claims anything it asks the executor's
gRPC health on the same channel (the answer is cached for HEALTH_CACHE_SECONDS): a NOT_SERVING or unreachable
executor gets nothing. gRPC reconnects the channel with backoff; an unreachable or slow executor is reported, never
turned into a FAILED trade."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.channels import create_channel
from common.config import Settings, executor_deadline_seconds
from common.lifecycle import order_side_from_proto, status_from_proto
from common.services import EXECUTOR
from crypto_trading.v1 import executor_pb2, executor_pb2_grpc
from orchestrator_svc.cycle import ExecutionReport, LinkResult

log = logging.getLogger(__name__)
# The executor's own problems: the recommendation stays PENDING and is retried.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL})
_CODES = {code.value[0]: code for code in grpc.StatusCode}
HEALTH_CACHE_SECONDS = 1.5
HEALTH_TIMEOUT_SECONDS = 2.0


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
        self.timeout = executor_deadline_seconds(settings)
        self._channel: grpc.aio.Channel | None = None
        self._executor: executor_pb2_grpc.TradeExecutorServiceAsyncStub | None = None  # on self._channel
        self._health: tuple[float, str] | None = None  # (monotonic time asked, problem or "")

    def _get_channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = create_channel(self.address, self.settings)
        return self._channel

    def _stub(self) -> executor_pb2_grpc.TradeExecutorServiceAsyncStub:
        """The executor's stub on the persistent channel, made once (a stub builds one callable per method)."""
        if self._executor is None:
            self._executor = executor_pb2_grpc.TradeExecutorServiceStub(self._get_channel())
        return self._executor

    async def problem(self) -> str:
        """ "" when the executor's health is SERVING, else why nothing should be sent to it (cached briefly)."""
        if self._health is not None and time.monotonic() - self._health[0] < HEALTH_CACHE_SECONDS:
            return self._health[1]
        problem = await self._ask_health()
        self._health = (time.monotonic(), problem)
        return problem

    async def _ask_health(self) -> str:
        stub = health_pb2_grpc.HealthStub(self._get_channel())
        request = health_pb2.HealthCheckRequest(service=EXECUTOR.full_service_name)
        timeout = min(HEALTH_TIMEOUT_SECONDS, self.settings.executor_timeout_seconds)
        try:
            response = await stub.Check(request, timeout=timeout, wait_for_ready=False)
        except grpc.aio.AioRpcError as exc:
            return f"executor at {self.address} unreachable ({exc.code().name})"
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
            return f"executor at {self.address} is {status}"
        return ""

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
        if out.problem:
            self._health = None  # ask again before the next cycle sends anything
        return out

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None
            self._executor = None
