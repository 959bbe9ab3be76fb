"""Property-based bad input on every RPC: random and extreme ids, huge and odd strings, out-of-range timestamps.

Each service runs as a real process; hypothesis drives it through the generated stubs. The only acceptable
answers are OK, INVALID_ARGUMENT, NOT_FOUND and FAILED_PRECONDITION (never INTERNAL or UNKNOWN), and a rejected
request leaves the database exactly as it was. Bytes that are not protobuf at all get INVALID_ARGUMENT, and the
service logs one line for them (per method and minute), not one traceback per request."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from common.database import create_engine
from common.tables import metadata
from crypto_trading.v1 import (
    bridge_pb2,
    bridge_pb2_grpc,
    executor_pb2,
    executor_pb2_grpc,
    generator_pb2,
    generator_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
)
from testkit.databases import migrated_sqlite
from testkit.ports import free_port
from testkit.processes import ServiceProcesses

pytestmark = pytest.mark.slow

ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
}
EXTREME_INTS = st.one_of(
    st.sampled_from([0, -1, 1, 7, 2**31 - 1, 2**31, -(2**31), 2**63 - 1, -(2**63)]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
INT32 = st.one_of(st.sampled_from([0, -1, 1, 3, 2**31 - 1, -(2**31)]), st.integers(-(2**31), 2**31 - 1))
ODD_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(min_size=600, max_size=3000),
    st.sampled_from(["", " ", "NaN", "-Infinity", "1e309", "BTC-USD\x00", "btc-usd", "💥-USD", "A" * 20_000]),
)
HYPOTHESIS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)


async def _table_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return {
                t.name: int((await conn.execute(select(func.count()).select_from(t))).scalar_one())
                for t in metadata.sorted_tables
            }
    finally:
        await engine.dispose()


def table_counts(url: str) -> dict[str, int]:
    return asyncio.run(_table_counts(url))


class Running:
    def __init__(self, address: str, url: str, log: Path) -> None:
        self.address = address
        self.url = url
        self.log = log
        self.channel = grpc.insecure_channel(address)

    def check(self, call: Callable[[], Any], *, may_write: bool = False) -> grpc.StatusCode:
        before = table_counts(self.url)
        try:
            result = call()
            if isinstance(result, Iterator):
                list(result)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
        assert code in ALLOWED, code
        if code != grpc.StatusCode.OK or not may_write:
            assert table_counts(self.url) == before
        return code


def _start(kind: str, tmp: Path) -> Iterator[Running]:
    """``kind`` as a real process on a fresh migrated SQLite database, its peers unreachable."""
    url = asyncio.run(migrated_sqlite(tmp / "db.sqlite"))
    processes = ServiceProcesses(url, tmp / "logs", {"MARKET_DATA_SOURCE": "database"})
    started = processes.spawn(kind, kind, free_port())
    try:
        asyncio.run(processes.wait_serving())
        running = Running(started.address, url, started.log)
        yield running
        running.channel.close()
    finally:
        processes.stop()


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    yield from _start("bridge", tmp_path_factory.mktemp("bridge"))


@pytest.fixture(scope="module")
def orchestrator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    yield from _start("orchestrator", tmp_path_factory.mktemp("orchestrator"))


@pytest.fixture(scope="module")
def executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    yield from _start("executor", tmp_path_factory.mktemp("executor"))


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    yield from _start("generator", tmp_path_factory.mktemp("generator"))


@HYPOTHESIS
@given(ids=st.lists(EXTREME_INTS, max_size=30) | st.lists(st.integers(1, 10), min_size=1001, max_size=1100))
def test_bridge(bridge: Running, ids: list[int]) -> None:
    stub = bridge_pb2_grpc.SignalBridgeServiceStub(bridge.channel)
    bridge.check(lambda: stub.Bridge(bridge_pb2.BridgeRequest(signal_ids=ids), timeout=10))


@HYPOTHESIS
@given(ids=st.lists(EXTREME_INTS, max_size=20), max_trades=INT32)
def test_orchestrate(orchestrator: Running, ids: list[int], max_trades: int) -> None:
    stub = orchestrator_pb2_grpc.TradeOrchestratorServiceStub(orchestrator.channel)
    request = orchestrator_pb2.OrchestrateRequest(recommendation_ids=ids, max_trades=max_trades)
    # A valid request runs a cycle (it may legitimately write); a rejected one changes nothing.
    orchestrator.check(lambda: stub.Orchestrate(request, timeout=10), may_write=True)


@HYPOTHESIS
@given(halted=st.booleans(), reason=ODD_TEXT, actor=ODD_TEXT)
def test_set_trading_halt(orchestrator: Running, halted: bool, reason: str, actor: str) -> None:
    stub = orchestrator_pb2_grpc.TradeOrchestratorServiceStub(orchestrator.channel)
    request = orchestrator_pb2.SetTradingHaltRequest(halted=halted, reason=reason, actor=actor)
    # A valid request legitimately writes the halt flag; a rejected one changes nothing.
    orchestrator.check(lambda: stub.SetTradingHalt(request, timeout=10), may_write=True)


@HYPOTHESIS
@given(rec_id=EXTREME_INTS)
def test_process_recommendation(executor: Running, rec_id: int) -> None:
    stub = executor_pb2_grpc.TradeExecutorServiceStub(executor.channel)
    request = executor_pb2.ProcessRecommendationRequest(recommendation_id=rec_id)
    code = executor.check(lambda: stub.ProcessRecommendation(request, timeout=10))
    assert code != grpc.StatusCode.OK  # there are no recommendations at all


@HYPOTHESIS
@given(ids=st.lists(EXTREME_INTS, min_size=1, max_size=20))
def test_execute_recommendations_stream(executor: Running, ids: list[int]) -> None:
    stub = executor_pb2_grpc.TradeExecutorServiceStub(executor.channel)
    requests = [executor_pb2.ExecuteRecommendationsRequest(recommendation_id=i) for i in ids]
    responses: list[executor_pb2.ExecuteRecommendationsResponse] = []

    def call() -> None:
        responses.extend(stub.ExecuteRecommendations(iter(requests), timeout=20))

    assert executor.check(call) == grpc.StatusCode.OK
    assert len(responses) == len(ids)
    assert all(r.result.error_code in ("INVALID_ARGUMENT", "NOT_FOUND") for r in responses)


@HYPOTHESIS
@given(
    symbols=st.lists(ODD_TEXT, max_size=5) | st.lists(st.just("BTC-USD"), min_size=600, max_size=700),
    seconds=st.one_of(st.none(), st.integers(-(2**40), 2**40)),
    nanos=st.integers(-(2**31), 2**31 - 1),
)
def test_generate(generator: Running, symbols: list[str], seconds: int | None, nanos: int) -> None:
    stub = generator_pb2_grpc.SignalGeneratorServiceStub(generator.channel)
    request = generator_pb2.GenerateRequest(symbols=symbols)
    if seconds is not None:
        request.as_of.CopyFrom(Timestamp(seconds=seconds, nanos=nanos))
    generator.check(lambda: stub.Generate(request, timeout=30))


GARBAGE = b"\xff\xff garbage"  # not protobuf: ends inside a varint tag
RAW: dict[str, None] = {"request_serializer": None, "response_deserializer": None}  # bytes as they are
UNARY_METHODS = {
    "bridge": "/crypto_trading.v1.SignalBridgeService/Bridge",
    "orchestrator": "/crypto_trading.v1.TradeOrchestratorService/Orchestrate",
    "executor": "/crypto_trading.v1.TradeExecutorService/ProcessRecommendation",
    "generator": "/crypto_trading.v1.SignalGeneratorService/Generate",
}


def _malformed_lines(running: Running, method: str) -> list[str]:
    return [
        line
        for line in running.log.read_text(errors="replace").splitlines()
        if method in line and "INVALID_ARGUMENT" in line
    ]


@pytest.mark.parametrize("kind", sorted(UNARY_METHODS))
def test_garbage_bytes_unary(kind: str, request: pytest.FixtureRequest) -> None:
    running: Running = request.getfixturevalue(kind)
    method = UNARY_METHODS[kind]
    call = running.channel.unary_unary(method, **RAW)  # no serializer: the raw bytes go out
    for _ in range(10):  # check(): the database is left exactly as it was
        assert running.check(lambda: call(GARBAGE, timeout=10)) == grpc.StatusCode.INVALID_ARGUMENT
    time.sleep(0.5)  # let the log file catch up
    text = running.log.read_text(errors="replace")
    assert len(_malformed_lines(running, method)) == 1
    assert "Traceback" not in text
    assert "DecodeError" not in text


def test_garbage_bytes_executor_stream(executor: Running) -> None:
    method = "/crypto_trading.v1.TradeExecutorService/ExecuteRecommendations"
    call = executor.channel.stream_stream(method, **RAW)
    valid = executor_pb2.ExecuteRecommendationsRequest(recommendation_id=1).SerializeToString()
    for requests in ([GARBAGE], [valid, GARBAGE], [GARBAGE] * 3):  # id 1 does not exist: nothing is written
        assert executor.check(functools.partial(call, iter(requests), timeout=10)) == grpc.StatusCode.INVALID_ARGUMENT
    time.sleep(0.5)
    assert len(_malformed_lines(executor, method)) == 1
    assert "Traceback" not in executor.log.read_text(errors="replace")
