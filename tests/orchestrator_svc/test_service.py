"""The orchestrator with a real executor in paper mode, through real gRPC channels, on SQLite and MariaDB."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
from sqlalchemy import select, update

from common.clock import as_utc, utc_now
from common.server import running_service
from common.service_host import ServiceHost
from common.tables import trade_recommendations
from crypto_trading.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from executor_svc.server import DEFINITION as EXECUTOR
from orchestrator_svc.executor_link import HEALTH_CACHE_SECONDS
from orchestrator_svc.server import DEFINITION as ORCHESTRATOR
from testkit.ports import free_ports
from tests.conftest import make_settings
from tests.support import outcomes
from tests.support.fake_executor import NOT_SERVING, SERVING, running_fake_executor
from tests.support.seed import seed_recommendation

BASE: dict[str, Any] = {
    "market_data_source": "database",
    "orchestrator_interval_seconds": 3600,
    "executor_timeout_seconds": 5,
}


@asynccontextmanager
async def orchestrator_at(url: str, executor_address: str, **overrides: Any) -> AsyncIterator[tuple[Any, ServiceHost]]:
    """An orchestrator (loop parked) streaming to ``executor_address``, yields (orchestrator stub, host)."""
    settings = make_settings(url, trade_executor_addr=executor_address, **(BASE | overrides))
    async with (
        running_service(ORCHESTRATOR, settings) as orchestrator,
        grpc.aio.insecure_channel(f"127.0.0.1:{orchestrator.port}") as channel,
    ):
        yield orchestrator_pb2_grpc.TradeOrchestratorServiceStub(channel), orchestrator


@asynccontextmanager
async def system(url: str, *, executor_up: bool = True, **overrides: Any) -> AsyncIterator[tuple[Any, ServiceHost]]:
    """A paper executor and an orchestrator pointing at it (loop parked), yields (orchestrator stub, host)."""
    async with running_service(EXECUTOR, make_settings(url, **(BASE | overrides))) as executor:
        address = f"127.0.0.1:{executor.port}" if executor_up else f"127.0.0.1:{free_ports(1)[0]}"
        async with orchestrator_at(url, address, **overrides) as pair:
            yield pair


async def statuses(engine: Any) -> dict[int, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(trade_recommendations.c.id, trade_recommendations.c.execution_status))
        return {int(i): str(s) for i, s in rows}


async def test_best_first_within_the_cap_and_logs(
    database_url: str, engine: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    now = utc_now()
    low = await seed_recommendation(engine, confidence=Decimal("0.61"), amount_usd=Decimal("10"))
    old_high = await seed_recommendation(engine, confidence=Decimal("0.90"), created_at=now - timedelta(minutes=30))
    new_high = await seed_recommendation(engine, confidence=Decimal("0.90"), created_at=now - timedelta(minutes=5))
    mid = await seed_recommendation(engine, confidence=Decimal("0.75"))
    async with system(database_url) as (stub, _):
        response = await stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=30)
        assert [o.recommendation_id for o in outcomes.executed(response)] == [old_high, new_high, mid]
        assert response.remaining == 1
        assert response.window_capacity_left == 0
        # A nudge inside the same 30 s window cannot get around the cap.
        nudged = await stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(recommendation_ids=[low]), timeout=30)
        assert list(outcomes.executed(nudged)) == []
        assert nudged.remaining == 1
    assert (await statuses(engine))[low] == "PENDING"
    assert f"Successfully executed recommendation {old_high}" in caplog.text


async def test_rolling_cap_counts_across_calls(database_url: str, engine: Any) -> None:
    ids = [await seed_recommendation(engine, amount_usd=Decimal("5")) for _ in range(5)]
    async with system(database_url, max_trades_per_window=2, trade_cap_window_seconds=1.5) as (stub, _):
        first = await stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(max_trades=1), timeout=30)
        second = await stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=30)
        third = await stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=30)
        counts = [len(outcomes.executed(response)) for response in (first, second, third)]
        assert counts == [1, 1, 0]
        await asyncio.sleep(1.6)
        fourth = await stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=30)
        assert len(outcomes.executed(fourth)) == 2
    assert sorted(s for s in (await statuses(engine)).values()) == ["EXECUTED"] * 4 + ["PENDING"]
    assert len(ids) == 5


async def test_old_pending_are_cancelled(database_url: str, engine: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    old = await seed_recommendation(engine, created_at=utc_now() - timedelta(hours=2, minutes=1))
    fresh = await seed_recommendation(engine)
    async with system(database_url) as (stub, _):
        response = await stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=30)
    assert [o.recommendation_id for o in outcomes.cancelled(response)] == [old]
    assert "2 h" in outcomes.cancelled(response)[0].reason
    assert [o.recommendation_id for o in outcomes.executed(response)] == [fresh]
    assert (await statuses(engine))[old] == "CANCELLED"
    assert f"Cancelled recommendation {old}" in caplog.text


async def claims(engine: Any) -> dict[int, tuple[str | None, datetime | None]]:
    r = trade_recommendations.c
    async with engine.connect() as conn:
        rows = await conn.execute(select(r.id, r.claimed_by, r.claimed_until))
        return {int(i): (by, as_utc(until) if until else None) for i, by, until in rows}


async def test_unreachable_executor_leaves_pending(database_url: str, engine: Any) -> None:
    rec = await seed_recommendation(engine)
    async with system(database_url, executor_up=False, executor_timeout_seconds=1) as (stub, _):
        response = await stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=30)
        assert response.executor_unreachable
        assert "unreachable (UNAVAILABLE)" in response.executor_error
        assert list(response.outcomes) == []  # its health did not answer: nothing was claimed or sent
        assert response.remaining == 1
        assert response.window_capacity_left == 3  # no cap slot taken
    assert (await statuses(engine))[rec] == "PENDING"
    assert (await claims(engine))[rec] == (None, None)


async def test_a_not_serving_executor_gets_nothing(database_url: str, engine: Any) -> None:
    rec = await seed_recommendation(engine)
    async with (
        running_fake_executor(NOT_SERVING) as fake,
        orchestrator_at(database_url, fake.address, executor_timeout_seconds=1) as (stub, _),
    ):
        response = await stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=30)
        assert response.executor_unreachable
        assert response.executor_error == f"executor at {fake.address} is NOT_SERVING"
        assert list(response.outcomes) == []
        assert (response.remaining, response.window_capacity_left) == (1, 3)
        assert fake.servicer.streams == 0
        assert (await claims(engine))[rec] == (None, None)
        # SERVING again: once the cached answer (HEALTH_CACHE_SECONDS) is stale, the next cycle streams to it.
        await fake.set_status(SERVING)
        await asyncio.sleep(HEALTH_CACHE_SECONDS + 0.1)
        response = await stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=30)
        assert fake.servicer.received == [rec]
        assert "too slow (DEADLINE_EXCEEDED)" in response.executor_error  # the fake held the stream
    assert (await statuses(engine))[rec] == "PENDING"


async def test_claims_are_renewed_while_the_stream_is_in_flight(database_url: str, engine: Any) -> None:
    """A claim lasts CLAIM_TTL_SECONDS (1 here) but is renewed while its stream is in flight: another
    orchestrator cannot take the recommendation while the executor works on it, and can once the stream ends."""
    rec = await seed_recommendation(engine)
    async with (
        running_fake_executor() as fake,
        orchestrator_at(database_url, fake.address, claim_ttl_seconds=1, executor_timeout_seconds=10) as (one, _),
        system(database_url) as (two, _),
    ):

        async def orchestrate_one() -> orchestrator_pb2.OrchestrateResponse:
            response: orchestrator_pb2.OrchestrateResponse = await one.Orchestrate(
                orchestrator_pb2.OrchestrateRequest(), timeout=30
            )
            return response

        first = asyncio.create_task(orchestrate_one())
        await asyncio.wait_for(fake.servicer.got_requests.wait(), 10)
        holder, claimed_until = (await claims(engine))[rec]
        assert holder is not None
        assert claimed_until is not None
        await asyncio.sleep(1.5)  # longer than the claim's TTL
        renewed_holder, renewed_until = (await claims(engine))[rec]
        assert renewed_holder == holder
        assert renewed_until is not None
        assert renewed_until > claimed_until
        assert renewed_until > utc_now()
        blocked = await two.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=30)
        assert list(blocked.outcomes) == []
        fake.servicer.release.set()  # the stream ends without an answer: the claim is given back
        ended = await first
        assert [o.recommendation_id for o in outcomes.retry_later(ended)] == [rec]
        assert (await claims(engine))[rec] == (None, None)
        taken = await two.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=30)
        assert [o.recommendation_id for o in outcomes.executed(taken)] == [rec]
    assert (await statuses(engine))[rec] == "EXECUTED"


async def test_kill_switch(database_url: str, engine: Any) -> None:
    rec = await seed_recommendation(engine)
    async with system(database_url) as (stub, _):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.SetTradingHalt(orchestrator_pb2.SetTradingHaltRequest(halted=True), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        halted = await stub.SetTradingHalt(
            orchestrator_pb2.SetTradingHaltRequest(halted=True, reason="exchange incident", actor="ops"), timeout=10
        )
        assert halted.halt.halted
        response = await stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=30)
        assert response.halted
        assert list(outcomes.executed(response)) == []
        assert (await stub.GetTradingHalt(orchestrator_pb2.GetTradingHaltRequest(), timeout=10)).halt.reason == (
            "exchange incident"
        )
        await stub.SetTradingHalt(orchestrator_pb2.SetTradingHaltRequest(halted=False, reason="ok"), timeout=10)
        response = await stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=30)
        assert [o.recommendation_id for o in outcomes.executed(response)] == [rec]


def test_cts_halt_and_resume_direct(sqlite_url: str) -> None:
    env = {"DATABASE_URL": sqlite_url, "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-m", "cts"]
    halted = subprocess.run(
        [*run, "halt", "--direct", "--reason", "maintenance"], env=env, capture_output=True, text=True, check=False
    )
    assert halted.returncode == 0, halted.stderr
    assert "halted" in halted.stdout
    resumed = subprocess.run([*run, "resume", "--direct"], env=env, capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout


async def test_two_orchestrators_never_send_twice(database_url: str, engine: Any) -> None:
    ids = [await seed_recommendation(engine, amount_usd=Decimal("1"), confidence=Decimal("0.7")) for _ in range(30)]
    overrides: dict[str, Any] = {"max_trades_per_window": 1000}
    async with system(database_url, **overrides) as (one, _), system(database_url, **overrides) as (two, _):
        responses = await asyncio.gather(
            *(
                stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(max_trades=7), timeout=60)
                for stub in (one, two) * 3
            )
        )
    executed = [o.recommendation_id for r in responses for o in outcomes.executed(r)]
    assert len(executed) == len(set(executed)) == 30
    assert set(executed) == set(ids)
    async with engine.connect() as conn:
        from common.tables import trade_executions

        count = len((await conn.execute(select(trade_executions.c.id))).all())
    assert count == 30


async def test_two_orchestrators_share_one_rolling_cap(database_url: str, engine: Any) -> None:
    """Racing replicas read the cap's use under the dispatch lock: together they never send more than the cap."""
    for _ in range(10):
        await seed_recommendation(engine, amount_usd=Decimal("1"), confidence=Decimal("0.7"))
    overrides: dict[str, Any] = {"max_trades_per_window": 3, "trade_cap_window_seconds": 3600}
    async with system(database_url, **overrides) as (one, _), system(database_url, **overrides) as (two, _):
        responses = await asyncio.gather(
            *(stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=60) for stub in (one, two) * 3)
        )
    executed = [o.recommendation_id for r in responses for o in outcomes.executed(r)]
    assert len(executed) == len(set(executed)) == 3
    assert sorted((await statuses(engine)).values()) == ["EXECUTED"] * 3 + ["PENDING"] * 7
    assert all(r.window_capacity_left == 0 for r in responses if not outcomes.executed(r))


