"""The executor finishes an order it has already sent when its caller goes away (the orchestrator's deadline
expired, it cancelled or died): the outcome is recorded, the exchange holds one order, and the database agrees."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest

from common.server import running_service
from crypto_trading.v1 import executor_pb2, executor_pb2_grpc
from executor_svc.server import DEFINITION
from tests.support.fake_coinbase import FakeCoinbase, live_settings
from tests.support.rows import states
from tests.support.seed import seed_recommendation

RECOVERY_DELAY = 1.0


async def _states(engine: Any, rec_id: int) -> tuple[str, str | None, str | None]:
    """(the recommendation's status, its execution's status, the exchange order id)."""
    status, order_status, row = await states(engine, rec_id)
    return status, order_status, (row.exchange_order_id if row is not None else None)


async def _until(condition: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("call_kind", ["stream", "unary"])
async def test_an_order_in_flight_is_recorded_after_the_caller_cancels(
    database_url: str, engine: Any, fake: FakeCoinbase, call_kind: str
) -> None:
    rec = await seed_recommendation(engine)
    async with (
        running_service(DEFINITION, live_settings(database_url, fake)) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        stub = executor_pb2_grpc.TradeExecutorServiceStub(channel)
        # Let the start-up recovery (0.5 s after start) pass first: it would finish an abandoned order by itself.
        await asyncio.sleep(RECOVERY_DELAY)
        fake.faults.extend(["ok", "slow"])  # GET product, then the POST /orders takes 2 s before it is placed
        call: Any
        if call_kind == "stream":
            requests = [executor_pb2.ExecuteRecommendationsRequest(recommendation_id=rec)]
            call = stub.ExecuteRecommendations(iter(requests))
        else:
            call = stub.ProcessRecommendation(executor_pb2.ProcessRecommendationRequest(recommendation_id=rec))

        async def answer() -> None:
            if call_kind == "stream":
                async for _ in call:
                    pass
            else:
                await call

        await _until(lambda: not fake.faults, 10, "the order was never sent")  # the POST is at the exchange now
        assert call.cancel()  # the caller goes away mid-order
        with pytest.raises(asyncio.CancelledError):
            await answer()
        assert await _states(engine, rec) == ("PENDING", "PENDING", None)  # sent, not answered yet

        # The exchange answers after its 2 s; the executor still reads the fill back and records it.
        recorded: list[tuple[str, str | None, str | None]] = []

        async def poll() -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                recorded.append(await _states(engine, rec))
                if recorded[-1][:2] == ("EXECUTED", "EXECUTED"):
                    return
                await asyncio.sleep(0.05)

        await poll()
        assert recorded[-1][:2] == ("EXECUTED", "EXECUTED"), recorded[-1]
    assert (fake.order_posts, fake.distinct_orders()) == (1, 1)
    assert recorded[-1][2] == next(iter(fake.orders))


async def test_shutdown_waits_for_an_order_whose_caller_has_gone(
    database_url: str, engine: Any, fake: FakeCoinbase
) -> None:
    """SIGTERM right after the caller went away: the executor stops only once the order it had sent is recorded
    (within SHUTDOWN_GRACE_SECONDS)."""
    rec = await seed_recommendation(engine)
    settings = live_settings(database_url, fake, shutdown_grace_seconds=8.0)
    async with running_service(DEFINITION, settings) as service:
        await asyncio.sleep(RECOVERY_DELAY)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = executor_pb2_grpc.TradeExecutorServiceStub(channel)
            fake.faults.extend(["ok", "slow"])
            call = stub.ProcessRecommendation(executor_pb2.ProcessRecommendationRequest(recommendation_id=rec))
            await _until(lambda: not fake.faults, 10, "the order was never sent")
            call.cancel()
        started = time.monotonic()
        await service.stop(grace=0.5)  # what SIGTERM does
        assert time.monotonic() - started < 8.0
        assert (await _states(engine, rec))[:2] == ("EXECUTED", "EXECUTED")
    assert (fake.order_posts, fake.distinct_orders()) == (1, 1)
