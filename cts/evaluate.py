"""`cts evaluate`: how the model does on a candle directory, against the baselines, as JSON and Markdown.

The rows are built as in training (generator_svc/training.py): hourly bars at all twelve 5-minute phases where a
symbol has 5-minute candles (``<SYM>_5m.csv.gz``), else its hourly candles (``<SYM>_1h.csv.gz``); the label horizon
and fee are the model card's. Measured on the labelled rows with the features' full history whose bar starts in
[start, end]:

- the model (calibrated probabilities, as the generator uses them): per-class precision, recall and support,
  accuracy, log loss, expected calibration error and the reliability table per class; the uncalibrated booster's
  log loss and ECE beside them;
- the baselines: the class-frequency prior and the majority class (of these rows: hindsight), and the prior of the
  model's training labels;
- the rule's BUY and SELL signals (BUY_THRESHOLD / SELL_THRESHOLD): precision against the base rate, mean forward
  return and mean net return after a round trip of fees;
- the backtest (cts.backtest.run_backtest, the code of `cts backtest`) on the hourly candles, against equal-weight
  buy-and-hold and against holding cash (0 %);
- each goal of issue 17 as met or not, in words.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.config import Settings
from generator_svc.bars import hourly_bars_from_5m
from generator_svc.calibration import calibration_report, log_loss
from generator_svc.model_store import CLASSES, LoadedModel
from generator_svc.training import (
    CandleSet,
    TrainingConfig,
    build_dataset,
    goals,
    json_ready,
    load_candle_directory,
    prediction_metrics,
)

JSON_NAME = "evaluation.json"
MARKDOWN_NAME = "evaluation.md"


class EvaluationError(Exception):
    """Nothing to evaluate; the message says why, in one line."""


def _iso(ts: int | np.integer[Any]) -> str:
    return datetime.fromtimestamp(int(ts), UTC).isoformat()


def hourly_candles(candles: CandleSet) -> dict[str, pd.DataFrame]:
    """The hourly candles the backtest replays: the ``_1h`` file, else the 5-minute candles' phase-0 bars."""
    out = {}
    for symbol in candles.symbols:
        if symbol in candles.hourly:
            out[symbol] = candles.hourly[symbol]
        else:
            bars = hourly_bars_from_5m(candles.five_minute[symbol], phase=0)
            out[symbol] = bars.drop(columns="candles")
    return out


def _drawdown(series: pd.Series) -> float | None:
    if series.empty:
        return None
    return float((series / series.cummax() - 1).min())


