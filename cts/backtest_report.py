"""Writes a backtest report: equity curve against buy-and-hold (PNG), the trades (CSV) and the metrics (JSON and
Markdown)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from cts.backtest import BacktestResult


def write_report(result: BacktestResult, directory: Path, meta: dict[str, Any]) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "equity_png": directory / "equity.png",
        "trades_csv": directory / "trades.csv",
        "summary_json": directory / "summary.json",
        "summary_md": directory / "summary.md",
    }
    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    ax.plot(result.equity.index, result.equity.to_numpy(), label="strategy (paper fills, after fees)")
    if not result.buy_and_hold.empty:
        ax.plot(result.buy_and_hold.index, result.buy_and_hold.to_numpy(), label="buy and hold (equal weights)")
    m = result.metrics
    ax.set_title(
        f"{meta.get('model', '')}: return {m['total_return']:+.2%} vs buy-and-hold {m['buy_and_hold_return']:+.2%}, "
        f"max DD {m['max_drawdown']:.2%}, {m['trades']} trades"
    )
    ax.set_ylabel("equity, USD")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(paths["equity_png"])
    plt.close(fig)

    with paths["trades_csv"].open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["time", "symbol", "side", "status", "size", "price", "fee", "cash_after", "pnl", "reason"])
        for t in result.trades:
            writer.writerow(
                [
                    t.time.isoformat(),
                    t.symbol,
                    t.side,
                    t.status,
                    t.size,
                    t.price,
                    t.fee,
                    t.cash_after,
                    "" if t.pnl is None else t.pnl,
                    t.reason,
                ]
            )
    summary = {"meta": meta, "metrics": m}
    paths["summary_json"].write_text(json.dumps(summary, indent=2, default=str) + "\n")
    lines = [f"# Backtest {meta.get('model', '')}", "", "| metric | value |", "|---|---|"]
    for key, value in m.items():
        lines.append(f"| {key} | {value} |")
    lines += ["", "| setting | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in meta.items()]
    paths["summary_md"].write_text("\n".join(lines) + "\n")
    return paths
