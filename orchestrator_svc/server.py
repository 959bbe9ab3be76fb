"""Wiring of the trade orchestrator: the cycle behind the Orchestrate RPC (the bridge's nudge) and the loop, and
the persistent link to the executor."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from common.clock import utc_now
from common.config import Settings
from common.loops import run_periodically
from common.market_clock import MarketClock
from common.service_host import ServiceDefinition, ServiceParts
from crypto_trading.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from orchestrator_svc.cycle import CycleLimits, Orchestrator
from orchestrator_svc.executor_link import ExecutorLink
from orchestrator_svc.repository import OrchestratorRepository
from orchestrator_svc.service import TradeOrchestratorServicer

FULL_SERVICE_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["TradeOrchestratorService"].full_name
log = logging.getLogger(__name__)


async def build(settings: Settings, engine: AsyncEngine) -> ServiceParts:
    repository = OrchestratorRepository(engine)
    link = ExecutorLink(settings)
    limits = CycleLimits(
        cap=settings.max_trades_per_window,
        cap_window=timedelta(seconds=settings.trade_cap_window_seconds),
        pending_window=timedelta(seconds=settings.orchestrator_pending_window_seconds),
        claim_ttl=timedelta(seconds=settings.claim_ttl_seconds),
    )
    replay = settings.market_data_source == "replay"
    clock = MarketClock(engine if replay else None)
    orchestrator = Orchestrator(repository, link, limits, clock, refresh_clock=clock.refresh)
    servicer = TradeOrchestratorServicer(
        orchestrator, utc_now, settings.max_trades_per_window, settings.orchestrator_max_ids
    )

    async def cycle() -> None:
        await orchestrator.run_cycle()
        await repository.prune_dispatches(clock() - timedelta(days=1))

    async def loop() -> None:
        await run_periodically(
            "orchestrator",
            settings.orchestrator_interval_seconds,
            cycle,
            initial_delay=min(5.0, settings.orchestrator_interval_seconds),
        )

    return ServiceParts(
        register=[
            lambda server: orchestrator_pb2_grpc.add_TradeOrchestratorServiceServicer_to_server(servicer, server)
        ],
        # In replay the replay runs the orchestrator after the bridge, on market time: no wall-clock loop.
        background=[] if replay else [loop],
        on_stop=[link.close],
    )


DEFINITION = ServiceDefinition(
    name="orchestrator",
    full_service_name=FULL_SERVICE_NAME,
    port_setting="trade_orchestrator_port",
    metrics_port_setting="trade_orchestrator_metrics_port",
    build=build,
)
