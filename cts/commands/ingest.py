"""`cts ingest --source csv|coinbase`: load candles into market_candles (idempotent, gaps kept)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "load hourly candles into the candles table from the bundled CSVs or Coinbase (idempotent)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", choices=("csv", "coinbase"), default="csv")
    parser.add_argument("--directory", type=Path, default=Path("data/candles"), help="CSV directory (--source csv)")
    parser.add_argument("--symbols", nargs="+", help="product ids, e.g. BTC-USD (default: all)")
    parser.add_argument("--days", type=int, default=30, help="history to fetch from Coinbase (--source coinbase)")


def run(args: argparse.Namespace) -> int:
    import asyncio

    from rich.progress import Progress, TaskID

    from common.database import create_engine
    from common.migrate import upgrade
    from cts.settings import settings_or_exit

    settings = settings_or_exit()
    symbols = [s.upper() for s in args.symbols] if args.symbols else None

    async def go() -> dict[str, int]:
        engine = create_engine(settings.database_url)
        try:
            await upgrade(engine)
            with Progress() as progress:
                tasks: dict[str, TaskID] = {}

                def tick(symbol: str, done: int, total: int) -> None:
                    if symbol not in tasks:
                        tasks[symbol] = progress.add_task(symbol, total=total)
                    progress.update(tasks[symbol], completed=done)

                if args.source == "csv":
                    from generator_svc.ingest import ingest_csv

                    return await ingest_csv(
                        engine, args.directory, symbols=symbols, granularity=settings.candle_granularity, progress=tick
                    )
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
