"""Fixtures of the bridge tests: signal rows written directly with SQLAlchemy, and a bridge on a real channel."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
from sqlalchemy import Row, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge_svc.server import DEFINITION
from common.clock import utc_now
from common.config import Settings
from common.database import create_engine
from common.server import running_service
from common.service_host import ServiceHost
from common.tables import trade_recommendations, trading_signals
from crypto_trading.v1 import bridge_pb2_grpc, orchestrator_pb2, orchestrator_pb2_grpc
from testkit.ports import free_ports
from tests.conftest import make_settings

_counter = itertools.count(1)


def signal_row(**overrides: Any) -> dict[str, Any]:
    """A fresh, eligible BUY signal (one minute old, confidence 0.75) on its own symbol; override any column."""
    n = next(_counter)
    created = utc_now().replace(microsecond=0) - timedelta(seconds=60)
    row: dict[str, Any] = {
        "symbol": f"T{n}-USD",
        "signal_type": "BUY",
        "confidence": Decimal("0.7500"),
        "price": Decimal("250.12345678"),
        "model": "balanced_realistic_model_20260101_120000.joblib",
        "model_version": "20260101_120000-abc123",
        "threshold": Decimal("0.5000"),
        "regime": "bull",
        "buy_probability": Decimal("0.7500"),
        "sell_probability": Decimal("0.1000"),
        "hold_probability": Decimal("0.1500"),
        "data_source": "database",
        "candle_time": datetime(2026, 1, 1, tzinfo=created.tzinfo) + timedelta(hours=n),
        "timestamp": created,
        "created_at": created,
        "is_mock": False,
        "processed": False,
    }
    row.update(overrides)
    return row


async def insert_signals(engine: AsyncEngine, *rows: dict[str, Any]) -> list[int]:
    ids = []
    async with engine.begin() as conn:
        for row in rows:
            result = await conn.execute(insert(trading_signals).values(**row))
            ids.append(int(result.inserted_primary_key[0]))  # type: ignore[index]
    return ids


async def recommendation_rows(engine: AsyncEngine) -> list[Row[Any]]:
    async with engine.connect() as conn:
        return list(await conn.execute(select(trade_recommendations).order_by(trade_recommendations.c.id)))


async def signal_rows(engine: AsyncEngine) -> dict[int, Row[Any]]:
    async with engine.connect() as conn:
        return {row.id: row for row in await conn.execute(select(trading_signals))}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def unreachable_addr() -> str:
    """An address where nothing listens (a stopped orchestrator)."""
    return f"127.0.0.1:{free_ports(1)[0]}"


def bridge_settings(database_url: str, orchestrator_addr: str, **overrides: Any) -> Settings:
    """The loop parked (a day) unless overridden; nudges go to ``orchestrator_addr``; room for 1,000 open positions
    (tests/bridge_svc/test_positions.py tests the limit)."""
    values: dict[str, Any] = {
        "trade_orchestrator_addr": orchestrator_addr,
        "bridge_interval_seconds": 86_400,
        "max_open_positions": 1000,
    }
    values.update(overrides)
    return make_settings(database_url, **values)


@asynccontextmanager
async def bridge_client(
    settings: Settings,
) -> AsyncIterator[tuple[bridge_pb2_grpc.SignalBridgeServiceAsyncStub, ServiceHost]]:
    async with (
        running_service(DEFINITION, settings) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        yield bridge_pb2_grpc.SignalBridgeServiceStub(channel), service


@pytest.fixture
async def bridge(
    database_url: str, unreachable_addr: str
) -> AsyncIterator[bridge_pb2_grpc.SignalBridgeServiceAsyncStub]:
    """A bridge with default settings (orchestrator unreachable, loop parked) on a real gRPC channel."""
    async with bridge_client(bridge_settings(database_url, unreachable_addr)) as (stub, _):
        yield stub


class FakeOrchestrator(orchestrator_pb2_grpc.TradeOrchestratorServiceServicer):
    """Records the ids of every Orchestrate call."""

    def __init__(self) -> None:
        self.requests: asyncio.Queue[list[int]] = asyncio.Queue()

    async def Orchestrate(
        self, request: orchestrator_pb2.OrchestrateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> orchestrator_pb2.OrchestrateResponse:
        await self.requests.put(list(request.recommendation_ids))
        return orchestrator_pb2.OrchestrateResponse()

    async def SetTradingHalt(
        self, request: orchestrator_pb2.SetTradingHaltRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> orchestrator_pb2.SetTradingHaltResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "fake")

    async def GetTradingHalt(
        self, request: orchestrator_pb2.GetTradingHaltRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> orchestrator_pb2.GetTradingHaltResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "fake")


@pytest.fixture
async def fake_orchestrator() -> AsyncIterator[tuple[FakeOrchestrator, str]]:
    """A fake orchestrator on a real gRPC server: (servicer, address)."""
    fake = FakeOrchestrator()
    server = grpc.aio.server()
    orchestrator_pb2_grpc.add_TradeOrchestratorServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield fake, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)
