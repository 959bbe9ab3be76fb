"""The orchestration cycle on its own (no database, no channel): a fake store, a fake executor link and a fixed
clock. What each kind of executor answer does to the recommendation, the claims and the rolling cap."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from common.lifecycle import ExecutionStatus, OrderSide
from orchestrator_svc.cycle import (
    CycleClosing,
    CycleLimits,
    CycleOpening,
    CycleTerms,
    ExecutionReport,
    LinkResult,
    Orchestrator,
)
from orchestrator_svc.halt import TradingHalt

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LIMITS = CycleLimits(
    cap=3, cap_window=timedelta(seconds=30), pending_window=timedelta(hours=2), claim_ttl=timedelta(seconds=60)
)


@dataclass
class FakeStore:
    claimable: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    halted: bool = False
    failed: dict[int, str] = field(default_factory=dict)
    closings: list[CycleClosing] = field(default_factory=list)
    renewed: list[tuple[list[int], datetime]] = field(default_factory=list)
    renew_fails: bool = False
    previous_holders: dict[int, str] = field(default_factory=dict)  # expired claims of other replicas
    terms: CycleTerms | None = None

    async def open_cycle(self, orchestrator_id: str, terms: CycleTerms) -> CycleOpening:
        self.terms = terms
        halt = TradingHalt(self.halted, "maintenance" if self.halted else "", "test", NOW)
        claimed = [] if self.halted else self.claimable[: terms.limit]
        taken_over = {i: h for i, h in self.previous_holders.items() if i in claimed}
        return CycleOpening(self.expired, halt, claimed, 3 - len(claimed), taken_over)

    async def renew(self, orchestrator_id: str, ids: list[int], until: datetime) -> None:
        if self.renew_fails:
            raise ConnectionError("database lost")
        self.renewed.append((ids, until))

    async def close_cycle(self, orchestrator_id: str, closing: CycleClosing) -> int:
        self.failed.update(closing.failed)
        self.closings.append(closing)
        return await self.remaining(closing.pending_since)

    async def remaining(self, pending_since: datetime) -> int:
        return 7

    async def get_halt(self) -> TradingHalt:
        return TradingHalt(self.halted, "", "", None)

    async def set_halt(self, halt: TradingHalt) -> None:
        self.halted = halt.halted


@dataclass
class FakeLink:
    reports: dict[int, ExecutionReport]
    stream_problem: str = ""
    health_problem: str = ""  # what the executor's health says ("" = SERVING)
    takes: float = 0.0  # seconds the stream stays in flight
    sent: list[list[int]] = field(default_factory=list)
    health_asked: int = 0

    async def problem(self) -> str:
        self.health_asked += 1
        return self.health_problem

    async def execute(self, ids: list[int]) -> LinkResult:
        self.sent.append(ids)
        await asyncio.sleep(self.takes)
        return LinkResult({i: r for i, r in self.reports.items() if i in ids}, self.stream_problem)


def _orchestrator(store: FakeStore, link: FakeLink, limits: CycleLimits = LIMITS) -> Orchestrator:
    return Orchestrator(store, link, limits, lambda: NOW)


async def test_each_answer_becomes_one_outcome() -> None:
    store = FakeStore(claimable=[1, 2, 3], expired=[9])
    link = FakeLink(
        {
            1: ExecutionReport(1, ExecutionStatus.EXECUTED, symbol="BTC-USD", side=OrderSide.BUY, filled_size="0.1"),
            2: ExecutionReport(2, None, error_code="FAILED_PRECONDITION", reason="HOLD: nothing to execute"),
            3: ExecutionReport(3, ExecutionStatus.PENDING, error_code="UNAVAILABLE", retryable=True, reason="db lost"),
        }
    )
    result = await _orchestrator(store, link).run_cycle()
    assert [(o.recommendation_id, o.status) for o in result.outcomes] == [
        (9, ExecutionStatus.CANCELLED),
        (1, ExecutionStatus.EXECUTED),
        (2, ExecutionStatus.FAILED),
        (3, ExecutionStatus.PENDING),
    ]
    # The executor refused 2 itself: FAILED in the database, so it is not offered every cycle.
    assert store.failed == {2: "FAILED_PRECONDITION: HOLD: nothing to execute"}
    # 3 is retried later: its claim and its cap slot are given back; 1 and 2 only lose the claim.
    (closing,) = store.closings
    assert (closing.retry, closing.now, closing.pending_since) == ([3], NOW, NOW - timedelta(hours=2))
    assert result.capacity_left == 1
    assert result.remaining == 7
    assert store.terms is not None
    assert store.terms.pending_since == NOW - timedelta(hours=2)
    assert (store.terms.limit, store.terms.cap) == (3, 3)


async def test_an_unreachable_executor_leaves_everything_pending() -> None:
    store = FakeStore(claimable=[1, 2])
    link = FakeLink({}, stream_problem="executor at x unreachable or too slow (UNAVAILABLE)")
    result = await _orchestrator(store, link).run_cycle()
    assert result.executor_unreachable
    assert {o.status for o in result.outcomes} == {ExecutionStatus.PENDING}
    assert [closing.retry for closing in store.closings] == [[1, 2]]
    assert store.failed == {}


async def test_halted_sends_nothing() -> None:
    store = FakeStore(claimable=[1], halted=True)
    link = FakeLink({1: ExecutionReport(1, ExecutionStatus.EXECUTED)})
    result = await _orchestrator(store, link).run_cycle()
    assert result.halted
    assert link.sent == []
    assert result.outcomes == []


async def test_max_trades_limits_the_claim() -> None:
    store = FakeStore(claimable=[1, 2, 3])
    link = FakeLink({i: ExecutionReport(i, ExecutionStatus.EXECUTED) for i in (1, 2, 3)})
    result = await _orchestrator(store, link).run_cycle(max_trades=1)
    assert link.sent == [[1]]
    assert [o.recommendation_id for o in result.with_status(ExecutionStatus.EXECUTED)] == [1]


@pytest.mark.parametrize("problem", ["executor at x is NOT_SERVING", "executor at x unreachable (UNAVAILABLE)"])
async def test_a_not_serving_executor_gets_nothing(problem: str) -> None:
    store = FakeStore(claimable=[1, 2], expired=[9])
    link = FakeLink({i: ExecutionReport(i, ExecutionStatus.EXECUTED) for i in (1, 2)}, health_problem=problem)
    result = await _orchestrator(store, link).run_cycle()
    assert store.terms is not None
    assert store.terms.limit == 0  # nothing claimed, no cap slot reserved
    assert link.sent == []
    assert (result.executor_unreachable, result.executor_error) == (True, problem)
    # Expiry still runs; nothing else changes: the rest stays PENDING (remaining), nothing is marked FAILED.
    assert [(o.recommendation_id, o.status) for o in result.outcomes] == [(9, ExecutionStatus.CANCELLED)]
    assert result.remaining == 7
    assert store.closings == []
    assert store.failed == {}


async def test_claims_are_renewed_while_the_stream_is_in_flight() -> None:
    ttl = timedelta(seconds=0.2)  # renewed every 0.05 s
    limits = CycleLimits(cap=3, cap_window=timedelta(seconds=30), pending_window=timedelta(hours=2), claim_ttl=ttl)
    store = FakeStore(claimable=[1, 2])
    link = FakeLink({i: ExecutionReport(i, ExecutionStatus.EXECUTED) for i in (1, 2)}, takes=0.5)
    result = await _orchestrator(store, link, limits).run_cycle()
    assert len(result.with_status(ExecutionStatus.EXECUTED)) == 2
    renewals = len(store.renewed)
    assert 3 <= renewals <= 10, store.renewed
    assert all(ids == [1, 2] and until == NOW + ttl for ids, until in store.renewed)
    await asyncio.sleep(0.2)
    assert len(store.renewed) == renewals  # the renewal stopped with the stream


async def test_a_failed_renewal_is_logged_and_the_cycle_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    limits = CycleLimits(
        cap=3, cap_window=timedelta(seconds=30), pending_window=timedelta(hours=2), claim_ttl=timedelta(seconds=0.1)
    )
    store = FakeStore(claimable=[1], renew_fails=True)
    link = FakeLink({1: ExecutionReport(1, ExecutionStatus.EXECUTED)}, takes=0.1)
    result = await _orchestrator(store, link, limits).run_cycle()
    assert [o.recommendation_id for o in result.with_status(ExecutionStatus.EXECUTED)] == [1]
    assert "could not renew the claims on 1 recommendation(s): ConnectionError" in caplog.text


async def test_taking_over_expired_claims_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator_svc.cycle")
    store = FakeStore(claimable=[4, 5, 6], previous_holders={4: "orchestrator-dead", 6: "orchestrator-dead"})
    link = FakeLink({i: ExecutionReport(i, ExecutionStatus.EXECUTED) for i in (4, 5, 6)})
    await _orchestrator(store, link).run_cycle()
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if "took over" in r.getMessage()]
    assert lines == [
        (
            logging.INFO,
            "took over 2 recommendation(s) whose claim expired (its holder stopped renewing it): "
            "4, 6 from orchestrator-dead",
        )
    ]


async def test_nothing_taken_over_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator_svc.cycle")
    store = FakeStore(claimable=[1])
    await _orchestrator(store, FakeLink({1: ExecutionReport(1, ExecutionStatus.EXECUTED)})).run_cycle()
    assert "took over" not in caplog.text
