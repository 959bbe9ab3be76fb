"""Coinbase public market data against the local fake Coinbase: the client (paging, retries, errors), `cts ingest
--source coinbase` semantics (idempotent, gaps kept), and the production generator (MARKET_DATA_SOURCE=coinbase)
refreshing candles before its cycle and choosing its universe from Coinbase's products."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from common.database import create_engine
from common.server import running_service
from common.tables import market_candles, trading_signals
from generator_svc.ingest import ingest_coinbase
from generator_svc.market_data import CoinbaseMarketClient, MarketDataError
from generator_svc.server import DEFINITION
from tests.conftest import make_settings
from tests.support.fake_coinbase import FakeCoinbase
from tests.support.seed import bundled

HOUR = 3600


def product(product_id: str, volume: str, price: str = "100", **flags: Any) -> dict[str, Any]:
    base, quote = product_id.split("-")
    return {
        "product_id": product_id,
        "price": price,
        "volume_24h": volume,
        "quote_currency_id": quote,
        "base_currency_id": base,
        "status": "online",
        "trading_disabled": False,
        "cancel_only": False,
        "limit_only": False,
        "view_only": False,
        "base_increment": "0.00000001",
        "quote_min_size": "1",
        **flags,
    }


def real_candles(symbol: str, hours: int, last_start: int) -> list[tuple[int, str, str, str, str, str]]:
    """``hours`` real bundled candles of ``symbol``, re-timed to end at ``last_start``."""
    frame = bundled(symbol).tail(hours).reset_index(drop=True)
    first = last_start - (len(frame) - 1) * HOUR
    return [
        (first + i * HOUR, str(r.open), str(r.high), str(r.low), str(r.close), str(r.volume))
        for i, r in enumerate(frame.itertuples(index=False))
    ]


@pytest.fixture
def fake() -> Iterator[FakeCoinbase]:
    server = FakeCoinbase().start()
    yield server
    server.stop()


async def test_client_pages_candles_oldest_first_and_lists_products(fake: FakeCoinbase) -> None:
    last = (int(time.time()) // HOUR - 1) * HOUR
    fake.market_candles["BTC-USD"] = real_candles("BTC-USD", 700, last)
    fake.market_products = [product("BTC-USD", "1000", "60000"), product("USDT-USD", "5", "1")]
    client = CoinbaseMarketClient(fake.base_url, backoff=0.0)
    try:
        candles = await client.candles("BTC-USD", last - 699 * HOUR, last + HOUR)
        products = await client.list_products()
    finally:
        await client.close()
    assert [c.start for c in candles] == [t for t, *_ in fake.market_candles["BTC-USD"]]  # all 700, oldest first
    assert len(fake.candle_requests) == 3  # 300 + 300 + 100: never more than 300 per request
    assert all(end - start <= 300 * HOUR for _, start, end in fake.candle_requests)
    assert str(candles[-1].close) == fake.market_candles["BTC-USD"][-1][4]
    btc = next(p for p in products if p.product_id == "BTC-USD")
    assert btc.volume_24h_usd == 1000 * 60000  # 24 h volume is in base units: priced in USD
    assert btc.quote_currency == "USD"


async def test_client_retries_html_429_and_5xx_then_gives_up_and_fails_fast_on_4xx(fake: FakeCoinbase) -> None:
    fake.market_products = [product("BTC-USD", "10")]
    client = CoinbaseMarketClient(fake.base_url, max_retries=3, backoff=0.0)
    try:
        fake.faults.extend(["429", "500", "429"])  # an HTML 429 body is not JSON: still retried
        assert [p.product_id for p in await client.list_products()] == ["BTC-USD"]
        fake.faults.extend(["500"] * 4)
        with pytest.raises(MarketDataError, match="after 4 attempts"):
            await client.list_products()
        with pytest.raises(MarketDataError, match="HTTP 404"):
            await client.candles("NOPE-USD", 0, HOUR)
    finally:
        await client.close()


async def test_ingest_from_coinbase_is_idempotent_and_keeps_gaps(database_url: str, fake: FakeCoinbase) -> None:
    last = (int(time.time()) // HOUR - 1) * HOUR
    series = real_candles("ETH-USD", 48, last)
    del series[10:13]  # three hours Coinbase has no candle for
    fake.market_candles["ETH-USD"] = series
    engine = create_engine(database_url)
    client = CoinbaseMarketClient(fake.base_url, backoff=0.0)
    try:
        first = await ingest_coinbase(engine, client, ["ETH-USD"], last - 47 * HOUR, last + HOUR)
        again = await ingest_coinbase(engine, client, ["ETH-USD"], last - 47 * HOUR, last + HOUR)
        async with engine.connect() as conn:
            starts = list(
                (
                    await conn.execute(select(market_candles.c.start_time).order_by(market_candles.c.start_time))
                ).scalars()
            )
    finally:
        await client.close()
        await engine.dispose()
    assert first == {"ETH-USD": 45}
    assert again == {"ETH-USD": 0}
    assert starts == [t for t, *_ in series]  # the gap stays a gap


async def test_production_generator_refreshes_candles_and_uses_coinbase_products(
    database_url: str, fake: FakeCoinbase
) -> None:
    now = int(time.time())
    last_closed = (now // HOUR - 1) * HOUR
    for symbol in ("BTC-USD", "ETH-USD", "LTC-USD"):
        fake.market_candles[symbol] = real_candles(symbol, 600, last_closed)
    fake.market_candles["USDT-USD"] = [(t, "1", "1", "1", "1", "5") for t, *_ in fake.market_candles["BTC-USD"]]
    fake.market_products = [
        product("BTC-USD", "900", "60000"),
        product("ETH-USD", "900", "3000"),
        product("LTC-USD", "900", "80", trading_disabled=True),  # not tradable: never in the universe
        product("USDT-USD", "10000000", "1"),  # a stablecoin: never in the universe
        product("BTC-EUR", "9999", "55000"),  # not a USD product
    ]
    settings = make_settings(
        database_url,
        market_data_source="coinbase",
        coinbase_api_base_url=fake.base_url,
        coinbase_backoff_seconds=0.0,
        generator_interval_seconds=3600,  # the start-up cycle only
        signal_bridge_addr="127.0.0.1:1",
    )
    engine = create_engine(database_url)
    try:
        async with running_service(DEFINITION, settings):
            deadline = time.monotonic() + 30
            rows: list[Any] = []
            while time.monotonic() < deadline:
                async with engine.connect() as conn:
                    rows = list((await conn.execute(select(trading_signals))).all())
                if len(rows) >= 2:
                    break
                await asyncio.sleep(0.2)
        async with engine.connect() as conn:
            counts = await conn.execute(select(market_candles.c.symbol, func.count()).group_by(market_candles.c.symbol))
            stored: dict[str, int] = {symbol: int(n) for symbol, n in counts.all()}
    finally:
        await engine.dispose()
    assert sorted(r.symbol for r in rows) == ["BTC-USD", "ETH-USD"]
    assert {r.data_source for r in rows} == {"coinbase"}
    assert {r.is_mock for r in rows} == {False}
    assert {int(r.candle_time.timestamp()) for r in rows} == {last_closed}  # the last closed candle, not the open one
    assert set(stored) == {"BTC-USD", "ETH-USD"}  # only the universe's candles were fetched
    assert all(count >= 500 for count in stored.values())
