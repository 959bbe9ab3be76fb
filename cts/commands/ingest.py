"""`cts ingest --source csv|coinbase`: load candles into market_candles (idempotent, gaps kept)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = (
    "load candles (CANDLE_GRANULARITY: hourly, or 5-minute) into the candles table from candle CSVs or Coinbase "
    "(idempotent)"
)


def csv_directory(configured: Path | None, granularity: str = "ONE_HOUR") -> Path:
    """The directory of the lookup order (cts.candle_data) that holds candle files of ``granularity``, or a
    one-line error."""
    from cts.candle_data import SHARED_CANDLES_DIR, CandleDataError, find_candle_directory, no_candles_message

    source = find_candle_directory(configured, granularity=granularity)
    if source is None:
        raise CandleDataError(no_candles_message(SHARED_CANDLES_DIR, "no candle directory found", granularity))
    return source.directory


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", choices=("csv", "coinbase"), default="csv")
    parser.add_argument(
        "--directory",
        type=Path,
        default=None,
        help=(
            "CSV directory (--source csv; default CANDLES_DIR, ../shared/data/candles, then var/candles); its "
            "<SYMBOL>_1h.csv.gz files, or <SYMBOL>_5m.csv.gz with CANDLE_GRANULARITY=FIVE_MINUTE"
        ),
    )
    parser.add_argument("--symbols", nargs="+", help="product ids, e.g. BTC-USD (default: all)")
    parser.add_argument("--days", type=int, default=30, help="history to fetch from Coinbase (--source coinbase)")


def run(args: argparse.Namespace) -> int:
    import asyncio

    from rich.progress import Progress, TaskID

    from common.database import create_engine
    from common.migrate import upgrade
    from cts.settings import settings_or_exit

    settings = settings_or_exit()
    granularity = settings.candle_granularity
    directory = csv_directory(args.directory or settings.candles_dir, granularity) if args.source == "csv" else None
    symbols = [s.upper() for s in args.symbols] if args.symbols else None

    async def go() -> dict[str, int]:
        engine = create_engine(settings.database_url)
        try:
            logging.getLogger("alembic").setLevel(logging.WARNING)  # `cts migrate` shows the steps
            await upgrade(engine)
            with Progress() as progress:
                tasks: dict[str, TaskID] = {}

                def tick(symbol: str, done: int, total: int) -> None:
                    if symbol not in tasks:
                        tasks[symbol] = progress.add_task(symbol, total=total)
                    progress.update(tasks[symbol], completed=done)

                if directory is not None:
                    from generator_svc.ingest import ingest_csv

                    return await ingest_csv(engine, directory, symbols=symbols, granularity=granularity, progress=tick)
                from generator_svc.ingest import ingest_coinbase_recent

                inserted: dict[str, int] = await ingest_coinbase_recent(
                    engine, settings, symbols=symbols, days=args.days, progress=tick
                )
                return inserted
        finally:
            await engine.dispose()

    inserted = asyncio.run(go())
    for symbol, count in sorted(inserted.items()):
        print(f"{symbol}: {count} new candles")
    return 0
