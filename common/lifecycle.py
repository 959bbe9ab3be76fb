"""The trade lifecycle: the vocabulary every service shares, the table of allowed state changes, and the only
SQLAlchemy statements that change a recommendation's ``execution_status``, ``pending_key`` or claims.

Who may change a recommendation (trade_recommendations):

    PENDING ──(executor: exchange or paper outcome)──▶ EXECUTED | FAILED
    PENDING ──(orchestrator: refused by the executor)─▶ FAILED
    PENDING ──(orchestrator: not executed in its window)▶ CANCELLED
    CANCELLED ─(executor: an order already at the exchange when the window ran out)▶ EXECUTED | FAILED

EXECUTED and FAILED are final. An order (trade_executions) moves PENDING (row committed, nothing known to be sent)
→ SUBMITTED (accepted by the exchange, not yet filled) → EXECUTED | FAILED | CANCELLED, or straight from PENDING to a
final state. The tables below are the whole truth; every statement here checks them, so an illegal change raises
:class:`IllegalTransitionError` before it reaches the database, and the guards in the WHERE clauses keep a
concurrent writer from moving a row that another one already finished.

The proto mappings and the decimal / timestamp converters used by every servicer live here too (one place)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import ColumnElement, Update, or_, update

from common.errors import FailedPreconditionError
from common.tables import trade_recommendations
from crypto_trading.v1 import common_pb2

_r = trade_recommendations.c
E = TypeVar("E", bound=StrEnum)

# --- vocabulary -----------------------------------------------------------------------------------------------


class SignalType(StrEnum):
    """trading_signals.signal_type (BUY, SELL, HOLD) and trade_recommendations.signal_type (also STRONG_*)."""

    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"
    STRONG_BUY = "STRONG_BUY"
    STRONG_SELL = "STRONG_SELL"

    @property
    def side(self) -> OrderSide | None:
        """The order side this signal type trades, None for HOLD."""
        if self in (SignalType.BUY, SignalType.STRONG_BUY):
            return OrderSide.BUY
        if self in (SignalType.SELL, SignalType.STRONG_SELL):
            return OrderSide.SELL
        return None


ACTIONABLE_SIGNALS = (SignalType.BUY, SignalType.SELL)


class ExecutionStatus(StrEnum):
    """trade_recommendations.execution_status (the original enum values)."""

    PENDING = "PENDING"
    EXECUTED = "EXECUTED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class OrderStatus(StrEnum):
    """trade_executions.status: one order per recommendation."""

    PENDING = "PENDING"  # row committed; nothing known to have reached the exchange
    SUBMITTED = "SUBMITTED"  # accepted by the exchange (it has an exchange order id), not filled yet
    EXECUTED = "EXECUTED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class OrderSide(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class ExecutionMode(StrEnum):
    PAPER = "PAPER"
    LIVE = "LIVE"


class PositionStatus(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class ExitReason(StrEnum):
    """Why a SELL closes a position (trade_recommendations.exit_reason, positions.exit_reason)."""

    SIGNAL = "signal"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    TIME_LIMIT = "time_limit"


def open_position_key(mode: ExecutionMode | str, symbol: str) -> str:
    """positions.open_key while a position is OPEN: the database refuses a second open position per mode and symbol."""
    return f"{mode}:{symbol}"


# --- allowed transitions -----------------------------------------------------------------------------------------


class IllegalTransitionError(FailedPreconditionError):
    """A state change the lifecycle does not allow (a programming error or a stale read)."""


RECOMMENDATION_TRANSITIONS: Mapping[ExecutionStatus, frozenset[ExecutionStatus]] = {
    ExecutionStatus.PENDING: frozenset({ExecutionStatus.EXECUTED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}),
    # An expiry does not stop an order the exchange already has: its outcome still wins.
    ExecutionStatus.CANCELLED: frozenset({ExecutionStatus.EXECUTED, ExecutionStatus.FAILED}),
    ExecutionStatus.EXECUTED: frozenset(),
    ExecutionStatus.FAILED: frozenset(),
}

ORDER_TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset(
        {OrderStatus.SUBMITTED, OrderStatus.EXECUTED, OrderStatus.FAILED, OrderStatus.CANCELLED}
    ),
    OrderStatus.SUBMITTED: frozenset({OrderStatus.EXECUTED, OrderStatus.FAILED, OrderStatus.CANCELLED}),
    OrderStatus.EXECUTED: frozenset(),
    OrderStatus.FAILED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}

FINAL_ORDER = frozenset(s for s, targets in ORDER_TRANSITIONS.items() if not targets)


def can_move(current: ExecutionStatus, target: ExecutionStatus) -> bool:
    return target in RECOMMENDATION_TRANSITIONS[current]


def check_move(current: ExecutionStatus, target: ExecutionStatus, what: str = "recommendation") -> None:
    if not can_move(current, target):
        raise IllegalTransitionError(f"{what} cannot move from {current} to {target}")


def can_move_order(current: OrderStatus, target: OrderStatus) -> bool:
    return target in ORDER_TRANSITIONS[current]


def check_order_move(current: OrderStatus, target: OrderStatus, what: str = "order") -> None:
    if not can_move_order(current, target):
        raise IllegalTransitionError(f"{what} cannot move from {current} to {target}")


def sources_of(target: ExecutionStatus) -> tuple[ExecutionStatus, ...]:
    """Every status a recommendation may move to ``target`` from (the guard of the statement)."""
    sources = tuple(s for s, targets in RECOMMENDATION_TRANSITIONS.items() if target in targets)
    if not sources:
        raise IllegalTransitionError(f"no recommendation may move to {target}")
    return sources


# --- the statements ----------------------------------------------------------------------------------------------


def _status_is(statuses: Iterable[ExecutionStatus]) -> ColumnElement[bool]:
    # OR of equalities rather than IN: an IN list is an "expanding" parameter, which executemany refuses.
    return or_(*(_r.execution_status == status.value for status in statuses))


def pending_key(symbol: str, side: OrderSide | str) -> str:
    """The value of trade_recommendations.pending_key while PENDING: the database refuses a second open
    recommendation for the same symbol and side."""
    return f"{symbol}:{OrderSide(side)}"


def finish(
    target: ExecutionStatus,
    *,
    now: Any,
    reason: Any = None,
    executed_at: Any = None,
    only_from: Iterable[ExecutionStatus] | None = None,
    **extra: Any,
) -> Update:
    """UPDATE trade_recommendations to ``target`` (EXECUTED, FAILED or CANCELLED): the status, why, when; the pending
    key and any claim cleared. Add ``.where(...)`` for the rows. The guard admits only rows whose current status may
    move to ``target`` (``only_from`` narrows it: the orchestrator cancels and fails PENDING rows only).

    Values may be literals or ``bindparam``s (an executemany over a batch)."""
    allowed = sources_of(target)
    if only_from is not None:
        narrowed = tuple(only_from)
        for source in narrowed:
            check_move(source, target)
        allowed = narrowed
    return _finish(target.value, allowed, now=now, reason=reason, executed_at=executed_at, **extra)


def finish_with_outcome(*, status: Any, now: Any, reason: Any = None, executed_at: Any = None, **extra: Any) -> Update:
    """:func:`finish` for a batch whose rows end differently (EXECUTED or FAILED per row, ``status`` a bindparam):
    the guard admits every status an exchange or paper outcome may come from."""
    outcomes = (ExecutionStatus.EXECUTED, ExecutionStatus.FAILED)
    allowed = tuple(dict.fromkeys(source for target in outcomes for source in sources_of(target)))
    return _finish(status, allowed, now=now, reason=reason, executed_at=executed_at, **extra)


def _finish(
    status: Any, allowed: Iterable[ExecutionStatus], *, now: Any, reason: Any, executed_at: Any, **extra: Any
) -> Update:
    """The one statement that ends a recommendation's pending life (every caller goes through finish())."""
    return (
        update(trade_recommendations)
        .where(_status_is(allowed))
        .values(
            execution_status=status,
            status_reason=reason,
            executed_at=executed_at,
            pending_key=None,
            claimed_by=None,
            claimed_until=None,
            updated_at=now,
            **extra,
        )
    )


