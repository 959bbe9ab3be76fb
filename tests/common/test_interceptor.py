"""common.interceptor and malformed requests: a request that is not valid protobuf gets INVALID_ARGUMENT with a
message on every kind of method (the services' own, health and reflection), changes nothing, and is logged at
most once per minute per method (the next line counts the rest). Through real gRPC channels with raw bytes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from prometheus_client import REGISTRY
from sqlalchemy import select

from common.database import create_engine
from common.interceptor import DomainErrorInterceptor, RateLimitedLog
from common.server import running_service
from common.tables import metadata
from crypto_trading.v1 import common_pb2, executor_pb2
from executor_svc.server import DEFINITION as EXECUTOR
from orchestrator_svc.server import DEFINITION as ORCHESTRATOR
from tests.conftest import make_settings
from tests.support.seed import seed_price, seed_recommendation

GARBAGE = b"\xff\xff garbage"
RAW: dict[str, None] = {"request_serializer": None, "response_deserializer": None}  # bytes as they are
EXECUTOR_SERVICE = "/crypto_trading.v1.TradeExecutorService"
PROCESS = f"{EXECUTOR_SERVICE}/ProcessRecommendation"
STREAM = f"{EXECUTOR_SERVICE}/ExecuteRecommendations"
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def malformed_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "common.interceptor" and "INVALID_ARGUMENT" in r.getMessage() and r.levelno == logging.WARNING
    ]


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


def rejected_count(method: str) -> float:
    value = REGISTRY.get_sample_value("cts_rpc_latency_seconds_count", {"method": method, "code": "INVALID_ARGUMENT"})
    return value or 0.0


async def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return {
                table.name: sorted((tuple(row) for row in (await conn.execute(select(table))).all()), key=repr)
                for table in metadata.sorted_tables
            }
    finally:
        await engine.dispose()


async def seeded(url: str) -> int:
    """A BTC-USD price and one PENDING BUY recommendation (its id)."""
    engine = create_engine(url)
    try:
        await seed_price(engine, "BTC-USD", "9000")
        return await seed_recommendation(engine)
    finally:
        await engine.dispose()


async def stream_answers(channel: grpc.aio.Channel, requests: Iterable[bytes]) -> tuple[list[bytes], Any]:
    """The answers of a raw ExecuteRecommendations stream and the error that ended it (None: OK)."""

    async def send() -> AsyncIterator[bytes]:
        for request in requests:
            yield request

    answers: list[bytes] = []
    call = channel.stream_stream(STREAM, **RAW)(send(), timeout=10)
    try:
        async for answer in call:
            answers.append(answer)
    except grpc.aio.AioRpcError as exc:
        return answers, exc
    return answers, None


def test_the_garbage_is_really_not_protobuf() -> None:
    for message in (executor_pb2.ProcessRecommendationRequest, executor_pb2.ExecuteRecommendationsRequest):
        with pytest.raises(DecodeError):
            message.FromString(GARBAGE)


@asynccontextmanager
async def executor_channel(sqlite_url: str) -> AsyncIterator[grpc.aio.Channel]:
    """A paper executor on ``sqlite_url`` and a raw channel to it."""
    settings = make_settings(sqlite_url, market_data_source="database")
    async with (
        running_service(EXECUTOR, settings) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        yield channel


async def test_garbage_to_a_unary_rpc_is_invalid_argument_logged_once_and_changes_nothing(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rec = await seeded(sqlite_url)
    before = await snapshot(sqlite_url)
    counted = rejected_count(PROCESS)
    async with executor_channel(sqlite_url) as channel:
        call = channel.unary_unary(PROCESS, **RAW)  # no serializer: the bytes go out as they are
        for _ in range(20):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(GARBAGE, timeout=10)
            assert caught.value.code() == INVALID_ARGUMENT
            assert caught.value.details() == (
                "the request is not a valid crypto_trading.v1.ProcessRecommendationRequest message"
            )
        assert await snapshot(sqlite_url) == before
        # The same channel and method still serve a valid request.
        valid = executor_pb2.ProcessRecommendationRequest(recommendation_id=rec).SerializeToString()
        answer = executor_pb2.ProcessRecommendationResponse.FromString(await call(valid, timeout=10))
        assert answer.result.status == common_pb2.EXECUTION_STATUS_EXECUTED
    assert malformed_lines(caplog) == [
        f"rpc {PROCESS} -> INVALID_ARGUMENT: the request is not a valid "
        "crypto_trading.v1.ProcessRecommendationRequest message"
    ]
    assert errors_logged(caplog) == []
    assert rejected_count(PROCESS) - counted == 20


async def test_garbage_in_the_executor_stream_is_invalid_argument_logged_once_and_changes_nothing(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rec = await seeded(sqlite_url)
    before = await snapshot(sqlite_url)
    counted = rejected_count(STREAM)
    valid = executor_pb2.ExecuteRecommendationsRequest(recommendation_id=rec).SerializeToString()
    async with executor_channel(sqlite_url) as channel:
        for _ in range(10):
            answers, error = await stream_answers(channel, [GARBAGE])
            assert answers == []
            assert error is not None
            assert error.code() == INVALID_ARGUMENT
            assert error.details() == (
                "the request is not a valid crypto_trading.v1.ExecuteRecommendationsRequest message"
            )
        assert await snapshot(sqlite_url) == before
        # The requests before a malformed one are answered, then the stream ends INVALID_ARGUMENT.
        answers, error = await stream_answers(channel, [valid, GARBAGE, valid])
        assert error is not None
        assert error.code() == INVALID_ARGUMENT
        results = [executor_pb2.ExecuteRecommendationsResponse.FromString(a).result for a in answers]
        assert [(r.recommendation_id, r.status) for r in results] == [(rec, common_pb2.EXECUTION_STATUS_EXECUTED)]
    assert malformed_lines(caplog) == [
        f"rpc {STREAM} -> INVALID_ARGUMENT: the request is not a valid "
        "crypto_trading.v1.ExecuteRecommendationsRequest message"
    ]
    assert errors_logged(caplog) == []
    assert rejected_count(STREAM) - counted == 11


async def test_every_service_answers_garbage_with_invalid_argument(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Another service's unary RPC and the standard health and reflection methods, through the same host."""
    caplog.set_level(logging.INFO)
    before = await snapshot(sqlite_url)
    methods = [
        "/crypto_trading.v1.TradeOrchestratorService/SetTradingHalt",
        "/crypto_trading.v1.TradeOrchestratorService/Orchestrate",
        "/grpc.health.v1.Health/Check",
    ]
    async with (
        running_service(ORCHESTRATOR, make_settings(sqlite_url)) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        for method in methods:
            for _ in range(3):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await channel.unary_unary(method, **RAW)(GARBAGE, timeout=10)
                assert caught.value.code() == INVALID_ARGUMENT, method
        watch = channel.unary_stream("/grpc.health.v1.Health/Watch", **RAW)(GARBAGE, timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in watch:
                pass
        assert caught.value.code() == INVALID_ARGUMENT
        info = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", **RAW)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in info(iter([GARBAGE]), timeout=10):
                pass
        assert caught.value.code() == INVALID_ARGUMENT
        # Health itself still answers.
        status = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
    assert await snapshot(sqlite_url) == before
    lines = malformed_lines(caplog)
    assert len(lines) == len(methods) + 2  # one per method, not one per request
    assert all(any(m in line for line in lines) for m in methods)
    assert errors_logged(caplog) == []


async def test_the_log_line_repeats_after_a_minute_counting_the_requests_it_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bare aio server with the interceptor, a clock under the test's control, and a stream-unary method."""
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    seen: list[Timestamp] = []

    async def count(requests: AsyncIterator[Timestamp], context: Any) -> Timestamp:
        async for request in requests:
            seen.append(request)
        return Timestamp(seconds=len(seen))

    handlers = grpc.method_handlers_generic_handler(
        "test.Counter",
        {
            "Count": grpc.stream_unary_rpc_method_handler(
                count, request_deserializer=Timestamp.FromString, response_serializer=Timestamp.SerializeToString
            )
        },
    )
    server = grpc.aio.server(interceptors=[DomainErrorInterceptor(RateLimitedLog(clock=clock))])
    server.add_generic_rpc_handlers((handlers,))
    health_pb2_grpc.add_HealthServicer_to_server(HealthServicer(), server)
    reflection.enable_server_reflection((reflection.SERVICE_NAME,), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    check = "/grpc.health.v1.Health/Check"
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:

            async def garbage_check() -> None:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await channel.unary_unary(check, **RAW)(GARBAGE, timeout=10)
                assert caught.value.code() == INVALID_ARGUMENT
                assert caught.value.details() == "the request is not a valid grpc.health.v1.HealthCheckRequest message"

            for _ in range(5):
                await garbage_check()
            clock.now += 59.0
            await garbage_check()
            assert len(malformed_lines(caplog)) == 1
            clock.now += 1.5  # a minute after the first line
            await garbage_check()
            await garbage_check()
            lines = malformed_lines(caplog)
            assert lines == [
                f"rpc {check} -> INVALID_ARGUMENT: the request is not a valid grpc.health.v1.HealthCheckRequest "
                "message",
                f"rpc {check} -> INVALID_ARGUMENT: the request is not a valid grpc.health.v1.HealthCheckRequest "
                "message (and 5 more since the last report)",
            ]
            # Another method has its own minute; a stream-unary RPC reads the valid requests before the garbage.
            valid = Timestamp(seconds=7).SerializeToString()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await channel.stream_unary("/test.Counter/Count", **RAW)(
                    iter([valid, valid, GARBAGE, valid]), timeout=10
                )
            assert caught.value.code() == INVALID_ARGUMENT
            assert caught.value.details() == "the request is not a valid google.protobuf.Timestamp message"
            assert [t.seconds for t in seen] == [7, 7]
            assert len(malformed_lines(caplog)) == 3
            answer = await channel.stream_unary("/test.Counter/Count", **RAW)(iter([valid]), timeout=10)
            assert Timestamp.FromString(answer).seconds == 3
    finally:
        await server.stop(0)
    assert errors_logged(caplog) == []


def test_rate_limited_log_once_per_interval_per_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    limited = RateLimitedLog(interval=60.0, clock=clock)
    assert limited.warning("a", "problem %s", "a")
    assert not limited.warning("a", "problem %s", "a")
    assert limited.warning("b", "problem %s", "b")  # its own key
    clock.now += 59.9
    assert not limited.warning("a", "problem %s", "a")
    clock.now += 0.1
    assert limited.warning("a", "problem %s", "a")
    clock.now += 60.0
    assert limited.warning("a", "problem %s", "a")  # nothing left out since the last line: no count
    assert [r.getMessage() for r in caplog.records] == [
        "problem a",
        "problem b",
        "problem a (and 2 more since the last report)",
        "problem a",
    ]
    assert {r.levelno for r in caplog.records} == {logging.WARNING}
