"""After creating recommendations the bridge nudges the orchestrator; a missing orchestrator never fails Bridge."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from crypto_trading.v1 import bridge_pb2, orchestrator_pb2_grpc
from testkit.ports import free_ports
from tests.bridge_svc.conftest import (
    FakeOrchestrator,
    bridge_client,
    bridge_settings,
    insert_signals,
    recommendation_rows,
    signal_row,
)


async def test_orchestrator_receives_the_new_recommendation_ids(
    database_url: str, engine: AsyncEngine, fake_orchestrator: tuple[FakeOrchestrator, str]
) -> None:
    fake, address = fake_orchestrator
    ids = await insert_signals(engine, signal_row(), signal_row(), signal_row(signal_type="HOLD"))
    async with bridge_client(bridge_settings(database_url, address)) as (stub, _):
        response = await stub.Bridge(bridge_pb2.BridgeRequest(signal_ids=ids), timeout=10)
        nudged = await asyncio.wait_for(fake.requests.get(), timeout=10)
        # Nothing created: no nudge.
        await stub.Bridge(bridge_pb2.BridgeRequest(signal_ids=ids), timeout=10)

    assert nudged == [r.id for r in response.recommendations]
    assert len(nudged) == 2
    assert fake.requests.empty()


async def test_bridge_succeeds_when_the_orchestrator_is_down(
    database_url: str, engine: AsyncEngine, unreachable_addr: str, caplog: pytest.LogCaptureFixture
) -> None:
    ids = await insert_signals(engine, signal_row(), signal_row())
    with caplog.at_level(logging.INFO, logger="bridge_svc"):
        async with bridge_client(bridge_settings(database_url, unreachable_addr)) as (stub, _):
            first = await stub.Bridge(bridge_pb2.BridgeRequest(signal_ids=ids[:1]), timeout=10)
            second = await stub.Bridge(bridge_pb2.BridgeRequest(signal_ids=ids[1:]), timeout=10)
            for _ in range(100):  # the failed nudge is reported in the log, not to the caller
                if any("could not nudge the orchestrator" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.05)

    assert len(first.recommendations) == 1
    assert len(second.recommendations) == 1
    assert len(await recommendation_rows(engine)) == 2
    warnings = [r for r in caplog.records if "could not nudge the orchestrator" in r.getMessage()]
    assert warnings
    assert warnings[0].levelno == logging.WARNING


async def test_nudges_resume_when_the_orchestrator_comes_back(
    database_url: str, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    ids = await insert_signals(engine, signal_row(), signal_row())
    async with bridge_client(bridge_settings(database_url, address)) as (stub, _):
        with caplog.at_level(logging.WARNING, logger="bridge_svc"):
            await stub.Bridge(bridge_pb2.BridgeRequest(signal_ids=ids[:1]), timeout=10)
            for _ in range(100):
                if any("could not nudge" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.05)
        fake = FakeOrchestrator()
        server = grpc.aio.server()
        orchestrator_pb2_grpc.add_TradeOrchestratorServiceServicer_to_server(fake, server)
        assert server.add_insecure_port(address) == port
        await server.start()
        try:
            response = await stub.Bridge(bridge_pb2.BridgeRequest(signal_ids=ids[1:]), timeout=10)
            nudged = await asyncio.wait_for(fake.requests.get(), timeout=10)
        finally:
            await server.stop(0)

    assert nudged == [response.recommendations[0].id]
