"""All of the bridge's SQL (SQLAlchemy Core, async).

Never twice, enforced by the database: a recommendation is written in the same short transaction that claims its
signal (``UPDATE trading_signals SET processed = 1 WHERE id = :id AND processed = 0``), and
trade_recommendations has UNIQUE(signal_id) and UNIQUE(pending_key). Two bridges racing for one signal: the second
claim waits for the first transaction's row lock and then matches no row (MariaDB runs READ COMMITTED; SQLite
serialises writers with BEGIN IMMEDIATE). A second open recommendation for the same symbol and side violates
UNIQUE(pending_key): that transaction is rolled back and the signal is marked processed with processed_reason
"open_position" in a second one.

Speed (the nudge path, signal -> paper order): every statement is built once, here, with bind parameters (building
one per call costs about as much again as running it: SQLAlchemy derives its cache key from scratch each time),
and each public method runs its statements in one greenlet (:meth:`BridgeSession._run`), instead of one greenlet
switch per checkout, statement, commit and checkin; a bridge call uses one connection."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Final, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    String,
    and_,
    bindparam,
    false,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    union,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge_svc.admission import PositionBook
from bridge_svc.bridging import Candidates, Refused, Written
from bridge_svc.eligibility import ALREADY_PROCESSED, OPEN_POSITION, TRADABLE_TYPES, EligibilityRules
from bridge_svc.recommendations import NewRecommendation, Recommendation
from bridge_svc.signals import TradingSignal
from common.database import is_lock_conflict, run_in_greenlet
from common.errors import UnavailableError
from common.lifecycle import ExecutionMode, ExecutionStatus, ExitReason, OrderSide, PositionStatus, SignalType
from common.tables import positions, trade_recommendations, trading_signals

log = logging.getLogger(__name__)

T = TypeVar("T")

_ATTEMPTS: Final = 3

_signals = trading_signals.c
_p = positions.c
_r = trade_recommendations.c
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


# --- the statements (built once; the values are bind parameters) -------------------------------------------------

_SIGNALS_BY_ID: Final = select(*_SIGNAL_COLUMNS).where(_signals.id.in_(bindparam("ids", expanding=True)))
# The oldest unprocessed BUY/SELL signals above the confidence minimum and young enough, at most :limit.
_ELIGIBLE_SIGNALS: Final = (
    select(*_SIGNAL_COLUMNS)
    .where(
        _unprocessed(),
        _signals.signal_type.in_(sorted(TRADABLE_TYPES)),
        _signals.confidence > bindparam("min_confidence"),
        _signals.created_at >= bindparam("created_after"),
    )
    .order_by(_signals.created_at, _signals.id)
    .limit(bindparam("limit"))
)
# The position book of the signals' :symbols (admission.PositionBook) in one statement, one row per fact: "held"
# (an open position of the executor's :mode: symbol, quantity), "pending" (a PENDING recommendation: symbol,
# signal_type) and one "elsewhere" row (quantity: how many other symbols hold a position or have a PENDING BUY).
_SYMBOLS: Final = bindparam("symbols", type_=String, expanding=True)
_OPEN: Final = and_(_p.status == PositionStatus.OPEN.value, _p.mode == bindparam("mode"))
_PENDING: Final = _r.execution_status == ExecutionStatus.PENDING.value
_OPENING_TYPES: Final = [t.value for t in SignalType if t.side == OrderSide.BUY]
_HELD, _PENDING_SIDE, _ELSEWHERE = "held", "pending", "elsewhere"


def _kind(name: str) -> Any:
    return literal_column(f"'{name}'", String).label("kind")


_POSITION_BOOK: Final = union_all(
    select(_kind(_HELD), _p.symbol, _p.quantity, null().label("signal_type")).where(_OPEN, _p.symbol.in_(_SYMBOLS)),
    select(_kind(_PENDING_SIDE), _r.symbol, null(), _r.signal_type).where(_PENDING, _r.symbol.in_(_SYMBOLS)),
    select(_kind(_ELSEWHERE), null(), func.count(), null()).select_from(
        union(
            select(_p.symbol).where(_OPEN, _p.symbol.not_in(_SYMBOLS)),
            select(_r.symbol).where(_PENDING, _r.signal_type.in_(_OPENING_TYPES), _r.symbol.not_in(_SYMBOLS)),
        ).subquery()
    ),
)
# Marks an unprocessed signal processed (:reason NULL: claimed for a recommendation); matches no row if it already was.
_MARK_PROCESSED: Final = (
    update(trading_signals)
    .where(_signals.id == bindparam("signal_id"), _unprocessed())
    .values(processed=True, processed_reason=bindparam("reason"))
)
_INSERT_RECOMMENDATION: Final = insert(trade_recommendations)


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


def _recommendation_values(proposal: NewRecommendation) -> dict[str, Any]:
    levels = proposal.levels
    return {
        "signal_id": proposal.signal_id,
        "symbol": proposal.symbol,
        "signal_type": proposal.signal_type,
        "amount_usd": levels.amount_usd,
        "confidence": proposal.confidence,
        "reasoning": proposal.reasoning,
        "execution_status": ExecutionStatus.PENDING,
        "entry_price": levels.entry_price,
        "stop_loss": levels.stop_loss,
        "take_profit": levels.take_profit,
        "position_size_percent": levels.position_size_percent,
        "amount_crypto": levels.amount_crypto,
        "is_mock": proposal.is_mock,
        "created_at": proposal.created_at,
        "updated_at": proposal.created_at,
        "pending_key": proposal.pending_key,
        # A SELL signal closes the position: the reason every exit records.
        "exit_reason": ExitReason.SIGNAL.value if proposal.signal_type == SignalType.SELL else None,
    }


class BridgeRepository:
    """The bridge's store (bridging.BridgeStore): a :class:`BridgeSession` per bridge call."""

    def __init__(self, engine: AsyncEngine, mode: ExecutionMode = ExecutionMode.PAPER) -> None:
        self._engine = engine
        self._mode = mode

    @asynccontextmanager
    async def session(self) -> AsyncIterator[BridgeSession]:
        session = BridgeSession(self._engine, self._mode)
        try:
            yield session
        finally:
            await session.close()


