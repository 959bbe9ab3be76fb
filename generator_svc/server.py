"""Wiring of the signal generator: the model (loaded at start-up, or the process refuses to start), the
generation cycle behind the Generate RPC and the loop, the replay, and the bridge nudge."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from common.candles import candle_seconds
from common.clock import utc_now
from common.config import Settings
from common.control import ControlKey
from common.loops import run_periodically
from common.service_host import ServiceDefinition, ServiceParts
from crypto_trading.v1 import generator_pb2, generator_pb2_grpc
from generator_svc.bridge_nudge import BridgeNudge
from generator_svc.candle_refresh import CandleRefresher
from generator_svc.features import HISTORY_WINDOW, MIN_HISTORY
from generator_svc.generation import GenerationResult, GeneratorConfig, SignalGenerator
from generator_svc.market_data import CoinbaseMarketClient
from generator_svc.model_store import load_model
from generator_svc.pipeline_link import GrpcPipeline
from generator_svc.replay import ReplayClock, out_of_sample
from generator_svc.replay_conductor import ReplayConductor
from generator_svc.repository import GeneratorRepository
from generator_svc.service import SignalGeneratorServicer
from generator_svc.universe import UniverseRules

FULL_SERVICE_NAME = generator_pb2.DESCRIPTOR.services_by_name["SignalGeneratorService"].full_name
log = logging.getLogger(__name__)


async def build(settings: Settings, engine: AsyncEngine) -> ServiceParts:
    model = await asyncio.to_thread(load_model, settings.model_dir, settings.model_path)
    repository = GeneratorRepository(engine, settings.candle_granularity)
    replay = settings.market_data_source == "replay"
    config = GeneratorConfig(
        buy_threshold=settings.buy_threshold,
        sell_threshold=settings.sell_threshold,
        universe=UniverseRules(
            size=settings.universe_size,
            min_history=MIN_HISTORY + 1,
            allowlist=frozenset(settings.symbol_allowlist),
            denylist=frozenset(settings.symbol_denylist),
        ),
        data_source={"replay": "replay", "coinbase": "coinbase", "database": "database"}[settings.market_data_source],
        is_mock=replay,
        # Replay: signals are stamped with the market time of their candle's close (the bridge ages them on it).
        market_time_stamps=replay,
    )
    on_stop: list[Callable[[], Awaitable[None]]] = []
    refresher: CandleRefresher | None = None
    if settings.market_data_source == "coinbase":
        client = CoinbaseMarketClient(
            settings.coinbase_api_base_url,
            max_retries=settings.coinbase_max_retries,
            backoff=settings.coinbase_backoff_seconds,
            timeout=settings.coinbase_timeout_seconds,
        )
        on_stop.append(client.close)
        refresher = CandleRefresher(
            client,
            repository,
            granularity=settings.candle_granularity,
            history_hours=HISTORY_WINDOW + 24,
            rules=config.universe,
            clock=utc_now,
        )
    generator = SignalGenerator(
        model, repository, config, utc_now, products=refresher.products if refresher is not None else None
    )
    nudge = BridgeNudge(settings)
    on_stop.append(nudge.close)

    def after(result: GenerationResult) -> None:
        nudge.nudge(result.created_actionable_ids)

    replay_clock: ReplayClock | None = None

    def replay_time() -> datetime | None:
        """In replay mode, a Generate without as_of answers for the replay's market time."""
        return replay_clock.current if replay_clock is not None else None

    servicer = SignalGeneratorServicer(
        generator, utc_now, settings.generator_max_symbols, after, default_as_of=replay_time if replay else None
    )

    async def cycle() -> None:
        as_of = utc_now()  # the cycle's moment: candles that close while it refreshes belong to the next cycle
        if refresher is not None:  # production: bring the candles up to date first (a failure fails the cycle)
            await refresher.refresh()
        after(await generator.generate(None, as_of))

    pipeline = GrpcPipeline(settings)
    on_stop.append(pipeline.close)

    async def set_market_time(when: datetime) -> None:
        await repository.set_control(ControlKey.REPLAY_CLOCK, when.isoformat())

    conductor = ReplayConductor(
        pipeline,
        set_market_time,
        step=timedelta(seconds=settings.orchestrator_interval_seconds),
        candle=timedelta(seconds=candle_seconds(settings.candle_granularity)),
    )

    async def replay_loop() -> None:
        nonlocal replay_clock
        # REPLAY_WARMUP_CANDLES counts hours of history (hourly bars), whatever the candles' granularity.
        warmup = settings.replay_warmup_candles * 3600 // candle_seconds(settings.candle_granularity)
        timeline = out_of_sample(await repository.replay_timeline(warmup), model.card)
        clock = ReplayClock(
            timeline, settings.replay_seconds_per_candle, step=candle_seconds(settings.candle_granularity)
        )
        previous = await repository.get_control(ControlKey.REPLAY_CLOCK)
        clock.resume_after(datetime.fromisoformat(previous) if previous else None)
        replay_clock = clock
        log.info("replaying %d candles, one every %ss", len(timeline) - clock.position, clock.seconds_per_candle)
        await repository.set_control(ControlKey.REPLAY_PROGRESS, clock.progress)
        started, released = time.monotonic(), 0
        while not clock.finished:
            for _ in range(clock.due(started, time.monotonic(), released)):
                as_of = clock.release()
                if as_of is None:
                    break
                released += 1
                await repository.set_control(ControlKey.REPLAY_CLOCK, as_of.isoformat())
                # The pipeline runs on market time, step by step (generator_svc.replay_conductor): no nudges.
                await conductor.before_signals(as_of)
                try:
                    await generator.generate(None, as_of)
                except Exception:
                    log.exception("replay cycle at %s failed", as_of.isoformat())
                await conductor.after_signals(as_of)
                # Counted once the whole pipeline has run on the candle: "n/n" means the replay is complete.
                await repository.set_control(ControlKey.REPLAY_PROGRESS, clock.progress)
            await asyncio.sleep(max(0.01, min(1.0, settings.replay_seconds_per_candle / 4)))
        log.info("replay finished: every candle was released (%s)", clock.progress)

    background: list[Callable[[], Awaitable[None]]] = []
    if replay:
        background.append(replay_loop)
    else:
        background.append(nudge.run)
        background.append(lambda: run_periodically("generator", settings.generator_interval_seconds, cycle))

    async def model_loaded() -> str | None:
        return None if generator.model is not None else "model not loaded"

    return ServiceParts(
        register=[lambda server: generator_pb2_grpc.add_SignalGeneratorServiceServicer_to_server(servicer, server)],
        readiness=[model_loaded],
        background=background,
        on_stop=on_stop,
    )


DEFINITION = ServiceDefinition(
    name="generator",
    full_service_name=FULL_SERVICE_NAME,
    port_setting="signal_generator_port",
    metrics_port_setting="signal_generator_metrics_port",
    build=build,
)
