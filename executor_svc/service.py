"""Thin servicer of the trade executor: ProcessRecommendation and the bidirectional stream share one code path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from common.errors import DomainError
from common.server import status_code_name
from crypto_trading.v1 import common_pb2, executor_pb2, executor_pb2_grpc
from executor_svc.domain import ExecutionResult
from executor_svc.execution import Executor

STATUS = {
    "PENDING": common_pb2.EXECUTION_STATUS_PENDING,
    "EXECUTED": common_pb2.EXECUTION_STATUS_EXECUTED,
    "FAILED": common_pb2.EXECUTION_STATUS_FAILED,
    "CANCELLED": common_pb2.EXECUTION_STATUS_CANCELLED,
}
MODE = {"PAPER": common_pb2.EXECUTION_MODE_PAPER, "LIVE": common_pb2.EXECUTION_MODE_LIVE}
SIDE = {"BUY": common_pb2.SIGNAL_TYPE_BUY, "SELL": common_pb2.SIGNAL_TYPE_SELL}
STREAM_CONCURRENCY = 256
log = logging.getLogger(__name__)


def _decimal(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def to_message(result: ExecutionResult) -> executor_pb2.ExecutionResult:
    message = executor_pb2.ExecutionResult(
        recommendation_id=result.recommendation_id,
        status=STATUS.get(result.status, common_pb2.EXECUTION_STATUS_UNSPECIFIED),
        exchange_order_id=result.exchange_order_id,
        client_order_id=result.client_order_id,
        filled_size=_decimal(result.filled_size),
        average_price=_decimal(result.average_price),
        fees=_decimal(result.fees),
        error_reason=result.error_reason,
        mode=MODE.get(result.mode, common_pb2.EXECUTION_MODE_UNSPECIFIED),
        symbol=result.symbol,
        side=SIDE.get(result.side, common_pb2.SIGNAL_TYPE_UNSPECIFIED),
        replayed=result.replayed,
    )
    if result.executed_at is not None:
        stamp = Timestamp()
        stamp.FromDatetime(result.executed_at)
        message.executed_at.CopyFrom(stamp)
    return message


class TradeExecutorServicer(executor_pb2_grpc.TradeExecutorServiceServicer):
    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def ProcessRecommendation(
        self, request: executor_pb2.ProcessRecommendationRequest, context: Any
    ) -> executor_pb2.ProcessRecommendationResponse:
        result = await self.executor.process(request.recommendation_id)
        return executor_pb2.ProcessRecommendationResponse(result=to_message(result))

    async def _one(self, recommendation_id: int) -> executor_pb2.ExecuteRecommendationsResponse:
        """Exactly one answer per request, whatever happens. A problem of the executor itself (the database lost,
        a bug) is not a verdict on the recommendation: it stays PENDING and the orchestrator retries it later."""
        try:
            result = to_message(await self.executor.process(recommendation_id))
        except Exception as exc:
            code = status_code_name(exc)
            if isinstance(exc, DomainError):
                reason = str(exc)
            elif code == "UNAVAILABLE":
                log.warning("recommendation %d: database unavailable (%s)", recommendation_id, type(exc).__name__)
                reason = "the database is unavailable; try again later"
            else:
                log.exception("recommendation %d: unexpected error", recommendation_id)
                reason = "internal error in the executor; see its log"
            retryable = code in ("UNAVAILABLE", "INTERNAL")  # the executor's problem: stays PENDING, retried
            result = executor_pb2.ExecutionResult(
                recommendation_id=recommendation_id,
                error_code=code,
                error_reason=reason,
                status=common_pb2.EXECUTION_STATUS_PENDING if retryable else common_pb2.EXECUTION_STATUS_UNSPECIFIED,
            )
        return executor_pb2.ExecuteRecommendationsResponse(result=result)

    async def ExecuteRecommendations(
        self, request_iterator: AsyncIterator[executor_pb2.ExecuteRecommendationsRequest], context: Any
    ) -> AsyncIterator[executor_pb2.ExecuteRecommendationsResponse]:
        """Up to STREAM_CONCURRENCY requests in flight; each answered once, in completion order."""
        results: asyncio.Queue[executor_pb2.ExecuteRecommendationsResponse | None] = asyncio.Queue()
        slots = asyncio.Semaphore(STREAM_CONCURRENCY)
        tasks: set[asyncio.Task[None]] = set()

        async def work(recommendation_id: int) -> None:
            try:
                await results.put(await self._one(recommendation_id))
            finally:
                slots.release()

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await slots.acquire()
                    task = asyncio.create_task(work(request.recommendation_id))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if tasks:
                    await asyncio.gather(*list(tasks), return_exceptions=True)
            finally:
                await results.put(None)

        reader = asyncio.create_task(read())
        try:
            while (item := await results.get()) is not None:
                yield item
        finally:
            reader.cancel()
            for task in list(tasks):
                task.cancel()
