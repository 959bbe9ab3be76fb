"""The bridge's position rules through a real gRPC channel on SQLite and MariaDB (bridge_svc.admission): a BUY
signal becomes a recommendation only when its symbol has no open position and fewer than MAX_OPEN_POSITIONS are
open or about to open; a SELL signal only when a position is open, and it then closes all of it. A refused signal
is marked processed with its reason and writes nothing."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from common.clock import utc_now
from common.lifecycle import ExecutionMode
from crypto_trading.v1 import bridge_pb2, common_pb2
from tests.bridge_svc.conftest import (
    bridge_client,
    bridge_settings,
    insert_signals,
    recommendation_rows,
    signal_row,
    signal_rows,
)
from tests.support.seed import seed_position, seed_recommendation

if TYPE_CHECKING:
    from crypto_trading.v1.bridge_pb2_grpc import SignalBridgeServiceAsyncStub as Stub

EIGHT = Decimal("0.00000001")


def skipped(response: bridge_pb2.BridgeResponse) -> list[tuple[int, str]]:
    return [(s.signal_id, s.reason) for s in response.skipped_signals]


async def assert_processed_with(engine: AsyncEngine, reasons: dict[int, str]) -> None:
    signals = await signal_rows(engine)
    assert {i: (bool(signals[i].processed), signals[i].processed_reason) for i in reasons} == {
        i: (True, reason) for i, reason in reasons.items()
    }


async def test_a_sell_signal_without_a_position_writes_nothing(bridge: Stub, engine: AsyncEngine) -> None:
    # A LIVE position is not the paper executor's: the paper bridge does not sell it.
    await seed_position(engine, "LIVE-USD", mode=ExecutionMode.LIVE)
    named, live, unnamed = await insert_signals(
        engine,
        signal_row(symbol="NONE-USD", signal_type="SELL"),
        signal_row(symbol="LIVE-USD", signal_type="SELL"),
        signal_row(symbol="LATER-USD", signal_type="SELL"),
    )
    response = await bridge.Bridge(bridge_pb2.BridgeRequest(signal_ids=[named, live]), timeout=10)

    assert not response.recommendations
    assert sorted(skipped(response)) == sorted([(named, "no_position"), (live, "no_position")])
    # The loop's way (no ids) refuses it the same way.
    batch = await bridge.Bridge(bridge_pb2.BridgeRequest(), timeout=10)
    assert not batch.recommendations
    assert {s.reason: s.count for s in batch.skipped} == {"no_position": 1}
    assert await recommendation_rows(engine) == []
    await assert_processed_with(engine, {named: "no_position", live: "no_position", unnamed: "no_position"})
    # Marked processed for good: never bridged again.
    again = await bridge.Bridge(bridge_pb2.BridgeRequest(signal_ids=[named]), timeout=10)
    assert skipped(again) == [(named, "already_processed")]
    assert await recommendation_rows(engine) == []


async def test_a_buy_signal_with_an_open_position_is_refused(bridge: Stub, engine: AsyncEngine) -> None:
    await seed_position(engine, "HELD-USD")
    # A BUY recommendation not yet executed is a position about to open.
    await seed_recommendation(engine, symbol="OPENING-USD", pending_key="OPENING-USD:BUY")
    held, opening, free = await insert_signals(
        engine,
        signal_row(symbol="HELD-USD"),
        signal_row(symbol="OPENING-USD"),
        signal_row(symbol="FREE-USD"),
    )
    response = await bridge.Bridge(bridge_pb2.BridgeRequest(signal_ids=[held, opening, free]), timeout=10)

    assert [(r.signal_id, r.symbol, r.signal_type) for r in response.recommendations] == [
        (free, "FREE-USD", common_pb2.SIGNAL_TYPE_BUY)
    ]
    assert sorted(skipped(response)) == sorted([(held, "position_open"), (opening, "position_open")])
    await assert_processed_with(engine, {held: "position_open", opening: "position_open"})
    assert [r.signal_id for r in await recommendation_rows(engine)] == [None, free]


async def test_a_buy_signal_beyond_max_open_positions_is_refused(
    database_url: str, unreachable_addr: str, engine: AsyncEngine
) -> None:
    """Three positions open or about to open with MAX_OPEN_POSITIONS=3: no BUY, but a SELL still closes one."""
    await seed_position(engine, "A-USD")
    await seed_position(engine, "B-USD")
    await seed_recommendation(engine, symbol="C-USD", pending_key="C-USD:BUY")
    created = utc_now().replace(microsecond=0) - timedelta(seconds=60)
    buy, sell = await insert_signals(
        engine,
        signal_row(symbol="D-USD", confidence=Decimal("0.99"), created_at=created),
        signal_row(symbol="A-USD", signal_type="SELL", created_at=created),
    )
    async with bridge_client(bridge_settings(database_url, unreachable_addr, max_open_positions=3)) as (bridge, _):
        response = await bridge.Bridge(bridge_pb2.BridgeRequest(signal_ids=[buy, sell]), timeout=10)

    assert [r.signal_id for r in response.recommendations] == [sell]
    assert skipped(response) == [(buy, "max_positions")]
    await assert_processed_with(engine, {buy: "max_positions"})


async def test_a_sell_signal_closes_the_whole_position(bridge: Stub, engine: AsyncEngine) -> None:
    await seed_position(engine, "ETH-USD", "1.2345678912", entry_price="2000")
    price = Decimal("2500.12345678")
    (sell,) = await insert_signals(engine, signal_row(symbol="ETH-USD", signal_type="SELL", price=price))
    response = await bridge.Bridge(bridge_pb2.BridgeRequest(signal_ids=[sell]), timeout=10)

    (message,) = response.recommendations
    assert message.signal_type == common_pb2.SIGNAL_TYPE_SELL
    assert Decimal(message.entry_price) == price
    assert Decimal(message.amount_crypto) == Decimal("1.23456789")  # all of it (8 decimals, rounded down)
    assert Decimal(message.amount_usd) == (Decimal("1.23456789") * price).quantize(EIGHT, ROUND_DOWN)
    (row,) = await recommendation_rows(engine)
    assert (row.id, row.signal_id, row.execution_status) == (message.id, sell, "PENDING")
    assert (row.amount_crypto, row.amount_usd) == (Decimal(message.amount_crypto), Decimal(message.amount_usd))
    assert row.pending_key == "ETH-USD:SELL"
    assert row.exit_reason == "signal"
    signals = await signal_rows(engine)
    assert signals[sell].processed
    assert signals[sell].processed_reason is None


async def test_a_second_sell_signal_for_one_position_is_refused(bridge: Stub, engine: AsyncEngine) -> None:
    await seed_position(engine, "SOL-USD", "3")
    created = utc_now().replace(microsecond=0) - timedelta(seconds=60)
    first, second, later = await insert_signals(
        engine,
        signal_row(symbol="SOL-USD", signal_type="SELL", confidence=Decimal("0.90"), created_at=created),
        signal_row(symbol="SOL-USD", signal_type="SELL", confidence=Decimal("0.80"), created_at=created),
        signal_row(symbol="SOL-USD", signal_type="SELL"),
    )
    response = await bridge.Bridge(bridge_pb2.BridgeRequest(signal_ids=[second, first]), timeout=10)
    assert [r.signal_id for r in response.recommendations] == [first]
    assert skipped(response) == [(second, "exit_pending")]
    # A later call sees the PENDING SELL in the database.
    response = await bridge.Bridge(bridge_pb2.BridgeRequest(signal_ids=[later]), timeout=10)
    assert not response.recommendations
    assert skipped(response) == [(later, "exit_pending")]
    await assert_processed_with(engine, {second: "exit_pending", later: "exit_pending"})
    assert [r.signal_id for r in await recommendation_rows(engine)] == [first]


async def test_two_bridges_racing_sell_one_position_once(
    database_url: str, unreachable_addr: str, engine: AsyncEngine
) -> None:
    """Two bridge replicas, each with a SELL signal of the same position at once: one SELL recommendation; the other
    signal is refused by the position book (exit_pending) or, racing it, by the database (open_position)."""
    await seed_position(engine, "SOL-USD", "3")
    ids = await insert_signals(engine, *(signal_row(symbol="SOL-USD", signal_type="SELL") for _ in range(6)))
    settings = bridge_settings(database_url, unreachable_addr)
    async with bridge_client(settings) as (one, _), bridge_client(settings) as (two, _):
        responses = await asyncio.gather(
            *(
                stub.Bridge(bridge_pb2.BridgeRequest(signal_ids=[signal_id]), timeout=30)
                for signal_id, stub in zip(ids, [one, two] * 3, strict=True)
            )
        )

    made = [r.signal_id for response in responses for r in response.recommendations]
    refused = dict(pair for response in responses for pair in skipped(response))
    assert len(made) == 1
    assert set(refused) == set(ids) - set(made)
    assert set(refused.values()) <= {"exit_pending", "open_position"}
    rows = await recommendation_rows(engine)
    assert [(r.signal_id, r.signal_type, r.amount_crypto) for r in rows] == [(made[0], "SELL", Decimal(3))]
    await assert_processed_with(engine, refused)


async def test_the_strongest_signals_get_the_scarce_slots(
    database_url: str, unreachable_addr: str, engine: AsyncEngine
) -> None:
    """One position open, MAX_OPEN_POSITIONS=3: of five BUY signals of one moment, the two most confident get the
    two free slots, whatever their order in the table; the others are refused (max_positions)."""
    await seed_position(engine, "HELD-USD")
    created = utc_now().replace(microsecond=0) - timedelta(seconds=60)
    confidences = ["0.70", "0.95", "0.65", "0.90", "0.80"]
    ids = await insert_signals(
        engine,
        *(signal_row(confidence=Decimal(c), created_at=created) for c in confidences),
    )
    strongest = [ids[1], ids[3]]
    async with bridge_client(bridge_settings(database_url, unreachable_addr, max_open_positions=3)) as (bridge, _):
        response = await bridge.Bridge(bridge_pb2.BridgeRequest(), timeout=10)  # the loop's way: one batch

    assert [r.signal_id for r in response.recommendations] == strongest
    assert [Decimal(r.confidence) for r in response.recommendations] == [Decimal("0.95"), Decimal("0.90")]
    assert {s.reason: s.count for s in response.skipped} == {"max_positions": 3}
    await assert_processed_with(engine, {i: "max_positions" for i in ids if i not in strongest})
    assert sorted(r.signal_id for r in await recommendation_rows(engine)) == sorted(strongest)
