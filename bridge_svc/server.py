"""Wiring of the bridge service: servicer, the bridge loop and the orchestrator nudge on the shared server host."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine

from bridge_svc.bridging import SignalBridge
from bridge_svc.eligibility import EligibilityRules
from bridge_svc.orchestrator_nudge import OrchestratorNudge
from bridge_svc.pricing import PricingTerms
from bridge_svc.repository import BridgeRepository
from bridge_svc.service import SignalBridgeServicer
from common.config import Settings
from common.lifecycle import ExecutionMode
from common.loops import run_periodically
from common.market_clock import MarketClock
from common.service_host import ServiceDefinition, ServiceParts
from crypto_trading.v1 import bridge_pb2, bridge_pb2_grpc

FULL_SERVICE_NAME = bridge_pb2.DESCRIPTOR.services_by_name["SignalBridgeService"].full_name


def rules_from(settings: Settings) -> EligibilityRules:
    return EligibilityRules(
        # via str: the float 0.6 becomes exactly Decimal("0.6"), so a confidence of exactly 0.6 is not above it.
        min_confidence=Decimal(str(settings.bridge_min_confidence)),
        max_age=timedelta(seconds=settings.bridge_signal_max_age_seconds),
    )


def terms_from(settings: Settings) -> PricingTerms:
    return PricingTerms(
        amount_usd=settings.trade_amount_usd,
        stop_loss_percent=settings.stop_loss_percent,
        take_profit_percent=settings.take_profit_percent,
        position_size_percent=settings.position_size_percent,
    )


async def build(settings: Settings, engine: AsyncEngine) -> ServiceParts:
    replay = settings.market_data_source == "replay"
    nudge = OrchestratorNudge(settings)
    clock = MarketClock(engine if replay else None)
    bridge = SignalBridge(
        BridgeRepository(engine, ExecutionMode(settings.execution_mode.upper())),
        rules_from(settings),
        terms_from(settings),
        clock,
        batch_size=settings.bridge_max_signal_ids,
        # In replay the replay itself runs the orchestrator after the bridge, on market time.
        on_created=None if replay else nudge.nudge,
        max_open_positions=settings.max_open_positions,
        refresh_clock=clock.refresh,
    )
    servicer = SignalBridgeServicer(bridge, settings.bridge_max_signal_ids)

    async def bridge_loop() -> None:
        # The first cycle runs one interval after start-up: fresh signals arrive through the generator's nudge, the
        # loop only catches what a nudge missed.
        interval = settings.bridge_interval_seconds
        await run_periodically("bridge", interval, bridge.bridge_all, initial_delay=interval)

    async def orchestrator_nudge() -> None:
        await nudge.run()

    return ServiceParts(
        register=[lambda server: bridge_pb2_grpc.add_SignalBridgeServiceServicer_to_server(servicer, server)],
        # In replay the replay conducts (bridge after each released candle): no wall-clock loop, no nudges.
        background=[] if replay else [bridge_loop, orchestrator_nudge],
        on_stop=[nudge.close],
    )


DEFINITION = ServiceDefinition(
    name="bridge",
    full_service_name=FULL_SERVICE_NAME,
    port_setting="signal_bridge_port",
    metrics_port_setting="signal_bridge_metrics_port",
    build=build,
)
