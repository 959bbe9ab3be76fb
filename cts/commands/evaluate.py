"""`cts evaluate --directory DIR [--start ISO] [--end ISO] [--model PATH] [--output DIR]`: the model against the
class-frequency prior and the majority class, its calibration, the rule's signals and the backtest, on any candle
directory in the format of ../shared/data; JSON and Markdown."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

HELP = "evaluate the model on a candle directory (classification, calibration, signals, backtest): JSON and Markdown"


def _date(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--directory",
        type=Path,
        required=True,
        help="candle directory: <SYMBOL>_1h.csv.gz and/or <SYMBOL>_5m.csv.gz (the format of ../shared/data)",
    )
    parser.add_argument("--start", type=_date, help="first bar start, ISO (default: the first with full history)")
    parser.add_argument("--end", type=_date, help="last bar start, ISO (default: the last with a label)")
    parser.add_argument("--model", type=Path, default=None, help="model .joblib (default: MODEL_PATH / MODEL_DIR)")
    parser.add_argument("--output", type=Path, default=None, help="report directory (default reports/evaluate-<ts>)")
    parser.add_argument("--no-backtest", action="store_true", help="skip the backtest")


def run(args: argparse.Namespace) -> int:
    import sys

    from rich.console import Console

    from cts.evaluate import evaluate_directory, headline, write_reports
    from cts.settings import settings_or_exit
    from generator_svc.model_store import load_model
    from generator_svc.training import load_candle_directory

    settings = settings_or_exit()
    console = Console(highlight=False, stderr=True)
    if not args.directory.is_dir():
        print(f"cts evaluate: {args.directory}: not a readable directory", file=sys.stderr)
        return 1
    candles = load_candle_directory(args.directory)  # a file it cannot read: one line, before anything else
    if args.model is not None:
        model = load_model(args.model.parent, args.model)
    else:
        model = load_model(settings.model_dir, settings.model_path)
    with console.status("evaluating ...") as status:
        report = evaluate_directory(
            args.directory,
            model,
            settings,
            start=args.start,
            end=args.end,
            backtest=not args.no_backtest,
            candles=candles,
            progress=lambda message: status.update(message),
        )
    out = args.output or Path("reports") / f"evaluate-{datetime.now(UTC):%Y%m%d_%H%M%S}"
    paths = write_reports(report, out)
    print(f"evaluation of {model.file_name} on {args.directory}")
    for line in headline(report):
        print(f"  {line}")
    if report.get("warning"):
        print(report["warning"])
    for path in paths.values():
        print(f"report: {path}")
    return 0
