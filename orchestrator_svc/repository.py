"""All SQL of the orchestrator: expiring old recommendations, the rolling trade cap, claims, the trading halt.

Speed (the nudge path, signal -> paper order): the statements of the cycle are built once, here, with bind
parameters (building one per call costs about as much again as running it: SQLAlchemy derives its cache key from
scratch each time), and each transaction of the cycle runs in one greenlet on one connection (:func:`_in_greenlet`),
instead of one greenlet switch per checkout, statement, commit and checkin. A cycle is two transactions: one
opens it (:meth:`OrchestratorRepository.open_cycle`), one closes it (:meth:`OrchestratorRepository.close_cycle`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

from sqlalchemy import Connection, Row, String, and_, bindparam, delete, func, insert, or_, select
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncEngine

from common import lifecycle
from common.clock import as_utc
from common.control import ControlKey, decode_halt, encode_halt, write_control
from common.database import run_in_greenlet
from common.lifecycle import ExecutionMode, ExecutionStatus, OrderStatus
from common.tables import orchestrator_dispatches, system_control, trade_executions, trade_recommendations
from orchestrator_svc.cycle import CycleClosing, CycleOpening, CycleTerms
from orchestrator_svc.halt import TradingHalt

T = TypeVar("T")

_r = trade_recommendations.c
_d = orchestrator_dispatches.c
_PENDING = ExecutionStatus.PENDING.value
# The longest status_reason written for a recommendation the executor refused.
_MAX_REASON: Final = 2000

_HALT_COLUMNS = (system_control.c.value, system_control.c.updated_by, system_control.c.updated_at)


def _param(name: str) -> Any:
    """A bind parameter where common.lifecycle's statements take a value (they accept either)."""
    return bindparam(name)


def _ids() -> Any:
    """The ids a statement applies to (:ids, a list)."""
    return bindparam("ids", expanding=True)


def _order_in_flight() -> Any:
    """The recommendation has a live order that may have reached the exchange (its execution row is unfinished):
    expiry never cancels it; the executor resolves it by looking the order up (executor_svc.execution)."""
    unfinished = [OrderStatus.PENDING.value, OrderStatus.SUBMITTED.value]
    return (
        select(trade_executions.c.id)
        .where(
            trade_executions.c.recommendation_id == _r.id,
            trade_executions.c.mode == ExecutionMode.LIVE.value,
            trade_executions.c.status.in_(unfinished),
        )
        .exists()
    )


def _unclaimed() -> Any:
    """No replica holds a live claim on the recommendation at :now (never claimed, or the claim expired)."""
    return or_(_r.claimed_until.is_(None), _r.claimed_until < bindparam("now"))


# --- the statements (built once; the values are bind parameters) -------------------------------------------------