def backtest_section(
    candles: CandleSet,
    model: LoadedModel,
    settings: Settings,
    start: datetime | None,
    end: datetime | None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    from cts.backtest import run_backtest

    hourly = hourly_candles(candles)
    if end is not None:
        cut = int(end.timestamp())
        hourly = {s: f[f["timestamp"] <= cut].reset_index(drop=True) for s, f in hourly.items()}
    hourly = {s: f for s, f in hourly.items() if len(f)}
    if not hourly:
        return {"skipped": "no hourly candle in the period"}
    result = run_backtest(hourly, model, settings, progress=progress, start=start)
    if result.equity.empty:
        return {"skipped": "no candle in the period has the features' full history"}
    metrics = dict(result.metrics)
    return {
        "definition": "cts.backtest.run_backtest (the code of `cts backtest`): the generator's decisions on every "
        "hourly candle, the bridge's rules, paper fills with fees and slippage, long-only",
        "from": result.equity.index[0].isoformat(),
        "to": result.equity.index[-1].isoformat(),
        "total_return": metrics.get("total_return"),
        "buy_and_hold_return": metrics.get("buy_and_hold_return"),
        "cash_return": 0.0,
        "max_drawdown": metrics.get("max_drawdown"),
        "buy_and_hold_max_drawdown": _drawdown(result.buy_and_hold),
        "metrics": metrics,
    }


def training_overlap(card: Mapping[str, Any], first: int, last: int) -> str | None:
    """One line when [first, last] (bar starts) meets the model's training or validation data."""
    split = card.get("split") or {}
    if not split.get("train_from") or not split.get("test_from"):
        return None
    begin = int(datetime.fromisoformat(split["train_from"]).timestamp())
    until = int(datetime.fromisoformat(split["test_from"]).timestamp())
    if last < begin or first >= until:
        return None
    return (
        f"warning: the period overlaps the model's training and validation data ({split['train_from'][:10]} to "
        f"{split['test_from'][:10]}): in-sample, better than on unseen data"
    )


def evaluate_directory(
    directory: Path,
    model: LoadedModel,
    settings: Settings,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    backtest: bool = True,
    candles: CandleSet | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The evaluation of ``model`` on the candles of ``directory`` (see the module's description); ``candles``:
    the directory's candles when the caller has read them already."""
    say = progress or (lambda _message: None)
    if candles is None:
        say(f"reading {directory}")
        candles = load_candle_directory(directory)
    label = model.card.get("label") or {}
    config = TrainingConfig(
        horizon_hours=int(label.get("horizon_hours", 24)),
        fee_per_side=float(label.get("fee_per_side", 0.006)),
        purge_hours=max(int(label.get("horizon_hours", 24)), 1),
    )
    say("computing bars, features and labels")
    data = build_dataset(candles, config)
    mask = np.ones(len(data.times), dtype=bool)
    if start is not None:
        mask &= data.times >= int(start.timestamp())
    if end is not None:
        mask &= data.times <= int(end.timestamp())
    if not mask.any():
        raise EvaluationError(
            f"{directory}: no labelled bar with the features' full history "
            f"{'from ' + start.isoformat() if start else ''} {'to ' + end.isoformat() if end else ''}".rstrip()
        )
    features, labels, forward = data.features[mask], data.labels[mask], data.forward[mask]
    say(f"predicting {int(mask.sum()):,} rows")
    calibrated = model.predict_proba(features)
    raw = model.raw_proba(features)
    frequencies = model.card.get("training_class_frequencies")
    training_prior = (
        np.array([float(frequencies[name]) for name in CLASSES]) if isinstance(frequencies, Mapping) else None
    )
    metrics = prediction_metrics(
        calibrated,
        labels,
        forward,
        training_prior=training_prior,
        fee_per_side=config.fee_per_side,
        buy_threshold=settings.buy_threshold,
        sell_threshold=settings.sell_threshold,
    )
    metrics["uncalibrated"] = {
        "log_loss": log_loss(raw, labels),
        "ece": {k: v["ece"] for k, v in calibration_report(raw, labels, CLASSES).items()},
    }
    times = data.times[mask]
    symbols = sorted(set(data.symbols[mask].tolist()))
    report: dict[str, Any] = {
        "model": model.file_name,
        "sha256": model.sha256,
        "directory": str(directory),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "period": {"from": _iso(times.min()), "to": _iso(times.max()), "times": "bar starts"},
        "symbols": symbols,
        "bars": {s: data.sources[s] for s in symbols},
        "label": {"horizon_hours": config.horizon_hours, "fee_per_side": config.fee_per_side},
        "rule": {"buy_threshold": settings.buy_threshold, "sell_threshold": settings.sell_threshold},
        "warning": training_overlap(model.card, int(times.min()), int(times.max())),
        "metrics": metrics,
    }
    if backtest:
        say("backtest")
        report["backtest"] = backtest_section(candles, model, settings, start, end)
    section = report.get("backtest")
    report["goals"] = goals(metrics, section if section and "skipped" not in section else None)
    return report


# -------------------------------------------------------------------------------------------------- the reports


def _num(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value: Any, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f} %"


def markdown(report: Mapping[str, Any]) -> str:
    m = report["metrics"]
    lines = [
        f"# Evaluation of {report['model']}",
        "",
        f"Candles: `{report['directory']}`, {', '.join(report['symbols'])}; bar starts {report['period']['from']} "
        f"to {report['period']['to']}; {m['rows']:,} labelled rows (horizon {report['label']['horizon_hours']} h, "
        f"fee {report['label']['fee_per_side']:.2%} per side).",
        "",
    ]
    if report.get("warning"):
        lines += [f"**{report['warning']}**", ""]
    lines += ["## Goals", ""]
    for goal in report["goals"].values():
        mark = {True: "met", False: "not met", None: "not measurable"}[goal["met"]]
        lines.append(f"- {mark}: {goal['words']}")
    lines += [
        "",
        "## Model and baselines",
        "",
        "| | log loss | accuracy |",
        "|---|---:|---:|",
        f"| model (calibrated) | {_num(m['model']['log_loss'])} | {_num(m['model']['accuracy'], 3)} |",
        f"| model (uncalibrated booster) | {_num(m['uncalibrated']['log_loss'])} | |",
        f"| class-frequency prior (these rows) | {_num(m['prior']['log_loss'])} | {_num(m['prior']['accuracy'], 3)} |",
        f"| majority class ({m['majority_class']['class']}) | {_num(m['majority_class']['log_loss'])} | "
        f"{_num(m['majority_class']['accuracy'], 3)} |",
    ]
    if "training_prior" in m:
        lines.append(f"| class-frequency prior (training labels) | {_num(m['training_prior']['log_loss'])} | |")
    lines += [
        "",
        "| class | precision | recall | support | predicted | ECE | ECE uncalibrated |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in CLASSES:
        row = m["model"]["per_class"][name]
        lines.append(
            f"| {name} | {_num(row['precision'], 3)} | {_num(row['recall'], 3)} | {row['support']:,} | "
            f"{row['predicted']:,} | {_num(m['calibration'][name]['ece'])} | {_num(m['uncalibrated']['ece'][name])} |"
        )
    lines += [
        "",
        f"## The rule's signals ({m['rule']['definition']})",
        "",
        "| signal | signals | precision | base rate | mean forward return | mean net return |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in ("BUY", "SELL"):
        s = m["rule"][name]
        lines.append(
            f"| {name} | {s['signals']:,} | {_pct(s['precision'])} | {_pct(s['base_rate'])} | "
            f"{_pct(s['mean_forward_return'], 2)} | {_pct(s['mean_net_return'], 2)} |"
        )
    lines += [
        "",
        "Mean net return: BUY = buy now and sell after the horizon, SELL = sell now and buy back after the horizon, "
        "after a round trip of taker fees.",
        "",
        "## Backtest",
        "",
    ]
    b = report.get("backtest")
    if not b:
        lines.append("not run")
    elif "skipped" in b:
        lines.append(f"skipped: {b['skipped']}")
    else:
        lines += [
            f"{b['from']} to {b['to']}. {b['definition']}.",
            "",
            "| | return | max drawdown |",
            "|---|---:|---:|",
            f"| the model's trades | {_pct(b['total_return'], 2)} | {_pct(b['max_drawdown'], 2)} |",
            f"| equal-weight buy-and-hold | {_pct(b['buy_and_hold_return'], 2)} | "
            f"{_pct(b['buy_and_hold_max_drawdown'], 2)} |",
            "| cash | 0.00 % | 0.00 % |",
            "",
            "Backtest metrics: " + ", ".join(f"{k} {v}" for k, v in b["metrics"].items() if not isinstance(v, Mapping)),
        ]
    lines += ["", "## Reliability (calibrated probabilities, one class against the rest)", ""]
    for name in CLASSES:
        lines += [f"**{name}**", "", "| P bin | rows | mean predicted | observed |", "|---|---:|---:|---:|"]
        for row in m["calibration"][name]["reliability"]:
            lo, hi = row["bin"]
            lines.append(
                f"| {lo:.1f}-{hi:.1f} | {row['rows']:,} | {row['mean_predicted']:.4f} | {row['observed']:.4f} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_reports(report: Mapping[str, Any], output: Path) -> dict[str, Path]:
    output.mkdir(parents=True, exist_ok=True)
    paths = {"json": output / JSON_NAME, "markdown": output / MARKDOWN_NAME}
    paths["json"].write_text(json.dumps(json_ready(report), indent=2, allow_nan=False) + "\n")
    paths["markdown"].write_text(markdown(json_ready(report)))
    return paths


def headline(report: Mapping[str, Any]) -> list[str]:
    m = report["metrics"]
    lines = [
        f"rows {m['rows']:,}: log loss {_num(m['model']['log_loss'])} (prior {_num(m['prior']['log_loss'])}), "
        f"accuracy {_num(m['model']['accuracy'], 3)} (majority {_num(m['majority_class']['accuracy'], 3)})",
        f"ECE BUY {_num(m['calibration']['BUY']['ece'])}, SELL {_num(m['calibration']['SELL']['ece'])}",
    ]
    for name in ("BUY", "SELL"):
        s = m["rule"][name]
        lines.append(
            f"{name} signals {s['signals']:,}: precision {_pct(s['precision'])} (base rate {_pct(s['base_rate'])}), "
            f"mean net return {_pct(s['mean_net_return'], 2)}"
        )
    b = report.get("backtest") or {}
    if b and "skipped" not in b:
        lines.append(
            f"backtest {_pct(b['total_return'], 2)} (buy-and-hold {_pct(b['buy_and_hold_return'], 2)}, cash 0 %), "
            f"max drawdown {_pct(b['max_drawdown'], 2)} (buy-and-hold {_pct(b['buy_and_hold_max_drawdown'], 2)})"
        )
    elif b:
        lines.append(f"backtest skipped: {b['skipped']}")
    return lines
