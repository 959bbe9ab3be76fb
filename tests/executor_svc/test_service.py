"""The executor through a real gRPC channel: paper and live (against the fake Coinbase), exactly once."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select

from common.control import ControlKey
from common.server import running_service
from common.tables import (
    paper_balances,
    positions,
    system_control,
    trade_executions,
)
from crypto_trading.v1 import common_pb2, executor_pb2, executor_pb2_grpc
from executor_svc.client_order_id import client_order_id
from executor_svc.server import DEFINITION
from tests.conftest import make_settings
from tests.support.fake_coinbase import FakeCoinbase, live_settings
from tests.support.rows import execution_row, rec_status
from tests.support.seed import seed_buys, seed_price, seed_recommendation

EXECUTED = common_pb2.EXECUTION_STATUS_EXECUTED
FAILED = common_pb2.EXECUTION_STATUS_FAILED
PENDING = common_pb2.EXECUTION_STATUS_PENDING


async def process(port: int, rec_id: int) -> executor_pb2.ExecutionResult:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = executor_pb2_grpc.TradeExecutorServiceStub(channel)
        response = await stub.ProcessRecommendation(
            executor_pb2.ProcessRecommendationRequest(recommendation_id=rec_id), timeout=30
        )
        return response.result


async def installation_id(engine: Any) -> str:
    async with engine.connect() as conn:
        query = select(system_control.c.value).where(system_control.c.key == ControlKey.INSTALLATION_ID.value)
        return str((await conn.execute(query)).scalar_one())


async def test_paper_buy_then_sell_and_replay(database_url: str, engine: Any) -> None:
    buy = await seed_recommendation(engine, symbol="BTC-USD", signal_type="BUY", amount_usd=Decimal("100"))
    sell = await seed_recommendation(engine, symbol="BTC-USD", signal_type="SELL", amount_crypto=Decimal("0.005"))
    async with running_service(DEFINITION, make_settings(database_url, market_data_source="database")) as service:
        first = await process(service.port, buy)
        assert first.status == EXECUTED
        assert first.mode == common_pb2.EXECUTION_MODE_PAPER
        assert first.client_order_id == client_order_id(await installation_id(engine), buy)
        assert Decimal(first.average_price) == Decimal("9004.5")  # 5 bps slippage against us
        assert Decimal(first.filled_size) == (Decimal(100) / Decimal("9004.5")).quantize(Decimal("1e-8"), "ROUND_DOWN")
        assert Decimal(first.fees) == (Decimal(first.filled_size) * Decimal("9004.5") * Decimal("0.006")).quantize(
            Decimal("1e-8")
        )
        again = await process(service.port, buy)
        assert again.replayed
        assert again.exchange_order_id == first.exchange_order_id
        sold = await process(service.port, sell)
        assert sold.status == EXECUTED
    assert await rec_status(engine, buy) == "EXECUTED"
    async with engine.connect() as conn:
        balances = dict((await conn.execute(select(paper_balances.c.asset, paper_balances.c.available))).all())
        executions = (await conn.execute(select(func.count()).select_from(trade_executions))).scalar_one()
        position = (await conn.execute(select(positions))).one()
    assert executions == 2
    # The SELL closes the whole position, whatever amount_crypto it names.
    assert Decimal(sold.filled_size) == Decimal(first.filled_size)
    assert balances["BTC"] == 0
    assert position.status == "CLOSED"
    assert position.open_key is None
    assert position.exit_reason == "signal"
    assert position.exit_recommendation_id == sell
    proceeds = (Decimal(sold.filled_size) * Decimal(sold.average_price)).quantize(Decimal("1e-8"))
    cost = (Decimal(first.filled_size) * Decimal(first.average_price)).quantize(Decimal("1e-8")) + Decimal(first.fees)
    assert position.realized_pnl == proceeds - Decimal(sold.fees) - cost


async def test_paper_sell_without_holdings_fails(database_url: str, engine: Any) -> None:
    sell = await seed_recommendation(engine, symbol="BTC-USD", signal_type="SELL", amount_crypto=Decimal("1"))
    async with running_service(DEFINITION, make_settings(database_url, market_data_source="database")) as service:
        result = await process(service.port, sell)
    assert result.status == FAILED
    assert "no open PAPER position in BTC-USD" in result.error_reason
    assert (await execution_row(engine, sell)).error_code == "NO_POSITION"
    assert await rec_status(engine, sell) == "FAILED"


async def test_paper_replicas_settle_each_recommendation_once_and_keep_the_books(
    database_url: str, engine: Any
) -> None:
    """Two paper executors, unary calls and streams racing over the same recommendations (group commits of many
    sizes): one execution each, and the paper cash equals the starting cash minus what the fills cost."""
    symbols = [f"S{i:02d}-USD" for i in range(40)]  # one position per symbol: 40 symbols
    for i, symbol in enumerate(symbols):
        await seed_price(engine, symbol, str(10 + i))
    buys = [await seed_recommendation(engine, symbol=s, amount_usd=Decimal(10 + i)) for i, s in enumerate(symbols)]
    settings = make_settings(database_url, market_data_source="database")
    async with (
        running_service(DEFINITION, settings) as one,
        running_service(DEFINITION, settings) as two,
        grpc.aio.insecure_channel(f"127.0.0.1:{one.port}") as channel_one,
        grpc.aio.insecure_channel(f"127.0.0.1:{two.port}") as channel_two,
    ):

        async def stream(channel: grpc.aio.Channel, ids: list[int]) -> list[executor_pb2.ExecutionResult]:
            stub = executor_pb2_grpc.TradeExecutorServiceStub(channel)
            requests = [executor_pb2.ExecuteRecommendationsRequest(recommendation_id=i) for i in ids]
            return [r.result async for r in stub.ExecuteRecommendations(iter(requests))]

        unary = [process(port, rec) for rec in buys[::3] for port in (one.port, two.port)]
        streamed, single = await asyncio.gather(
            asyncio.gather(stream(channel_one, buys), stream(channel_two, buys[::-1])), asyncio.gather(*unary)
        )
    results = [*streamed[0], *streamed[1], *single]
    assert {r.status for r in results} == {EXECUTED}
    by_rec: dict[int, set[str]] = {}
    for r in results:
        by_rec.setdefault(r.recommendation_id, set()).add(r.exchange_order_id)
    assert sorted(by_rec) == sorted(buys)
    assert all(len(orders) == 1 for orders in by_rec.values())
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(trade_executions.c.filled_size, trade_executions.c.average_price, trade_executions.c.fees)
            )
        ).all()
        balances = dict((await conn.execute(select(paper_balances.c.asset, paper_balances.c.available))).all())
    assert len(rows) == len(buys)
    spent = sum(
        ((size * price).quantize(Decimal("1e-8")) + fee for size, price, fee in rows),
        Decimal(0),
    )
    assert balances["USD"] == settings.paper_starting_cash_usd - spent
    async with engine.connect() as conn:
        held = dict((await conn.execute(select(positions.c.symbol, positions.c.quantity))).tuples().all())
    assert len(held) == len(buys)
    assert sum(balances[s.split("-")[0]] for s in symbols) == sum((size for size, _, _ in rows), Decimal(0))
    assert all(balances[s.split("-")[0]] == held[s] for s in symbols)
    assert {await rec_status(engine, rec) for rec in buys} == {"EXECUTED"}


async def test_paper_stream_of_mixed_outcomes_keeps_each_outcome_and_the_books(database_url: str, engine: Any) -> None:
    """One stream, batches mixing fills and refusals, over more assets than the settlement writes one by one: each
    recommendation keeps its own status and reason, the balances add up (new and existing balance rows)."""
    buys = await seed_buys(engine, 6)
    settings = make_settings(database_url, market_data_source="database")

    async def stream(port: int, ids: list[int]) -> dict[int, executor_pb2.ExecutionResult]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = executor_pb2_grpc.TradeExecutorServiceStub(channel)
            requests = [executor_pb2.ExecuteRecommendationsRequest(recommendation_id=i) for i in ids]
            return {r.result.recommendation_id: r.result async for r in stub.ExecuteRecommendations(iter(requests))}

    async with running_service(DEFINITION, settings) as service:
        bought = await stream(service.port, buys)
        async with engine.connect() as conn:
            symbols = dict((await conn.execute(select(positions.c.entry_recommendation_id, positions.c.symbol))).all())
        sells = [
            await seed_recommendation(engine, symbol=symbols[b], signal_type="SELL", amount_crypto=Decimal("1"))
            for b in buys
        ]
        for i in range(2):
            await seed_price(engine, f"NONE{i}-USD", "50")
        orphans = [
            await seed_recommendation(engine, symbol=f"NONE{i}-USD", signal_type="SELL", amount_crypto=Decimal("1"))
            for i in range(2)
        ]
        sold = await stream(service.port, [orphans[0], *sells[:3], orphans[1], *sells[3:]])
    assert {r.status for r in bought.values()} == {EXECUTED}
    assert {sold[s].status for s in sells} == {EXECUTED}
    for i, orphan in enumerate(orphans):
        assert sold[orphan].status == FAILED
        assert f"no open PAPER position in NONE{i}-USD" in sold[orphan].error_reason
        assert await rec_status(engine, orphan) == "FAILED"
    assert {await rec_status(engine, s) for s in sells} == {"EXECUTED"}
    async with engine.connect() as conn:
        balances = dict((await conn.execute(select(paper_balances.c.asset, paper_balances.c.available))).all())
        still_open = (await conn.execute(select(func.count()).where(positions.c.status == "OPEN"))).scalar_one()
    assert still_open == 0
    assert all(balances[symbols[b].split("-")[0]] == 0 for b in buys)
    cost = sum(
        ((Decimal(r.filled_size) * Decimal(r.average_price)).quantize(Decimal("1e-8")) + Decimal(r.fees))
        for r in bought.values()
    )
    proceeds = sum(
        (
            (Decimal(sold[s].filled_size) * Decimal(sold[s].average_price)).quantize(Decimal("1e-8"))
            - Decimal(sold[s].fees)
        )
        for s in sells
    )
    assert balances["USD"] == settings.paper_starting_cash_usd - cost + proceeds


async def test_concurrent_calls_place_one_order(database_url: str, engine: Any, fake: FakeCoinbase) -> None:
    rec = await seed_recommendation(engine)
    async with (
        running_service(DEFINITION, live_settings(database_url, fake)) as one,
        running_service(DEFINITION, live_settings(database_url, fake)) as two,
    ):
        results = await asyncio.gather(*(process(port, rec) for port in (one.port, two.port) * 3))
    assert {r.status for r in results} == {EXECUTED}
    assert len({r.exchange_order_id for r in results}) == 1
    assert fake.distinct_orders() == 1
    assert fake.jwt_failures == []


async def test_live_buy_sell_rejection_and_faults(
    database_url: str, engine: Any, fake: FakeCoinbase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # The BUY and the SELLs on BTC-USD (the fake exchange holds 1 BTC), the other BUYs on symbols of their own.
    buy = await seed_recommendation(engine, symbol="BTC-USD")
    sell = await seed_recommendation(engine, symbol="BTC-USD", signal_type="SELL", amount_crypto=Decimal("0.5"))
    rejected = await seed_recommendation(engine, symbol="BTC-USD", amount_usd=Decimal("50"))
    flaky = await seed_recommendation(engine, amount_usd=Decimal("20"))
    stuck = await seed_recommendation(engine, amount_usd=Decimal("30"))
    too_much = await seed_recommendation(engine, symbol="BTC-USD", signal_type="SELL", amount_crypto=Decimal("50"))
    opened = await seed_recommendation(engine, amount_usd=Decimal("40"))
    async with running_service(DEFINITION, live_settings(database_url, fake)) as service:
        result = await process(service.port, buy)
        assert (result.status, result.mode) == (EXECUTED, common_pb2.EXECUTION_MODE_LIVE)
        assert Decimal(result.fees) > 0
        assert (await process(service.port, sell)).status == EXECUTED
        fake.faults.extend(["ok", "reject:INVALID_SIZE_PRECISION"])  # GET product, then the POST
        failed = await process(service.port, rejected)
        assert failed.status == FAILED
        assert "INVALID_SIZE_PRECISION" in failed.error_reason
        fake.faults.extend(["429", "500", "429"])  # retried with backoff, then succeeds
        assert (await process(service.port, flaky)).status == EXECUTED
        fake.faults.extend(["429"] * 10)  # more than the retries: stays PENDING, retryable
        pending = await process(service.port, stuck)
        assert pending.status == PENDING
        assert await rec_status(engine, stuck) == "PENDING"
        fake.faults.clear()  # the exchange recovers
        assert (await process(service.port, stuck)).status == EXECUTED  # retried later: same client_order_id
        fake.faults.extend(["ok", "open"])  # accepted by the exchange, not filled while the executor looks
        submitted = await process(service.port, opened)
        assert submitted.status == PENDING
        row = await execution_row(engine, opened)
        assert (row.status, row.exchange_order_id) == ("SUBMITTED", submitted.exchange_order_id)
        assert await rec_status(engine, opened) == "PENDING"
        fake.fill_open_orders()
        assert (await process(service.port, opened)).status == EXECUTED  # follows the same order, places none
        refused = await process(service.port, too_much)
        assert refused.status == FAILED
        assert "no order placed" in refused.error_reason
    assert fake.distinct_orders() == 5
    assert fake.jwt_failures == []
    assert len(set(fake.seen_tokens)) == len(fake.seen_tokens)  # a fresh JWT for every request
    text = caplog.text
    assert fake.private_key_pem.splitlines()[1] not in text
    assert not any(token in text for token in fake.seen_tokens)


async def test_401_leaves_the_recommendation_pending_and_health_not_serving_until_the_key_works(
    database_url: str, engine: Any, fake: FakeCoinbase
) -> None:
    """Coinbase refuses the key while the order is sent: nothing is placed, nothing is recorded as FAILED (the key
    is the problem, not the trade), the executor goes NOT_SERVING; once the key works again the same
    recommendation executes with one order."""
    from grpc_health.v1 import health_pb2

    async def health() -> int:
        await service.refresh_health()
        return int((await service.health.Check(health_pb2.HealthCheckRequest(service=""), None)).status)

    rec = await seed_recommendation(engine)
    async with running_service(DEFINITION, live_settings(database_url, fake)) as service:
        assert service.problem is None
        fake.faults.extend(["ok", "401"])  # GET product, then the POST /orders is refused
        result = await process(service.port, rec)
        assert result.status == PENDING
        assert "HTTP 401" in result.error_reason
        assert "no order placed" in result.error_reason
        assert (fake.order_posts, fake.distinct_orders()) == (0, 0)  # the exchange refused the request
        assert await rec_status(engine, rec) == "PENDING"
        row = await execution_row(engine, rec)
        assert (row.status, row.exchange_order_id, row.attempts) == ("PENDING", None, 1)
        assert "HTTP 401" in row.error_message
        assert await health() == health_pb2.HealthCheckResponse.NOT_SERVING
        assert service.problem is not None
        assert "401" in service.problem

        assert not fake.faults  # the key works again: the fake answers 401 no more
        again = await process(service.port, rec)
        assert again.status == EXECUTED
        assert again.client_order_id == result.client_order_id
        assert (fake.order_posts, fake.distinct_orders()) == (1, 1)
        assert await rec_status(engine, rec) == "EXECUTED"
        assert (await execution_row(engine, rec)).status == "EXECUTED"
        assert await health() == health_pb2.HealthCheckResponse.SERVING


async def test_a_refused_key_is_checked_again_so_a_fixed_key_needs_no_restart(
    database_url: str, engine: Any, fake: FakeCoinbase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a refused order the executor is NOT_SERVING (so the orchestrator sends it nothing); it asks Coinbase
    again every AUTH_CHECK_SECONDS, and a key that works again makes it SERVING without a restart or an order."""
    from executor_svc import server as executor_server

    monkeypatch.setattr(executor_server, "AUTH_CHECK_SECONDS", 0.2)
    rec = await seed_recommendation(engine)
    async with running_service(DEFINITION, live_settings(database_url, fake)) as service:
        fake.faults.extend(["ok", "401"])
        assert (await process(service.port, rec)).status == PENDING
        await service.refresh_health()
        assert service.problem is not None
        await asyncio.sleep(0.3)  # the check is due; the key works again
        await service.refresh_health()
        assert service.problem is None
        assert fake.order_posts == 0


