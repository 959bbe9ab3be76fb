"""Where `make run` finds its candles: CANDLES_DIR, ../shared/data/candles, var/candles, else a download from
Coinbase's public market endpoints, else one line that says what to do."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import cts.candle_data as candle_data
from common.database import create_engine
from common.migrate import upgrade
from common.tables import market_candles
from cts.candle_data import (
    SHARED_CANDLES_DIR,
    SHARED_FIVE_MINUTE_DIR,
    CandleDataError,
    download_recent_candles,
    find_candle_directory,
)
from cts.main import main
from generator_svc.ingest import ingest_csv, read_csv
from tests.conftest import make_settings
from tests.support.fake_coinbase import FakeCoinbase, market_product

HOUR = 3600


def _candle_dir(path: Path, symbol: str = "BTC-USD") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    with gzip.open(path / f"{symbol}_1h.csv.gz", "wt") as fh:
        fh.write("timestamp,open,high,low,close,volume\n0,1,1,1,1,1\n")
    return path


def test_the_shared_candles_are_beside_the_checkout() -> None:
    # CI and developers have ../shared next to the clone; every data test relies on it.
    assert any(SHARED_CANDLES_DIR.glob("*_1h.csv.gz")), SHARED_CANDLES_DIR


def test_lookup_order(tmp_path: Path) -> None:
    configured = _candle_dir(tmp_path / "configured")
    shared = _candle_dir(tmp_path / "shared")
    downloaded = _candle_dir(tmp_path / "var" / "candles")
    missing = tmp_path / "missing"

    def find(configured_dir: Path | None, shared_dir: Path, downloaded_dir: Path) -> Any:
        source = find_candle_directory(configured_dir, shared=shared_dir, downloaded=downloaded_dir)
        return None if source is None else (source.directory, source.origin)

    assert find(configured, shared, downloaded) == (configured, "CANDLES_DIR")
    assert find(None, shared, downloaded) == (shared, "shared")
    assert find(None, missing, downloaded) == (downloaded, "downloaded")
    assert find(None, missing, missing) is None  # only a download can help now


def test_a_configured_directory_without_candles_is_an_error_not_skipped(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CandleDataError, match=r"empty holds no <SYMBOL>_1h\.csv\.gz candle files"):
        find_candle_directory(empty, shared=_candle_dir(tmp_path / "shared"), downloaded=tmp_path)


@pytest.fixture
def fake() -> Iterator[FakeCoinbase]:
    server = FakeCoinbase().start()
    yield server
    server.stop()


async def test_download_writes_recent_candles_of_the_top_markets_in_the_shared_format(
    fake: FakeCoinbase, tmp_path: Path
) -> None:
    now = time.time()
    last = (int(now) // HOUR - 1) * HOUR
    fake.market_products = [
        market_product("BTC-USD", "1000", "60000"),
        market_product("SHIB-USD", "900000000000", "0.00002345"),
        market_product("ETH-EUR", "99999", "3000"),  # not a USD market
    ]
    for symbol, price in (("BTC-USD", "60000.5"), ("SHIB-USD", "0.00002345")):
        fake.market_candles[symbol] = [(last - i * HOUR, price, price, price, price, "10") for i in range(48)]
        last_5m = int(now) // 300 * 300 - 300  # the latest closed 5-minute candle
        fake.market_candles_5m[symbol] = [(last_5m - i * 300, price, price, price, price, "1") for i in range(300)]
    seen: list[tuple[str, int, int]] = []
    symbols = await download_recent_candles(
        fake.base_url,
        tmp_path,
        universe_size=20,
        hourly_days=2,
        five_minute_days=1,
        now=now,
        progress=lambda s, d, t: seen.append((s, d, t)),
    )
    assert sorted(symbols) == ["BTC-USD", "SHIB-USD"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # noqa: ASYNC240 (a test's tmp dir)
        "BTC-USD_1h.csv.gz",
        "BTC-USD_5m.csv.gz",
        "SHIB-USD_1h.csv.gz",
        "SHIB-USD_5m.csv.gz",
    ]
    assert seen[-1][1:] == (4, 4)
    frame = read_csv(tmp_path / "SHIB-USD_1h.csv.gz")
    assert len(frame) == 48
    assert int(frame["timestamp"].iloc[-1]) == last
    with gzip.open(tmp_path / "SHIB-USD_1h.csv.gz", "rt") as fh:
        raw = fh.read()
    assert "0.00002345" in raw
    assert "E-" not in raw
    assert len(read_csv(tmp_path / "BTC-USD_5m.csv.gz")) == 288  # one day of closed 5-minute candles
    assert find_candle_directory(None, shared=tmp_path / "nowhere", downloaded=tmp_path) is not None


async def test_no_candles_and_no_download_is_one_line_that_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cts.commands.up import _candle_directory

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(candle_data, "SHARED_CANDLES_DIR", tmp_path / "no-shared")
    # Nothing listens on port 9: the download fails at once.
    settings = make_settings("sqlite+aiosqlite:///x.db", coinbase_api_base_url="http://127.0.0.1:9/api/v3/brokerage")
    with pytest.raises(CandleDataError) as raised:
        await asyncio.wait_for(_candle_directory(settings), 60)
    message = str(raised.value)
    assert "\n" not in message
    assert "no candles to replay" in message
    assert "CANDLES_DIR" in message
    assert "no-shared" in message


def _both_granularities(path: Path, symbol: str = "ETH-USD", hours: int = 3) -> Path:
    """A directory with ``hours`` hourly candles and the same hours in 5-minute candles of ``symbol``."""
    path.mkdir(parents=True, exist_ok=True)
    start = 1_714_564_800
    with gzip.open(path / f"{symbol}_1h.csv.gz", "wt") as fh:
        fh.write("timestamp,open,high,low,close,volume\n")
        fh.writelines(f"{start + i * HOUR},10,11,9,10.5,100\n" for i in range(hours))
    with gzip.open(path / f"{symbol}_5m.csv.gz", "wt") as fh:
        fh.write("timestamp,open,high,low,close,volume\n")
        fh.writelines(f"{start + i * 300},10,11,9,10.5,8\n" for i in range(12 * hours) if i != 5)  # one gap
    return path


async def _stored(url: str) -> dict[str, tuple[int, int]]:
    """{granularity: (candles, first start)}."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            query = select(market_candles.c.granularity, func.count(), func.min(market_candles.c.start_time))
            rows = (await conn.execute(query.group_by(market_candles.c.granularity))).all()
    finally:
        await engine.dispose()
    return {granularity: (int(n), int(first)) for granularity, n, first in rows}


