"""The trade lifecycle: every allowed and every refused transition, the statements' guards on a real database, the
vocabulary's agreement with the schema, the proto mappings and the decimal converters."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert, select

from common import lifecycle
from common.database import create_engine
from common.lifecycle import (
    FINAL_ORDER,
    RECOMMENDATION_TRANSITIONS,
    ExecutionMode,
    ExecutionStatus,
    IllegalTransitionError,
    OrderSide,
    OrderStatus,
    SignalType,
)
from common.tables import (
    EXECUTION_MODES,
    EXECUTION_STATUSES,
    ORDER_STATUSES,
    RECOMMENDATION_TYPES,
    SIGNAL_TYPES,
    trade_recommendations,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
P, E, F, C = ExecutionStatus.PENDING, ExecutionStatus.EXECUTED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED

# The whole table, written out once more by hand: a change to the lifecycle must change this test too.
ALLOWED_RECOMMENDATION_MOVES = {(P, E), (P, F), (P, C), (C, E), (C, F)}
ALLOWED_ORDER_MOVES = {
    (OrderStatus.PENDING, OrderStatus.SUBMITTED),
    (OrderStatus.PENDING, OrderStatus.EXECUTED),
    (OrderStatus.PENDING, OrderStatus.FAILED),
    (OrderStatus.PENDING, OrderStatus.CANCELLED),
    (OrderStatus.SUBMITTED, OrderStatus.EXECUTED),
    (OrderStatus.SUBMITTED, OrderStatus.FAILED),
    (OrderStatus.SUBMITTED, OrderStatus.CANCELLED),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(ExecutionStatus, ExecutionStatus)))
def test_every_recommendation_transition(current: ExecutionStatus, target: ExecutionStatus) -> None:
    allowed = (current, target) in ALLOWED_RECOMMENDATION_MOVES
    assert lifecycle.can_move(current, target) is allowed
    if allowed:
        lifecycle.check_move(current, target)
    else:
        with pytest.raises(IllegalTransitionError, match=f"from {current} to {target}"):
            lifecycle.check_move(current, target)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(OrderStatus, OrderStatus)))
def test_every_order_transition(current: OrderStatus, target: OrderStatus) -> None:
    allowed = (current, target) in ALLOWED_ORDER_MOVES
    assert lifecycle.can_move_order(current, target) is allowed
    if not allowed:
        with pytest.raises(IllegalTransitionError):
            lifecycle.check_order_move(current, target)


def test_final_states() -> None:
    assert {E, F} == {status for status, targets in RECOMMENDATION_TRANSITIONS.items() if not targets}
    assert {OrderStatus.EXECUTED, OrderStatus.FAILED, OrderStatus.CANCELLED} == FINAL_ORDER


def test_nothing_moves_back_to_pending() -> None:
    with pytest.raises(IllegalTransitionError):
        lifecycle.finish(P, now=NOW)
    with pytest.raises(IllegalTransitionError):
        lifecycle.finish(C, now=NOW, only_from=[E])


def test_the_vocabulary_is_the_schema() -> None:
    assert tuple(s.value for s in ExecutionStatus) == EXECUTION_STATUSES
    assert tuple(s.value for s in OrderStatus) == ORDER_STATUSES
    assert tuple(m.value for m in ExecutionMode) == EXECUTION_MODES
    assert tuple(t.value for t in SignalType) == RECOMMENDATION_TYPES
    assert tuple(t.value for t in SignalType)[: len(SIGNAL_TYPES)] == SIGNAL_TYPES


def test_signal_types_trade_sides() -> None:
    assert [t.side for t in SignalType] == [OrderSide.BUY, OrderSide.SELL, None, OrderSide.BUY, OrderSide.SELL]
    assert lifecycle.pending_key("BTC-USD", SignalType.BUY) == "BTC-USD:BUY"


def test_proto_mappings_round_trip() -> None:
    assert len({lifecycle.signal_type_to_proto(kind) for kind in SignalType}) == len(SignalType)
    for status in ExecutionStatus:
        assert lifecycle.status_from_proto(lifecycle.status_to_proto(status)) == status
    assert len({lifecycle.mode_to_proto(mode) for mode in ExecutionMode}) == len(ExecutionMode)
    for side in OrderSide:
        assert lifecycle.order_side_from_proto(lifecycle.order_side_to_proto(side)) == side
    assert lifecycle.status_from_proto(0) is None
    assert lifecycle.order_side_to_proto(None) == 0


@pytest.mark.parametrize(
    ("value", "text"),
    [(Decimal("1E-7"), "0.0000001"), (Decimal("100.00"), "100.00"), (Decimal("-0"), "0"), (None, "")],
)
def test_decimal_strings_never_use_exponents(value: Decimal | None, text: str) -> None:
    assert lifecycle.decimal_string(value) == text


def test_timestamps_round_trip_in_utc() -> None:
    assert lifecycle.from_timestamp(lifecycle.to_timestamp(NOW)) == NOW
    naive = datetime(2026, 1, 2, 3, 4, 5)
    assert lifecycle.from_timestamp(lifecycle.to_timestamp(naive)) == NOW


async def _recommendation(conn: Any, status: ExecutionStatus) -> int:
    result = await conn.execute(
        insert(trade_recommendations).values(
            signal_id=None,
            symbol="BTC-USD",
            signal_type="BUY",
            amount_usd=Decimal("100"),
            confidence=Decimal("0.7"),
            execution_status=status.value,
            pending_key=f"BTC-USD:{status}" if status == P else None,
            claimed_by="someone",
            created_at=NOW,
            updated_at=NOW,
        )
    )
    return int(result.inserted_primary_key[0])


async def test_statements_move_only_what_the_table_allows(database_url: str) -> None:
    engine = create_engine(database_url)
    r = trade_recommendations.c
    try:
        async with engine.begin() as conn:
            ids = {status: await _recommendation(conn, status) for status in ExecutionStatus}
            # Cancel everything: only the PENDING one moves; its key and claim are cleared.
            await conn.execute(lifecycle.finish(C, reason="expired", now=NOW).where(r.id.in_(list(ids.values()))))
            rows = {row.id: row for row in await conn.execute(select(trade_recommendations))}
            assert rows[ids[P]].execution_status == "CANCELLED"
            assert rows[ids[P]].pending_key is None
            assert rows[ids[P]].claimed_by is None
            assert rows[ids[P]].status_reason == "expired"
            assert rows[ids[E]].execution_status == "EXECUTED"
            assert rows[ids[F]].execution_status == "FAILED"
            # An exchange outcome reaches the cancelled ones, never a final one.
            await conn.execute(lifecycle.finish(E, now=NOW, executed_at=NOW).where(r.id.in_([ids[P], ids[C], ids[F]])))
            rows = {row.id: row for row in await conn.execute(select(trade_recommendations))}
            assert rows[ids[P]].execution_status == "EXECUTED"
            assert rows[ids[C]].execution_status == "EXECUTED"
            assert rows[ids[F]].execution_status == "FAILED"
    finally:
        await engine.dispose()
