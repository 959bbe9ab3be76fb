"""Where the candles that `make run`, `cts ingest`, `cts train` and `cts backtest` read come from.

The repository ships no third-party data. The lookup order is:

1. ``CANDLES_DIR`` when it is set (it must hold ``<SYMBOL>_1h.csv[.gz]`` files, or it is an error);
2. ``../shared/data/candles`` beside the checkout (the real candles CI and developers have; for 5-minute candles,
   which that directory does not hold, ``../shared/data/binance_2024h1`` after it);
3. ``var/candles``, the recent candles a previous `make run` downloaded from Coinbase;
4. otherwise `make run` downloads recent hourly and 5-minute candles of the top USD markets from Coinbase's public
   market endpoints into ``var/candles`` (:func:`download_recent_candles`), and if that fails too the command stops
   with one line saying what to do.

With ``granularity="FIVE_MINUTE"`` (CANDLE_GRANULARITY, `cts ingest`), the same order looks for
``<SYMBOL>_5m.csv[.gz]`` files. The files share one format: ``timestamp`` (candle start, Unix seconds, UTC),
``open``, ``high``, ``low``, ``close``, ``volume``, one file per symbol and granularity (``BTC-USD_1h.csv.gz``,
``BTC-USD_5m.csv.gz``)."""

from __future__ import annotations

import csv
import gzip
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from common.candles import FILE_SUFFIX, candle_file_pattern

if TYPE_CHECKING:
    from generator_svc.market_data import Candle

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_CANDLES_DIR = REPO_ROOT.parent / "shared" / "data" / "candles"
# The shared 5-minute candles (20 markets, 2024 H1, with their hourly candles): looked at after SHARED_CANDLES_DIR
# when 5-minute files are wanted.
SHARED_FIVE_MINUTE_DIR = REPO_ROOT.parent / "shared" / "data" / "binance_2024h1"
DOWNLOADED_CANDLES_DIR = Path("var/candles")
HOURLY_PATTERN = "*_1h.csv*"

# What `make run` fetches on a machine without ../shared: enough hourly candles for the generator's warm-up
# (REPLAY_WARMUP_CANDLES, 720 by default) plus a replay of about two months, and the last week in 5-minute candles.
DOWNLOAD_HOURLY_DAYS = 90
DOWNLOAD_FIVE_MINUTE_DAYS = 7

Progress = Callable[[str, int, int], None]  # (what, done, total)


class CandleDataError(Exception):
    """No usable candle directory: the message is one line that says what to do."""


@dataclass(frozen=True)
class CandleSource:
    directory: Path
    origin: str  # "CANDLES_DIR", "shared" or "downloaded"


def has_hourly_files(directory: Path) -> bool:
    return has_candle_files(directory, "ONE_HOUR")


def has_candle_files(directory: Path, granularity: str) -> bool:
    """Whether ``directory`` holds candle files of ``granularity`` (``*_1h.csv*``, ``*_5m.csv*``)."""
    return directory.is_dir() and any(directory.glob(candle_file_pattern(granularity)))


def find_candle_directory(
    configured: Path | None,
    *,
    shared: Path | None = None,
    downloaded: Path | None = None,
    granularity: str = "ONE_HOUR",
) -> CandleSource | None:
    """The first directory in the lookup order that holds candle files of ``granularity``, or None when only a
    download can help.

    A configured directory (CANDLES_DIR) that does not hold such files is an error, never skipped."""
    if shared is not None:
        shared_dirs = [shared]
    elif granularity == "ONE_HOUR":
        shared_dirs = [SHARED_CANDLES_DIR]
    else:
        shared_dirs = [SHARED_CANDLES_DIR, SHARED_FIVE_MINUTE_DIR]
    downloaded = DOWNLOADED_CANDLES_DIR if downloaded is None else downloaded
    if configured is not None:
        if not has_candle_files(configured, granularity):
            raise CandleDataError(
                f"{configured} holds no <SYMBOL>_{FILE_SUFFIX[granularity]}.csv.gz candle files "
                "(CANDLES_DIR or --directory): name a directory that does"
            )
        return CandleSource(configured, "CANDLES_DIR")
    for directory in shared_dirs:
        if has_candle_files(directory, granularity):
            return CandleSource(directory, "shared")
    if has_candle_files(downloaded, granularity):
        return CandleSource(downloaded, "downloaded")
    return None


def no_candles_message(shared: Path, reason: str, granularity: str = "ONE_HOUR") -> str:
    return (
        f"no candles to replay: {reason}. Put the candle CSVs in {shared} or set CANDLES_DIR to a directory of "
        f"<SYMBOL>_{FILE_SUFFIX[granularity]}.csv.gz files, or run again with internet access so recent candles can "
        "be downloaded from Coinbase"
    )


def _csv_row(c: Candle) -> tuple[int, str, str, str, str, str]:
    # format(.., "f"): never exponent notation (SHIB trades around 0.00002)
    return (
        c.start,
        format(c.open, "f"),
        format(c.high, "f"),
        format(c.low, "f"),
        format(c.close, "f"),
        format(c.volume, "f"),
    )


def write_candle_file(path: Path, rows: Sequence[tuple[int, str, str, str, str, str]]) -> None:
    """Write rows (start, open, high, low, close, volume) in the shared CSV format, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    with gzip.open(partial, "wt", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("timestamp", "open", "high", "low", "close", "volume"))
        writer.writerows(rows)
    partial.replace(path)


async def download_recent_candles(
    base_url: str,
    directory: Path,
    *,
    universe_size: int,
    hourly_days: int = DOWNLOAD_HOURLY_DAYS,
    five_minute_days: int = DOWNLOAD_FIVE_MINUTE_DAYS,
    now: float | None = None,
    progress: Progress | None = None,
) -> list[str]:
    """Fetch recent closed hourly and 5-minute candles of the top ``universe_size`` USD markets from Coinbase's
    public market endpoints into ``directory``; returns the symbols written. Raises MarketDataError on failure."""
    from common.candles import GRANULARITY_SECONDS
    from generator_svc.market_data import CoinbaseMarketClient
    from generator_svc.universe import UniverseRules, top_tradable

    client = CoinbaseMarketClient(base_url, max_retries=2)
    try:
        products = await client.list_products()
        symbols = top_tradable(products, UniverseRules(universe_size, 0, frozenset(), frozenset()))
        plan = [("ONE_HOUR", hourly_days), ("FIVE_MINUTE", five_minute_days)]
        total = len(symbols) * len(plan)
        done = 0
        clock = time.time() if now is None else now
        for symbol in symbols:
            for granularity, days in plan:
                step = GRANULARITY_SECONDS[granularity]
                end = int(clock) // step * step  # the candle starting at `end` is still open
                candles = await client.candles(symbol, end - days * 86400, end, granularity)
                rows = [_csv_row(c) for c in candles]
                write_candle_file(directory / f"{symbol}_{FILE_SUFFIX[granularity]}.csv.gz", rows)
                done += 1
                if progress is not None:
                    progress(symbol, done, total)
        return symbols
    finally:
        await client.close()
