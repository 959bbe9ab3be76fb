"""Never twice: two bridge replicas on the same database, racing on the same signals (SQLite and MariaDB).

On SQLite the two in-process bridges once stalled for 30 s in about 2 runs of 10: a connection waiting for the
writer lock held its mutex inside SQLite's busy handler while the garbage collector, on the event loop thread,
finalized one of its old cursors; see common.database (SQLITE_BUSY_SLICE_MS) and tests/common/test_database.py."""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy.ext.asyncio import AsyncEngine

from crypto_trading.v1 import bridge_pb2
from tests.bridge_svc.conftest import (
    bridge_client,
    bridge_settings,
    insert_signals,
    recommendation_rows,
    signal_row,
    signal_rows,
)
from tests.bridge_svc.test_service import skipped_by_reason


async def test_two_bridges_create_one_recommendation_per_signal(
    database_url: str, engine: AsyncEngine, unreachable_addr: str
) -> None:
    ids = await insert_signals(engine, *(signal_row() for _ in range(30)))
    settings = bridge_settings(database_url, unreachable_addr)
    async with bridge_client(settings) as (first, _), bridge_client(settings) as (second, _):
        responses = await asyncio.gather(
            first.Bridge(bridge_pb2.BridgeRequest(signal_ids=ids), timeout=30),
            second.Bridge(bridge_pb2.BridgeRequest(signal_ids=list(reversed(ids))), timeout=30),
            first.Bridge(bridge_pb2.BridgeRequest(), timeout=30),
            second.Bridge(bridge_pb2.BridgeRequest(), timeout=30),
        )

    rows = await recommendation_rows(engine)
    assert sorted(r.signal_id for r in rows) == ids  # exactly one row per signal
    created = [r.signal_id for response in responses for r in response.recommendations]
    assert sorted(created) == ids  # each reported created exactly once, across both replicas
    named_skips = Counter[str]()
    for response in responses[:2]:
        named_skips.update(skipped_by_reason(response))
    # Every named signal was either created by that call or found already processed by the other replica.
    assert sum(len(r.recommendations) for r in responses[:2]) + named_skips["already_processed"] == 2 * len(ids)
    assert set(named_skips) <= {"already_processed"}
    assert all(s.processed for s in (await signal_rows(engine)).values())


async def test_racing_signals_for_one_symbol_leave_one_open_recommendation(
    database_url: str, engine: AsyncEngine, unreachable_addr: str
) -> None:
    ids = await insert_signals(engine, *(signal_row(symbol="XRP-USD") for _ in range(8)))
    settings = bridge_settings(database_url, unreachable_addr)
    async with bridge_client(settings) as (first, _), bridge_client(settings) as (second, _):
        responses = await asyncio.gather(
            *(
                (first if i % 2 else second).Bridge(bridge_pb2.BridgeRequest(signal_ids=[signal_id]), timeout=30)
                for i, signal_id in enumerate(ids)
            )
        )

    rows = await recommendation_rows(engine)
    assert len(rows) == 1
    assert rows[0].pending_key == "XRP-USD:BUY"
    assert sum(len(r.recommendations) for r in responses) == 1
    reasons = Counter[str]()
    for response in responses:
        reasons.update(skipped_by_reason(response))
    # Refused by the position book (a BUY already pending: position_open) or, racing it, by the database's unique
    # pending key (open_position).
    assert set(reasons) <= {"open_position", "position_open"}
    assert reasons.total() == len(ids) - 1
    signals = await signal_rows(engine)
    assert sorted(i for i in ids if signals[i].processed_reason in {"open_position", "position_open"}) == sorted(
        set(ids) - {rows[0].signal_id}
    )
