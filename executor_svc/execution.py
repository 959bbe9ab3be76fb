"""The execution state machine, one code path for ProcessRecommendation and the stream.

1. The recommendation must exist (NOT_FOUND), be a BUY or SELL with a positive size (FAILED_PRECONDITION).
2. Already final: return the recorded result, place nothing.
3. Commit the execution row (status PENDING, deterministic client_order_id) BEFORE anything is sent.
4. In one transaction that holds that row (FOR UPDATE on MySQL, the writer lock on SQLite): if another caller
   finished it meanwhile, return that; else send (or re-send after a crash: the same client_order_id, which
   Coinbase answers with the order it already has), then record EXECUTED / FAILED on the execution and the
   recommendation. A transient exchange problem leaves both PENDING, retryable.
Concurrent calls for one recommendation therefore place one order."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from decimal import Decimal
from typing import Any, Protocol

from common.clock import Clock
from common.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from common.metrics import EXECUTIONS
from executor_svc.client_order_id import client_order_id
from executor_svc.domain import FINAL, ExecutionRecord, ExecutionResult, OrderOutcome, OrderRequest, Recommendation

log = logging.getLogger(__name__)
MAX_ID = 2**31 - 1


class Broker(Protocol):
    mode: str

    async def execute(self, order: OrderRequest, ledger: Any) -> OrderOutcome: ...


def result_from_record(record: ExecutionRecord, replayed: bool) -> ExecutionResult:
    return ExecutionResult(
        recommendation_id=record.recommendation_id,
        status=record.status if record.status in FINAL else "PENDING",
        client_order_id=record.client_order_id,
        mode=record.mode,
        symbol=record.symbol,
        side=record.side,
        exchange_order_id=record.exchange_order_id,
        filled_size=record.filled_size,
        average_price=record.average_price,
        fees=record.fees,
        error_reason=record.error_message,
        executed_at=record.completed_at if record.status == "EXECUTED" else None,
        replayed=replayed,
    )


class Executor:
    def __init__(self, repository: Any, broker: Broker, clock: Clock) -> None:
        self.repository = repository
        self.broker = broker
        self.clock = clock
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    @staticmethod
    def validate_id(recommendation_id: int) -> None:
        if not 0 < recommendation_id <= MAX_ID:
            raise InvalidArgumentError(f"recommendation_id must be between 1 and {MAX_ID}")

    async def process(self, recommendation_id: int) -> ExecutionResult:
        self.validate_id(recommendation_id)
        lock = self._locks[recommendation_id]
        try:
            async with lock:
                return await self._process(recommendation_id)
        finally:
            if not lock.locked() and not lock._waiters:
                self._locks.pop(recommendation_id, None)

    async def _process(self, recommendation_id: int) -> ExecutionResult:
        rec = await self.repository.recommendation(recommendation_id)
        if rec is None:
            raise NotFoundError(f"recommendation {recommendation_id} does not exist")
        record = await self.repository.execution(recommendation_id)
        if record is not None and record.status in FINAL:
            return result_from_record(record, replayed=True)
        if rec.status in FINAL:
            return ExecutionResult(
                recommendation_id=rec.id,
                status=rec.status,
                client_order_id=client_order_id(rec.id),
                mode=self.broker.mode,
                symbol=rec.symbol,
                side=rec.side,
                error_reason=rec.status_reason,
                replayed=True,
            )
        self._check(rec)
        if record is not None and record.mode != self.broker.mode:
            raise FailedPreconditionError(
                f"recommendation {rec.id} was started in {record.mode} mode; this executor runs {self.broker.mode}"
            )
        order = OrderRequest(
            recommendation_id=rec.id,
            client_order_id=client_order_id(rec.id),
            symbol=rec.symbol,
            side=rec.side,
            quote_size=rec.amount_usd,
            base_size=rec.amount_crypto or Decimal(0),
        )
        if record is None:
            await self.repository.create_execution(rec, order.client_order_id, self.broker.mode, self.clock())
        async with self.repository.unit(rec.id) as unit:
            locked = await unit.lock()
            if locked is not None and locked.status in FINAL:
                return result_from_record(locked, replayed=True)
            outcome = await self.broker.execute(order, unit)
            now = self.clock()
            if outcome.status == "PENDING":
                await unit.note_attempt(outcome.error_message, now)
            else:
                await unit.complete(outcome, now)
        EXECUTIONS.labels(outcome.status, self.broker.mode).inc()
        if outcome.status == "PENDING":
            log.warning(
                "recommendation %d left PENDING (retryable): %s",
                rec.id,
                outcome.error_message,
                extra={"recommendation_id": rec.id},
            )
        else:
            log.info(
                "recommendation %d %s: %s %s %s filled=%s avg=%s fees=%s %s",
                rec.id,
                outcome.status,
                self.broker.mode,
                order.side,
                rec.symbol,
                outcome.filled_size,
                outcome.average_price,
                outcome.fees,
                outcome.error_message,
                extra={
                    "recommendation_id": rec.id,
                    "client_order_id": order.client_order_id,
                    "exchange_order_id": outcome.exchange_order_id,
                },
            )
        return ExecutionResult(
            recommendation_id=rec.id,
            status=outcome.status,
            client_order_id=order.client_order_id,
            mode=self.broker.mode,
            symbol=rec.symbol,
            side=rec.side,
            exchange_order_id=outcome.exchange_order_id,
            filled_size=outcome.filled_size,
            average_price=outcome.average_price,
            fees=outcome.fees,
            error_reason=outcome.error_message,
            executed_at=now if outcome.status == "EXECUTED" else None,
        )

    @staticmethod
    def _check(rec: Recommendation) -> None:
        if rec.side not in ("BUY", "SELL"):
            raise FailedPreconditionError(f"recommendation {rec.id} is {rec.signal_type}: nothing to execute")
        if rec.amount_usd is None or rec.amount_usd <= 0:
            raise FailedPreconditionError(f"recommendation {rec.id} has a non-positive amount_usd")
        if rec.side == "SELL" and (rec.amount_crypto is None or rec.amount_crypto <= 0):
            raise FailedPreconditionError(f"recommendation {rec.id} is a SELL with a non-positive amount_crypto")

    async def recover(self) -> int:
        """Resolve executions a crash left unfinished (same client_order_id, never a new one)."""
        resolved = 0
        for recommendation_id in await self.repository.unfinished():
            try:
                await self.process(recommendation_id)
                resolved += 1
            except Exception:
                log.exception("could not resolve unfinished execution of recommendation %d", recommendation_id)
        return resolved
