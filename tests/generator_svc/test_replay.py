"""Replay mode (`make run`): the generator answers for the replay's market time and publishes its progress."""

from __future__ import annotations

import asyncio
from datetime import datetime

import grpc
from sqlalchemy import select

from common.control import ControlKey
from common.database import create_engine
from common.server import running_service
from common.tables import system_control
from crypto_trading.v1 import generator_pb2, generator_pb2_grpc
from generator_svc.replay import ReplayClock
from generator_svc.server import DEFINITION
from tests.conftest import make_settings
from tests.support.seed import seed_bundled

HOUR = 3600


def test_replay_clock_reports_its_market_time_and_progress() -> None:
    clock = ReplayClock([0, HOUR, 2 * HOUR], seconds_per_candle=1.0)
    assert clock.current is None
    assert clock.progress == "0/3"
    released = clock.release()
    assert released is not None
    assert clock.current == released
    assert released.timestamp() == HOUR  # the close of the first candle
    assert clock.progress == "1/3"
    clock.release()
    clock.release()
    assert clock.finished
    assert clock.progress == "3/3"


async def _controls(url: str) -> dict[str, str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(system_control.c.key, system_control.c.value))
            return {key: value for key, value in rows}
    finally:
        await engine.dispose()


async def test_generate_without_as_of_answers_for_the_replay_time(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        frames = {s: await seed_bundled(engine, s, 600) for s in ("ETH-USD", "LTC-USD")}
    finally:
        await engine.dispose()
    settings = make_settings(
        database_url,
        market_data_source="replay",
        replay_warmup_candles=520,
        replay_seconds_per_candle=3600,  # one candle now, the next in an hour: the replay stands still
        signal_bridge_addr="127.0.0.1:1",
    )
    async with (
        running_service(DEFINITION, settings) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        stub: generator_pb2_grpc.SignalGeneratorServiceAsyncStub = generator_pb2_grpc.SignalGeneratorServiceStub(
            channel
        )
        controls: dict[str, str] = {}
        for _ in range(200):
            controls = await _controls(database_url)
            if ControlKey.REPLAY_CLOCK in controls:
                break
            await asyncio.sleep(0.1)
        response = await stub.Generate(generator_pb2.GenerateRequest(symbols=["ETH-USD"]), timeout=30)
    (signal,) = response.signals
    released, total = (int(x) for x in controls[ControlKey.REPLAY_PROGRESS].split("/"))
    # The first candle is released (REPLAY_CLOCK) but not counted: it counts once the whole pipeline has run on it,
    # and no bridge, orchestrator or executor runs here (the replay waits for them).
    assert released == 0
    assert total > 1
    # Without as_of, the signal is for the candle the replay has just released, not for today's clock.
    replay_time = datetime.fromisoformat(controls[ControlKey.REPLAY_CLOCK])
    assert signal.candle_time.ToSeconds() == int(replay_time.timestamp()) - HOUR
    assert int(frames["ETH-USD"]["timestamp"].iloc[0]) < signal.candle_time.ToSeconds()
