"""One orchestration cycle (the 30-second loop, the bridge's nudge and the Orchestrate RPC all run this):

1. PENDING recommendations older than the window (2 h) become CANCELLED with a reason.
2. While trading is halted, nothing is sent.
3. The executor's gRPC health is asked first (cached briefly): NOT_SERVING or unreachable, nothing is claimed,
   everything stays PENDING and the response says so.
4. Reserve room in the rolling cap (at most N executions per window, counted in the database across cycles,
   nudges and replicas) and claim that many of the best PENDING recommendations (highest confidence, then
   oldest) so no other replica sends them. A claim is a lease: it lasts ``claim_ttl`` and is renewed every
   quarter of that while the stream is in flight, so the claims of a replica that died free up within
   ``claim_ttl`` and another replica takes them over (and logs it).
5. Send them over the executor's stream, one result each. If the executor is unreachable or slow, they stay
   PENDING, the claims and the cap reservation are released, and the response says so."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from common.clock import Clock
from common.lifecycle import ExecutionStatus, OrderSide
from common.metrics import RECOMMENDATIONS, TRADING_HALTED
from orchestrator_svc.halt import TradingHalt

log = logging.getLogger(__name__)
EXECUTED, FAILED, CANCELLED, PENDING = (
    ExecutionStatus.EXECUTED,
    ExecutionStatus.FAILED,
    ExecutionStatus.CANCELLED,
    ExecutionStatus.PENDING,
)


@dataclass(frozen=True)
class CycleLimits:
    cap: int
    cap_window: timedelta
    pending_window: timedelta
    claim_ttl: timedelta


@dataclass(frozen=True)
class Outcome:
    """What a cycle did with one recommendation: EXECUTED, FAILED, CANCELLED, or PENDING (left for a later cycle)."""

    recommendation_id: int
    status: ExecutionStatus
    reason: str = ""
    exchange_order_id: str = ""


@dataclass(frozen=True)
class ExecutionReport:
    """The executor's answer for one recommendation, typed (orchestrator_svc.executor_link converts the message)."""

    recommendation_id: int
    status: ExecutionStatus | None  # None: the executor could not process the request at all (see error_code)
    error_code: str = ""  # the gRPC status code name of such a request ("" when processed)
    retryable: bool = False  # the executor's own problem (database lost, a bug): the recommendation stays PENDING
    reason: str = ""
    symbol: str = ""
    side: OrderSide | None = None
    filled_size: str = ""
    average_price: str = ""
    exchange_order_id: str = ""


@dataclass
class LinkResult:
    reports: dict[int, ExecutionReport] = field(default_factory=dict)
    problem: str = ""  # non-empty: the executor could not be reached or did not answer in time


@dataclass
class CycleResult:
    outcomes: list[Outcome] = field(default_factory=list)  # each recommendation once
    remaining: int = 0
    halted: bool = False
    executor_unreachable: bool = False
    executor_error: str = ""
    capacity_left: int = 0
    refused: list[int] = field(default_factory=list)  # the executor refused the request itself: marked FAILED

    def with_status(self, status: ExecutionStatus) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]


@dataclass(frozen=True)
class CycleTerms:
    """What one cycle may do: claim at most ``limit`` within the rolling ``cap`` per ``cap_window``; recommendations
    created before ``pending_since`` are cancelled with ``cancel_reason``; claims last ``claim_ttl``."""

    limit: int
    cap: int
    cap_window: timedelta
    pending_since: datetime
    claim_ttl: timedelta
    cancel_reason: str
    now: datetime


@dataclass(frozen=True)
class CycleOpening:
    cancelled: list[int]
    halt: TradingHalt
    claimed: list[int]  # best first
    capacity_left: int
    # claimed rows whose earlier claim (another replica's, or an earlier one of ours) had expired: id -> its holder
    taken_over: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CycleClosing:
    """The end of a cycle that sent recommendations: ``failed`` (the executor refused them itself: id -> reason)
    become FAILED, every claim the orchestrator still holds is dropped, and the cap slots of ``retry`` (left
    PENDING, dispatched at ``now``) are given back. ``pending_since``: the window that ``remaining`` counts."""

    failed: dict[int, str]
    retry: list[int]
    now: datetime
    pending_since: datetime


