"""All SQL of the executor: trade_executions, the recommendation's status, the paper portfolio, candle prices."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common import lifecycle
from common.candles import candle_seconds
from common.clock import as_utc
from common.control import ControlKey, decode_replay_clock, read_control, write_control
from common.database import is_lock_conflict
from common.lifecycle import (
    ExecutionMode,
    ExecutionStatus,
    ExitReason,
    OrderSide,
    OrderStatus,
    PositionStatus,
    SignalType,
    open_position_key,
)
from common.sql import insert_ignore, upsert
from common.tables import (
    market_candles,
    paper_balances,
    positions,
    system_control,
    trade_executions,
    trade_recommendations,
    trading_signals,
    trading_signals_archive,
)
from executor_svc.domain import ExecutionRecord, OrderOutcome, Recommendation
from executor_svc.exits import Candle
from executor_svc.positions import ClosedPosition, Position

if TYPE_CHECKING:
    from executor_svc.live_positions import BracketFill

_e = trade_executions.c
_r = trade_recommendations.c
_p = positions.c
T = TypeVar("T")
SETTLEMENT_ATTEMPTS = 3
CASH = "USD"  # paper_balances' cash row
FEW_BALANCES = 4  # up to this many changed balances are written with cached statements (see _write_balances)


def _recommendation(row: Any, signal_is_mock: bool = False) -> Recommendation:
    return Recommendation(
        id=row.id,
        symbol=row.symbol,
        signal_type=SignalType(row.signal_type),
        amount_usd=row.amount_usd,
        amount_crypto=row.amount_crypto,
        entry_price=row.entry_price,
        status=ExecutionStatus(row.execution_status or ExecutionStatus.PENDING),
        status_reason=row.status_reason or "",
        is_mock=bool(row.is_mock) or signal_is_mock,
        created_at=as_utc(row.created_at) if row.created_at is not None else None,
        stop_loss=row.stop_loss,
        take_profit=row.take_profit,
        exit_reason=ExitReason(row.exit_reason) if row.exit_reason else None,
    )


def position_from_row(row: Any) -> Position:
    return Position(
        id=row.id,
        mode=ExecutionMode(row.mode),
        symbol=row.symbol,
        quantity=row.quantity,
        entry_price=row.entry_price,
        entry_cost=row.entry_cost,
        stop_loss=row.stop_loss,
        take_profit=row.take_profit,
        opened_at=as_utc(row.opened_at),
        entry_recommendation_id=row.entry_recommendation_id,
        fees=row.fees,
        bracket_order_id=row.bracket_order_id or "",
    )


def opened_row(position: Position, now: datetime) -> dict[str, Any]:
    return {
        "mode": position.mode.value,
        "symbol": position.symbol,
        "status": PositionStatus.OPEN.value,
        "open_key": open_position_key(position.mode, position.symbol),
        "quantity": position.quantity,
        "entry_price": position.entry_price,
        "entry_cost": position.entry_cost,
        "stop_loss": position.stop_loss,
        "take_profit": position.take_profit,
        "opened_at": position.opened_at,
        "entry_recommendation_id": position.entry_recommendation_id,
        "bracket_order_id": position.bracket_order_id or None,
        "fees": position.fees,
        "updated_at": now,
    }


def closed_values(closed: ClosedPosition) -> dict[str, Any]:
    return {
        "status": PositionStatus.CLOSED.value,
        "open_key": None,
        "closed_at": closed.closed_at,
        "exit_recommendation_id": closed.exit_recommendation_id,
        "exit_reason": closed.reason.value,
        "exit_price": closed.exit_price,
        "fees": closed.fees,
        "realized_pnl": closed.realized_pnl,
        "updated_at": closed.closed_at,
    }


def _record(row: Mapping[Any, Any]) -> ExecutionRecord:
    """An execution from a row's mapping (``row._mapping``)."""
    return ExecutionRecord(
        recommendation_id=row["recommendation_id"],
        client_order_id=row["client_order_id"],
        exchange_order_id=row["exchange_order_id"] or "",
        mode=ExecutionMode(row["mode"]),
        status=OrderStatus(row["status"]),
        symbol=row["symbol"],
        side=OrderSide(row["side"]),
        filled_size=row["filled_size"],
        average_price=row["average_price"],
        fees=row["fees"],
        error_code=row["error_code"] or "",
        error_message=row["error_message"] or "",
        completed_at=row["completed_at"],
        created_at=as_utc(row["created_at"]) if row["created_at"] is not None else None,
    )


class ExecutorRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def recommendation(self, recommendation_id: int) -> Recommendation | None:
        """The recommendation, mock when it or its signal (live or archived) has is_mock set."""
        live, archived = trading_signals.alias("live_signal"), trading_signals_archive.alias("archived_signal")
        query = (
            select(
                trade_recommendations,
                live.c.is_mock.label("live_signal_mock"),
                archived.c.is_mock.label("archived_signal_mock"),
            )
            .select_from(
                trade_recommendations.outerjoin(live, live.c.id == _r.signal_id).outerjoin(
                    archived, archived.c.id == _r.signal_id
                )
            )
            .where(_r.id == recommendation_id)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return _recommendation(row, bool(row.live_signal_mock) or bool(row.archived_signal_mock))

    async def installation_id(self) -> str:
        """The id created with the database (migration 0003); recreated (random) only if someone deleted it."""
        async with self.engine.begin() as conn:
            value = await read_control(conn, ControlKey.INSTALLATION_ID)
            if value is None:
                await conn.execute(
                    insert_ignore(conn, system_control),
                    {"key": ControlKey.INSTALLATION_ID.value, "value": str(uuid.uuid4()), "updated_by": "executor"},
                )
                value = await read_control(conn, ControlKey.INSTALLATION_ID)
        return str(value)

    async def execution(self, recommendation_id: int) -> ExecutionRecord | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(trade_executions).where(_e.recommendation_id == recommendation_id))
            ).first()
        return _record(row._mapping) if row is not None else None

    async def unfinished(self) -> list[int]:
        """Executions left PENDING/SUBMITTED (for example by a crash)."""
        async with self.engine.connect() as conn:
            unfinished = [s.value for s in OrderStatus if s not in lifecycle.FINAL_ORDER]
            rows = await conn.execute(select(_e.recommendation_id).where(_e.status.in_(unfinished)))
            return list(rows.scalars())

    async def create_execution(
        self, rec: Recommendation, client_order_id: str, mode: ExecutionMode, now: datetime
    ) -> None:
        """Commit the execution row before anything is sent (a concurrent or earlier row wins: no duplicate)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                insert_ignore(conn, trade_executions),
                {
                    "recommendation_id": rec.id,
                    "client_order_id": client_order_id,
                    "mode": mode,
                    "status": OrderStatus.PENDING.value,
                    "symbol": rec.symbol,
                    "side": rec.side,
                    "quote_size": rec.amount_usd if rec.side == OrderSide.BUY else None,
                    "base_size": rec.amount_crypto if rec.side == OrderSide.SELL else None,
                    "is_mock": mode == ExecutionMode.PAPER,
                    "created_at": now,
                    "updated_at": now,
                },
            )

    async def live_executions_since(self, since: datetime) -> dict[str, ExecutionRecord]:
        """Live executions created since ``since``, by client_order_id (reconciliation)."""
        query = select(trade_executions).where(
            _e.mode == ExecutionMode.LIVE.value, _e.created_at >= since.replace(tzinfo=None)
        )
        async with self.engine.connect() as conn:
            return {row.client_order_id: _record(row._mapping) for row in await conn.execute(query)}

    async def save_reconciliation(self, report: str, now: datetime) -> None:
        async with self.engine.begin() as conn:
            await write_control(conn, ControlKey.RECONCILIATION, report, "executor", now)

    async def take_lease(
        self, recommendation_id: int, owner: str, until: datetime, now: datetime, *, take_over: bool = False
    ) -> bool:
        """Take the lease on an unfinished live execution (committed at once): True when ``owner`` holds it now,
        False when another executor holds a lease that has not run out (or the execution is final). ``take_over``
        ignores another holder's lease (start-up recovery)."""
        unfinished = [s.value for s in OrderStatus if s not in lifecycle.FINAL_ORDER]
        free = or_(_e.lease_until.is_(None), _e.lease_until < now, _e.lease_owner == owner)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(trade_executions)
                .where(
                    _e.recommendation_id == recommendation_id,
                    _e.status.in_(unfinished),
                    *([] if take_over else [free]),
                )
                .values(lease_owner=owner, lease_until=until, updated_at=now)
            )
            return bool(result.rowcount)

    async def record_attempt(self, recommendation_id: int, owner: str, outcome: OrderOutcome, now: datetime) -> None:
        """An attempt that left the order unfinished, and the lease given back. With an exchange order id the exchange
        has the order (accepted, not filled yet): SUBMITTED, so a later attempt follows that order."""
        values: dict[str, Any] = {
            "attempts": _e.attempts + 1,
            "error_message": outcome.error_message[:2000] or None,
            "updated_at": now,
            "lease_owner": None,
            "lease_until": None,
        }
        if outcome.exchange_order_id:
            lifecycle.check_order_move(OrderStatus.PENDING, OrderStatus.SUBMITTED)
            values |= {"status": OrderStatus.SUBMITTED.value, "exchange_order_id": outcome.exchange_order_id}
        async with self.engine.begin() as conn:
            await conn.execute(
                update(trade_executions)
                .where(
                    _e.recommendation_id == recommendation_id,
                    _e.lease_owner == owner,
                    _e.status.in_([OrderStatus.PENDING.value, OrderStatus.SUBMITTED.value]),
                )
                .values(**values)
            )

    async def complete_live(
        self,
        recommendation_id: int,
        owner: str,
        outcome: OrderOutcome,
        now: datetime,
        *,
        opened: Position | None = None,
        closed: ClosedPosition | None = None,
    ) -> bool:
        """The final outcome of a live order: the execution and its recommendation in one transaction (the lease
        given back), with the position the order opened or closed. False when the lease was lost and another
        executor recorded the order first."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(trade_executions)
                .where(
                    _e.recommendation_id == recommendation_id,
                    _e.status.in_([OrderStatus.PENDING.value, OrderStatus.SUBMITTED.value]),
                )
                .values(
                    status=outcome.status,
                    exchange_order_id=outcome.exchange_order_id or None,
                    filled_size=outcome.filled_size,
                    average_price=outcome.average_price,
                    fees=outcome.fees,
                    error_code=outcome.error_code or None,
                    error_message=outcome.error_message[:2000] or None,
                    attempts=_e.attempts + 1,
                    updated_at=now,
                    completed_at=now,
                    lease_owner=None,
                    lease_until=None,
                )
            )
            if not result.rowcount:
                return False
            status = ExecutionStatus(outcome.status)
            await conn.execute(
                lifecycle.finish(
                    status,
                    reason=outcome.error_message or None,
                    executed_at=now if status == ExecutionStatus.EXECUTED else None,
                    now=now,
                ).where(_r.id == recommendation_id)
            )
            if opened is not None:  # positions.entry_recommendation_id / open_key UNIQUE: written once
                await conn.execute(insert_ignore(conn, positions), opened_row(opened, now))
            if closed is not None:
                await conn.execute(
                    update(positions)
                    .where(_p.id == closed.position.id, _p.status == PositionStatus.OPEN.value)
                    .values(**closed_values(closed))
                )
            return True

    # --- live positions (executor_svc.live_positions.LivePositionStore) ---

    async def open_position_of(self, mode: ExecutionMode, symbol: str) -> Position | None:
        query = select(positions).where(_p.open_key == open_position_key(mode, symbol))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return position_from_row(row) if row is not None else None

    async def latest_exit(self, mode: ExecutionMode, symbol: str, since: datetime) -> ExitReason | None:
        """Why the latest position of ``symbol`` closed at or after ``since`` closed (None: none did)."""
        query = (
            select(_p.exit_reason)
            .where(
                _p.mode == mode.value,
                _p.symbol == symbol,
                _p.status == PositionStatus.CLOSED.value,
                _p.closed_at >= since,
            )
            .order_by(_p.closed_at.desc())
            .limit(1)
        )
        async with self.engine.connect() as conn:
            value = (await conn.execute(query)).scalar_one_or_none()
        return ExitReason(value) if value else None

    async def claim_position(self, position_id: int, recommendation_id: int, now: datetime) -> int | None:
        """Make ``recommendation_id`` the SELL that closes the open position (positions.exit_recommendation_id):
        None when it is (now) the one, else the recommendation that holds it. A claim is free again once its
        recommendation's execution is final (it sold, or it failed)."""
        unfinished = [s.value for s in OrderStatus if s not in lifecycle.FINAL_ORDER]
        in_flight = (
            select(_e.recommendation_id)
            .where(_e.recommendation_id == _p.exit_recommendation_id, _e.status.in_(unfinished))
            .exists()
        )
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(positions)
                .where(
                    _p.id == position_id,
                    _p.status == PositionStatus.OPEN.value,
                    or_(
                        _p.exit_recommendation_id.is_(None),
                        _p.exit_recommendation_id == recommendation_id,
                        ~in_flight,
                    ),
                )
                .values(exit_recommendation_id=recommendation_id, updated_at=now)
            )
            if result.rowcount:
                return None
            holder = (
                await conn.execute(select(_p.exit_recommendation_id).where(_p.id == position_id))
            ).scalar_one_or_none()
        return int(holder or 0)

    async def set_bracket(self, position_id: int, bracket_order_id: str, now: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(positions)
                .where(_p.id == position_id, _p.status == PositionStatus.OPEN.value)
                .values(bracket_order_id=bracket_order_id, updated_at=now)
            )

    async def _lock_open_position(self, conn: AsyncConnection, position_id: int | None) -> bool:
        """Lock the position's row (FOR UPDATE on MySQL; SQLite's BEGIN IMMEDIATE holds the writer lock): True when
        it is still OPEN."""
        query = select(_p.status).where(_p.id == position_id)
        if conn.dialect.name != "sqlite":
            query = query.with_for_update()
        return (await conn.execute(query)).scalar_one_or_none() == PositionStatus.OPEN.value

    async def record_bracket_exit(
        self,
        position: Position,
        fill: BracketFill,
        close: Callable[[int], ClosedPosition],
        client_order_id: Callable[[int], str],
        reasoning: str,
        now: datetime,
    ) -> ClosedPosition | None:
        """Record what the bracket sold as the position's exit, in one transaction: an EXECUTED exit SELL
        recommendation (no signal, exit_reason), its execution carrying the bracket's order id, the position
        CLOSED. Pending SELLs of the symbol are cancelled (nothing is left to sell). None when the position is no
        longer open (recorded already: another executor, an earlier run)."""
        async with self.engine.begin() as conn:
            if not await self._lock_open_position(conn, position.id):
                return None
            reason = f"position closed by {fill.reason.value}"
            await conn.execute(
                lifecycle.finish(
                    ExecutionStatus.CANCELLED, now=now, reason=reason, only_from=[ExecutionStatus.PENDING]
                ).where(_r.symbol == position.symbol, _r.signal_type == SignalType.SELL.value)
            )
            rec_id = await self._insert_exit_recommendation(
                conn, position, fill.reason, fill.average_price, fill.filled_size, reasoning, now
            )
            await conn.execute(
                insert(trade_executions).values(
                    recommendation_id=rec_id,
                    client_order_id=client_order_id(rec_id),
                    exchange_order_id=fill.order_id,
                    mode=ExecutionMode.LIVE.value,
                    status=OrderStatus.EXECUTED.value,
                    symbol=position.symbol,
                    side=OrderSide.SELL.value,
                    base_size=fill.filled_size,
                    filled_size=fill.filled_size,
                    average_price=fill.average_price,
                    fees=fill.fees,
                    attempts=1,
                    is_mock=False,
                    created_at=now,
                    updated_at=now,
                    completed_at=now,
                )
            )
            await conn.execute(
                lifecycle.finish(ExecutionStatus.EXECUTED, now=now, executed_at=now).where(_r.id == rec_id)
            )
            closed = close(rec_id)
            await conn.execute(update(positions).where(_p.id == position.id).values(**closed_values(closed)))
            return closed

    async def live_exit_recommendation(
        self, position: Position, reason: ExitReason, market_price: Decimal, reasoning: str, now: datetime
    ) -> Recommendation | None:
        """Insert the PENDING SELL recommendation of a live exit that sells the position at market (the time
        limit), executed like any live SELL. None when the position is no longer open."""
        async with self.engine.begin() as conn:
            if not await self._lock_open_position(conn, position.id):
                return None
            rec_id = await self._insert_exit_recommendation(
                conn, position, reason, market_price, position.quantity, reasoning, now
            )
        return await self.recommendation(rec_id)

    @staticmethod
    async def _insert_exit_recommendation(
        conn: AsyncConnection,
        position: Position,
        reason: ExitReason,
        price: Decimal,
        quantity: Decimal,
        reasoning: str,
        now: datetime,
    ) -> int:
        result = await conn.execute(
            insert(trade_recommendations).values(
                signal_id=None,
                symbol=position.symbol,
                signal_type=SignalType.SELL.value,
                amount_usd=(quantity * price).quantize(Decimal("0.00000001")),
                confidence=Decimal(1),
                reasoning=reasoning,
                execution_status=ExecutionStatus.PENDING.value,
                entry_price=price.quantize(Decimal("0.00000001")),
                stop_loss=position.stop_loss,
                take_profit=position.take_profit,
                amount_crypto=quantity,
                is_mock=False,
                created_at=now,
                updated_at=now,
                exit_reason=reason.value,
            )
        )
        (rec_id,) = result.inserted_primary_key or (None,)
        assert rec_id is not None
        return int(rec_id)

    async def open_positions(self, mode: ExecutionMode) -> list[Position]:
        query = select(positions).where(_p.status == PositionStatus.OPEN.value, _p.mode == mode.value)
        async with self.engine.connect() as conn:
            return [position_from_row(row) for row in await conn.execute(query.order_by(_p.symbol))]

    async def candles_between(
        self, symbols: Sequence[str], granularity: str, since: datetime, until: datetime
    ) -> dict[str, list[Candle]]:
        """Candles of ``symbols`` that closed after ``since`` and at or before ``until``, oldest first."""
        step = candle_seconds(granularity)
        c = market_candles.c
        query = (
            select(c.symbol, c.start_time, c.open, c.high, c.low, c.close)
            .where(
                c.symbol.in_(sorted(set(symbols))),
                c.granularity == granularity,
                c.start_time > int(since.timestamp()) - step,
                c.start_time <= int(until.timestamp()) - step,
            )
            .order_by(c.symbol, c.start_time)
        )
        out: dict[str, list[Candle]] = {s: [] for s in symbols}
        async with self.engine.connect() as conn:
            for row in await conn.execute(query):
                out[row.symbol].append(
                    Candle(
                        start=int(row.start_time),
                        seconds=step,
                        open=Decimal(row.open),
                        high=Decimal(row.high),
                        low=Decimal(row.low),
                        close=Decimal(row.close),
                    )
                )
        return out

    async def latest_closes(self, symbols: Sequence[str], granularity: str, until: datetime) -> dict[str, Decimal]:
        """The close of each symbol's latest candle closed at or before ``until``."""
        step = candle_seconds(granularity)
        c = market_candles.c
        out: dict[str, Decimal] = {}
        async with self.engine.connect() as conn:
            for symbol in sorted(set(symbols)):
                value = (
                    await conn.execute(
                        select(c.close)
                        .where(
                            c.symbol == symbol,
                            c.granularity == granularity,
                            c.start_time <= int(until.timestamp()) - step,
                        )
                        .order_by(c.start_time.desc())
                        .limit(1)
                    )
                ).scalar_one_or_none()
                if value is not None:
                    out[symbol] = Decimal(value)
        return out

    async def settle(self, work: Callable[[PaperSettlement], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction that settles a batch of paper executions, then write what it recorded
        and commit. A lock conflict (deadlock, lock wait timeout) rolls everything back and runs it again."""
        for attempt in range(1, SETTLEMENT_ATTEMPTS + 1):
            try:
                async with self.engine.begin() as conn:
                    settlement = PaperSettlement(conn)
                    result = await work(settlement)
                    await settlement.write()
                    return result
            except OperationalError as exc:
                if attempt == SETTLEMENT_ATTEMPTS or not is_lock_conflict(exc):
                    raise
        raise AssertionError("unreachable")


# --- the paper settlement's statements, built once: a statement built per call costs SQLAlchemy a new cache key
# (about as much again as executing it); these are compiled once per dialect and then only executed.
_SETTLE_LOAD = (
    select(trade_recommendations, *[column.label(f"e_{column.name}") for column in trade_executions.c])
    .select_from(trade_recommendations.outerjoin(trade_executions, _e.recommendation_id == _r.id))
    .where(_r.id.in_(bindparam("ids", expanding=True)))
    .order_by(_r.id)
    .with_for_update()  # MySQL: the rows in id order (SQLite renders no FOR UPDATE: BEGIN IMMEDIATE locks)
)
_SETTLE_BALANCES = (
    select(paper_balances.c.asset, paper_balances.c.available)
    .where(paper_balances.c.asset.in_(bindparam("assets", expanding=True)))
    .order_by(paper_balances.c.asset)
    .with_for_update()
)
_SETTLE_POSITIONS = select(positions).where(_p.open_key.in_(bindparam("keys", expanding=True))).with_for_update()
_LATEST_START = (
    select(market_candles.c.symbol, func.max(market_candles.c.start_time).label("start_time"))
    .where(market_candles.c.symbol.in_(bindparam("symbols", expanding=True)))
    .where(market_candles.c.granularity == bindparam("granularity"))
    .group_by(market_candles.c.symbol)
)


def _latest_prices(until: bool) -> Any:
    latest = _LATEST_START.where(market_candles.c.start_time <= bindparam("until")) if until else _LATEST_START
    sub = latest.subquery()
    c = market_candles.c
    return select(c.symbol, c.close).join(
        sub,
        (c.symbol == sub.c.symbol) & (c.start_time == sub.c.start_time) & (c.granularity == bindparam("granularity")),
    )


_SETTLE_PRICES = {False: _latest_prices(False), True: _latest_prices(True)}


def _price_params(symbols: list[str], granularity: str, until: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {"symbols": symbols, "granularity": granularity}
    if until is not None:
        params["until"] = until
    return params


_SETTLE_INSERT_EXECUTIONS = insert(trade_executions)
_SETTLE_INSERT_POSITIONS = insert(positions)


def _bound(*columns: str) -> dict[str, Any]:
    """SET column = :b_column for each of ``columns`` (the b_ prefix keeps bind names apart from column names)."""
    return {column: bindparam(f"b_{column}") for column in columns}


_SETTLE_CLOSE_POSITIONS = (
    update(positions)
    .where(_p.id == bindparam("b_id"), _p.status == PositionStatus.OPEN.value)
    .values(
        status=PositionStatus.CLOSED.value,
        open_key=None,
        updated_at=bindparam("b_closed_at"),
        **_bound("closed_at", "exit_recommendation_id", "exit_reason", "exit_price", "fees", "realized_pnl"),
    )
)
_SETTLE_RESTARTED = (
    update(trade_executions)
    .where(_e.recommendation_id == bindparam("b_recommendation_id"))
    .values(
        attempts=_e.attempts + 1,
        **_bound(
            "status",
            "exchange_order_id",
            "filled_size",
            "average_price",
            "fees",
            "error_code",
            "error_message",
            "updated_at",
            "completed_at",
        ),
    )
)
_SETTLE_FINISH = lifecycle.finish_with_outcome(
    status=bindparam("b_status"),
    executed_at=bindparam("b_executed_at"),
    reason=bindparam("b_reason"),
    now=bindparam("b_now"),
    # A paper execution is not a real trade: `execution_status = 'EXECUTED' AND is_mock = 0` counts real trades only.
    is_mock=True,
).where(_r.id.in_(bindparam("b_ids", expanding=True)))
_SETTLE_UPDATE_BALANCES = (
    update(paper_balances)
    .where(paper_balances.c.asset == bindparam("b_asset"))
    .values(available=bindparam("b_available"), updated_at=bindparam("b_now"))
)
_SETTLE_INSERT_BALANCES = insert(paper_balances)
_EXECUTION_COLUMNS = [column.name for column in trade_executions.c]


class PaperSettlement:
    """One transaction settling a batch of paper executions. It locks the recommendations (FOR UPDATE in id order on
    MySQL; SQLite's BEGIN IMMEDIATE holds the writer lock) and reads their executions in one statement, keeps the
    paper ledger in memory (the cash row locked first, as by every paper settlement, so they queue there instead
    of deadlocking; then the batch's other balances, its open positions and the latest prices, one statement
    each) and writes every execution, recommendation, position and balance in a few statements at the end."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self._prices: dict[tuple[str, str], Decimal | None] = {}
        self._replay_until: int | None = None
        self._replay_read = False
        self._balances: dict[str, Decimal] = {}
        self._dirty: set[str] = set()
        self._stored: set[str] = set()  # assets with a row in paper_balances
        self._new: list[dict[str, Any]] = []
        self._restarted: list[dict[str, Any]] = []
        self._recommendations: list[dict[str, Any]] = []
        self._now: datetime | None = None
        # Positions by (mode, symbol) as this batch has left them (None: none open); loaded FOR UPDATE once.
        self._positions: dict[tuple[str, str], Position | None] = {}
        self._opened: list[Position] = []
        self._closed: list[ClosedPosition] = []

    async def load(self, ids: Sequence[int]) -> tuple[dict[int, Recommendation], dict[int, ExecutionRecord]]:
        """The recommendations ``ids`` (locked) and the executions already recorded for them, in one statement."""
        recs: dict[int, Recommendation] = {}
        records: dict[int, ExecutionRecord] = {}
        for row in await self.conn.execute(_SETTLE_LOAD, {"ids": sorted(set(ids))}):
            recs[row.id] = _recommendation(row)
            if row.e_recommendation_id is not None:
                mapping = row._mapping
                records[row.id] = _record({name: mapping[f"e_{name}"] for name in _EXECUTION_COLUMNS})
        return recs, records

    def complete(
        self,
        rec: Recommendation,
        client_order_id: str,
        mode: ExecutionMode,
        outcome: OrderOutcome,
        now: datetime,
        *,
        restarted: bool,
    ) -> None:
        """Record a final outcome; written by :meth:`write` in the same transaction."""
        self._now = now
        final = {
            "status": outcome.status,
            "exchange_order_id": outcome.exchange_order_id or None,
            "filled_size": outcome.filled_size,
            "average_price": outcome.average_price,
            "fees": outcome.fees,
            "error_code": outcome.error_code or None,
            "error_message": outcome.error_message[:2000] or None,
            "updated_at": now,
            "completed_at": now,
        }
        if restarted:  # a row left unfinished by an earlier run: complete it
            self._restarted.append({"b_recommendation_id": rec.id, **{f"b_{k}": v for k, v in final.items()}})
        else:
            self._new.append(
                {
                    "recommendation_id": rec.id,
                    "client_order_id": client_order_id,
                    "mode": mode,
                    "symbol": rec.symbol,
                    "side": rec.side,
                    "quote_size": rec.amount_usd if rec.side == OrderSide.BUY else None,
                    "base_size": rec.amount_crypto if rec.side == OrderSide.SELL else None,
                    "attempts": 1,
                    "is_mock": mode == ExecutionMode.PAPER,
                    "created_at": now,
                    **final,
                }
            )
        self._recommendations.append(
            {
                "b_id": rec.id,
                "b_status": outcome.status,
                "b_executed_at": now if outcome.status == OrderStatus.EXECUTED else None,
                "b_reason": outcome.error_message or None,
                "b_now": now,
            }
        )

    async def write(self) -> None:
        """Write what the batch recorded: its statements run in one greenlet (conn.run_sync), not one each."""
        await self.conn.run_sync(self._write)

    def _write(self, conn: Connection) -> None:
        if self._new:
            conn.execute(_SETTLE_INSERT_EXECUTIONS, self._new)
        self._write_positions(conn)
        if self._restarted:
            conn.execute(_SETTLE_RESTARTED, self._restarted)
        # One UPDATE per distinct outcome (a batch's executions mostly share one), not one per row: the driver runs
        # an executemany UPDATE row by row, a round trip each.
        finished: dict[tuple[Any, ...], list[int]] = {}
        for row in self._recommendations:
            finished.setdefault((row["b_status"], row["b_executed_at"], row["b_reason"], row["b_now"]), []).append(
                row["b_id"]
            )
        for (status, executed_at, reason, now), ids in finished.items():
            conn.execute(
                _SETTLE_FINISH,
                {"b_ids": ids, "b_status": status, "b_executed_at": executed_at, "b_reason": reason, "b_now": now},
            )
        self._write_balances(conn)

    def _write_balances(self, conn: Connection) -> None:
        """The balances the batch changed: a few in cached UPDATE/INSERT statements; many (a batch over many
        assets) in one INSERT .. ON DUPLICATE KEY UPDATE / ON CONFLICT DO UPDATE, a statement SQLAlchemy compiles
        afresh each time (it cannot cache them) but a single round trip instead of one per row."""
        dirty = sorted(self._dirty)
        if len(dirty) > FEW_BALANCES:
            rows = [{"asset": a, "available": self._balances[a], "updated_at": self._now} for a in dirty]
            conn.execute(upsert(conn.dialect.name, paper_balances, ["available", "updated_at"]), rows)
            return
        updates = [
            {"b_asset": a, "b_available": self._balances[a], "b_now": self._now} for a in dirty if a in self._stored
        ]
        if updates:
            conn.execute(_SETTLE_UPDATE_BALANCES, updates)
        inserts = [
            {"asset": a, "available": self._balances[a], "updated_at": self._now}
            for a in dirty
            if a not in self._stored
        ]
        if inserts:
            conn.execute(_SETTLE_INSERT_BALANCES, inserts)

    def _write_positions(self, conn: Connection) -> None:
        closed_here = {c.position.entry_recommendation_id: c for c in self._closed if c.position.id is None}
        still_open, opened_and_closed = [], []
        for position in self._opened:
            row = opened_row(position, self._now or position.opened_at)
            closed = closed_here.get(position.entry_recommendation_id)
            if closed is None:
                still_open.append(row)
            else:  # opened and closed in the same batch
                opened_and_closed.append(row | closed_values(closed))
        for rows in (still_open, opened_and_closed):
            if rows:
                conn.execute(_SETTLE_INSERT_POSITIONS, rows)
        stored = [
            {"b_id": closed.position.id, **{f"b_{k}": v for k, v in closed_values(closed).items()}}
            for closed in self._closed
            if closed.position.id is not None
        ]
        # The rows were read FOR UPDATE (or under SQLite's lock): nobody else can have closed them.
        if stored and conn.execute(_SETTLE_CLOSE_POSITIONS, stored).rowcount != len(stored):  # pragma: no cover
            raise RuntimeError(f"positions {[row['b_id'] for row in stored]}: some closed by someone else")

    # --- the paper ledger (executor_svc.paper_broker.PaperLedger) ---
    async def preload(
        self,
        mode: ExecutionMode,
        symbols: Sequence[str],
        granularity: str,
        replay: bool,
        starting_cash: Decimal,
        now: datetime,
    ) -> None:
        """Read what a batch over ``symbols`` needs in a few statements (in one greenlet) instead of a few per
        order: the cash row and then the base-asset balances (locked), the open positions (locked), the latest
        prices."""
        until = await self._price_until(granularity, replay)
        await self.conn.run_sync(self._preload, mode, symbols, granularity, until, starting_cash, now)

    def _preload(
        self,
        conn: Connection,
        mode: ExecutionMode,
        symbols: Sequence[str],
        granularity: str,
        until: int | None,
        starting_cash: Decimal,
        now: datetime,
    ) -> None:
        self._load_balances(conn, [CASH, *(s.split("-", 1)[0] for s in symbols)], starting_cash, now)
        fresh = sorted({s for s in symbols if (mode.value, s) not in self._positions})
        if fresh:
            keys = [open_position_key(mode, s) for s in fresh]
            found = {row.symbol: position_from_row(row) for row in conn.execute(_SETTLE_POSITIONS, {"keys": keys})}
            for symbol in fresh:
                self._positions[(mode.value, symbol)] = found.get(symbol)
        unpriced = sorted({s for s in symbols if (s, granularity) not in self._prices})
        if unpriced:
            prices = {
                symbol: Decimal(close)
                for symbol, close in conn.execute(
                    _SETTLE_PRICES[until is not None], _price_params(unpriced, granularity, until)
                )
            }
            for symbol in unpriced:
                self._prices[(symbol, granularity)] = prices.get(symbol)

    async def _price_until(self, granularity: str, replay: bool) -> int | None:
        """In replay: the start of the last candle the replay has released (prices never come from later)."""
        if replay and not self._replay_read:
            clock = decode_replay_clock(await read_control(self.conn, ControlKey.REPLAY_CLOCK))
            if clock is not None:  # the close of the last released candle: its start is a candle earlier
                self._replay_until = int(clock.timestamp()) - candle_seconds(granularity)
            self._replay_read = True
        return self._replay_until if replay else None

    async def open_position(self, mode: ExecutionMode, symbol: str) -> Position | None:
        key = (mode.value, symbol)
        if key not in self._positions:
            rows = await self.conn.execute(_SETTLE_POSITIONS, {"keys": [open_position_key(mode, symbol)]})
            row = rows.first()
            self._positions[key] = position_from_row(row) if row is not None else None
        return self._positions[key]

    async def exit_recommendation(
        self, position: Position, reason: ExitReason, market_price: Decimal, reasoning: str, now: datetime
    ) -> Recommendation | None:
        """Insert the SELL recommendation that records a protective exit of ``position`` (None when the position is
        no longer open: another executor closed it first). Pending SELLs of the symbol are cancelled: the exit
        sells the whole position."""
        current = await self.open_position(position.mode, position.symbol)
        if current is None or current.id != position.id:
            return None
        amount_usd = (position.quantity * market_price).quantize(Decimal("0.00000001"))
        entry_price = market_price.quantize(Decimal("0.00000001"))
        values = {
            "signal_id": None,
            "symbol": position.symbol,
            "signal_type": SignalType.SELL.value,
            "amount_usd": amount_usd,
            "confidence": Decimal(1),
            "reasoning": reasoning,
            "execution_status": ExecutionStatus.PENDING.value,
            "entry_price": entry_price,
            "stop_loss": position.stop_loss,
            "take_profit": position.take_profit,
            "amount_crypto": position.quantity,
            "is_mock": position.mode == ExecutionMode.PAPER,
            "created_at": now,
            "updated_at": now,
            "exit_reason": reason.value,
        }
        await self.conn.execute(
            lifecycle.finish(
                ExecutionStatus.CANCELLED,
                now=now,
                reason=f"position closed by {reason.value}",
                only_from=[ExecutionStatus.PENDING],
            ).where(_r.symbol == position.symbol, _r.signal_type == SignalType.SELL.value)
        )
        result = await self.conn.execute(insert(trade_recommendations).values(**values))
        (rec_id,) = result.inserted_primary_key or (None,)
        assert rec_id is not None
        return Recommendation(
            id=int(rec_id),
            symbol=position.symbol,
            signal_type=SignalType.SELL,
            amount_usd=amount_usd,
            amount_crypto=position.quantity,
            entry_price=entry_price,
            status=ExecutionStatus.PENDING,
            status_reason="",
            is_mock=position.mode == ExecutionMode.PAPER,
            created_at=now,
            stop_loss=position.stop_loss,
            take_profit=position.take_profit,
            exit_reason=reason,
        )

    def position_opened(self, position: Position) -> None:
        self._positions[(position.mode.value, position.symbol)] = position
        self._opened.append(position)

    def position_closed(self, closed: ClosedPosition) -> None:
        self._positions[(closed.position.mode.value, closed.position.symbol)] = None
        self._closed.append(closed)

    async def market_price(self, symbol: str, granularity: str, replay: bool) -> Decimal | None:
        key = (symbol, granularity)
        if key not in self._prices:
            until = await self._price_until(granularity, replay)
            params = _price_params([symbol], granularity, until)
            row = (await self.conn.execute(_SETTLE_PRICES[until is not None], params)).first()
            self._prices[key] = Decimal(row.close) if row is not None else None
        return self._prices[key]

    async def balance(self, asset: str, starting_cash: Decimal, now: datetime) -> Decimal:
        if asset not in self._balances:
            await self.conn.run_sync(self._load_balances, [asset], starting_cash, now)
        return self._balances[asset]

    async def set_balance(self, asset: str, available: Decimal, now: datetime) -> None:
        self._balances[asset] = available
        self._dirty.add(asset)
        self._now = now

    def _load_balances(self, conn: Connection, assets: Sequence[str], starting_cash: Decimal, now: datetime) -> None:
        """Read and lock the balances of ``assets`` not read yet, the cash row first, in a statement of its own
        (opened with the starting cash on the first paper trade ever): every paper settlement takes it first, so
        they queue there, and once it is held every later read sees the previous settlement's commit (a balance
        row that one created included). An asset without a row holds 0."""
        if CASH not in self._balances:
            cash = conn.execute(_SETTLE_BALANCES, {"assets": [CASH]}).first()
            if cash is None:  # the first paper trade ever: open the account
                conn.execute(
                    insert_ignore(self.conn, paper_balances),
                    {"asset": CASH, "available": starting_cash, "updated_at": now},
                )
                cash = conn.execute(_SETTLE_BALANCES, {"assets": [CASH]}).first()
            assert cash is not None
            self._balances[CASH] = Decimal(cash.available)
            self._stored.add(CASH)
        wanted = sorted(set(assets) - set(self._balances))
        if wanted:
            stored = dict(conn.execute(_SETTLE_BALANCES, {"assets": wanted}).tuples().all())
            for asset in wanted:
                self._balances[asset] = Decimal(stored[asset]) if asset in stored else Decimal(0)
            self._stored.update(stored)