def claim(orchestrator_id: str, until: datetime) -> Update:
    """Claim PENDING recommendations for one orchestrator replica until ``until``; add ``.where(id.in_(...))``."""
    return (
        update(trade_recommendations)
        .where(_r.execution_status == ExecutionStatus.PENDING.value)
        .values(claimed_by=orchestrator_id, claimed_until=until)
    )


def renew_claims(orchestrator_id: str, until: datetime) -> Update:
    """Extend this replica's claims on recommendations still PENDING to ``until`` (a claim is a lease, renewed
    while its stream is in flight); never another replica's claim. Add ``.where(id.in_(...))``."""
    return (
        update(trade_recommendations)
        .where(_r.claimed_by == orchestrator_id, _r.execution_status == ExecutionStatus.PENDING.value)
        .values(claimed_until=until)
    )


def release_claims(orchestrator_id: str) -> Update:
    """Drop this replica's claims (never another replica's); add ``.where(id.in_(...))``."""
    return (
        update(trade_recommendations)
        .where(_r.claimed_by == orchestrator_id)
        .values(claimed_by=None, claimed_until=None)
    )


# --- proto mappings ----------------------------------------------------------------------------------------------

_SIGNAL_TYPE_TO_PROTO: Mapping[SignalType, common_pb2.SignalType.ValueType] = {
    SignalType.BUY: common_pb2.SIGNAL_TYPE_BUY,
    SignalType.SELL: common_pb2.SIGNAL_TYPE_SELL,
    SignalType.HOLD: common_pb2.SIGNAL_TYPE_HOLD,
    SignalType.STRONG_BUY: common_pb2.SIGNAL_TYPE_STRONG_BUY,
    SignalType.STRONG_SELL: common_pb2.SIGNAL_TYPE_STRONG_SELL,
}
_STATUS_TO_PROTO: Mapping[ExecutionStatus, common_pb2.ExecutionStatus.ValueType] = {
    ExecutionStatus.PENDING: common_pb2.EXECUTION_STATUS_PENDING,
    ExecutionStatus.EXECUTED: common_pb2.EXECUTION_STATUS_EXECUTED,
    ExecutionStatus.FAILED: common_pb2.EXECUTION_STATUS_FAILED,
    ExecutionStatus.CANCELLED: common_pb2.EXECUTION_STATUS_CANCELLED,
}
_SIDE_TO_PROTO: Mapping[OrderSide, common_pb2.OrderSide.ValueType] = {
    OrderSide.BUY: common_pb2.ORDER_SIDE_BUY,
    OrderSide.SELL: common_pb2.ORDER_SIDE_SELL,
}
_MODE_TO_PROTO: Mapping[ExecutionMode, common_pb2.ExecutionMode.ValueType] = {
    ExecutionMode.PAPER: common_pb2.EXECUTION_MODE_PAPER,
    ExecutionMode.LIVE: common_pb2.EXECUTION_MODE_LIVE,
}