class OrchestratorStore(Protocol):
    """What a cycle needs from the database (orchestrator_svc.repository.OrchestratorRepository)."""

    async def open_cycle(self, orchestrator_id: str, terms: CycleTerms) -> CycleOpening: ...
    async def renew(self, orchestrator_id: str, ids: list[int], until: datetime) -> None: ...
    async def close_cycle(self, orchestrator_id: str, closing: CycleClosing) -> int:
        """Write ``closing`` in one transaction; the number of PENDING recommendations since its pending_since."""
        ...

    async def remaining(self, pending_since: datetime) -> int: ...
    async def get_halt(self) -> TradingHalt: ...
    async def set_halt(self, halt: TradingHalt) -> None: ...


class Link(Protocol):
    async def problem(self) -> str:
        """Why the executor should get nothing now (NOT_SERVING, unreachable), or "" when it is SERVING."""
        ...

    async def execute(self, ids: list[int]) -> LinkResult: ...


class Orchestrator:
    def __init__(
        self,
        repository: OrchestratorStore,
        link: Link,
        limits: CycleLimits,
        clock: Clock,
        refresh_clock: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.repository = repository
        # Replay: read the market time the replay has reached before each cycle (common.market_clock).
        self.refresh_clock = refresh_clock
        self.link = link
        self.limits = limits
        self.clock = clock
        self.identity = f"orchestrator-{uuid.uuid4().hex[:12]}"
        self._lock = asyncio.Lock()

    async def run_cycle(self, max_trades: int = 0) -> CycleResult:
        async with self._lock:
            return await self._cycle(max_trades or self.limits.cap)

    async def _cycle(self, max_trades: int) -> CycleResult:
        result = CycleResult()
        # Asked before the transaction that claims: a NOT_SERVING or unreachable executor gets nothing.
        executor_problem = await self.link.problem()
        if self.refresh_clock is not None:
            await self.refresh_clock()
        now = self.clock()
        pending_since = now - self.limits.pending_window
        hours = self.limits.pending_window.total_seconds() / 3600
        reason = f"not executed within {hours:g} h of its creation"
        limit = 0 if executor_problem else max_trades
        terms = CycleTerms(
            limit, self.limits.cap, self.limits.cap_window, pending_since, self.limits.claim_ttl, reason, now
        )
        opening = await self.repository.open_cycle(self.identity, terms)
        for rec_id in opening.cancelled:
            result.outcomes.append(Outcome(rec_id, CANCELLED, reason))
            RECOMMENDATIONS.labels(CANCELLED.value).inc()
            log.info("Cancelled recommendation %d: %s", rec_id, reason, extra={"recommendation_id": rec_id})
        TRADING_HALTED.set(1 if opening.halt.halted else 0)
        if opening.halt.halted:
            result.halted = True
            result.remaining = await self.repository.remaining(pending_since)
            log.info("trading halted (%s): nothing sent, %d pending", opening.halt.reason, result.remaining)
            return result
        ids, result.capacity_left = opening.claimed, opening.capacity_left
        if executor_problem:
            result.executor_unreachable = True
            result.executor_error = executor_problem
            result.remaining = await self.repository.remaining(pending_since)
            log.warning("%s: nothing dispatched, %d recommendation(s) stay PENDING", executor_problem, result.remaining)
            return result
        if opening.taken_over:
            self._log_taken_over(opening.taken_over)
        if ids:
            renewing = asyncio.create_task(self._renew(ids), name="renew-claims")
            try:
                link = await self.link.execute(ids)
            finally:
                renewing.cancel()
                await asyncio.wait([renewing])
            unanswered = [i for i in ids if i not in link.reports]
            for rec_id in ids:
                report = link.reports.get(rec_id)
                if report is not None:
                    self._record(result, rec_id, report)
            if link.problem:
                result.executor_unreachable = True
                result.executor_error = link.problem
                log.warning("%s: %d recommendation(s) stay PENDING", link.problem, len(unanswered))
                result.outcomes += [Outcome(i, PENDING, link.problem) for i in unanswered]
            refused = set(result.refused)
            failed = {
                o.recommendation_id: o.reason for o in result.with_status(FAILED) if o.recommendation_id in refused
            }
            retry = [o.recommendation_id for o in result.with_status(PENDING)]
            result.capacity_left += len(retry)
            closing = CycleClosing(failed, retry, now, pending_since)
            result.remaining = await self.repository.close_cycle(self.identity, closing)
            return result
        result.remaining = await self.repository.remaining(pending_since)
        return result

    async def _renew(self, ids: list[int]) -> None:
        """Keep the claims on ``ids`` alive while their stream is in flight (cancelled when it ends)."""
        every = self.limits.claim_ttl.total_seconds() / 4
        while True:
            await asyncio.sleep(every)
            try:
                await self.repository.renew(self.identity, ids, self.clock() + self.limits.claim_ttl)
            except Exception as exc:  # the database: try again at the next beat (the claims expire otherwise)
                log.warning("could not renew the claims on %d recommendation(s): %s", len(ids), type(exc).__name__)

    def _log_taken_over(self, taken_over: dict[int, str]) -> None:
        by_holder: dict[str, list[int]] = {}
        for rec_id, holder in sorted(taken_over.items()):
            by_holder.setdefault(holder, []).append(rec_id)
        described = "; ".join(
            f"{', '.join(str(i) for i in rec_ids)} from {holder}" for holder, rec_ids in by_holder.items()
        )
        log.info(
            "took over %d recommendation(s) whose claim expired (its holder stopped renewing it): %s",
            len(taken_over),
            described,
        )

    def _record(self, result: CycleResult, rec_id: int, report: ExecutionReport) -> None:
        if report.retryable:  # the executor's problem, not the recommendation's
            result.outcomes.append(Outcome(rec_id, PENDING, report.reason))
        elif report.error_code:
            result.outcomes.append(Outcome(rec_id, FAILED, f"{report.error_code}: {report.reason}"))
            result.refused.append(rec_id)
            log.warning(
                "Failed to execute recommendation %d: %s %s",
                rec_id,
                report.error_code,
                report.reason,
                extra={"recommendation_id": rec_id},
            )
        elif report.status == EXECUTED:
            result.outcomes.append(Outcome(rec_id, EXECUTED, "", report.exchange_order_id))
            RECOMMENDATIONS.labels(EXECUTED.value).inc()
            log.info(
                "Successfully executed recommendation %d: %s %s filled %s at %s (order %s)",
                rec_id,
                report.symbol,
                report.side or "?",
                report.filled_size,
                report.average_price,
                report.exchange_order_id,
                extra={
                    "recommendation_id": rec_id,
                    "exchange_order_id": report.exchange_order_id,
                    "symbol": report.symbol,
                },
            )
        elif report.status == FAILED:
            result.outcomes.append(Outcome(rec_id, FAILED, report.reason, report.exchange_order_id))
            RECOMMENDATIONS.labels(FAILED.value).inc()
            log.warning(
                "Failed to execute recommendation %d: %s",
                rec_id,
                report.reason,
                extra={"recommendation_id": rec_id},
            )
        elif report.status == CANCELLED:
            result.outcomes.append(Outcome(rec_id, CANCELLED, report.reason))
            log.info("Cancelled recommendation %d: %s", rec_id, report.reason, extra={"recommendation_id": rec_id})
        else:
            result.outcomes.append(Outcome(rec_id, PENDING, report.reason))
            log.info("recommendation %d stays PENDING: %s", rec_id, report.reason, extra={"recommendation_id": rec_id})