async def crash_after_send(database_url: str, fake: FakeCoinbase, rec: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A live executor whose process dies after the exchange accepted the order, before the outcome is recorded."""
    from executor_svc import repository as repo

    async def crash(self: Any, *args: Any) -> None:
        raise RuntimeError("simulated crash before the outcome is recorded")

    with monkeypatch.context() as patch:
        patch.setattr(repo.ExecutorRepository, "complete_live", crash)
        async with running_service(DEFINITION, live_settings(database_url, fake)) as service:
            with pytest.raises(grpc.aio.AioRpcError):
                await process(service.port, rec)


async def wait_for_status(engine: Any, rec: int, status: str, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.1)):
        if await rec_status(engine, rec) == status:
            return
        await asyncio.sleep(0.1)


async def test_crash_between_accept_and_commit_ends_with_one_order(
    database_url: str, engine: Any, fake: FakeCoinbase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exchange accepts the order, then the process dies before the completion commits. After a restart the
    recommendation ends EXECUTED and the exchange holds exactly one order."""
    rec = await seed_recommendation(engine)
    await crash_after_send(database_url, fake, rec, monkeypatch)
    assert fake.distinct_orders() == 1
    assert await rec_status(engine, rec) == "PENDING"
    async with running_service(DEFINITION, live_settings(database_url, fake)):
        await wait_for_status(engine, rec, "EXECUTED")  # start-up recovery re-sends with the same client_order_id
    assert await rec_status(engine, rec) == "EXECUTED"
    assert fake.distinct_orders() == 1
    assert fake.order_posts == 2


async def test_live_mode_refuses_bad_credentials(database_url: str, fake: FakeCoinbase) -> None:
    from common.errors import StartupError

    for key_name, key in [
        (None, fake.private_key_pem),
        (fake.key_name, None),
        ("bad-name", fake.private_key_pem),
        (fake.key_name, "-----BEGIN EC PRIVATE KEY-----\nnope\n-----END EC PRIVATE KEY-----"),
    ]:
        settings = make_settings(
            database_url,
            execution_mode="live",
            market_data_source="coinbase",
            coinbase_api_base_url=fake.base_url,
            coinbase_api_key_name=key_name,
            coinbase_api_private_key=key,
        )
        with pytest.raises(StartupError) as info:
            async with running_service(DEFINITION, settings):
                pass
        assert "nope" not in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"signal_type": "HOLD"}, grpc.StatusCode.FAILED_PRECONDITION),
        ({"amount_usd": Decimal("0")}, grpc.StatusCode.FAILED_PRECONDITION),
        ({"signal_type": "SELL", "amount_crypto": Decimal("0")}, grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
async def test_bad_recommendations_send_nothing(
    database_url: str, engine: Any, fake: FakeCoinbase, overrides: dict[str, Any], code: grpc.StatusCode
) -> None:
    rec = await seed_recommendation(engine, **overrides)
    async with running_service(DEFINITION, live_settings(database_url, fake)) as service:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await process(service.port, rec)
        assert info.value.code() == code
        for bad, bad_code in (
            (0, grpc.StatusCode.INVALID_ARGUMENT),
            (-5, grpc.StatusCode.INVALID_ARGUMENT),
            (2**40, grpc.StatusCode.INVALID_ARGUMENT),
            (999_999, grpc.StatusCode.NOT_FOUND),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await process(service.port, bad)
            assert info.value.code() == bad_code
    assert fake.order_posts == 0
    assert await rec_status(engine, rec) == "PENDING"


async def test_stream_answers_every_request(database_url: str, engine: Any) -> None:
    ids = await seed_buys(engine, 5, amount_usd=Decimal("10"))
    settings = make_settings(database_url, market_data_source="database")
    async with (
        running_service(DEFINITION, settings) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        stub = executor_pb2_grpc.TradeExecutorServiceStub(channel)
        requests = [executor_pb2.ExecuteRecommendationsRequest(recommendation_id=i) for i in [*ids, 0, 424242]]
        results = {r.result.recommendation_id: r.result async for r in stub.ExecuteRecommendations(iter(requests))}
    assert {i: results[i].status for i in ids} == dict.fromkeys(ids, EXECUTED)
    assert results[0].error_code == "INVALID_ARGUMENT"
    assert results[424242].error_code == "NOT_FOUND"