_EXIT_TO_PROTO: Mapping[ExitReason, common_pb2.ExitReason.ValueType] = {
    ExitReason.SIGNAL: common_pb2.EXIT_REASON_SIGNAL,
    ExitReason.STOP_LOSS: common_pb2.EXIT_REASON_STOP_LOSS,
    ExitReason.TAKE_PROFIT: common_pb2.EXIT_REASON_TAKE_PROFIT,
    ExitReason.TIME_LIMIT: common_pb2.EXIT_REASON_TIME_LIMIT,
}


def exit_reason_to_proto(value: ExitReason | str) -> common_pb2.ExitReason.ValueType:
    return _EXIT_TO_PROTO[ExitReason(value)]


def signal_type_to_proto(value: SignalType | str) -> common_pb2.SignalType.ValueType:
    return _SIGNAL_TYPE_TO_PROTO[SignalType(value)]


def _from_proto(mapping: Mapping[E, int], value: int) -> E | None:
    """The enum member a proto number stands for; None for 0 (UNSPECIFIED) or an unknown number."""
    return next((member for member, number in mapping.items() if number == value), None)


def status_to_proto(value: ExecutionStatus | str) -> common_pb2.ExecutionStatus.ValueType:
    return _STATUS_TO_PROTO[ExecutionStatus(value)]


def status_from_proto(value: int) -> ExecutionStatus | None:
    """None for EXECUTION_STATUS_UNSPECIFIED (an item the executor could not process at all)."""
    return _from_proto(_STATUS_TO_PROTO, value)


def order_side_to_proto(value: OrderSide | None) -> common_pb2.OrderSide.ValueType:
    return common_pb2.ORDER_SIDE_UNSPECIFIED if value is None else _SIDE_TO_PROTO[value]


def order_side_from_proto(value: int) -> OrderSide | None:
    return _from_proto(_SIDE_TO_PROTO, value)


def mode_to_proto(value: ExecutionMode | str) -> common_pb2.ExecutionMode.ValueType:
    return _MODE_TO_PROTO[ExecutionMode(value)]


# --- decimals and timestamps on the wire -------------------------------------------------------------------------


def decimal_string(value: Decimal | None) -> str:
    """A decimal string field: plain notation, never ``1E-7``; "" for None."""
    if value is None:
        return ""
    text = format(value, "f")
    return "0" if text in ("-0", "") else text


def to_timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC))
    return stamp


def from_timestamp(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)