async def test_ingest_reads_the_files_of_the_granularity(database_url: str, tmp_path: Path) -> None:
    directory = _both_granularities(tmp_path / "candles")
    engine = create_engine(database_url)
    try:
        five = await ingest_csv(engine, directory, granularity="FIVE_MINUTE")
        again = await ingest_csv(engine, directory, granularity="FIVE_MINUTE")
        hourly = await ingest_csv(engine, directory, granularity="ONE_HOUR")
    finally:
        await engine.dispose()
    assert five == {"ETH-USD": 35}  # 36 five-minute candles, one missing: the gap stays a gap
    assert again == {"ETH-USD": 0}
    assert hourly == {"ETH-USD": 3}
    assert await _stored(database_url) == {"FIVE_MINUTE": (35, 1_714_564_800), "ONE_HOUR": (3, 1_714_564_800)}


def test_five_minute_candles_are_looked_up_where_5m_files_are(tmp_path: Path) -> None:
    hourly_only = _candle_dir(tmp_path / "hourly")
    both = _both_granularities(tmp_path / "both")
    source = find_candle_directory(None, shared=both, downloaded=tmp_path / "none", granularity="FIVE_MINUTE")
    assert source is not None
    assert source.directory == both
    assert find_candle_directory(None, shared=hourly_only, downloaded=tmp_path, granularity="FIVE_MINUTE") is None
    with pytest.raises(CandleDataError, match=r"hourly holds no <SYMBOL>_5m\.csv\.gz candle files"):
        find_candle_directory(hourly_only, granularity="FIVE_MINUTE")
    # ../shared/data/candles has hourly files only: the shared 5-minute candles are the 2024 H1 set beside it.
    if SHARED_FIVE_MINUTE_DIR.is_dir():
        default = find_candle_directory(None, downloaded=tmp_path / "none", granularity="FIVE_MINUTE")
        assert default is not None
        assert (default.directory, default.origin) == (SHARED_FIVE_MINUTE_DIR, "shared")


def test_cts_ingest_loads_5m_files_as_five_minute_candles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'candles.db'}"
    directory = _both_granularities(tmp_path / "candles", "SOL-USD")
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.setenv("CANDLE_GRANULARITY", "FIVE_MINUTE")
    assert main(["ingest", "--source", "csv", "--directory", str(directory)]) == 0
    assert "SOL-USD: 35 new candles" in capsys.readouterr().out
    monkeypatch.setenv("CANDLE_GRANULARITY", "ONE_HOUR")
    assert main(["ingest", "--source", "csv", "--directory", str(directory)]) == 0
    assert "SOL-USD: 3 new candles" in capsys.readouterr().out

    async def stored() -> dict[str, tuple[int, int]]:
        engine = create_engine(url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()
        return await _stored(url)

    assert asyncio.run(stored()) == {"FIVE_MINUTE": (35, 1_714_564_800), "ONE_HOUR": (3, 1_714_564_800)}
