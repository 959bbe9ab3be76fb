"""Coinbase public market data against the local fake Coinbase: the client (paging, retries, errors), `cts ingest
--source coinbase` semantics (idempotent, gaps kept), and the production generator (MARKET_DATA_SOURCE=coinbase)
refreshing candles before its cycle and choosing its universe from Coinbase's products. The retry policy and the
typed reading of answers are also checked through httpx.MockTransport, with an injected sleep."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from common.database import create_engine
from common.http_retry import RetryPolicy
from common.server import running_service
from common.tables import market_candles
from generator_svc.ingest import ingest_coinbase
from generator_svc.market_data import CoinbaseMarketClient, MarketDataError
from generator_svc.server import DEFINITION
from tests.conftest import make_settings
from tests.support.fake_coinbase import FakeCoinbase
from tests.support.fake_coinbase import market_product as product
from tests.support.rows import wait_for_signals
from tests.support.seed import bundled

HOUR = 3600


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
            rows = await wait_for_signals(engine, 2, within=30)
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


class Scripted:
    """Answers from a script through httpx.MockTransport; records the requests and the sleeps."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def client(self, max_retries: int = 3) -> CoinbaseMarketClient:
        return CoinbaseMarketClient(
            "https://api.coinbase.test/api/v3/brokerage",
            httpx.AsyncClient(transport=httpx.MockTransport(self.handle)),
            retry=RetryPolicy(max_retries=max_retries, backoff=0.5, sleep=self.sleep, jitter=lambda: 0.5),
        )


def candle(start: int | str, **changes: Any) -> dict[str, Any]:
    return {"start": str(start), "open": "1.5", "high": "2", "low": "1", "close": "1.75", "volume": "10", **changes}


async def test_retries_honour_retry_after_with_the_injected_sleep() -> None:
    script = Scripted(
        httpx.Response(429, text="<html>slow down</html>", headers={"Retry-After": "3"}),
        httpx.ReadTimeout("slow"),
        httpx.Response(502),
        httpx.Response(200, json={"candles": [candle(HOUR)]}),
    )
    client = script.client()
    try:
        candles = await client.candles("BTC-USD", 0, 2 * HOUR)
    finally:
        await client.close()
    assert [c.start for c in candles] == [HOUR]
    assert script.sleeps == [3.0, 1.0, 2.0]  # Retry-After, then 0.5 s x 2**n
    assert len(script.requests) == 4
    assert "Authorization" not in script.requests[0].headers  # public endpoints: no JWT


async def test_retries_are_bounded_and_other_4xx_fail_without_retrying() -> None:
    script = Scripted(*[httpx.Response(500)] * 3, httpx.Response(400, json={"error": "INVALID_ARGUMENT"}))
    client = script.client(max_retries=2)
    try:
        with pytest.raises(MarketDataError, match="HTTP 500 after 3 attempts"):
            await client.list_products()
        with pytest.raises(MarketDataError, match="HTTP 400 to GET /market/products/BTC-USD/candles"):
            await client.candles("BTC-USD", 0, HOUR)
    finally:
        await client.close()
    assert len(script.requests) == 4
    assert script.sleeps == [0.5, 1.0]


async def test_candles_are_exact_decimals() -> None:
    script = Scripted(
        httpx.Response(
            200,
            content=b'{"candles": [{"start": "3600", "open": "0.000012345678901234", "high": 0.1000000000000000055,'
            b' "low": "1E-8", "close": "2", "volume": "0"}]}',
        )
    )
    client = script.client()
    try:
        (only,) = await client.candles("SHIB-USD", 0, 2 * HOUR)
    finally:
        await client.close()
    assert only.open == Decimal("0.000012345678901234")
    assert only.high == Decimal("0.1000000000000000055")  # a JSON number is not rounded through float
    assert only.low == Decimal("1E-8")
    assert only.volume == Decimal(0)
    assert all(type(v) is Decimal for v in (only.open, only.high, only.low, only.close, only.volume))


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (candle(0, close="abc"), "candles.1.close"),
        (candle(0, open=""), "candles.1.open"),
        (candle(0, volume=None), "candles.1.volume"),
        (candle(0, low="0"), "candles.1.low"),  # a price of 0 is not a price
        (candle(0, high="Infinity"), "candles.1.high"),
        (candle(0, volume="-5"), "candles.1.volume"),
        (candle("x"), "candles.1.start"),
        ({k: v for k, v in candle(0).items() if k != "close"}, "candles.1.close: Field required"),
    ],
)
async def test_a_malformed_or_missing_candle_number_is_an_error_never_zero(bad: dict[str, Any], field: str) -> None:
    script = Scripted(httpx.Response(200, json={"candles": [candle(HOUR), bad]}))
    client = script.client()
    try:
        with pytest.raises(MarketDataError, match=f"GET /market/products/BTC-USD/candles: malformed answer: {field}"):
            await client.candles("BTC-USD", 0, 2 * HOUR)
    finally:
        await client.close()
    assert script.sleeps == []  # an unreadable 2xx is not retried


@pytest.mark.parametrize("body", [b"<html>maintenance</html>", b"", b'{"products": "none"}', b"[]"])
async def test_an_unreadable_answer_is_a_market_data_error(body: bytes) -> None:
    script = Scripted(httpx.Response(200, content=body))
    client = script.client()
    try:
        with pytest.raises(MarketDataError, match="GET /market/products: malformed answer"):
            await client.list_products()
    finally:
        await client.close()


async def test_products_without_a_figure_are_left_out_and_malformed_ones_refused() -> None:
    listed = [
        product("BTC-USD", "1000", "60000"),
        product("NEW-USD", "", ""),  # just listed: Coinbase has no price or volume yet
        {k: v for k, v in product("OLD-USD", "5").items() if k != "volume_24h"},
    ]
    script = Scripted(
        httpx.Response(200, json={"products": listed}),
        httpx.Response(200, json={"products": [product("BTC-USD", "1000", "60,000")]}),
    )
    client = script.client()
    try:
        products = await client.list_products()
        with pytest.raises(MarketDataError, match=r"products\.0\.price"):
            await client.list_products()
    finally:
        await client.close()
    assert [(p.product_id, p.volume_24h_usd) for p in products] == [("BTC-USD", Decimal(60_000_000))]
    assert script.requests[0].url.params["product_type"] == "SPOT"
