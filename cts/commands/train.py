"""`cts train`: walk-forward training of the XGBoost model with calibrated probabilities, on a candle directory
(hourly and/or 5-minute CSVs: CANDLES_DIR, ../shared/data/candles, or --candles) or on the candles table."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

HELP = "train the XGBoost model and write models/balanced_realistic_model_<ts>.joblib with its card"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", choices=("csv", "database"), default="csv", help="candle CSVs or DATABASE_URL")
    parser.add_argument(
        "--candles",
        type=Path,
        default=None,
        help="CSV directory of <SYMBOL>_1h.csv.gz and/or <SYMBOL>_5m.csv.gz files; 5-minute files give hourly "
        "bars at all 12 phases (--source csv; default CANDLES_DIR, then ../shared/data/candles)",
    )
    parser.add_argument("--output", type=Path, default=None, help="model directory (default MODEL_DIR)")
    parser.add_argument(
        "--seed", type=int, default=None, help="XGBoost seed (default 42): same data and seed, same model"
    )


def run(args: argparse.Namespace) -> int:
    import asyncio

    from rich.console import Console

    from cts.settings import settings_or_exit
    from generator_svc.training import CandleSet, TrainingConfig, load_candle_directory, train

    settings = settings_or_exit()
    console = Console(highlight=False)
    if args.source == "csv":
        from cts.commands.ingest import csv_directory

        directory = args.candles if args.candles is not None else csv_directory(settings.candles_dir)
        candles = load_candle_directory(directory)
    else:
        from common.database import create_engine
        from generator_svc.candle_repository import all_candles

        async def load() -> dict[str, Any]:
            engine = create_engine(settings.database_url)
            try:
                async with engine.connect() as conn:
                    return dict(await all_candles(conn, settings.candle_granularity))
            finally:
                await engine.dispose()

        hourly = asyncio.run(load())
        if not hourly:
            console.print("cts train: no candles found")
            return 1
        candles = CandleSet(hourly=hourly, five_minute={})
    config = TrainingConfig() if args.seed is None else TrainingConfig(seed=args.seed)
    started = time.monotonic()
    with console.status("training ...") as status:

        def progress(message: str) -> None:
            status.update(message)
            console.log(message)

        path = train(candles, args.output or settings.model_dir, config=config, progress=progress)
    console.print(f"model: {path} ({time.monotonic() - started:.0f} s)")
    return 0
