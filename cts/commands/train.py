"""`cts train`: train the balanced realistic XGBoost model on candle CSVs (CANDLES_DIR,
../shared/data/candles) or on the candles table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

HELP = "train the XGBoost model and write models/balanced_realistic_model_<ts>.joblib with its card"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", choices=("csv", "database"), default="csv", help="candle CSVs or DATABASE_URL")
    parser.add_argument(
        "--candles",
        type=Path,
        default=None,
        help="CSV directory (--source csv; default CANDLES_DIR, then ../shared/data/candles)",
    )
    parser.add_argument("--output", type=Path, default=None, help="model directory (default MODEL_DIR)")


def run(args: argparse.Namespace) -> int:
    import asyncio

    from rich.console import Console

    from cts.settings import settings_or_exit
    from generator_svc.training import load_csv_candles, train

    settings = settings_or_exit()
    console = Console()
    if args.source == "csv":
        from cts.commands.ingest import csv_directory

        candles = load_csv_candles(csv_directory(args.candles or settings.candles_dir))
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

        candles = asyncio.run(load())
    if not candles:
        console.print("cts train: no candles found")
        return 1
    with console.status("training ...") as status:
        path = train(candles, args.output or settings.model_dir, progress=lambda m: status.update(m))
    console.print(f"model: {path}")
    return 0
