"""`cts backtest [--symbols ...] [--start ...] [--end ...]`: the production decision code on historical candles,
in market time, with a report (equity curve PNG, trades, metrics)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HELP = "replay candles through the production features, model, bridge rules and paper fills; write a report"


def _date(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--symbols", nargs="+", help="product ids (default: every symbol with candles)")
    parser.add_argument(
        "--start",
        type=_date,
        help="first candle time, ISO (default: the start of the model's out-of-sample test period)",
    )
    parser.add_argument("--end", type=_date, help="last candle time, ISO")
    parser.add_argument("--output", type=Path, default=None, help="report directory (default reports/backtest-<ts>)")


def run(args: argparse.Namespace) -> int:
    import asyncio

    from rich.console import Console
    from rich.progress import Progress

    from common.database import create_engine
    from cts.backtest import run_backtest
    from cts.backtest_report import write_report
    from cts.settings import settings_or_exit
    from generator_svc.candle_repository import load_candles
    from generator_svc.features import HISTORY_WINDOW
    from generator_svc.model_store import load_model

    settings = settings_or_exit()
    console = Console()
    model = load_model(settings.model_dir, settings.model_path)

    async def load() -> dict[str, Any]:
        from sqlalchemy import distinct, select

        from common.tables import market_candles

        engine = create_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                symbols = args.symbols or sorted(
                    (await conn.execute(select(distinct(market_candles.c.symbol)))).scalars()
                )
                test_from = model.card.get("split", {}).get("test_from")
                begin = args.start or (datetime.fromisoformat(test_from) if test_from else None)
                # Features need MIN_HISTORY earlier candles; decisions before ``begin`` are dropped below.
                start = int(begin.timestamp()) - 3600 * 3 * HISTORY_WINDOW if begin else None
                end = int(args.end.timestamp()) if args.end else None
                return dict(await load_candles(conn, symbols, settings.candle_granularity, start, end))
        finally:
            await engine.dispose()

    candles = {s: df for s, df in asyncio.run(load()).items() if len(df)}
    test_from = model.card.get("split", {}).get("test_from")
    first_decision = args.start or (datetime.fromisoformat(test_from) if test_from else None)
    if not candles:
        console.print("cts backtest: no candles; run `cts ingest --source csv` first")
        return 1
    with Progress(console=console) as progress:
        task = progress.add_task("backtest", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        result = run_backtest(candles, model, settings, progress=tick, start=first_decision)
    meta = {
        "model": model.file_name,
        "symbols": ",".join(sorted(candles)),
        "from": min(str(r.index[0]) for r in [result.equity]) if not result.equity.empty else "",
        "to": str(result.equity.index[-1]) if not result.equity.empty else "",
        "buy_threshold": settings.buy_threshold,
        "sell_threshold": settings.sell_threshold,
        "bridge_min_confidence": settings.bridge_min_confidence,
        "trade_amount_usd": str(settings.trade_amount_usd),
        "starting_cash_usd": str(settings.paper_starting_cash_usd),
        "taker_fee_rate": str(settings.paper_taker_fee_rate),
        "slippage_bps": str(settings.paper_slippage_bps),
    }
    out = args.output or Path("reports") / f"backtest-{datetime.now(UTC):%Y%m%d_%H%M%S}"
    paths = write_report(result, out, meta)
    for key, value in result.metrics.items():
        console.print(f"{key:>20}: {value}")
    console.print(f"report: {paths['equity_png']} {paths['trades_csv']} {paths['summary_json']}")
    return 0