class BridgeSession:
    """The bridge's reads and writes for one bridge call, on one connection (checked out at the first call): the
    read, then one short transaction per signal (or a few, on retry). The read's transaction goes on into the
    first write's, so a nudge (one signal) costs one checkout and one COMMIT: no ROLLBACK after the read. Each
    call runs its statements in one greenlet."""

    def __init__(self, engine: AsyncEngine, mode: ExecutionMode) -> None:
        self._engine = engine
        self._mode = mode
        self._conn: Connection | None = None

    def _with_book(self, conn: Connection, signals: list[TradingSignal]) -> Candidates:
        """``signals`` and, when there are any, their position book (of their symbols only: see _POSITION_BOOK)."""
        if not signals:
            return Candidates(signals, PositionBook())
        parameters = {"mode": self._mode.value, "symbols": sorted({signal.symbol for signal in signals})}
        book = PositionBook()
        for row in conn.execute(_POSITION_BOOK, parameters):
            if row.kind == _HELD:
                book.held[row.symbol] = row.quantity
            elif row.kind == _ELSEWHERE:
                book.elsewhere = int(row.quantity)
            elif (side := SignalType(row.signal_type).side) is not None:
                book.written(side, row.symbol)
        return Candidates(signals, book)

    async def named_candidates(self, signal_ids: Sequence[int]) -> Candidates:
        def read(conn: Connection) -> Candidates:
            rows = conn.execute(_SIGNALS_BY_ID, {"ids": list(signal_ids)})
            return self._with_book(conn, [_signal(row) for row in rows])

        return await self._run(read, commit=False)

    async def eligible_candidates(self, rules: EligibilityRules, now: datetime, limit: int) -> Candidates:
        parameters = {
            "min_confidence": rules.min_confidence,
            "created_after": rules.created_after(now),
            "limit": limit,
        }

        def read(conn: Connection) -> Candidates:
            return self._with_book(conn, [_signal(row) for row in conn.execute(_ELIGIBLE_SIGNALS, parameters)])

        return await self._run(read, commit=False)

    async def write_recommendation(self, proposal: NewRecommendation) -> Written | Refused:
        """Claim the signal and insert its PENDING recommendation in one transaction."""

        def write(conn: Connection) -> Written | Refused:
            claimed = conn.execute(_MARK_PROCESSED, {"signal_id": proposal.signal_id, "reason": None})
            if claimed.rowcount != 1:
                return Refused(ALREADY_PROCESSED)
            result = conn.execute(_INSERT_RECOMMENDATION, _recommendation_values(proposal))
            (recommendation_id,) = result.inserted_primary_key or (None,)
            if recommendation_id is None:  # pragma: no cover - both drivers report the new id
                raise RuntimeError("the database did not report the new recommendation id")
            return Written(Recommendation(id=int(recommendation_id), proposal=proposal))

        try:
            return await self._run(write, commit=True)
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
        def write(conn: Connection) -> bool:
            return conn.execute(_MARK_PROCESSED, {"signal_id": signal_id, "reason": reason}).rowcount == 1

        return await self._run(write, commit=True)

    async def close(self) -> None:
        """Return the connection to the pool (a transaction still open, the read's, is rolled back)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await run_in_greenlet(conn.close)

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self._engine.sync_engine.connect()
        return self._conn

    async def _run(self, work: Callable[[Connection], T], *, commit: bool) -> T:
        """``work`` in one greenlet, on the session's connection; with ``commit``, as one transaction (it takes
        over the read's, if one is open) that ``work`` returning commits and ``work`` raising rolls back. Deadlocks
        and lock wait timeouts are retried; a lost database is UNAVAILABLE."""

        def run() -> T:
            conn = self._connection()
            if not commit:
                return work(conn)
            with conn.get_transaction() or conn.begin():
                return work(conn)

        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return await run_in_greenlet(run)
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
