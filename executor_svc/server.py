"""Wiring of the trade executor: paper or live broker (live refuses to start without valid credentials and never
falls back to paper), crash recovery at start-up, and health that includes Coinbase authentication in live mode."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from common.config import Settings, coinbase_attempt_budget_seconds, exit_rules_max_holding
from common.loops import run_periodically
from common.market_clock import MarketClock
from common.service_host import ServiceDefinition, ServiceParts
from crypto_trading.v1 import executor_pb2, executor_pb2_grpc
from executor_svc.execution import Executor, OrderLister
from executor_svc.exits import ExitRules
from executor_svc.paper_broker import PaperBroker
from executor_svc.repository import ExecutorRepository
from executor_svc.service import TradeExecutorServicer

FULL_SERVICE_NAME = executor_pb2.DESCRIPTOR.services_by_name["TradeExecutorService"].full_name
AUTH_CHECK_SECONDS = 60.0
log = logging.getLogger(__name__)


async def build(settings: Settings, engine: AsyncEngine) -> ServiceParts:
    repository = ExecutorRepository(engine)
    replay = settings.market_data_source == "replay"
    clock = MarketClock(engine if replay else None)
    readiness = []
    on_stop = []
    background = []
    exchange: OrderLister | None = None
    if settings.execution_mode == "live":
        from executor_svc.coinbase_auth import load_credentials
        from executor_svc.coinbase_client import CoinbaseClient, ExchangeError
        from executor_svc.live_broker import LiveBroker

        credentials = load_credentials(
            settings.coinbase_api_key_name.get_secret_value() if settings.coinbase_api_key_name else None,
            settings.coinbase_api_private_key.get_secret_value() if settings.coinbase_api_private_key else None,
        )
        client = CoinbaseClient(
            settings.coinbase_api_base_url,
            credentials,
            timeout=settings.coinbase_timeout_seconds,
            max_retries=settings.coinbase_max_retries,
            backoff=settings.coinbase_backoff_seconds,
        )
        live = LiveBroker(client)
        exchange = client
        broker: LiveBroker | PaperBroker = live
        auth_state: dict[str, str | None] = {"problem": "Coinbase authentication not checked yet"}
        checked_at = [0.0]

        async def check_auth() -> None:
            try:
                await client.check_auth()
            except ExchangeError as exc:
                auth_state["problem"] = f"Coinbase: {exc}"
            else:
                auth_state["problem"] = None
                live.auth_failed = None
            checked_at[0] = time.monotonic()

        async def coinbase_ready() -> str | None:
            stale = time.monotonic() - checked_at[0] > AUTH_CHECK_SECONDS
            if live.auth_failed and not stale:
                return f"Coinbase: {live.auth_failed}"
            # A refused order is checked again every AUTH_CHECK_SECONDS: a fixed key (or a passing refusal on
            # Coinbase's side) brings the executor back without a restart; an authenticated call clears it.
            if stale or auth_state["problem"]:
                await check_auth()
            return auth_state["problem"]

        readiness.append(coinbase_ready)
        on_stop.append(client.close)
    else:
        broker = PaperBroker(
            slippage_bps=settings.paper_slippage_bps,
            fee_rate=settings.paper_taker_fee_rate,
            starting_cash=settings.paper_starting_cash_usd,
            granularity=settings.candle_granularity,
            replay=replay,
            clock=clock,
        )
    # A live order's lease outlasts the client's worst case for one order: every attempt timing out, plus backoff.
    worst_case = coinbase_attempt_budget_seconds(settings)
    executor = Executor(
        repository,
        broker,
        clock,
        lease=timedelta(seconds=min(worst_case, 3600) + 30),
        order_window=timedelta(seconds=settings.orchestrator_pending_window_seconds),
        exit_rules=ExitRules(max_holding=exit_rules_max_holding(settings)),
        granularity=settings.candle_granularity,
        refresh_clock=clock.refresh,
    )
    servicer = TradeExecutorServicer(executor)
    on_stop.insert(0, lambda: servicer.drain(settings.shutdown_grace_seconds))  # before the Coinbase client closes

    recovered = asyncio.Event()  # the reconciliation starts after the start-up recovery

    async def recover() -> None:
        await asyncio.sleep(0.5)
        try:
            resolved, unresolved = await executor.recover()
        finally:
            recovered.set()
        if resolved or unresolved:
            log.info(
                "start-up: resolved %d execution(s) left unfinished by an earlier run, %d still unfinished",
                resolved,
                unresolved,
            )

    background.append(recover)
    if not replay:  # in replay the replay runs ManagePositions once per released candle, on market time

        async def positions_loop() -> None:
            await recovered.wait()
            await run_periodically("positions", settings.position_check_interval_seconds, executor.manage_positions)

        background.append(positions_loop)
    if exchange is not None:
        lookback = timedelta(hours=settings.reconcile_lookback_hours)

        async def reconcile_loop() -> None:
            assert exchange is not None
            await recovered.wait()
            # The start-up recovery has just resolved what a crash left; the first comparison follows a little later.
            await run_periodically(
                "reconcile",
                settings.reconcile_interval_seconds,
                lambda: executor.reconcile(exchange, lookback),
                initial_delay=min(settings.reconcile_interval_seconds, 60.0),
            )

        background.append(reconcile_loop)
    return ServiceParts(
        register=[lambda server: executor_pb2_grpc.add_TradeExecutorServiceServicer_to_server(servicer, server)],
        readiness=readiness,
        background=background,
        on_stop=on_stop,
    )


DEFINITION = ServiceDefinition(
    name="executor",
    full_service_name=FULL_SERVICE_NAME,
    port_setting="trade_executor_port",
    metrics_port_setting="trade_executor_metrics_port",
    build=build,
)
