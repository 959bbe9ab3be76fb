"""All SQL of the orchestrator: expiring old recommendations, the rolling trade cap, claims, the trading halt."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common import lifecycle
from common.clock import as_utc
from common.control import ControlKey, decode_halt, encode_halt, write_control
from common.lifecycle import ExecutionMode, ExecutionStatus, OrderStatus
from common.sql import insert_ignore
from common.tables import orchestrator_dispatches, system_control, trade_executions, trade_recommendations
from orchestrator_svc.cycle import CycleOpening, CycleTerms
from orchestrator_svc.halt import TradingHalt

_r = trade_recommendations.c
_d = orchestrator_dispatches.c
_PENDING = ExecutionStatus.PENDING.value

_HALT_COLUMNS = (system_control.c.value, system_control.c.updated_by, system_control.c.updated_at)


def _parse_halt(row: Any) -> TradingHalt:
    if row is None:
        return TradingHalt(False, "", "", None)
    flag = decode_halt(row.value)
    return TradingHalt(
        flag.halted, flag.reason, row.updated_by or "", as_utc(row.updated_at) if row.updated_at else None
    )


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


def _unclaimed(now: datetime) -> Any:
    """No replica holds a live claim on the recommendation (never claimed, or the claim expired)."""
    return or_(_r.claimed_until.is_(None), _r.claimed_until < now)


class OrchestratorRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def _cancel_expired(self, conn: AsyncConnection, cutoff: datetime, reason: str, now: datetime) -> list[int]:
        """PENDING recommendations created before ``cutoff`` (and not claimed right now) become CANCELLED."""
        query = select(_r.id).where(
            _r.execution_status == _PENDING,
            _r.created_at < cutoff,
            _unclaimed(now),
            ~_order_in_flight(),
        )
        if conn.dialect.name != "sqlite":
            query = query.with_for_update(skip_locked=True)
        ids = list((await conn.execute(query)).scalars())
        if ids:
            await conn.execute(
                lifecycle.finish(ExecutionStatus.CANCELLED, reason=reason, now=now).where(_r.id.in_(ids))
            )
        return ids

    async def _lock_dispatch_and_read_halt(self, conn: AsyncConnection, now: datetime) -> TradingHalt:
        """Take the dispatch lock (MySQL: FOR UPDATE on its row; SQLite: BEGIN IMMEDIATE already serialises
        writers) and read the trading halt, in one statement where the lock row exists."""
        if conn.dialect.name == "sqlite":
            return await self._halt(conn)
        rows = select(system_control.c.key, *_HALT_COLUMNS).where(
            system_control.c.key.in_((ControlKey.DISPATCH_LOCK.value, ControlKey.TRADING_HALT.value))
        )
        found = {row.key: row for row in await conn.execute(rows.with_for_update())}
        if ControlKey.DISPATCH_LOCK not in found:
            await conn.execute(  # the first claim ever: create the lock row, then take it
                insert_ignore(conn, system_control),
                {
                    "key": ControlKey.DISPATCH_LOCK.value,
                    "value": "rolling trade cap lock",
                    "updated_by": "orchestrator",
                    "updated_at": now,
                },
            )
            found = {row.key: row for row in await conn.execute(rows.with_for_update())}
        return _parse_halt(found.get(ControlKey.TRADING_HALT.value))

    async def open_cycle(self, orchestrator_id: str, terms: CycleTerms) -> CycleOpening:
        """The start of a cycle in one transaction, under the dispatch lock: cancel what expired, read the trading
        halt, then (not halted) reserve capacity in the rolling cap and claim the best PENDING recommendations,
        atomically across replicas. One transaction keeps the nudge path short."""
        now, pending_since = terms.now, terms.pending_since
        async with self.engine.begin() as conn:
            halt = await self._lock_dispatch_and_read_halt(conn, now)
            cancelled = await self._cancel_expired(conn, pending_since, terms.cancel_reason, now)
            if halt.halted:
                return CycleOpening(cancelled, halt, [], 0)
            used = (
                await conn.execute(
                    select(func.count())
                    .select_from(orchestrator_dispatches)
                    .where(_d.dispatched_at > now - terms.cap_window)
                )
            ).scalar_one()
            capacity = max(0, terms.cap - int(used))
            take = min(terms.limit, capacity)
            if take == 0:
                return CycleOpening(cancelled, halt, [], capacity)
            query = (
                select(_r.id, _r.claimed_by)
                .where(
                    _r.execution_status == _PENDING,
                    _r.created_at >= pending_since,
                    _unclaimed(now),
                )
                .order_by(_r.confidence.desc(), _r.created_at.asc(), _r.id.asc())
                .limit(take)
            )
            if conn.dialect.name != "sqlite":
                query = query.with_for_update(skip_locked=True)
            rows = (await conn.execute(query)).all()
            ids = [int(row.id) for row in rows]
            # A claim still set here has expired (_unclaimed): its holder stopped renewing it (died or stalled).
            taken_over = {int(row.id): str(row.claimed_by) for row in rows if row.claimed_by is not None}
            if ids:
                await conn.execute(lifecycle.claim(orchestrator_id, now + terms.claim_ttl).where(_r.id.in_(ids)))
                await conn.execute(
                    insert(orchestrator_dispatches),
                    [{"recommendation_id": i, "orchestrator_id": orchestrator_id, "dispatched_at": now} for i in ids],
                )
            return CycleOpening(cancelled, halt, ids, capacity - len(ids), taken_over)

    async def renew(self, orchestrator_id: str, ids: list[int], until: datetime) -> None:
        """Extend our claims on ``ids`` (those still PENDING) to ``until``."""
        if not ids:
            return
        async with self.engine.begin() as conn:
            await conn.execute(lifecycle.renew_claims(orchestrator_id, until).where(_r.id.in_(ids)))

    async def release(self, orchestrator_id: str, ids: list[int], *, refund: bool, since: datetime) -> None:
        """Drop our claims on ``ids``; with ``refund``, their dispatches no longer count against the cap (they were
        never executed)."""
        if not ids:
            return
        async with self.engine.begin() as conn:
            await conn.execute(lifecycle.release_claims(orchestrator_id).where(_r.id.in_(ids)))
            if refund:
                await conn.execute(
                    delete(orchestrator_dispatches).where(
                        and_(
                            _d.recommendation_id.in_(ids),
                            _d.orchestrator_id == orchestrator_id,
                            _d.dispatched_at >= since,
                        )
                    )
                )

    async def mark_failed(self, recommendation_id: int, reason: str, now: datetime) -> None:
        """The executor refused the recommendation itself (for example a non-positive amount): FAILED, so it is
        not offered again every cycle."""
        async with self.engine.begin() as conn:
            await conn.execute(
                lifecycle.finish(
                    ExecutionStatus.FAILED, reason=reason[:2000], now=now, only_from=[ExecutionStatus.PENDING]
                ).where(_r.id == recommendation_id)
            )

    async def remaining(self, pending_since: datetime) -> int:
        async with self.engine.connect() as conn:
            query = (
                select(func.count())
                .select_from(trade_recommendations)
                .where(_r.execution_status == _PENDING, _r.created_at >= pending_since)
            )
            return int((await conn.execute(query)).scalar_one())

    async def prune_dispatches(self, before: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(orchestrator_dispatches).where(_d.dispatched_at < before))

    async def get_halt(self) -> TradingHalt:
        async with self.engine.connect() as conn:
            return await self._halt(conn)

    @staticmethod
    async def _halt(conn: AsyncConnection) -> TradingHalt:
        query = select(*_HALT_COLUMNS).where(system_control.c.key == ControlKey.TRADING_HALT.value)
        return _parse_halt((await conn.execute(query)).first())

    async def set_halt(self, halt: TradingHalt) -> None:
        async with self.engine.begin() as conn:
            value = encode_halt(halt.halted, halt.reason)
            await write_control(conn, ControlKey.TRADING_HALT, value, halt.actor, halt.updated_at)