async def test_expired_claim_of_a_dead_orchestrator_is_taken_over(
    database_url: str, engine: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator_svc.cycle")
    live = await seed_recommendation(engine)
    dead = await seed_recommendation(engine)
    async with engine.begin() as conn:
        await conn.execute(
            update(trade_recommendations)
            .where(trade_recommendations.c.id == live)
            .values(claimed_by="orchestrator-alive", claimed_until=utc_now() + timedelta(minutes=1))
        )
        await conn.execute(
            update(trade_recommendations)
            .where(trade_recommendations.c.id == dead)
            .values(claimed_by="orchestrator-killed", claimed_until=utc_now() - timedelta(seconds=1))
        )
    async with system(database_url) as (stub, _):
        response = await stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(), timeout=30)
    assert [o.recommendation_id for o in outcomes.executed(response)] == [dead]
    assert (await statuses(engine))[live] == "PENDING"
    taken = [r.getMessage() for r in caplog.records if "took over" in r.getMessage()]
    assert taken == [
        f"took over 1 recommendation(s) whose claim expired (its holder stopped renewing it): {dead} from "
        "orchestrator-killed"
    ]


@pytest.mark.parametrize(
    "request_",
    [
        orchestrator_pb2.OrchestrateRequest(max_trades=-1),
        orchestrator_pb2.OrchestrateRequest(max_trades=4),
        orchestrator_pb2.OrchestrateRequest(recommendation_ids=[0]),
        orchestrator_pb2.OrchestrateRequest(recommendation_ids=[2**40]),
        orchestrator_pb2.OrchestrateRequest(recommendation_ids=list(range(1, 1100))),
    ],
)
async def test_bad_input_changes_nothing(
    database_url: str, engine: Any, request_: orchestrator_pb2.OrchestrateRequest
) -> None:
    rec = await seed_recommendation(engine)
    async with system(database_url) as (stub, _):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Orchestrate(request_, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await statuses(engine))[rec] == "PENDING"
