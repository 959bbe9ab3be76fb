"""The bridge itself: eligible signals become PENDING recommendations, at most one per signal.

Plain Python over an injected store (bridge_svc.repository in the service), clock and nudge callback; the RPC and
the 30-second loop both call :meth:`SignalBridge.bridge`."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from bridge_svc.admission import (
    EXIT_PENDING,
    MAX_POSITIONS,
    NO_POSITION,
    POSITION_OPEN,
    PositionBook,
    admission_order,
)
from bridge_svc.eligibility import ALREADY_PROCESSED, NO_PRICE, NOT_FOUND, EligibilityRules, skip_reason
from bridge_svc.pricing import PricingTerms
from bridge_svc.recommendations import NewRecommendation, Recommendation, propose
from bridge_svc.signals import TradingSignal
from common.clock import Clock
from common.metrics import RECOMMENDATIONS

log = logging.getLogger(__name__)

# Eligible, but amount_usd / entry_price rounds down to 0 units.
ORDER_TOO_SMALL = "order_too_small"
# Eligible, but no recommendation can be made of it: marked processed with the reason, never retried.
SKIPPED_FOR_GOOD = frozenset({NO_PRICE, ORDER_TOO_SMALL, NO_POSITION, POSITION_OPEN, MAX_POSITIONS, EXIT_PENDING})


@dataclass(frozen=True, slots=True)
class Written:
    recommendation: Recommendation


@dataclass(frozen=True, slots=True)
class Candidates:
    """Signals to bridge and the position book they are admitted against (an empty book when there are none)."""

    signals: list[TradingSignal]
    book: PositionBook


@dataclass(frozen=True, slots=True)
class Refused:
    """The database refused the recommendation; the signal is marked processed with ``reason`` (or already was)."""

    reason: str


class BridgeSession(Protocol):
    """The store for one bridge call, on one database connection: the read, then one short transaction per
    signal."""

    async def named_candidates(self, signal_ids: Sequence[int]) -> Candidates:
        """Those of the named signals that exist (in any order), with the position book when there are any."""
        ...

    async def eligible_candidates(self, rules: EligibilityRules, now: datetime, limit: int) -> Candidates:
        """The oldest unprocessed BUY/SELL signals above the confidence minimum and young enough (at most
        ``limit``), with the position book when there are any."""
        ...

    async def write_recommendation(self, proposal: NewRecommendation) -> Written | Refused:
        """Insert the recommendation and mark its signal processed in one transaction."""
        ...

    async def mark_skipped(self, signal_id: int, reason: str) -> bool:
        """Mark an unprocessed signal processed without a recommendation; False if it already was processed."""
        ...


class BridgeStore(Protocol):
    def session(self) -> AbstractAsyncContextManager[BridgeSession]:
        """A session for one bridge call (its connection goes back to the pool when the context ends)."""
        ...


@dataclass
class BridgeOutcome:
    created: list[Recommendation] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    # Only for signals named in the request: (signal id, reason), in request order.
    skipped_signals: list[tuple[int, str]] = field(default_factory=list)


class SignalBridge:
    def __init__(
        self,
        store: BridgeStore,
        rules: EligibilityRules,
        terms: PricingTerms,
        clock: Clock,
        *,
        batch_size: int,
        on_created: Callable[[list[int]], None] | None = None,
        max_open_positions: int = 10,
        refresh_clock: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._max_open = max_open_positions
        self._refresh_clock = refresh_clock
        self._store = store
        self._rules = rules
        self._terms = terms
        self._clock = clock
        self._batch_size = batch_size
        self._on_created = on_created

    async def bridge(self, signal_ids: Sequence[int] = ()) -> BridgeOutcome:
        """Bridge the named signals (unknown ids are skipped as "not_found"), or, with none named, one batch of the
        oldest eligible signals."""
        outcome = BridgeOutcome()
        if self._refresh_clock is not None:
            await self._refresh_clock()
        now = self._clock()
        named = bool(signal_ids)
        async with self._store.session() as store:
            if named:
                ids = list(dict.fromkeys(signal_ids))
                batch = await store.named_candidates(ids)
                found = {signal.id: signal for signal in batch.signals}
                candidates: list[TradingSignal] = []
                for signal_id in ids:
                    signal = found.get(signal_id)
                    if signal is None:
                        self._skip(outcome, signal_id, NOT_FOUND, named)
                    else:
                        candidates.append(signal)
            else:
                batch = await store.eligible_candidates(self._rules, now, self._batch_size)
                candidates = batch.signals
            for signal in sorted(candidates, key=admission_order):
                await self._bridge_one(store, signal, now, outcome, named, batch.book)
        if outcome.created and self._on_created is not None:
            self._on_created([r.id for r in outcome.created])
        return outcome

    async def bridge_all(self, max_batches: int = 10) -> BridgeOutcome:
        """The loop's cycle: batches of eligible signals until a batch is not full (at most ``max_batches``)."""
        total = BridgeOutcome()
        for _ in range(max_batches):
            outcome = await self.bridge()
            total.created.extend(outcome.created)
            total.skipped.update(outcome.skipped)
            if len(outcome.created) + outcome.skipped.total() < self._batch_size:
                break
        return total

    async def _bridge_one(
        self,
        store: BridgeSession,
        signal: TradingSignal,
        now: datetime,
        outcome: BridgeOutcome,
        named: bool,
        book: PositionBook,
    ) -> None:
        reason = skip_reason(signal, self._rules, now)
        proposal = None
        if reason is None:
            reason = book.refusal(signal.signal_type, signal.symbol, self._max_open)
        if reason is None:
            proposal = propose(signal, self._terms, now, held=book.held.get(signal.symbol))
            if proposal.levels.amount_crypto <= 0:
                reason = ORDER_TOO_SMALL
        if reason in SKIPPED_FOR_GOOD and not await store.mark_skipped(signal.id, reason):
            reason = ALREADY_PROCESSED  # eligible but cannot be priced: marked processed, never retried
        if reason is not None or proposal is None:
            self._skip(outcome, signal.id, reason or ALREADY_PROCESSED, named)
            return
        result = await store.write_recommendation(proposal)
        if isinstance(result, Refused):
            self._skip(outcome, signal.id, result.reason, named)
            return
        recommendation = result.recommendation
        book.written(proposal.signal_type, proposal.symbol)
        outcome.created.append(recommendation)
        RECOMMENDATIONS.labels(recommendation.execution_status).inc()
        levels = proposal.levels
        log.info(
            "Created recommendation %d for signal %d (%s %s, %s USD at %s, stop %s, target %s, confidence %s)",
            recommendation.id,
            signal.id,
            proposal.signal_type,
            proposal.symbol,
            levels.amount_usd,
            levels.entry_price,
            levels.stop_loss,
            levels.take_profit,
            proposal.confidence,
            extra={"recommendation_id": recommendation.id, "signal_id": signal.id, "symbol": signal.symbol},
        )

    @staticmethod
    def _skip(outcome: BridgeOutcome, signal_id: int, reason: str, named: bool) -> None:
        outcome.skipped[reason] += 1
        if named:
            outcome.skipped_signals.append((signal_id, reason))
