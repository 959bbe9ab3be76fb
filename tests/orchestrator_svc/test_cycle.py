"""The orchestration cycle on its own (no database, no channel): a fake store, a fake executor link and a fixed
clock. What each kind of executor answer does to the recommendation, the claims and the rolling cap."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from common.lifecycle import ExecutionStatus, OrderSide
from orchestrator_svc.cycle import (
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
    released: list[tuple[list[int], bool]] = field(default_factory=list)
    terms: CycleTerms | None = None

    async def open_cycle(self, orchestrator_id: str, terms: CycleTerms) -> CycleOpening:
        self.terms = terms
        halt = TradingHalt(self.halted, "maintenance" if self.halted else "", "test", NOW)
        claimed = [] if self.halted else self.claimable[: terms.limit]
        return CycleOpening(self.expired, halt, claimed, 3 - len(claimed))

    async def release(self, orchestrator_id: str, ids: list[int], *, refund: bool, since: datetime) -> None:
        self.released.append((ids, refund))

    async def mark_failed(self, recommendation_id: int, reason: str, now: datetime) -> None:
        self.failed[recommendation_id] = reason

    async def remaining(self, pending_since: datetime) -> int:
        return 7

    async def get_halt(self) -> TradingHalt:
        return TradingHalt(self.halted, "", "", None)

    async def set_halt(self, halt: TradingHalt) -> None:
        self.halted = halt.halted


@dataclass
class FakeLink:
    reports: dict[int, ExecutionReport]
    problem: str = ""
    sent: list[list[int]] = field(default_factory=list)

    async def execute(self, ids: list[int]) -> LinkResult:
        self.sent.append(ids)
        return LinkResult({i: r for i, r in self.reports.items() if i in ids}, self.problem)


def _orchestrator(store: FakeStore, link: FakeLink) -> Orchestrator:
    return Orchestrator(store, link, LIMITS, lambda: NOW)


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
    assert store.released == [([3], True), ([1, 2], False)]
    assert result.capacity_left == 1
    assert result.remaining == 7
    assert store.terms is not None
    assert store.terms.pending_since == NOW - timedelta(hours=2)
    assert (store.terms.limit, store.terms.cap) == (3, 3)


async def test_an_unreachable_executor_leaves_everything_pending() -> None:
    store = FakeStore(claimable=[1, 2])
    link = FakeLink({}, problem="executor at x unreachable or too slow (UNAVAILABLE)")
    result = await _orchestrator(store, link).run_cycle()
    assert result.executor_unreachable
    assert {o.status for o in result.outcomes} == {ExecutionStatus.PENDING}
    assert store.released == [([1, 2], True), ([], False)]
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
