"""The bridge loop runs the same code every BRIDGE_INTERVAL_SECONDS, and nudges the orchestrator."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.bridge_svc.conftest import (
    FakeOrchestrator,
    bridge_client,
    bridge_settings,
    insert_signals,
    recommendation_rows,
    signal_row,
)


async def test_loop_bridges_eligible_signals(
    database_url: str, engine: AsyncEngine, fake_orchestrator: tuple[FakeOrchestrator, str]
) -> None:
    fake, address = fake_orchestrator
    settings = bridge_settings(database_url, address, bridge_interval_seconds=0.1)
    async with bridge_client(settings):
        (first,) = await insert_signals(engine, signal_row())
        nudged = await asyncio.wait_for(fake.requests.get(), timeout=10)
        (second,) = await insert_signals(engine, signal_row())
        nudged_again = await asyncio.wait_for(fake.requests.get(), timeout=10)
        await insert_signals(engine, signal_row(signal_type="HOLD"))
        await asyncio.sleep(0.3)  # a few more cycles: the HOLD signal is never bridged

    rows = await recommendation_rows(engine)
    assert [r.signal_id for r in rows] == [first, second]
    assert [nudged, nudged_again] == [[rows[0].id], [rows[1].id]]