_HALT: Final = select(*_HALT_COLUMNS).where(system_control.c.key == ControlKey.TRADING_HALT.value)
# MySQL: the dispatch lock (FOR UPDATE on its row) and the trading halt in one statement.
_LOCK_DISPATCH_AND_READ_HALT: Final = (
    select(system_control.c.key, *_HALT_COLUMNS)
    .where(system_control.c.key.in_((ControlKey.DISPATCH_LOCK.value, ControlKey.TRADING_HALT.value)))
    .with_for_update()
)
# MySQL only (SQLite needs no lock row): common.sql.insert_ignore's statement for MySQL.
_CREATE_DISPATCH_LOCK: Final = mysql.insert(system_control).on_duplicate_key_update(
    {system_control.c.key.name: system_control.c.key}
)
# PENDING recommendations created before :cutoff and not claimed at :now, no order of theirs in flight.
_EXPIRED: Final = select(_r.id).where(
    _r.execution_status == _PENDING, _r.created_at < bindparam("cutoff"), _unclaimed(), ~_order_in_flight()
)
_CANCEL: Final = lifecycle.finish(ExecutionStatus.CANCELLED, reason=_param("reason"), now=_param("now")).where(
    _r.id.in_(_ids())
)
_CAP_USED: Final = (
    select(func.count()).select_from(orchestrator_dispatches).where(_d.dispatched_at > bindparam("window_start"))
)
# The best :limit PENDING recommendations created since :pending_since and not claimed at :now, each row with the
# cap's use (_CAP_USED): one round trip less on the nudge path. The count runs after the dispatch lock was taken (an
# earlier statement of the transaction), so it sees every dispatch of the other replicas.
_CLAIMABLE: Final = (
    select(_r.id, _r.claimed_by, _CAP_USED.scalar_subquery().label("cap_used"))
    .where(_r.execution_status == _PENDING, _r.created_at >= bindparam("pending_since"), _unclaimed())
    .order_by(_r.confidence.desc(), _r.created_at.asc(), _r.id.asc())
    .limit(bindparam("limit"))
)
# MySQL: rows another replica is claiming right now are skipped, never waited for (SQLite: BEGIN IMMEDIATE
# already serialises the writers).
_EXPIRED_LOCKING: Final = _EXPIRED.with_for_update(skip_locked=True)
_CLAIMABLE_LOCKING: Final = _CLAIMABLE.with_for_update(skip_locked=True)
_CLAIM: Final = lifecycle.claim(_param("holder"), _param("until")).where(_r.id.in_(_ids()))
# One dispatch row per claimed id (:ids), by the database: no parameters per row.
_DISPATCHED: Final = insert(orchestrator_dispatches).from_select(
    [_d.recommendation_id, _d.orchestrator_id, _d.dispatched_at],
    select(_r.id, bindparam("holder", type_=String), bindparam("now", type_=_d.dispatched_at.type)).where(
        _r.id.in_(_ids())
    ),
)
_RENEW: Final = lifecycle.renew_claims(_param("holder"), _param("until")).where(_r.id.in_(_ids()))
# Every claim of :holder: only PENDING rows hold claims (ending a recommendation clears its claim), and one
# orchestrator runs one cycle at a time, so these are the claims of the cycle that closes (and any left over by an
# earlier one that could not close), without naming them.
_RELEASE: Final = lifecycle.release_claims(_param("holder")).where(_r.execution_status == _PENDING)
_REFUND: Final = delete(orchestrator_dispatches).where(
    and_(
        _d.recommendation_id.in_(_ids()),
        _d.orchestrator_id == bindparam("holder"),
        _d.dispatched_at >= bindparam("since"),
    )
)
# The executor refused the recommendation itself: FAILED (executemany over :rec_id, :reason).
_FAIL: Final = lifecycle.finish(
    ExecutionStatus.FAILED, reason=_param("reason"), now=_param("now"), only_from=[ExecutionStatus.PENDING]
).where(_r.id == bindparam("rec_id"))
_REMAINING: Final = (
    select(func.count())
    .select_from(trade_recommendations)
    .where(_r.execution_status == _PENDING, _r.created_at >= bindparam("pending_since"))
)
_PRUNE_DISPATCHES: Final = delete(orchestrator_dispatches).where(_d.dispatched_at < bindparam("before"))


def _parse_halt(row: Any) -> TradingHalt:
    if row is None:
        return TradingHalt(False, "", "", None)
    flag = decode_halt(row.value)
    return TradingHalt(
        flag.halted, flag.reason, row.updated_by or "", as_utc(row.updated_at) if row.updated_at else None
    )


async def _in_greenlet(engine: AsyncEngine, work: Callable[[Connection], T], *, transaction: bool) -> T:
    """``work`` on one connection of ``engine``, checkout to checkin in one greenlet: in a transaction committed at
    its end (``transaction``), or read-only (rolled back when the connection is returned)."""

    def run() -> T:
        with engine.sync_engine.connect() as conn:
            if not transaction:
                return work(conn)
            with conn.begin():
                return work(conn)

    return await run_in_greenlet(run)


def _on_dialect(conn: Connection, sqlite: Any, other: Any) -> Any:
    return sqlite if conn.dialect.name == "sqlite" else other


def _cancel_expired(conn: Connection, cutoff: datetime, reason: str, now: datetime) -> list[int]:
    """PENDING recommendations created before ``cutoff`` (and not claimed right now) become CANCELLED."""
    ids = list(conn.execute(_on_dialect(conn, _EXPIRED, _EXPIRED_LOCKING), {"cutoff": cutoff, "now": now}).scalars())
    if ids:
        conn.execute(_CANCEL, {"ids": ids, "reason": reason, "now": now})
    return ids


def _lock_dispatch_and_read_halt(conn: Connection, now: datetime) -> TradingHalt:
    """Take the dispatch lock (MySQL: FOR UPDATE on its row; SQLite: BEGIN IMMEDIATE already serialises writers)
    and read the trading halt, in one statement where the lock row exists."""
    if conn.dialect.name == "sqlite":
        return _parse_halt(conn.execute(_HALT).first())
    found = {row.key: row for row in conn.execute(_LOCK_DISPATCH_AND_READ_HALT)}
    if ControlKey.DISPATCH_LOCK not in found:
        conn.execute(  # the first claim ever: create the lock row, then take it
            _CREATE_DISPATCH_LOCK,
            {
                "key": ControlKey.DISPATCH_LOCK.value,
                "value": "rolling trade cap lock",
                "updated_by": "orchestrator",
                "updated_at": now,
            },
        )
        found = {row.key: row for row in conn.execute(_LOCK_DISPATCH_AND_READ_HALT)}
    return _parse_halt(found.get(ControlKey.TRADING_HALT.value))


class OrchestratorRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def open_cycle(self, orchestrator_id: str, terms: CycleTerms) -> CycleOpening:
        """The start of a cycle in one transaction, under the dispatch lock: cancel what expired, read the trading
        halt, then (not halted) reserve capacity in the rolling cap and claim the best PENDING recommendations,
        atomically across replicas. One transaction keeps the nudge path short."""
        now, pending_since = terms.now, terms.pending_since

        def work(conn: Connection) -> CycleOpening:
            halt = _lock_dispatch_and_read_halt(conn, now)
            cancelled = _cancel_expired(conn, pending_since, terms.cancel_reason, now)
            if halt.halted:
                return CycleOpening(cancelled, halt, [], 0)
            window = {"window_start": now - terms.cap_window}
            rows: Sequence[Row[Any]] = []
            if terms.limit > 0:
                claimable = _on_dialect(conn, _CLAIMABLE, _CLAIMABLE_LOCKING)
                parameters = {"pending_since": pending_since, "now": now, "limit": terms.limit, **window}
                rows = conn.execute(claimable, parameters).all()
            used = rows[0].cap_used if rows else conn.execute(_CAP_USED, window).scalar_one()
            capacity = max(0, terms.cap - int(used))
            rows = rows[: min(terms.limit, capacity)]  # the rest stay PENDING (locked until the commit)
            ids = [int(row.id) for row in rows]
            # A claim still set here has expired (_unclaimed): its holder stopped renewing it (died or stalled).
            taken_over = {int(row.id): str(row.claimed_by) for row in rows if row.claimed_by is not None}
            if ids:
                conn.execute(_CLAIM, {"ids": ids, "holder": orchestrator_id, "until": now + terms.claim_ttl})
                conn.execute(_DISPATCHED, {"ids": ids, "holder": orchestrator_id, "now": now})
            return CycleOpening(cancelled, halt, ids, capacity - len(ids), taken_over)

        return await _in_greenlet(self.engine, work, transaction=True)

    async def renew(self, orchestrator_id: str, ids: list[int], until: datetime) -> None:
        """Extend our claims on ``ids`` (those still PENDING) to ``until``."""
        if not ids:
            return
        parameters = {"ids": ids, "holder": orchestrator_id, "until": until}
        await _in_greenlet(self.engine, lambda conn: conn.execute(_RENEW, parameters), transaction=True)

    async def close_cycle(self, orchestrator_id: str, closing: CycleClosing) -> int:
        """The end of a cycle in one transaction: the recommendations the executor refused become FAILED, our
        claims are dropped, and the dispatches of those to retry no longer count against the cap (they were never
        executed). Returns how many recommendations are PENDING within the window."""

        def work(conn: Connection) -> int:
            if closing.failed:
                conn.execute(
                    _FAIL,
                    [
                        {"rec_id": rec_id, "reason": reason[:_MAX_REASON], "now": closing.now}
                        for rec_id, reason in closing.failed.items()
                    ],
                )
            conn.execute(_RELEASE, {"holder": orchestrator_id})
            if closing.retry:
                conn.execute(_REFUND, {"ids": closing.retry, "holder": orchestrator_id, "since": closing.now})
            return int(conn.execute(_REMAINING, {"pending_since": closing.pending_since}).scalar_one())

        return await _in_greenlet(self.engine, work, transaction=True)

    async def remaining(self, pending_since: datetime) -> int:
        def read(conn: Connection) -> int:
            return int(conn.execute(_REMAINING, {"pending_since": pending_since}).scalar_one())

        return await _in_greenlet(self.engine, read, transaction=False)

    async def prune_dispatches(self, before: datetime) -> None:
        await _in_greenlet(
            self.engine, lambda conn: conn.execute(_PRUNE_DISPATCHES, {"before": before}), transaction=True
        )

    async def get_halt(self) -> TradingHalt:
        return await _in_greenlet(self.engine, lambda conn: _parse_halt(conn.execute(_HALT).first()), transaction=False)

    async def set_halt(self, halt: TradingHalt) -> None:
        async with self.engine.begin() as conn:
            value = encode_halt(halt.halted, halt.reason)
            await write_control(conn, ControlKey.TRADING_HALT, value, halt.actor, halt.updated_at)
