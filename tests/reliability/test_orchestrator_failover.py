"""Claims are leases: an orchestrator replica killed (SIGKILL) while its stream to the executor is in flight leaves
claims that nobody renews, and the other replica executes those recommendations within 10 s, each exactly once,
with the default CLAIM_TTL_SECONDS, on MariaDB.

Orchestrator A streams to a stand-in executor that holds the stream (an executor waiting on a slow exchange);
orchestrator B streams to a real paper executor. Both are processes on one database; the test drives B as the
bridge's nudges would (Orchestrate every 0.2 s)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import grpc
import pytest
from sqlalchemy import select

from common.config import Settings
from common.database import create_engine
from common.tables import trade_executions, trade_recommendations
from crypto_trading.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from testkit.databases import clear_tables
from testkit.loops import wait_for_first_cycle
from testkit.ports import address, free_ports
from testkit.processes import PIPELINE_ENV, ServiceProcesses, stopped_at_the_end
from tests.support import outcomes
from tests.support.fake_executor import running_fake_executor
from tests.support.seed import seed_recommendation

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

RECOMMENDATIONS = 3
TAKEOVER_LIMIT_SECONDS = 10.0
CLAIM_TTL_SECONDS = Settings.model_fields["claim_ttl_seconds"].default  # the default, not a test value


async def test_a_killed_orchestrators_claims_are_taken_over_within_10_s(mysql_database: str, tmp_path: Path) -> None:
    assert CLAIM_TTL_SECONDS < TAKEOVER_LIMIT_SECONDS
    await clear_tables(mysql_database)
    engine = create_engine(mysql_database)
    processes = ServiceProcesses(mysql_database, tmp_path / "logs", PIPELINE_ENV)
    async with stopped_at_the_end(processes, engine):
        async with running_fake_executor() as holding:
            executor_port, a_port, b_port, a_metrics, b_metrics = free_ports(5)
            processes.spawn("executor", "executor-b", executor_port)
            a = processes.spawn(
                "orchestrator",
                "orchestrator-a",
                a_port,
                {"TRADE_EXECUTOR_ADDR": holding.address, "TRADE_ORCHESTRATOR_METRICS_PORT": str(a_metrics)},
            )
            b = processes.spawn(
                "orchestrator",
                "orchestrator-b",
                b_port,
                {
                    "TRADE_EXECUTOR_ADDR": address(executor_port),
                    "LOG_LEVEL": "INFO",
                    "TRADE_ORCHESTRATOR_METRICS_PORT": str(b_metrics),
                },
            )
            await processes.wait_serving(within=60)
            # The loops' first cycle runs 5 s after start-up (the next a day later): let it pass before seeding.
            await asyncio.gather(*(wait_for_first_cycle(port, "orchestrator") for port in (a_metrics, b_metrics)))
            ids = [await seed_recommendation(engine) for _ in range(RECOMMENDATIONS)]  # a symbol (and price) each

            async with (
                grpc.aio.insecure_channel(a.address) as a_channel,
                grpc.aio.insecure_channel(b.address) as b_channel,
            ):
                a_stub = orchestrator_pb2_grpc.TradeOrchestratorServiceStub(a_channel)
                b_stub = orchestrator_pb2_grpc.TradeOrchestratorServiceStub(b_channel)
                request = orchestrator_pb2.OrchestrateRequest()

                async def orchestrate_a() -> None:
                    with pytest.raises(grpc.aio.AioRpcError):  # A dies before it answers
                        await a_stub.Orchestrate(request, timeout=60)

                in_flight = asyncio.create_task(orchestrate_a())
                await asyncio.wait_for(holding.servicer.got_requests.wait(), 15)
                assert sorted(holding.servicer.received) == ids
                r = trade_recommendations.c

                async def claims() -> set[tuple[str | None, datetime | None]]:
                    async with engine.connect() as conn:
                        rows = await conn.execute(select(r.claimed_by, r.claimed_until).where(r.id.in_(ids)))
                        return {(by, until) for by, until in rows}

                claimed = await claims()
                assert len(claimed) == 1
                a_identity, first_until = claimed.pop()
                assert a_identity is not None
                assert first_until is not None
                # A renews its claims while the stream is in flight (every CLAIM_TTL_SECONDS / 4): wait for one.
                deadline = time.monotonic() + CLAIM_TTL_SECONDS
                while (renewed := await claims()) == {(a_identity, first_until)}:
                    assert time.monotonic() < deadline, "the claims were not renewed"
                    await asyncio.sleep(0.1)
                assert {by for by, _ in renewed} == {a_identity}
                assert all(until is not None and until > first_until for _, until in renewed)

                a.process.kill()  # SIGKILL mid-stream: its claims are renewed no more
                killed = time.monotonic()
                await in_flight

                answers: list[orchestrator_pb2.OrchestrateResponse] = []
                executed: set[int] = set()
                while executed != set(ids):
                    elapsed = time.monotonic() - killed
                    assert elapsed < TAKEOVER_LIMIT_SECONDS + 5, f"not taken over after {elapsed:.1f} s"
                    answer = await b_stub.Orchestrate(request, timeout=30)
                    assert not answer.executor_unreachable, answer.executor_error
                    answers.append(answer)
                    executed |= {o.recommendation_id for o in outcomes.executed(answer)}
                    if executed != set(ids):
                        await asyncio.sleep(0.2)
                took = time.monotonic() - killed
        print(f"orchestrator B executed the dead replica's claims {took:.2f} s after the SIGKILL")
        assert took < TAKEOVER_LIMIT_SECONDS, f"took {took:.2f} s"
        # Until A's claims expired, B left them alone (they were claimed, not free).
        assert outcomes.executed(answers[0]) == []

        reported = Counter(o.recommendation_id for answer in answers for o in outcomes.executed(answer))
        assert reported == Counter(ids)  # each reported executed once
        async with engine.connect() as conn:
            rows = (await conn.execute(select(r.id, r.execution_status, r.claimed_by).where(r.id.in_(ids)))).all()
            per_recommendation = Counter(
                (await conn.execute(select(trade_executions.c.recommendation_id))).scalars().all()
            )
        assert {(row.execution_status, row.claimed_by) for row in rows} == {("EXECUTED", None)}
        assert per_recommendation == Counter(ids)  # one execution each
        log = b.log.read_text()
        assert f"took over {RECOMMENDATIONS} recommendation(s) whose claim expired" in log
        assert f"from {a_identity}" in log
