"""Generate through a real gRPC channel on SQLite and MariaDB."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from decimal import Decimal

import grpc
import pandas as pd
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select

from common.database import create_engine
from common.server import running_service
from common.tables import trading_signals
from crypto_trading.v1 import common_pb2, generator_pb2, generator_pb2_grpc
from generator_svc.server import DEFINITION
from tests.conftest import make_settings
from tests.support.seed import seed_bundled

SYMBOLS = ("ETH-USD", "LTC-USD")
ROWS = 600


@pytest.fixture
async def seeded(database_url: str) -> dict[str, pd.DataFrame]:
    engine = create_engine(database_url)
    try:
        return {s: await seed_bundled(engine, s, ROWS, end_index=10_000) for s in SYMBOLS}
    finally:
        await engine.dispose()


@pytest.fixture
async def stub(
    database_url: str, seeded: dict[str, pd.DataFrame]
) -> AsyncIterator[generator_pb2_grpc.SignalGeneratorServiceAsyncStub]:
    settings = make_settings(database_url, market_data_source="database", signal_bridge_addr="127.0.0.1:1")
    async with (
        running_service(DEFINITION, settings) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        stub: generator_pb2_grpc.SignalGeneratorServiceAsyncStub = generator_pb2_grpc.SignalGeneratorServiceStub(
            channel
        )
        yield stub


def _as_of(frame: pd.DataFrame, back: int = 0) -> Timestamp:
    """Just after the close of the candle ``back`` rows before the last one."""
    start = int(frame["timestamp"].iloc[-1 - back])
    return Timestamp(seconds=start + 3600 + 60)


async def _count(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(trading_signals))).scalar_one())
    finally:
        await engine.dispose()


async def test_generate_writes_one_signal_per_symbol_and_candle(
    stub: generator_pb2_grpc.SignalGeneratorServiceAsyncStub,
    seeded: dict[str, pd.DataFrame],
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="generator_svc.generation")
    request = generator_pb2.GenerateRequest(symbols=list(SYMBOLS), as_of=_as_of(seeded["ETH-USD"]))
    response = await stub.Generate(request, timeout=30)
    assert sorted(s.symbol for s in response.signals) == sorted(SYMBOLS)
    for signal in response.signals:
        frame = seeded[signal.symbol]
        assert signal.created
        assert signal.candle_time.ToSeconds() == int(frame["timestamp"].iloc[-1])
        assert Decimal(signal.price) == Decimal(repr(float(frame["close"].iloc[-1]))).quantize(Decimal("1e-8"))
        probabilities = [
            Decimal(signal.buy_probability),
            Decimal(signal.sell_probability),
            Decimal(signal.hold_probability),
        ]
        assert abs(sum(probabilities, Decimal(0)) - 1) <= Decimal("0.0003")
        kind = common_pb2.SignalType.Name(signal.signal_type).removeprefix("SIGNAL_TYPE_")
        expected = (
            "BUY" if probabilities[0] > Decimal("0.5") else "SELL" if probabilities[1] > Decimal("0.6") else "HOLD"
        )
        assert kind == expected
        assert signal.model.startswith("balanced_realistic_model_")
        assert signal.data_source == "database"
        prefix = f"Generated {kind} signal for {signal.symbol}"
        (record,) = [r for r in caplog.records if r.getMessage().startswith(prefix)]
        # HOLD (most signals) at DEBUG, BUY and SELL at INFO: an operator greps for those.
        assert record.levelno == (logging.DEBUG if kind == "HOLD" else logging.INFO)
    assert "Cycle as of " in caplog.text  # one INFO line per cycle with the counts
    assert await _count(database_url) == 2

    again = await stub.Generate(request, timeout=30)
    assert {s.id for s in again.signals} == {s.id for s in response.signals}
    assert not any(s.created for s in again.signals)
    assert await _count(database_url) == 2


async def test_concurrent_generates_write_once(
    stub: generator_pb2_grpc.SignalGeneratorServiceAsyncStub, seeded: dict[str, pd.DataFrame], database_url: str
) -> None:
    request = generator_pb2.GenerateRequest(symbols=list(SYMBOLS), as_of=_as_of(seeded["ETH-USD"], back=3))
    responses = await asyncio.gather(*(stub.Generate(request, timeout=30) for _ in range(4)))
    assert len({tuple(sorted(s.id for s in r.signals)) for r in responses}) == 1
    assert sum(s.created for r in responses for s in r.signals) == 2
    assert await _count(database_url) == 2


async def test_universe_when_no_symbols(
    stub: generator_pb2_grpc.SignalGeneratorServiceAsyncStub, seeded: dict[str, pd.DataFrame]
) -> None:
    response = await stub.Generate(generator_pb2.GenerateRequest(as_of=_as_of(seeded["ETH-USD"], back=5)), timeout=30)
    assert sorted(s.symbol for s in response.signals) == sorted(SYMBOLS)


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (generator_pb2.GenerateRequest(symbols=["not a symbol"]), grpc.StatusCode.INVALID_ARGUMENT),
        (generator_pb2.GenerateRequest(symbols=["ETH-USD"] * 501), grpc.StatusCode.INVALID_ARGUMENT),
        (
            generator_pb2.GenerateRequest(symbols=["ETH-USD"], as_of=Timestamp(seconds=4_000_000_000)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            generator_pb2.GenerateRequest(symbols=["ETH-USD"], as_of=Timestamp(seconds=1_600_000_000, nanos=-1)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (generator_pb2.GenerateRequest(symbols=["DOGE-USD"]), grpc.StatusCode.NOT_FOUND),
        (
            generator_pb2.GenerateRequest(symbols=["ETH-USD"], as_of=Timestamp(seconds=1_300_000_000)),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
    ],
)
async def test_bad_input_writes_nothing(
    stub: generator_pb2_grpc.SignalGeneratorServiceAsyncStub,
    database_url: str,
    request_: generator_pb2.GenerateRequest,
    code: grpc.StatusCode,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(request_, timeout=30)
    assert info.value.code() == code
    assert info.value.details()
    assert await _count(database_url) == 0


async def test_thresholds_are_applied(database_url: str, seeded: dict[str, pd.DataFrame]) -> None:
    settings = make_settings(
        database_url, market_data_source="database", signal_bridge_addr="127.0.0.1:1", buy_threshold=0.01
    )
    async with (
        running_service(DEFINITION, settings) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        stub: generator_pb2_grpc.SignalGeneratorServiceAsyncStub = generator_pb2_grpc.SignalGeneratorServiceStub(
            channel
        )
        response = await stub.Generate(
            generator_pb2.GenerateRequest(symbols=list(SYMBOLS), as_of=_as_of(seeded["ETH-USD"], back=7)), timeout=30
        )
    assert all(s.signal_type == common_pb2.SIGNAL_TYPE_BUY for s in response.signals)
    assert all(s.threshold == "0.0100" for s in response.signals)
