"""All of the bridge's SQL (SQLAlchemy Core, async).

Never twice, enforced by the database: a recommendation is written in the same short transaction that claims its
signal (``UPDATE trading_signals SET processed = 1 WHERE id = :id AND processed = 0``), and
trade_recommendations has UNIQUE(signal_id) and UNIQUE(pending_key). Two bridges racing for one signal: the second
claim waits for the first transaction's row lock and then matches no row (MariaDB runs READ COMMITTED; SQLite
serialises writers with BEGIN IMMEDIATE). A second open recommendation for the same symbol and side violates
UNIQUE(pending_key): that transaction is rolled back and the signal is marked processed with processed_reason
"open_position" in a second one."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

from sqlalchemy import ColumnElement, Row, false, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge_svc.admission import PositionBook
from bridge_svc.bridging import Refused, Written
from bridge_svc.eligibility import ALREADY_PROCESSED, OPEN_POSITION, TRADABLE_TYPES, EligibilityRules
from bridge_svc.recommendations import NewRecommendation, Recommendation
from bridge_svc.signals import TradingSignal
from common.database import is_lock_conflict
from common.errors import UnavailableError
from common.lifecycle import ExecutionMode, ExecutionStatus, ExitReason, PositionStatus, SignalType
from common.tables import positions, trade_recommendations, trading_signals

log = logging.getLogger(__name__)

T = TypeVar("T")

_ATTEMPTS: Final = 3

_signals = trading_signals.c
_SIGNAL_COLUMNS: Final = (
    _signals.id,
    _signals.symbol,
    _signals.signal_type,
    _signals.confidence,
    _signals.price,
    _signals.created_at,
    _signals.processed,
    _signals.is_mock,
    _signals.model,
    _signals.model_version,
    _signals.threshold,
    _signals.regime,
    _signals.buy_probability,
    _signals.sell_probability,
    _signals.hold_probability,
    _signals.candle_time,
)


def _unprocessed() -> ColumnElement[bool]:
    return or_(_signals.processed == false(), _signals.processed.is_(None))


def _signal(row: Row[Any]) -> TradingSignal:
    return TradingSignal(
        id=row.id,
        symbol=row.symbol,
        signal_type=row.signal_type,
        confidence=row.confidence,
        price=row.price,
        created_at=row.created_at,
        processed=bool(row.processed),
        is_mock=bool(row.is_mock),
        model=row.model,
        model_version=row.model_version,
        threshold=row.threshold,
        regime=row.regime,
        buy_probability=row.buy_probability,
        sell_probability=row.sell_probability,
        hold_probability=row.hold_probability,
        candle_time=row.candle_time,
    )


class BridgeRepository:
    """The bridge's reads and writes. Every public method is one short transaction (or a few, on retry)."""

    def __init__(self, engine: AsyncEngine, mode: ExecutionMode = ExecutionMode.PAPER) -> None:
        self._engine = engine
        self._mode = mode

    async def position_book(self) -> PositionBook:
        """Open positions of the executor's mode and the symbols with a PENDING BUY or SELL recommendation."""
        p, r = positions.c, trade_recommendations.c

        async def read() -> PositionBook:
            async with self._engine.connect() as conn:
                held = await conn.execute(
                    select(p.symbol, p.quantity).where(
                        p.status == PositionStatus.OPEN.value, p.mode == self._mode.value
                    )
                )
                pending = await conn.execute(
                    select(r.symbol, r.signal_type).where(r.execution_status == ExecutionStatus.PENDING.value)
                )
                book = PositionBook(held={row.symbol: row.quantity for row in held})
                for row in pending:
                    side = SignalType(row.signal_type).side
                    if side is not None:
                        book.written(side, row.symbol)
                return book

        return await self._run(read)

    async def signals_by_id(self, signal_ids: Sequence[int]) -> dict[int, TradingSignal]:
        async def read() -> dict[int, TradingSignal]:
            async with self._engine.connect() as conn:
                result = await conn.execute(select(*_SIGNAL_COLUMNS).where(_signals.id.in_(list(signal_ids))))
                return {row.id: _signal(row) for row in result}

        return await self._run(read)

    async def eligible_signals(self, rules: EligibilityRules, now: datetime, limit: int) -> list[TradingSignal]:
        """The oldest unprocessed BUY/SELL signals above the confidence minimum and young enough, at most ``limit``."""
        query = (
            select(*_SIGNAL_COLUMNS)
            .where(
                _unprocessed(),
                _signals.signal_type.in_(sorted(TRADABLE_TYPES)),
                _signals.confidence > rules.min_confidence,
                _signals.created_at >= rules.created_after(now),
            )
            .order_by(_signals.created_at, _signals.id)
            .limit(limit)
        )

        async def read() -> list[TradingSignal]:
            async with self._engine.connect() as conn:
                return [_signal(row) for row in await conn.execute(query)]

        return await self._run(read)

    async def write_recommendation(self, proposal: NewRecommendation) -> Written | Refused:
        """Claim the signal and insert its PENDING recommendation in one transaction."""

        async def write() -> Written | Refused:
            async with self._engine.begin() as conn:
                claimed = await conn.execute(
                    update(trading_signals)
                    .where(_signals.id == proposal.signal_id, _unprocessed())
                    .values(processed=True, processed_reason=None)
                )
                if claimed.rowcount != 1:
                    return Refused(ALREADY_PROCESSED)
                levels = proposal.levels
                result = await conn.execute(
                    insert(trade_recommendations).values(
                        signal_id=proposal.signal_id,
                        symbol=proposal.symbol,
                        signal_type=proposal.signal_type,
                        amount_usd=levels.amount_usd,
                        confidence=proposal.confidence,
                        reasoning=proposal.reasoning,
                        execution_status=ExecutionStatus.PENDING,
                        entry_price=levels.entry_price,
                        stop_loss=levels.stop_loss,
                        take_profit=levels.take_profit,
                        position_size_percent=levels.position_size_percent,
                        amount_crypto=levels.amount_crypto,
                        is_mock=proposal.is_mock,
                        created_at=proposal.created_at,
                        updated_at=proposal.created_at,
                        pending_key=proposal.pending_key,
                        # A SELL signal closes the position: the reason every exit records.
                        exit_reason=ExitReason.SIGNAL.value if proposal.signal_type == SignalType.SELL else None,
                    )
                )
                (recommendation_id,) = result.inserted_primary_key or (None,)
                if recommendation_id is None:  # pragma: no cover - both drivers report the new id
                    raise RuntimeError("the database did not report the new recommendation id")
            return Written(Recommendation(id=int(recommendation_id), proposal=proposal))

        try:
            return await self._run(write)
        except IntegrityError as exc:
            # UNIQUE(pending_key): an open recommendation for this symbol and side exists.
            # UNIQUE(signal_id): a recommendation for this signal exists although the signal was not processed.
            reason = OPEN_POSITION if "pending_key" in str(exc.orig) else ALREADY_PROCESSED
            log.info(
                "Signal %d not bridged: %s",
                proposal.signal_id,
                reason,
                extra={"signal_id": proposal.signal_id, "symbol": proposal.symbol, "reason": reason},
            )
            if await self.mark_skipped(proposal.signal_id, reason):
                return Refused(reason)
            return Refused(ALREADY_PROCESSED)

    async def mark_skipped(self, signal_id: int, reason: str) -> bool:
        async def write() -> bool:
            async with self._engine.begin() as conn:
                result = await conn.execute(
                    update(trading_signals)
                    .where(_signals.id == signal_id, _unprocessed())
                    .values(processed=True, processed_reason=reason)
                )
                return result.rowcount == 1

        return await self._run(write)

    async def _run(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run one transaction, retrying deadlocks and lock wait timeouts; a lost database is UNAVAILABLE."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return await operation()
            except IntegrityError:
                raise
            except (OperationalError, InterfaceError) as exc:
                if is_lock_conflict(exc) and attempt < _ATTEMPTS:
                    log.info("bridge transaction retried after a lock conflict (attempt %d)", attempt)
                    continue
                raise UnavailableError("the database is unavailable; try again later") from exc
            except PoolTimeoutError as exc:
                raise UnavailableError("the database is busy; try again later") from exc
        raise AssertionError("unreachable")  # pragma: no cover
