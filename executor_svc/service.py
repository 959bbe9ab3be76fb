"""Thin servicer of the trade executor: ProcessRecommendation and the bidirectional stream share one code path.

The processing of a request is shielded from its caller: when the caller goes away (its deadline expires, it
cancels, the orchestrator dies), gRPC cancels the handler, but an order that may already be at the exchange is
still finished and its outcome recorded (the servicer keeps the task until it ends)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import grpc
from google.rpc import status_pb2

from common.errors import DomainError
from common.interceptor import status_code_name
from common.lifecycle import (
    ExecutionStatus,
    decimal_string,
    exit_reason_to_proto,
    mode_to_proto,
    order_side_to_proto,
    signal_type_to_proto,
    status_to_proto,
    to_timestamp,
)
from crypto_trading.v1 import common_pb2, executor_pb2, executor_pb2_grpc
from executor_svc.domain import ExecutionResult
from executor_svc.execution import Executor

STREAM_CONCURRENCY = 256
# The executor's own problems (the database lost, a bug): the recommendation stays PENDING and is retried.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL})
log = logging.getLogger(__name__)
T = TypeVar("T")


def to_message(result: ExecutionResult) -> executor_pb2.ExecutionResult:
    message = executor_pb2.ExecutionResult(
        recommendation_id=result.recommendation_id,
        status=status_to_proto(result.status),
        exchange_order_id=result.exchange_order_id,
        client_order_id=result.client_order_id,
        filled_size=decimal_string(result.filled_size),
        average_price=decimal_string(result.average_price),
        fees=decimal_string(result.fees),
        error_reason=result.error_reason,
        mode=mode_to_proto(result.mode),
        symbol=result.symbol,
        order_side=order_side_to_proto(result.side),
        # deprecated field, kept for older clients
        side=signal_type_to_proto(result.side) if result.side else common_pb2.SIGNAL_TYPE_UNSPECIFIED,
        replayed=result.replayed,
    )
    if result.executed_at is not None:
        message.executed_at.CopyFrom(to_timestamp(result.executed_at))
    return message


def error_message(recommendation_id: int, code: grpc.StatusCode, reason: str) -> executor_pb2.ExecutionResult:
    """A stream item the executor could not process: its google.rpc.Status (and the deprecated code name)."""
    retryable = code in RETRYABLE_CODES
    return executor_pb2.ExecutionResult(
        recommendation_id=recommendation_id,
        error=status_pb2.Status(code=code.value[0], message=reason),
        error_code=code.name,  # deprecated field, kept for older clients
        error_reason=reason,
        status=status_to_proto(ExecutionStatus.PENDING) if retryable else common_pb2.EXECUTION_STATUS_UNSPECIFIED,
    )


def _orphan_done(recommendation_id: int) -> Any:
    """Log what became of a request whose caller had gone (and retrieve its exception, if any)."""

    def done(task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            log.warning("recommendation %d: cancelled after its caller went away", recommendation_id)
        elif (exc := task.exception()) is not None:
            log.warning(
                "recommendation %d: failed after its caller went away: %s", recommendation_id, type(exc).__name__
            )
        else:
            log.info("recommendation %d: finished after its caller went away", recommendation_id)

    return done


class TradeExecutorServicer(executor_pb2_grpc.TradeExecutorServiceServicer):
    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self._detached: set[asyncio.Task[Any]] = set()  # requests in progress, whether or not a caller waits

    async def drain(self, timeout: float) -> None:
        """At shutdown (after the server stopped): wait up to ``timeout`` seconds for the requests still in
        progress, whose callers may be gone, so their outcomes are recorded before the engine is disposed."""
        if self._detached:
            log.info("waiting up to %gs for %d request(s) in progress", timeout, len(self._detached))
            await asyncio.wait(list(self._detached), timeout=timeout)

    def _detach(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``work`` as a task of its own, referenced until it ends: cancelling the RPC never cancels it."""
        task = asyncio.create_task(work)
        self._detached.add(task)
        task.add_done_callback(self._detached.discard)
        return task

    async def ProcessRecommendation(
        self, request: executor_pb2.ProcessRecommendationRequest, context: Any
    ) -> executor_pb2.ProcessRecommendationResponse:
        task = self._detach(self.executor.process(request.recommendation_id))
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                log.info("recommendation %d: the caller went away; finishing it", request.recommendation_id)
                task.add_done_callback(_orphan_done(request.recommendation_id))
            raise
        return executor_pb2.ProcessRecommendationResponse(result=to_message(result))

    async def ManagePositions(
        self, request: executor_pb2.ManagePositionsRequest, context: Any
    ) -> executor_pb2.ManagePositionsResponse:
        exits, still_open = await asyncio.shield(self._detach(self.executor.manage_positions()))
        return executor_pb2.ManagePositionsResponse(
            exits=[
                executor_pb2.PositionExit(
                    position_id=e.position.id or 0,
                    symbol=e.position.symbol,
                    reason=exit_reason_to_proto(e.reason),
                    recommendation_id=e.recommendation_id,
                    exit_price=decimal_string(e.exit_price),
                    quantity=decimal_string(e.quantity),
                    realized_pnl=decimal_string(e.realized_pnl),
                )
                for e in exits
            ],
            open_positions=still_open,
        )

    async def _one(self, recommendation_id: int) -> executor_pb2.ExecuteRecommendationsResponse:
        """Exactly one answer per request, whatever happens. A problem of the executor itself (the database lost,
        a bug) is not a verdict on the recommendation: it stays PENDING and the orchestrator retries it later."""
        try:
            result = to_message(await self.executor.process(recommendation_id))
        except Exception as exc:
            code = grpc.StatusCode[status_code_name(exc)]
            if isinstance(exc, DomainError):
                reason = str(exc)
            elif code == grpc.StatusCode.UNAVAILABLE:
                log.warning("recommendation %d: database unavailable (%s)", recommendation_id, type(exc).__name__)
                reason = "the database is unavailable; try again later"
            else:
                log.exception("recommendation %d: unexpected error", recommendation_id)
                reason = "internal error in the executor; see its log"
            result = error_message(recommendation_id, code, reason)
        return executor_pb2.ExecuteRecommendationsResponse(result=result)

    async def ExecuteRecommendations(
        self, request_iterator: AsyncIterator[executor_pb2.ExecuteRecommendationsRequest], context: Any
    ) -> AsyncIterator[executor_pb2.ExecuteRecommendationsResponse]:
        """Up to STREAM_CONCURRENCY requests in flight; each answered once, in completion order. When the caller
        goes away, the requests already read are finished all the same (their answers go nowhere)."""
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
                    task = self._detach(work(request.recommendation_id))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if tasks:
                    await asyncio.wait(list(tasks))  # unlike gather, being cancelled does not cancel them
            finally:
                await results.put(None)

        reader = asyncio.create_task(read())
        try:
            while (item := await results.get()) is not None:
                yield item
        finally:
            reader.cancel()  # read no more requests; those already read finish (self._detach keeps them)
            if tasks:
                log.info("stream closed with %d request(s) in progress: finishing them", len(tasks))
