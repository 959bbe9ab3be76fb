"""CANDLE_GRANULARITY=FIVE_MINUTE: every cycle signals on the hourly bars ending at the latest closed 5-minute candle.

Through a real gRPC channel on SQLite and MariaDB (anchoring, idempotency per bar end, gaps, stale symbols), the
production path against the fake Coinbase (refresh of 5-minute candles, then the cycle), and in memory: the look-ahead
at random cut points with gaps, the candle cache's incremental reads and the universe's history rule."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from itertools import count
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select

from common.clock import utc_now
from common.config import load_settings
from common.database import create_engine
from common.server import running_service
from common.tables import market_candles, trading_signals
from crypto_trading.v1 import generator_pb2, generator_pb2_grpc
from cts.candle_data import SHARED_FIVE_MINUTE_DIR
from generator_svc.bars import hourly_bars_from_5m
from generator_svc.candle_refresh import CandleRefresher
from generator_svc.candle_repository import COLUMNS, insert_candles
from generator_svc.features import FEATURE_NAMES, HISTORY_WINDOW, MIN_HISTORY, compute_features
from generator_svc.generation import (
    FIVE_MINUTE_HISTORY_HOURS,
    GenerationResult,
    GeneratorConfig,
    SignalGenerator,
)
from generator_svc.market_data import CoinbaseMarketClient
from generator_svc.model_store import LoadedModel, load_model
from generator_svc.repository import GeneratorRepository, SignalRow
from generator_svc.server import DEFINITION
from generator_svc.universe import UniverseRules
from tests.conftest import make_settings
from tests.support.fake_coinbase import FakeCoinbase, market_product
from tests.support.rows import wait_for_signals

pytestmark = pytest.mark.skipif(not SHARED_FIVE_MINUTE_DIR.is_dir(), reason="needs ../shared/data/binance_2024h1")

HOUR = 3600
FIVE = 300
NOON = 1_714_564_800  # 2024-05-01 12:00 UTC, inside the shared 5-minute candles


def real_5m(symbol: str) -> pd.DataFrame:
    return pd.read_csv(SHARED_FIVE_MINUTE_DIR / f"{symbol}_5m.csv.gz")[list(COLUMNS)]


def with_gaps(frame: pd.DataFrame, seed: int, whole_hours: Sequence[int] = ()) -> pd.DataFrame:
    """``frame`` less about 3 % of its candles at random and every candle of the hours starting at ``whole_hours``."""
    keep = np.random.default_rng(seed).uniform(size=len(frame)) > 0.03
    for start in whole_hours:
        keep &= ~frame["timestamp"].between(start, start + HOUR - 1).to_numpy()
    return frame[keep].reset_index(drop=True)


def window(frame: pd.DataFrame, first: int, end: int) -> pd.DataFrame:
    """The candles starting in [first, end)."""
    return frame[(frame["timestamp"] >= first) & (frame["timestamp"] < end)].reset_index(drop=True)


def expected(frame: pd.DataFrame, anchor: int, model: LoadedModel) -> tuple[pd.Series, dict[str, float]]:
    """The reference path (pandas): the bar ending at ``anchor`` and the model's probabilities on the features of
    the bars the generator reads (5-minute candles of the last FIVE_MINUTE_HISTORY_HOURS, HISTORY_WINDOW bars)."""
    recent = frame[frame["timestamp"] >= anchor - FIVE_MINUTE_HISTORY_HOURS * HOUR]
    bars = hourly_bars_from_5m(recent, anchor_end=anchor).tail(HISTORY_WINDOW).reset_index(drop=True)
    features = compute_features(bars).iloc[[-1]]
    probabilities = model.predict_proba(features[list(FEATURE_NAMES)].to_numpy(dtype=np.float64))[0]
    return bars.iloc[-1], dict(zip(model.classes, (float(p) for p in probabilities), strict=True))


def price_of(close: float) -> Decimal:
    return Decimal(repr(float(close))).quantize(Decimal("1e-8"))


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    settings = load_settings({})
    return load_model(settings.model_dir, settings.model_path)


# --- through gRPC, on SQLite and MariaDB ---

SEEDED_FROM = NOON - (FIVE_MINUTE_HISTORY_HOURS + 6) * HOUR
SEEDED_TO = NOON + 2 * HOUR  # candles after every as_of below: they must change nothing
HOLES = (NOON - 50 * HOUR, NOON - 7 * HOUR)  # hours without any ETH-USD candle


@pytest.fixture
async def seeded(database_url: str) -> dict[str, pd.DataFrame]:
    """ETH-USD with gaps (scattered candles, two whole hours); LTC-USD also without its 12:00 candle; SOL-USD
    stopping at 10:00 (stale at noon)."""
    frames = {
        "ETH-USD": with_gaps(window(real_5m("ETH-USD"), SEEDED_FROM, SEEDED_TO), 1, HOLES),
        "LTC-USD": with_gaps(window(real_5m("LTC-USD"), SEEDED_FROM, SEEDED_TO), 2),
        "SOL-USD": window(real_5m("SOL-USD"), SEEDED_FROM, NOON - 2 * HOUR),
    }
    frames["LTC-USD"] = frames["LTC-USD"][frames["LTC-USD"]["timestamp"] != NOON].reset_index(drop=True)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            for symbol, frame in frames.items():
                await insert_candles(conn, symbol, "FIVE_MINUTE", list(frame.itertuples(index=False)), "csv")
    finally:
        await engine.dispose()
    return frames


@pytest.fixture
async def stub(
    database_url: str, seeded: dict[str, pd.DataFrame]
) -> AsyncIterator[generator_pb2_grpc.SignalGeneratorServiceAsyncStub]:
    settings = make_settings(
        database_url,
        market_data_source="database",
        candle_granularity="FIVE_MINUTE",
        signal_bridge_addr="127.0.0.1:1",
    )
    async with (
        running_service(DEFINITION, settings) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        stub: generator_pb2_grpc.SignalGeneratorServiceAsyncStub = generator_pb2_grpc.SignalGeneratorServiceStub(
            channel
        )
        yield stub


async def _count(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(trading_signals))).scalar_one())
    finally:
        await engine.dispose()


def _request(symbols: Sequence[str], at: int) -> generator_pb2.GenerateRequest:
    return generator_pb2.GenerateRequest(symbols=list(symbols), as_of=Timestamp(seconds=at))


async def test_each_cycle_signals_on_the_bar_ending_at_the_latest_closed_five_minute_candle(
    stub: generator_pb2_grpc.SignalGeneratorServiceAsyncStub,
    seeded: dict[str, pd.DataFrame],
    database_url: str,
    model: LoadedModel,
) -> None:
    symbols = ["ETH-USD", "LTC-USD"]
    first = await stub.Generate(_request(symbols, NOON + 7 * 60), timeout=60)  # 12:07: the bar 11:05-12:05
    assert sorted(s.symbol for s in first.signals) == symbols
    assert all(s.created for s in first.signals)
    for signal in first.signals:
        bar, probabilities = expected(seeded[signal.symbol], NOON + FIVE, model)
        assert signal.candle_time.ToSeconds() == NOON + FIVE - HOUR == int(bar["timestamp"])
        assert Decimal(signal.price) == price_of(bar["close"])
        assert abs(Decimal(signal.buy_probability) - Decimal(probabilities["BUY"])) <= Decimal("0.0001")
        assert abs(Decimal(signal.sell_probability) - Decimal(probabilities["SELL"])) <= Decimal("0.0001")
    ltc = seeded["LTC-USD"]
    ltc_signal = next(s for s in first.signals if s.symbol == "LTC-USD")
    # LTC-USD has no 12:00 candle: its bar ends at 12:05 all the same, closing at the 11:55 candle's close.
    assert Decimal(ltc_signal.price) == price_of(ltc.loc[ltc["timestamp"] == NOON - FIVE, "close"].iloc[0])
    assert await _count(database_url) == 2

    again = await stub.Generate(_request(symbols, NOON + 8 * 60), timeout=60)  # 12:08: the same anchor
    assert {s.id for s in again.signals} == {s.id for s in first.signals}
    assert not any(s.created for s in again.signals)
    assert await _count(database_url) == 2

    later = await stub.Generate(_request(symbols, NOON + 10 * 60), timeout=60)  # 12:10: the bar 11:10-12:10
    assert all(s.created for s in later.signals)
    assert {s.candle_time.ToSeconds() for s in later.signals} == {NOON + 10 * 60 - HOUR}
    for signal in later.signals:
        bar, probabilities = expected(seeded[signal.symbol], NOON + 10 * 60, model)
        assert Decimal(signal.price) == price_of(bar["close"])
        assert abs(Decimal(signal.buy_probability) - Decimal(probabilities["BUY"])) <= Decimal("0.0001")
    assert await _count(database_url) == 4


async def test_a_symbol_without_a_candle_in_the_last_hour_is_skipped(
    stub: generator_pb2_grpc.SignalGeneratorServiceAsyncStub, database_url: str
) -> None:
    response = await stub.Generate(_request(["ETH-USD", "SOL-USD"], NOON + 2 * 60), timeout=60)
    assert [s.symbol for s in response.signals] == ["ETH-USD"]
    (skipped,) = response.skipped
    assert skipped.symbol == "SOL-USD"
    assert skipped.reason == "no 5-minute candle closed in the hour up to 2024-05-01T12:00:00+00:00"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(_request(["SOL-USD"], NOON + 2 * 60), timeout=60)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "SOL-USD: no 5-minute candle closed in the hour up to" in (info.value.details() or "")
    # Signalled while its last candle (09:55-10:00) is within the hour before the anchor: the bar ending 10:45.
    fresh = await stub.Generate(_request(["SOL-USD"], NOON - 75 * 60), timeout=60)
    assert [s.candle_time.ToSeconds() for s in fresh.signals] == [NOON - 75 * 60 - HOUR]
    assert await _count(database_url) == 2


# --- the production path: 5-minute candles refreshed from the fake Coinbase ---


@pytest.fixture
def fake() -> Iterator[FakeCoinbase]:
    server = FakeCoinbase().start()
    yield server
    server.stop()


def retimed(symbol: str, candles: int, last_start: int) -> list[tuple[int, str, str, str, str, str]]:
    """``candles`` real 5-minute candles of ``symbol``, re-timed so that the last starts at ``last_start``."""
    frame = real_5m(symbol).tail(candles).reset_index(drop=True)
    first = last_start - (len(frame) - 1) * FIVE
    return [
        (first + i * FIVE, str(r.open), str(r.high), str(r.low), str(r.close), str(r.volume))
        for i, r in enumerate(frame.itertuples(index=False))
    ]


async def test_the_refresher_pages_five_minute_candles_and_stores_only_closed_ones(
    database_url: str, fake: FakeCoinbase
) -> None:
    now = datetime(2024, 5, 1, 12, 7, 30, tzinfo=UTC)
    open_start = NOON + FIVE  # 12:05-12:10 is still trading at 12:07:30
    fake.market_candles_5m["BTC-USD"] = retimed("BTC-USD", 12 * 40, open_start)
    fake.market_products = [market_product("BTC-USD", "900", "60000")]
    engine = create_engine(database_url)
    client = CoinbaseMarketClient(fake.base_url, backoff=0.0)
    clock = {"now": now}
    refresher = CandleRefresher(
        client,
        GeneratorRepository(engine, "FIVE_MINUTE"),
        granularity="FIVE_MINUTE",
        history_hours=30,
        rules=UniverseRules(size=20, min_history=MIN_HISTORY + 1),
        clock=lambda: clock["now"],
    )
    try:
        first = await refresher.refresh()
        requests = list(fake.candle_requests)
        clock["now"] = datetime(2024, 5, 1, 12, 17, 30, tzinfo=UTC)
        fake.market_candles_5m["BTC-USD"] = retimed("BTC-USD", 12 * 40, open_start + 2 * FIVE)
        second = await refresher.refresh()
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(market_candles.c.granularity, market_candles.c.start_time).order_by(
                        market_candles.c.start_time
                    )
                )
            ).all()
    finally:
        await client.close()
        await engine.dispose()
    assert first == {"BTC-USD": 30 * 12}  # 30 hours of 5-minute candles, the open one left out
    assert set(fake.candle_granularities) == {"FIVE_MINUTE"}
    assert len(requests) == 2  # 300 + 60 candles: paged under Coinbase's 350 per request
    assert all(end - start <= 300 * FIVE for _, start, end in requests)
    assert second == {"BTC-USD": 2}  # 12:05 and 12:10 closed since; only they were asked for
    assert fake.candle_requests[-1][1] == open_start
    assert {g for g, _ in rows} == {"FIVE_MINUTE"}
    starts = [t for _, t in rows]
    assert starts[0] == open_start - 30 * HOUR
    assert starts[-1] == open_start + FIVE  # 12:15-12:20 is open at 12:17:30
    assert np.all(np.diff(starts) == FIVE)


async def test_production_cycle_refreshes_five_minute_candles_and_signals_on_the_latest_closed_one(
    database_url: str, fake: FakeCoinbase
) -> None:
    before = int(time.time())
    last_closed = before // FIVE * FIVE - FIVE
    for symbol in ("BTC-USD", "ETH-USD"):
        fake.market_candles_5m[symbol] = retimed(symbol, 12 * (FIVE_MINUTE_HISTORY_HOURS + 30), last_closed)
    fake.market_products = [
        market_product("BTC-USD", "900", "60000"),
        market_product("ETH-USD", "900", "3000"),
        market_product("USDT-USD", "10000000", "1"),  # a stablecoin: never in the universe
    ]
    settings = make_settings(
        database_url,
        market_data_source="coinbase",
        candle_granularity="FIVE_MINUTE",
        coinbase_api_base_url=fake.base_url,
        coinbase_backoff_seconds=0.0,
        generator_interval_seconds=3600,  # the start-up cycle only
        signal_bridge_addr="127.0.0.1:1",
    )
    engine = create_engine(database_url)
    try:
        async with running_service(DEFINITION, settings):
            rows = await wait_for_signals(engine, 2, within=60)
        after = int(time.time())
        async with engine.connect() as conn:
            counts = await conn.execute(
                select(market_candles.c.granularity, func.count()).group_by(market_candles.c.granularity)
            )
            stored = {granularity: int(n) for granularity, n in counts.all()}
    finally:
        await engine.dispose()
    assert sorted(r.symbol for r in rows) == ["BTC-USD", "ETH-USD"]
    assert set(fake.candle_granularities) == {"FIVE_MINUTE"}
    assert set(stored) == {"FIVE_MINUTE"}
    assert stored["FIVE_MINUTE"] >= 2 * 12 * HISTORY_WINDOW
    # The bar ending at the latest 5-minute candle closed when the cycle ran (not an hourly candle's end).
    anchors = set(range(before // FIVE * FIVE, after // FIVE * FIVE + 1, FIVE))
    assert {int(r.candle_time.replace(tzinfo=UTC).timestamp()) + HOUR for r in rows} <= anchors


# --- in memory: look-ahead, the candle cache, the universe ---


class MemoryStore:
    """The GeneratorStore port over in-memory 5-minute candles; records the candle reads."""

    granularity = "FIVE_MINUTE"

    def __init__(self, frames: Mapping[str, pd.DataFrame]) -> None:
        self.rows = {s: f[list(COLUMNS)].to_numpy(dtype=float) for s, f in frames.items()}
        self.reads: list[tuple[tuple[str, ...], int | None, int]] = []
        self.saved: dict[tuple[str, datetime], tuple[SignalRow, dict[str, Any]]] = {}
        self.ids = count(1)

    async def known_symbols(self, symbols: Sequence[str]) -> set[str]:
        return {s for s in symbols if s in self.rows and len(self.rows[s])}

    async def candidates(self, until_start_time: int) -> tuple[dict[str, int], dict[str, Decimal]]:
        counts = {s: int((r[:, 0] <= until_start_time).sum()) for s, r in self.rows.items()}
        return {s: n for s, n in counts.items() if n}, {s: Decimal(1) for s in self.rows}

    async def candles(self, symbols: Sequence[str], since: int | None, until: int) -> dict[str, Any]:
        self.reads.append((tuple(symbols), since, until))
        low = -np.inf if since is None else since
        return {s: self.rows[s][(self.rows[s][:, 0] >= low) & (self.rows[s][:, 0] <= until)] for s in symbols}

    async def save_signals(
        self, rows: Sequence[dict[str, Any]]
    ) -> tuple[dict[tuple[str, datetime], SignalRow], set[tuple[str, datetime]]]:
        created = set()
        for row in rows:
            key = (row["symbol"], row["candle_time"])
            if key not in self.saved:
                fields = {name: row[name] for name in SignalRow.__dataclass_fields__ if name in row}
                self.saved[key] = (SignalRow(id=next(self.ids), **fields), row)
                created.add(key)
        return {k: self.saved[k][0] for k in [(r["symbol"], r["candle_time"]) for r in rows]}, created


def generator(model: LoadedModel, store: MemoryStore) -> SignalGenerator:
    config = GeneratorConfig(
        buy_threshold=0.5,
        sell_threshold=0.6,
        universe=UniverseRules(size=20, min_history=MIN_HISTORY + 1),
        data_source="database",
        is_mock=False,
    )
    return SignalGenerator(model, store, config, utc_now)


def what_was_signalled(result: GenerationResult, store: MemoryStore) -> dict[str, tuple[Any, ...]]:
    out = {}
    for row, _ in result.signals:
        written = store.saved[(row.symbol, row.candle_time)][1]
        out[row.symbol] = (
            written["candle_time"],
            written["price"],
            written["buy_probability"],
            written["sell_probability"],
            written["hold_probability"],
            written["regime"],
        )
    return out


@pytest.mark.parametrize("seed", [1, 2])
async def test_candles_after_as_of_never_change_a_signal(model: LoadedModel, seed: int) -> None:
    """At random 5-minute cut points (gaps included: scattered candles, whole hours, the candle just before a cut),
    the generator on all candles signals exactly as on the candles closed by then, and as the pandas reference."""
    rng = np.random.default_rng(seed)
    first = NOON - (FIVE_MINUTE_HISTORY_HOURS + 30) * HOUR
    holes = [NOON - h * HOUR for h in (3, 40, 300)]
    frames = {s: with_gaps(window(real_5m(s), first, NOON + 30 * HOUR), seed, holes) for s in ("ETH-USD", "XRP-USD")}
    cuts = np.sort(rng.choice(np.arange(NOON, NOON + 24 * HOUR, FIVE), size=5, replace=False))
    frames["XRP-USD"] = frames["XRP-USD"][frames["XRP-USD"]["timestamp"] != int(cuts[1]) - FIVE]
    live_store = MemoryStore(frames)
    live = generator(model, live_store)  # one generator walking forward: its cache reads only newer candles
    for cut in (int(c) for c in cuts):
        as_of = datetime.fromtimestamp(cut + int(rng.integers(0, FIVE)), UTC)
        seen = what_was_signalled(await live.generate(list(frames), as_of), live_store)
        closed = {s: f[f["timestamp"] + FIVE <= cut] for s, f in frames.items()}
        alone_store = MemoryStore(closed)
        alone = what_was_signalled(await generator(model, alone_store).generate(list(frames), as_of), alone_store)
        assert seen == alone
        for symbol, frame in frames.items():
            bar, probabilities = expected(frame, cut, model)
            candle_time, price, p_buy, *_ = seen[symbol]
            assert (
                candle_time
                == datetime.fromtimestamp(cut - HOUR, UTC)
                == datetime.fromtimestamp(int(bar["timestamp"]), UTC)
            )
            assert price == price_of(bar["close"])
            assert abs(p_buy - Decimal(probabilities["BUY"])) <= Decimal("0.0001")


async def test_the_cache_reads_only_newer_candles_and_a_late_candle_still_arrives(model: LoadedModel) -> None:
    frame = window(real_5m("ETH-USD"), NOON - (FIVE_MINUTE_HISTORY_HOURS + 5) * HOUR, NOON + 2 * HOUR)
    late = NOON - FIVE  # stored only after the 12:00 cycle ran
    store = MemoryStore({"ETH-USD": frame[frame["timestamp"] != late]})
    gen = generator(model, store)
    at_noon = await gen.generate(["ETH-USD"], datetime.fromtimestamp(NOON + 30, UTC))
    assert store.reads == [(("ETH-USD",), NOON - FIVE_MINUTE_HISTORY_HOURS * HOUR, NOON - FIVE)]
    store.rows["ETH-USD"] = frame[list(COLUMNS)].to_numpy(dtype=float)  # the late candle arrives
    later = await gen.generate(["ETH-USD"], datetime.fromtimestamp(NOON + 10 * 60, UTC))
    # The second cycle reads again the last 15 minutes it had (11:45, 11:50, 11:55), then up to the new anchor: not
    # the whole history again.
    assert store.reads[1] == (("ETH-USD",), NOON - FIVE + 1 - 15 * 60, NOON + FIVE)
    ((noon_row, _),) = at_noon.signals
    (later_row, created) = later.signals[0]
    assert created
    assert later_row.candle_time == datetime.fromtimestamp(NOON + 10 * 60 - HOUR, UTC)
    assert later_row.price == price_of(frame.loc[frame["timestamp"] == NOON + FIVE, "close"].iloc[0])
    # The bar ending at 12:10 includes the late 11:55 candle: it equals the reference on every candle.
    _, probabilities = expected(frame, NOON + 10 * 60, model)
    assert abs(later_row.buy_probability - Decimal(probabilities["BUY"])) <= Decimal("0.0001")
    assert noon_row.candle_time == datetime.fromtimestamp(NOON - HOUR, UTC)


async def test_the_universe_counts_five_minute_history_in_hours(model: LoadedModel) -> None:
    """Without symbols: a symbol is in the universe once its 5-minute candles make MIN_HISTORY + 1 hours."""
    full = window(real_5m("ETH-USD"), NOON - (MIN_HISTORY + 30) * HOUR, NOON)
    short = window(real_5m("LTC-USD"), NOON - (MIN_HISTORY - 10) * HOUR, NOON)  # 12 x 190 candles: too little
    store = MemoryStore({"ETH-USD": full, "LTC-USD": short})
    result = await generator(model, store).generate(None, datetime.fromtimestamp(NOON, UTC))
    assert [row.symbol for row, _ in result.signals] == ["ETH-USD"]
    assert store.reads[0][0] == ("ETH-USD",)
