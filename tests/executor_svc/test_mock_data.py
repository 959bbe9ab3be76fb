"""Mock data never becomes a real order, and paper trades never count as real ones: a live executor refuses
(FAILED_PRECONDITION, nothing sent, nothing changed) a recommendation whose signal (live or archived) or itself is
mock data; paper executions mark their recommendation is_mock = 1, so `execution_status = 'EXECUTED' AND
is_mock = 0` counts real trades only."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import grpc
import pytest
from sqlalchemy import func, insert, select, text

from common.server import running_service
from common.tables import trade_executions, trade_recommendations, trading_signals, trading_signals_archive
from executor_svc.server import DEFINITION
from tests.conftest import make_settings
from tests.executor_svc.test_service import EXECUTED, FAILED, process
from tests.support.fake_coinbase import FakeCoinbase, live_settings
from tests.support.seed import seed_recommendation

ARCHIVED_SIGNAL_ID = 900_001


async def _signal(engine: Any, *, is_mock: bool, archived: bool = False) -> int:
    values: dict[str, Any] = {
        "symbol": "BTC-USD",
        "signal_type": "BUY",
        "confidence": Decimal("0.7"),
        "is_mock": is_mock,
        "processed": True,
    }
    async with engine.begin() as conn:
        if archived:
            await conn.execute(insert(trading_signals_archive).values(id=ARCHIVED_SIGNAL_ID, **values))
            return ARCHIVED_SIGNAL_ID
        result = await conn.execute(insert(trading_signals).values(**values))
        return int(result.inserted_primary_key[0])


async def _row(engine: Any, rec_id: int) -> tuple[Any, ...]:
    async with engine.connect() as conn:
        return tuple(
            (await conn.execute(select(trade_recommendations).where(trade_recommendations.c.id == rec_id))).one()
        )


async def _executions(engine: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(trade_executions))).scalar_one())


@pytest.mark.parametrize("mock_in", ["signal", "archived signal", "recommendation"])
async def test_live_refuses_mock_data_and_sends_nothing(
    database_url: str, engine: Any, fake: FakeCoinbase, mock_in: str
) -> None:
    if mock_in == "recommendation":
        rec = await seed_recommendation(engine, signal_id=await _signal(engine, is_mock=False), is_mock=True)
    else:
        signal = await _signal(engine, is_mock=True, archived=mock_in == "archived signal")
        rec = await seed_recommendation(engine, signal_id=signal)  # is_mock = 0 on the recommendation itself
    real = await seed_recommendation(engine, signal_id=await _signal(engine, is_mock=False), amount_usd=Decimal(20))
    before = await _row(engine, rec)
    async with running_service(DEFINITION, live_settings(database_url, fake)) as service:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await process(service.port, rec)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "mock data (is_mock)" in (info.value.details() or "")
        assert fake.order_posts == 0
        assert await _executions(engine) == 0
        assert await _row(engine, rec) == before
        assert (await process(service.port, real)).status == EXECUTED  # real data still trades
    assert fake.order_posts == 1


async def test_paper_executions_are_mock_and_real_trades_count_alone(
    database_url: str, engine: Any, fake: FakeCoinbase
) -> None:
    paper_buy = await seed_recommendation(engine, amount_usd=Decimal(50))
    # no open ETH position
    paper_sell = await seed_recommendation(engine, symbol="ETH-USD", signal_type="SELL", amount_crypto=Decimal(5))
    live_buy = await seed_recommendation(engine, amount_usd=Decimal(20))
    async with running_service(DEFINITION, make_settings(database_url, market_data_source="database")) as service:
        assert (await process(service.port, paper_buy)).status == EXECUTED
        assert (await process(service.port, paper_sell)).status == FAILED
    async with running_service(DEFINITION, live_settings(database_url, fake)) as service:
        assert (await process(service.port, live_buy)).status == EXECUTED
    async with engine.connect() as conn:
        flags = dict(
            (await conn.execute(select(trade_recommendations.c.id, trade_recommendations.c.is_mock))).tuples().all()
        )
        executed = await conn.execute(
            text(
                "SELECT COUNT(*) as executed_trades FROM trade_recommendations "
                "WHERE execution_status = 'EXECUTED' AND is_mock = 0"
            )
        )
        real_trades = executed.scalar_one()
    assert {k: bool(v) for k, v in flags.items()} == {paper_buy: True, paper_sell: True, live_buy: False}
    assert real_trades == 1
