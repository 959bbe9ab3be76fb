"""Wiring of the trade executor: paper or live broker (live refuses to start without valid credentials and never
falls back to paper), crash recovery at start-up, and health that includes Coinbase authentication in live mode."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from common.clock import utc_now
from common.config import Settings
from common.service_host import ServiceDefinition, ServiceParts
from crypto_trading.v1 import executor_pb2, executor_pb2_grpc
from executor_svc.execution import Executor
from executor_svc.paper_broker import PaperBroker
from executor_svc.repository import ExecutorRepository
from executor_svc.service import TradeExecutorServicer

FULL_SERVICE_NAME = executor_pb2.DESCRIPTOR.services_by_name["TradeExecutorService"].full_name
AUTH_CHECK_SECONDS = 60.0
log = logging.getLogger(__name__)


async def build(settings: Settings, engine: AsyncEngine) -> ServiceParts:
    repository = ExecutorRepository(engine)
    readiness = []
    on_stop = []
    background = []
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
            if live.auth_failed:
                return f"Coinbase: {live.auth_failed}"
            if time.monotonic() - checked_at[0] > AUTH_CHECK_SECONDS or auth_state["problem"]:
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
            replay=settings.market_data_source == "replay",
            clock=utc_now,
        )
    # A live order's lease outlasts the client's worst case for one order: every attempt timing out, plus backoff.
    attempts = settings.coinbase_max_retries + 1
    backoff = settings.coinbase_backoff_seconds * 1.5 * (2**attempts - 1)  # jitter up to x1.5
    worst_case = attempts * settings.coinbase_timeout_seconds + backoff
    executor = Executor(repository, broker, utc_now, lease=timedelta(seconds=min(worst_case, 3600) + 30))
    servicer = TradeExecutorServicer(executor)

    async def recover() -> None:
        await asyncio.sleep(0.5)
        resolved = await executor.recover()
        if resolved:
            log.info("resolved %d execution(s) left unfinished by an earlier run", resolved)

    background.append(recover)
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
