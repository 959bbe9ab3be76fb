"""One orchestration cycle (the 30-second loop, the bridge's nudge and the Orchestrate RPC all run this):

1. PENDING recommendations older than the window (2 h) become CANCELLED with a reason.
2. While trading is halted, nothing is sent.
3. Reserve room in the rolling cap (at most N executions per window, counted in the database across cycles,
   nudges and replicas) and claim that many of the best PENDING recommendations (highest confidence, then
   oldest) so no other replica sends them.
4. Send them over the executor's stream, one result each. If the executor is unreachable or slow, they stay
   PENDING, the claims and the cap reservation are released, and the response says so."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from common.clock import Clock
from common.metrics import RECOMMENDATIONS, TRADING_HALTED

log = logging.getLogger(__name__)
EXECUTED, FAILED, CANCELLED, PENDING = 2, 3, 4, 1  # crypto_trading.v1.ExecutionStatus values


@dataclass(frozen=True)
class CycleLimits:
    cap: int
    cap_window: timedelta
    pending_window: timedelta
    claim_ttl: timedelta


@dataclass(frozen=True)
class Outcome:
    recommendation_id: int
    status: int
    reason: str = ""
    exchange_order_id: str = ""


@dataclass
class CycleResult:
    executed: list[Outcome] = field(default_factory=list)
    failed: list[Outcome] = field(default_factory=list)
    cancelled: list[Outcome] = field(default_factory=list)
    retry_later: list[Outcome] = field(default_factory=list)
    remaining: int = 0
    halted: bool = False
    executor_unreachable: bool = False
    executor_error: str = ""
    capacity_left: int = 0
    refused: list[int] = field(default_factory=list)  # the executor refused the request itself: marked FAILED


class Link(Protocol):
    async def execute(self, ids: list[int]) -> Any: ...


class Orchestrator:
    def __init__(self, repository: Any, link: Link, limits: CycleLimits, clock: Clock) -> None:
        self.repository = repository
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
        now = self.clock()
        pending_since = now - self.limits.pending_window
        hours = self.limits.pending_window.total_seconds() / 3600
        reason = f"not executed within {hours:g} h of its creation"
        opening = await self.repository.open_cycle(
            self.identity,
            limit=max_trades,
            cap=self.limits.cap,
            cap_window=self.limits.cap_window,
            pending_since=pending_since,
            claim_ttl=self.limits.claim_ttl,
            cancel_reason=reason,
            now=now,
        )
        for rec_id in opening.cancelled:
            result.cancelled.append(Outcome(rec_id, CANCELLED, reason))
            RECOMMENDATIONS.labels("CANCELLED").inc()
            log.info("Cancelled recommendation %d: %s", rec_id, reason, extra={"recommendation_id": rec_id})
        TRADING_HALTED.set(1 if opening.halt.halted else 0)
        if opening.halt.halted:
            result.halted = True
            result.remaining = await self.repository.remaining(pending_since)
            log.info("trading halted (%s): nothing sent, %d pending", opening.halt.reason, result.remaining)
            return result
        ids, result.capacity_left = opening.claimed, opening.capacity_left
        if ids:
            link = await self.link.execute(ids)
            unanswered = [i for i in ids if i not in link.results]
            for rec_id in ids:
                item = link.results.get(rec_id)
                if item is not None:
                    self._record(result, rec_id, item)
            if link.problem:
                result.executor_unreachable = True
                result.executor_error = link.problem
                log.warning("%s: %d recommendation(s) stay PENDING", link.problem, len(unanswered))
                result.retry_later += [Outcome(i, PENDING, link.problem) for i in unanswered]
            for outcome in result.failed:
                if outcome.recommendation_id in result.refused:
                    await self.repository.mark_failed(outcome.recommendation_id, outcome.reason, now)
            retry = [o.recommendation_id for o in result.retry_later]
            await self.repository.release(self.identity, retry, refund=True, since=now)
            result.capacity_left += len(retry)
            await self.repository.release(self.identity, [i for i in ids if i not in retry], refund=False, since=now)
        result.remaining = await self.repository.remaining(pending_since)
        return result

    def _record(self, result: CycleResult, rec_id: int, item: Any) -> None:
        if item.error_code in ("UNAVAILABLE", "INTERNAL"):  # the executor's problem, not the recommendation's
            result.retry_later.append(Outcome(rec_id, PENDING, item.error_reason))
        elif item.error_code:
            result.failed.append(Outcome(rec_id, FAILED, f"{item.error_code}: {item.error_reason}"))
            result.refused.append(rec_id)
            log.warning(
                "Failed to execute recommendation %d: %s %s",
                rec_id,
                item.error_code,
                item.error_reason,
                extra={"recommendation_id": rec_id},
            )
        elif item.status == EXECUTED:
            result.executed.append(Outcome(rec_id, EXECUTED, "", item.exchange_order_id))
            RECOMMENDATIONS.labels("EXECUTED").inc()
            log.info(
                "Successfully executed recommendation %d: %s %s filled %s at %s (order %s)",
                rec_id,
                item.symbol,
                "BUY" if item.side == 1 else "SELL",
                item.filled_size,
                item.average_price,
                item.exchange_order_id,
                extra={"recommendation_id": rec_id, "exchange_order_id": item.exchange_order_id, "symbol": item.symbol},
            )
        elif item.status == FAILED:
            result.failed.append(Outcome(rec_id, FAILED, item.error_reason, item.exchange_order_id))
            RECOMMENDATIONS.labels("FAILED").inc()
            log.warning(
                "Failed to execute recommendation %d: %s",
                rec_id,
                item.error_reason,
                extra={"recommendation_id": rec_id},
            )
        elif item.status == CANCELLED:
            result.cancelled.append(Outcome(rec_id, CANCELLED, item.error_reason))
            log.info("Cancelled recommendation %d: %s", rec_id, item.error_reason, extra={"recommendation_id": rec_id})
        else:
            result.retry_later.append(Outcome(rec_id, PENDING, item.error_reason))
            log.info(
                "recommendation %d stays PENDING: %s", rec_id, item.error_reason, extra={"recommendation_id": rec_id}
            )
