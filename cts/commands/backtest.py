"""`cts backtest [--symbols ...] [--start ...] [--end ...]`: the production decision code on historical candles,
in market time, with a report (equity curve PNG, trades, metrics)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
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


FILE_NOTES = {
    "equity_png": "equity in % against buy-and-hold and cash, drawdown, exposure, entries and exits",
    "trades_csv": "every order: money in cents, sizes in the symbol's increment",
    "summary_md": "the results as tables: headline, per symbol, exits and refusals by reason, settings",
    "summary_json": "the same numbers, unrounded",
}


def symbol_problem(wanted: Sequence[str], known: Sequence[str]) -> str | None:
    """One line when a requested symbol has no candles in the database, else None."""
    unknown = [s for s in wanted if s not in known]
    if not unknown:
        return None
    listing = ", ".join(known) if known else "none (the database has no candles)"
    return f"unknown symbol{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; symbols with candles: {listing}"


def run(args: argparse.Namespace) -> int:
    import asyncio

    from rich.console import Console
    from rich.progress import Progress

    from common.database import create_engine
    from cts.backtest import run_backtest
    from cts.backtest_report import headline, training_overlap, write_report
    from cts.settings import settings_or_exit
    from generator_svc.candle_repository import load_candles
    from generator_svc.features import HISTORY_WINDOW
    from generator_svc.model_store import load_model
    from generator_svc.replay import training_period

    settings = settings_or_exit()
    console = Console(soft_wrap=True, highlight=False)

    async def known_symbols() -> list[str]:
        from sqlalchemy import distinct, select

        from common.tables import market_candles

        engine = create_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                query = select(distinct(market_candles.c.symbol)).where(
                    market_candles.c.granularity == settings.candle_granularity
                )
                return sorted((await conn.execute(query)).scalars())
        finally:
            await engine.dispose()

    known = asyncio.run(known_symbols())
    if not known:
        print("cts backtest: no candles in the database; run `cts ingest --source csv` first", file=sys.stderr)
        return 1
    symbols = [s.upper() for s in args.symbols] if args.symbols else known
    problem = symbol_problem(symbols, known)
    if problem:
        print(f"cts backtest: {problem}", file=sys.stderr)
        return 2

    model = load_model(settings.model_dir, settings.model_path)
    first_decision = args.start

    async def load() -> dict[str, Any]:
        engine = create_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                # Features need MIN_HISTORY earlier candles; decisions before ``first_decision`` are dropped later.
                start = int(first_decision.timestamp()) - 3600 * 3 * HISTORY_WINDOW if first_decision else None
                end = int(args.end.timestamp()) if args.end else None
                return dict(await load_candles(conn, symbols, settings.candle_granularity, start, end))
        finally:
            await engine.dispose()

    loaded = asyncio.run(load())
    candles = {s: df for s, df in loaded.items() if len(df)}
    period = training_period(model.card)
    # Never the model's own training period: from its out-of-sample test period when the candles reach into the
    # training period, else (all earlier: out of sample anyway) from the first candle.
    last_candle = max((int(df["timestamp"].max()) for df in candles.values()), default=0)
    if first_decision is None and period is not None and last_candle >= period[0]:
        first_decision = datetime.fromtimestamp(period[1], UTC)
    if not candles:
        since = f"{first_decision:%Y-%m-%d}" if first_decision else "the first candle"
        until = f"{args.end:%Y-%m-%d}" if args.end else "the last candle"
        print(f"cts backtest: no candles of {', '.join(symbols)} from {since} to {until}", file=sys.stderr)
        return 1
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("backtest", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        result = run_backtest(candles, model, settings, progress=tick, start=first_decision)
    if result.equity.empty:
        print(
            "cts backtest: no candle in the period has the features' full history; widen --start/--end",
            file=sys.stderr,
        )
        return 1
    meta = {
        "model": model.file_name,
        "symbols": ",".join(sorted(candles)),
        "granularity": settings.candle_granularity,
        "buy_threshold": settings.buy_threshold,
        "sell_threshold": settings.sell_threshold,
        "bridge_min_confidence": settings.bridge_min_confidence,
        "trade_amount_usd": str(settings.trade_amount_usd),
        "starting_cash_usd": str(settings.paper_starting_cash_usd),
        "taker_fee_rate": str(settings.paper_taker_fee_rate),
        "slippage_bps": str(settings.paper_slippage_bps),
    }
    first = result.decisions[0].candle_time
    last = result.decisions[-1].candle_time
    warning = training_overlap(model.card, first, last)
    out = args.output or Path("reports") / f"backtest-{datetime.now(UTC):%Y%m%d_%H%M%S}"
    paths = write_report(result, out, meta, [warning] if warning else [])
    console.print(f"backtest of {', '.join(sorted(candles))} with {model.file_name}")
    rows = headline(result)
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        console.print(f"  {label:<{width}}  {value}")
    if warning:
        console.print(f"[bold yellow]{warning}[/]")
    console.print("report:")
    for key, path in paths.items():
        console.print(f"  {path}  ({FILE_NOTES[key]})")
    return 0
