"""Bridge through a real gRPC channel on SQLite and MariaDB: eligibility, price fields, bad input, the log line."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bridge_svc.server import DEFINITION
from common.clock import utc_now
from common.service_host import ServiceHost
from common.tables import trade_recommendations
from crypto_trading.v1 import bridge_pb2, bridge_pb2_grpc, common_pb2
from tests.bridge_svc.conftest import bridge_settings, insert_signals, recommendation_rows, signal_row, signal_rows
from tests.support.seed import seed_position

if TYPE_CHECKING:
    from crypto_trading.v1.bridge_pb2_grpc import SignalBridgeServiceAsyncStub as Stub


def skipped_by_reason(response: bridge_pb2.BridgeResponse) -> dict[str, int]:
    return {s.reason: s.count for s in response.skipped}


async def test_named_signals_eligibility(bridge: Stub, engine: AsyncEngine) -> None:
    now = utc_now().replace(microsecond=0)
    for symbol in ("HELD1-USD", "HELD2-USD"):  # the SELL signals' positions: only the eligibility rules refuse them
        await seed_position(engine, symbol)
    moment = now - timedelta(seconds=60)  # the signals of one moment
    ids = await insert_signals(
        engine,
        signal_row(signal_type="BUY", confidence=Decimal("0.6001"), created_at=moment),  # eligible
        signal_row(
            symbol="HELD1-USD",
            signal_type="SELL",
            confidence=Decimal("0.9000"),
            created_at=now - timedelta(seconds=3500),
        ),
        signal_row(signal_type="HOLD", confidence=Decimal("0.9000"), created_at=moment),
        # exactly the minimum: not above it
        signal_row(signal_type="BUY", confidence=Decimal("0.6000"), created_at=moment),
        signal_row(symbol="HELD2-USD", signal_type="SELL", confidence=Decimal("0.3000"), created_at=moment),
        signal_row(created_at=now - timedelta(seconds=3601)),
        signal_row(processed=True, created_at=moment),
    )
    response = await bridge.Bridge(bridge_pb2.BridgeRequest(signal_ids=[*ids, 999_999]), timeout=10)

    # In admission order: oldest first (bridge_svc.admission), not in the order the request named them.
    assert [r.signal_id for r in response.recommendations] == [ids[1], ids[0]]
    assert [(s.signal_id, s.reason) for s in response.skipped_signals] == [
        (999_999, "not_found"),
        (ids[5], "too_old"),  # the oldest
        (ids[2], "hold"),  # then, of one moment, the highest confidence first
        (ids[6], "already_processed"),
        (ids[3], "low_confidence"),
        (ids[4], "low_confidence"),
    ]
    assert skipped_by_reason(response) == {
        "not_found": 1,
        "hold": 1,
        "low_confidence": 2,
        "too_old": 1,
        "already_processed": 1,
    }
    rows = await recommendation_rows(engine)
    assert sorted(r.signal_id for r in rows) == ids[:2]
    assert {r.id for r in rows} == {r.id for r in response.recommendations}
    signals = await signal_rows(engine)
    assert [bool(signals[i].processed) for i in ids] == [True, True, False, False, False, False, True]
    assert signals[ids[0]].processed_reason is None


async def test_a_signal_is_bridged_once(bridge: Stub, engine: AsyncEngine) -> None:
    (signal_id,) = await insert_signals(engine, signal_row())
    first = await bridge.Bridge(bridge_pb2.BridgeRequest(signal_ids=[signal_id, signal_id]), timeout=10)
    second = await bridge.Bridge(bridge_pb2.BridgeRequest(signal_ids=[signal_id]), timeout=10)
    again = await bridge.Bridge(bridge_pb2.BridgeRequest(), timeout=10)

    assert len(first.recommendations) == 1
    assert not second.recommendations
    assert [(s.signal_id, s.reason) for s in second.skipped_signals] == [(signal_id, "already_processed")]
    assert not again.recommendations
    assert len(await recommendation_rows(engine)) == 1


async def test_without_ids_bridges_every_eligible_signal_oldest_first(bridge: Stub, engine: AsyncEngine) -> None:
    now = utc_now().replace(microsecond=0)
    await seed_position(engine, "HELD-USD")
    eligible = await insert_signals(
        engine,
        signal_row(created_at=now - timedelta(seconds=30)),
        signal_row(symbol="HELD-USD", signal_type="SELL", created_at=now - timedelta(seconds=600)),
    )
    await insert_signals(
        engine,
        signal_row(signal_type="HOLD", confidence=Decimal("0.95")),
        signal_row(confidence=Decimal("0.6000")),
        signal_row(created_at=now - timedelta(hours=2)),
        signal_row(processed=True),
    )
    response = await bridge.Bridge(bridge_pb2.BridgeRequest(), timeout=10)

    assert [r.signal_id for r in response.recommendations] == [eligible[1], eligible[0]]
    assert not response.skipped_signals
    assert sorted(r.signal_id for r in await recommendation_rows(engine)) == sorted(eligible)


async def test_recommendation_fields(bridge: Stub, engine: AsyncEngine) -> None:
    price = Decimal("43210.12345678")
    await seed_position(engine, "ETH-USD", "0.123456789", entry_price="2400")
    buy_id, sell_id = await insert_signals(
        engine,
        signal_row(symbol="BTC-USD", price=price, confidence=Decimal("0.8123"), buy_probability=Decimal("0.8123")),
        signal_row(symbol="ETH-USD", signal_type="SELL", price=Decimal("2500.5"), is_mock=True),
    )
    response = await bridge.Bridge(bridge_pb2.BridgeRequest(signal_ids=[buy_id, sell_id]), timeout=10)
    buy, sell = response.recommendations
    eight = Decimal("0.00000001")

    assert buy.symbol == "BTC-USD"
    assert buy.signal_type == common_pb2.SIGNAL_TYPE_BUY
    assert buy.execution_status == common_pb2.EXECUTION_STATUS_PENDING
    assert Decimal(buy.amount_usd) == Decimal(100)
    assert Decimal(buy.confidence) == Decimal("0.8123")
    assert Decimal(buy.entry_price) == price
    assert Decimal(buy.stop_loss) == (price * Decimal("0.98")).quantize(eight)
    assert Decimal(buy.take_profit) == (price * Decimal("1.04")).quantize(eight)
    assert Decimal(buy.amount_crypto) == (Decimal(100) / price).quantize(eight, rounding=ROUND_DOWN)
    assert Decimal(buy.amount_crypto) * price <= Decimal(100)
    assert Decimal(buy.position_size_percent) == Decimal("1.00")
    assert not buy.is_mock
    assert "BTC-USD" in buy.reasoning
    assert "81.2%" in buy.reasoning
    assert "bull" in buy.reasoning

    assert sell.signal_type == common_pb2.SIGNAL_TYPE_SELL
    assert Decimal(sell.stop_loss) == Decimal("2550.51")
    assert Decimal(sell.take_profit) == Decimal("2400.48")
    # The SELL closes the whole position: the quantity held, valued at the signal's price (rounded down).
    assert Decimal(sell.amount_crypto) == Decimal("0.12345678")
    # the held quantity rounded down to the column's 8 decimals, valued at the signal price
    assert Decimal(sell.amount_usd) == (Decimal("0.12345678") * Decimal("2500.5")).quantize(eight, ROUND_DOWN)
    assert sell.is_mock

    rows = {row.signal_id: row for row in await recommendation_rows(engine)}
    for message in (buy, sell):
        row = rows[message.signal_id]
        assert row.id == message.id
        assert row.execution_status == "PENDING"
        assert row.pending_key == f"{message.symbol}:{row.signal_type}"
        assert row.reasoning == message.reasoning
        assert bool(row.is_mock) == message.is_mock
        assert row.created_at == message.created_at.ToDatetime(tzinfo=row.created_at.tzinfo)
        assert row.updated_at == row.created_at
        for column in ("amount_usd", "confidence", "entry_price", "stop_loss", "take_profit", "amount_crypto"):
            stored = getattr(row, column)
            assert isinstance(stored, Decimal)
            assert stored == Decimal(getattr(message, column)), column
        assert row.position_size_percent == Decimal(message.position_size_percent)


async def test_one_open_recommendation_per_symbol_and_side(bridge: Stub, engine: AsyncEngine) -> None:
    """In one batch, a second BUY of a symbol is refused (position_open) and so is a second SELL of a position
    (exit_pending): each is marked processed with its reason, and one PENDING recommendation per symbol and side
    remains (the database's unique pending key backs it when bridges race: tests/bridge_svc/test_concurrency.py)."""
    await seed_position(engine, "SOL-USD")
    created = utc_now().replace(microsecond=0) - timedelta(seconds=60)
    first, second, sell, second_sell = await insert_signals(
        engine,
        signal_row(symbol="ADA-USD", created_at=created),
        signal_row(symbol="ADA-USD", created_at=created),
        signal_row(symbol="SOL-USD", signal_type="SELL", created_at=created),
        signal_row(symbol="SOL-USD", signal_type="SELL", created_at=created),
    )
    response = await bridge.Bridge(bridge_pb2.BridgeRequest(signal_ids=[first, second, sell, second_sell]), timeout=10)

    assert [r.signal_id for r in response.recommendations] == [first, sell]
    assert [(s.signal_id, s.reason) for s in response.skipped_signals] == [
        (second, "position_open"),
        (second_sell, "exit_pending"),
    ]
    assert skipped_by_reason(response) == {"position_open": 1, "exit_pending": 1}
    signals = await signal_rows(engine)
    assert signals[second].processed
    assert signals[second].processed_reason == "position_open"
    assert signals[second_sell].processed
    assert signals[second_sell].processed_reason == "exit_pending"
    rows = await recommendation_rows(engine)
    assert [(r.signal_id, r.pending_key) for r in rows] == [(first, "ADA-USD:BUY"), (sell, "SOL-USD:SELL")]


async def test_existing_recommendation_for_an_unprocessed_signal(bridge: Stub, engine: AsyncEngine) -> None:
    """UNIQUE(signal_id) holds even when the signal was not marked processed: no second row, no error."""
    (signal_id,) = await insert_signals(engine, signal_row(symbol="DOT-USD"))
    async with engine.begin() as conn:
        await conn.execute(
            insert(trade_recommendations).values(
                signal_id=signal_id,
                symbol="DOT-USD",
                signal_type="BUY",
                amount_usd=Decimal(100),
                confidence=Decimal("0.75"),
                execution_status="EXECUTED",
            )
        )
    response = await bridge.Bridge(bridge_pb2.BridgeRequest(signal_ids=[signal_id]), timeout=10)

    assert not response.recommendations
    assert [(s.signal_id, s.reason) for s in response.skipped_signals] == [(signal_id, "already_processed")]
    assert len(await recommendation_rows(engine)) == 1
    assert (await signal_rows(engine))[signal_id].processed


@pytest.mark.parametrize(
    "signal_ids",
    [[0], [-1], [2**31], [5, -7], [2**40], list(range(1, 1002))],
    ids=["zero", "negative", "2^31", "one-bad", "absurd", "too-many"],
)
async def test_bad_input_writes_nothing(bridge: Stub, engine: AsyncEngine, signal_ids: list[int]) -> None:
    (signal_id,) = await insert_signals(engine, signal_row())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await bridge.Bridge(bridge_pb2.BridgeRequest(signal_ids=[signal_id, *signal_ids]), timeout=10)

    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "signal_ids" in (info.value.details() or "")
    assert await recommendation_rows(engine) == []
    assert not (await signal_rows(engine))[signal_id].processed


async def test_created_recommendation_is_logged(
    bridge: Stub, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    (signal_id,) = await insert_signals(engine, signal_row(symbol="LTC-USD"))
    with caplog.at_level(logging.INFO, logger="bridge_svc"):
        response = await bridge.Bridge(bridge_pb2.BridgeRequest(signal_ids=[signal_id]), timeout=10)
    (recommendation,) = response.recommendations

    records = [r for r in caplog.records if r.getMessage().startswith("Created recommendation ")]
    assert len(records) == 1
    record = records[0]
    assert record.getMessage().startswith(f"Created recommendation {recommendation.id} for signal {signal_id} ")
    assert record.__dict__["recommendation_id"] == recommendation.id
    assert record.__dict__["signal_id"] == signal_id
    assert record.__dict__["symbol"] == "LTC-USD"


async def test_lost_database_is_unavailable_not_internal(tmp_path: Path, unreachable_addr: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    url = f"sqlite+aiosqlite:///{blocker}/db.sqlite"  # below a regular file: can never be opened
    host = ServiceHost(DEFINITION, bridge_settings(url, unreachable_addr), create_async_engine(url))
    await host.start(port=0, host="127.0.0.1")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
            stub = bridge_pb2_grpc.SignalBridgeServiceStub(channel)
            for request in (bridge_pb2.BridgeRequest(), bridge_pb2.BridgeRequest(signal_ids=[1])):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Bridge(request, timeout=10)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await host.stop(grace=0.5)
