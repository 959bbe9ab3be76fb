"""Writes a backtest report: ``equity.png`` (equity in % against buy-and-hold and cash, drawdown, exposure, entries
and exits), ``trades.csv`` (money in cents, sizes in the symbol's increment), ``summary.json`` (raw numbers) and
``summary.md`` (the same as readable tables: headline, per symbol, exits and refusals by reason, settings).

The headline rows (:func:`headline`) are the one formatting of the result: the CLI prints them and summary.md
tabulates them, so the two never disagree."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pandas as pd

from common.lifecycle import OrderStatus
from cts.backtest import BacktestResult, SymbolStats, outcome_counts, symbol_breakdown

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CENT: Final = Decimal("0.01")
MIN_INCREMENT: Final = Decimal("0.00000001")
FIGURE_INCHES: Final = (11.0, 8.0)
FIGURE_DPI: Final = 100

# ---------------------------------------------------------------------------------------------------- formatting


def pct(fraction: float | None, digits: int = 2) -> str:
    """0.0361 -> '3.61 %'; None -> 'n/a'."""
    return "n/a" if fraction is None else f"{fraction * 100:.{digits}f} %"


def usd(amount: float | Decimal) -> str:
    """Money with two decimals and thousands separators: -1234.5 -> '-$1,234.50'."""
    value = Decimal(str(amount)).quantize(CENT, rounding=ROUND_HALF_EVEN)
    return f"{'-' if value < 0 else ''}${abs(value):,.2f}"


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


def size_increment(max_price: Decimal) -> Decimal:
    """A base-size increment for a symbol trading up to ``max_price``: the largest power of ten worth at most one
    cent (so a size rounded to it moves the trade's value by half a cent at most), between 1e-8 and 1 unit."""
    if max_price <= 0:
        return MIN_INCREMENT
    exponent = (CENT / max_price).adjusted()  # floor(log10(0.01 / price))
    return Decimal(1).scaleb(max(-8, min(0, exponent)))


def price_increment(min_price: Decimal) -> Decimal:
    """A quote increment for a symbol trading down to ``min_price``: five significant digits, at most a cent."""
    if min_price <= 0:
        return MIN_INCREMENT
    return Decimal(1).scaleb(max(-8, min(-2, min_price.adjusted() - 4)))


def increments(result: BacktestResult) -> dict[str, tuple[Decimal, Decimal]]:
    """(size increment, price increment) per symbol, from the closes the backtest saw."""
    prices: dict[str, list[Decimal]] = {}
    for d in result.decisions:
        prices.setdefault(d.symbol, []).append(d.price)
    for t in result.trades:
        prices.setdefault(t.symbol, []).append(t.price)
    return {s: (size_increment(max(p)), price_increment(min(p))) for s, p in prices.items()}


def setting_text(key: str, value: object) -> str:
    """A setting of the run as a reader wants it: money in dollars, rates in percent, the rest as code."""
    try:
        if key.endswith("_usd"):
            return usd(Decimal(str(value)))
        if key.endswith("_rate"):
            return pct(float(str(value)))
        if key.endswith("_bps"):
            return f"{value} bps"
    except (ArithmeticError, ValueError):
        pass
    return f"`{value}`"


def _period(result: BacktestResult) -> tuple[datetime, datetime] | None:
    if result.equity.empty:
        return None
    return result.equity.index[0].to_pydatetime(), result.equity.index[-1].to_pydatetime()


def period_text(result: BacktestResult) -> str:
    period = _period(result)
    if period is None:
        return "no candles"
    first, last = period
    days = (last - first).total_seconds() / 86400
    return f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC ({days:.0f} days)"


def headline(result: BacktestResult) -> list[tuple[str, str]]:
    """The result in words and units: (label, value) rows, the same for the CLI and summary.md."""
    m = result.metrics
    start = result.starting_cash
    signals = m.get("signals", {})
    return [
        ("period", period_text(result)),
        ("total return", pct(m["total_return"])),
        ("buy and hold (equal weights)", pct(m["buy_and_hold_return"])),
        ("max drawdown", pct(m["max_drawdown"])),
        ("Sharpe (hourly, annualised)", f"{m['sharpe']:.2f}"),
        ("win rate", f"{pct(m['win_rate'], 1)} of {m['closed_trades']:,} closed trades"),
        ("trades", f"{m['trades']:,} executed, {m['failed_orders']:,} refused"),
        (
            "recommendations",
            f"{m.get('recommendations', 0):,}, of which {pct(m.get('refused_share', 0.0), 2)} refused by the executor"
            f" and {m.get('cancelled_recommendations', 0):,} cancelled",
        ),
        ("exits", ", ".join(f"{k} {v:,}" for k, v in (m.get("exits") or {}).items()) or "none"),
        (
            "average holding time",
            f"{m['average_holding_hours']:.1f} h" if m.get("average_holding_hours") is not None else "-",
        ),
        ("fees", usd(m["fees_paid"])),
        ("final equity", f"{usd(m['final_equity'])} from {usd(start)}"),
        ("average exposure", f"{pct(m.get('average_exposure'), 1)} of equity invested"),
        ("signals", ", ".join(f"{k} {v:,}" for k, v in signals.items())),
        (
            "signals not traded",
            ", ".join(f"{k} {v:,}" for k, v in (m.get("skipped_signals") or {}).items()) or "none",
        ),
    ]


def training_overlap(card: Mapping[str, Any], first: datetime, last: datetime) -> str | None:
    """One line when [first, last] (decision times) overlaps the model's training or validation period (its card's
    split: train_from to test_from); candles before or after it are out of sample."""
    split = card.get("split") or {}
    if not split.get("test_from"):
        return None
    test_from = datetime.fromisoformat(split["test_from"])
    train_from = datetime.fromisoformat(split["train_from"]) if split.get("train_from") else None
    if first >= test_from or (train_from is not None and last < train_from):
        return None
    train_until = datetime.fromisoformat(split["train_until"]) if split.get("train_until") else None
    validation = split.get("validation") or []
    if train_until is None or first <= train_until:
        part = "training period" + (f" (until {train_until:%Y-%m-%d})" if train_until else "")
    elif len(validation) == 2:
        v0, v1 = (datetime.fromisoformat(v) for v in validation)
        part = f"validation period ({v0:%Y-%m-%d} to {v1:%Y-%m-%d})"
    else:
        part = "training data"
    return (
        f"warning: {first:%Y-%m-%d} to {last:%Y-%m-%d} overlaps the model's {part}: in-sample, the results are "
        f"better than on unseen data; the out-of-sample period starts {test_from:%Y-%m-%d}"
    )


# ---------------------------------------------------------------------------------------------------- the chart


def _drawdown(series: pd.Series) -> pd.Series:
    return series / series.cummax() - 1


def equity_figure(result: BacktestResult, meta: Mapping[str, Any]) -> Figure:
    """The equity.png figure (needs a non-empty equity curve); the caller saves and closes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    start = float(result.starting_cash) or float(result.equity.iloc[0])
    equity = (result.equity / start - 1) * 100
    bench = (result.buy_and_hold / start - 1) * 100
    invested = result.invested.reindex(result.equity.index).fillna(0.0)
    exposure = invested / result.equity * 100
    m = result.metrics

    fig, (top, mid, low) = plt.subplots(
        3,
        1,
        figsize=FIGURE_INCHES,
        dpi=FIGURE_DPI,
        sharex=True,
        gridspec_kw={"height_ratios": [3.2, 1.2, 1.0], "hspace": 0.08},
    )
    symbols = sorted({d.symbol for d in result.decisions})
    names = ", ".join(s.removesuffix("-USD") for s in symbols) if len(symbols) <= 6 else f"{len(symbols)} symbols"
    amount = meta.get("trade_amount_usd")
    first, last = result.equity.index[0], result.equity.index[-1]
    fig.suptitle(
        f"Backtest {first:%Y-%m-%d} to {last:%Y-%m-%d}: {names}"
        + (f", {usd(Decimal(str(amount))).removesuffix('.00')} per trade" if amount else ""),
        fontsize=13,
        fontweight="bold",
        y=0.985,
    )
    top.set_title(
        f"strategy {pct(m['total_return'])}  |  buy and hold {pct(m['buy_and_hold_return'])}  |  "
        f"max drawdown {pct(m['max_drawdown'])}  |  {m['trades']} trades, {usd(m['fees_paid'])} fees",
        fontsize=10,
        color="0.25",
    )

    top.axhline(0, color="0.35", linestyle="--", linewidth=1.0, label="cash (0 %)")
    if not bench.empty:
        top.plot(bench.index, bench.to_numpy(), color="tab:orange", linewidth=1.1, label="buy and hold, equal weights")
    top.plot(equity.index, equity.to_numpy(), color="tab:blue", linewidth=1.4, label="strategy, after fees")
    executed = [t for t in result.trades if t.status == OrderStatus.EXECUTED]
    for side, marker, color, label in (
        ("BUY", "^", "tab:green", "entry (BUY)"),
        ("SELL", "v", "tab:red", "exit (SELL)"),
    ):
        times = pd.DatetimeIndex([t.time for t in executed if t.side == side])
        if len(times):
            at = equity.reindex(times, method="ffill")
            top.scatter(times, at.to_numpy(), marker=marker, s=22, color=color, zorder=3, label=label, alpha=0.8)
    top.set_ylabel("equity change")
    top.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    # The legend sits in headroom above the curves, so it never hides them.
    low_y, high_y = top.get_ylim()
    top.set_ylim(low_y, high_y + (high_y - low_y) * 0.14)
    top.legend(loc="upper center", fontsize=8.5, ncol=5, framealpha=0.9, borderaxespad=0.3)
    top.grid(alpha=0.3)

    drawdown = _drawdown(result.equity) * 100
    mid.fill_between(
        drawdown.index,
        drawdown.to_numpy(),
        0,
        color="tab:blue",
        alpha=0.35,
    )
    if not result.buy_and_hold.empty:
        bench_dd = _drawdown(result.buy_and_hold) * 100
        mid.plot(bench_dd.index, bench_dd.to_numpy(), color="tab:orange", linewidth=0.9)
    mid.set_ylabel("drawdown")  # colours as in the legend above
    mid.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    mid.grid(alpha=0.3)

    low.fill_between(exposure.index, exposure.to_numpy(), 0, color="tab:green", alpha=0.4, step="post")
    low.set_ylabel("invested")
    low.set_ylim(0, max(5.0, float(exposure.max()) * 1.15 if len(exposure) else 5.0))
    low.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    low.grid(alpha=0.3)
    locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
    low.xaxis.set_major_locator(locator)
    low.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    low.set_xlim(first, last)
    for ax in (top, mid, low):
        ax.yaxis.set_label_coords(-0.06, 0.5)
    fig.subplots_adjust(left=0.09, right=0.98, top=0.9, bottom=0.06)
    return fig


def _plot(result: BacktestResult, path: Path, meta: Mapping[str, Any]) -> None:
    import matplotlib.pyplot as plt

    fig = equity_figure(result, meta)
    try:
        fig.savefig(path)
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------------------------------- the files


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return ["| " + " | ".join(header) + " |", rule] + ["| " + " | ".join(r) + " |" for r in rows]


def _symbol_rows(stats: Sequence[SymbolStats], starting_cash: Decimal, bench_total: float | None) -> list[list[str]]:
    def row(name: str, s: Sequence[SymbolStats], bench: str) -> list[str]:
        buys, sells = sum(x.buys for x in s), sum(x.sells for x in s)
        wins = sum(x.wins for x in s)
        invested = sum((x.invested for x in s), Decimal(0))
        pnl = sum((x.pnl for x in s), Decimal(0))
        return [
            name,
            f"{buys:,} / {sells:,}",
            f"{sum(x.refused for x in s):,}",
            pct(wins / sells if sells else None, 1),
            usd(sum((x.realised_pnl for x in s), Decimal(0))),
            usd(sum((x.open_pnl for x in s), Decimal(0))),
            usd(pnl),
            usd(sum((x.fees for x in s), Decimal(0))),
            pct(float(pnl / invested) if invested else None),
            pct(float(pnl / starting_cash) if starting_cash else None),
            bench,
        ]

    rows = [row(s.symbol, [s], pct(s.buy_and_hold_return)) for s in stats]
    if len(stats) > 1:
        rows.append(row("**all**", stats, pct(bench_total)))
    return rows


SYMBOL_HEADER: Final = (
    "symbol",
    "buys / sells",
    "refused",
    "win rate",
    "realised P&L",
    "open P&L",
    "P&L",
    "fees",
    "return on invested",
    "of portfolio",
    "buy and hold",
)


def _summary_md(
    result: BacktestResult,
    meta: Mapping[str, Any],
    warnings: Sequence[str],
    stats: Sequence[SymbolStats],
    files: Mapping[str, Path],
    sizes: Mapping[str, tuple[Decimal, Decimal]],
) -> str:
    symbols = ", ".join(s.symbol for s in stats) or "none"
    lines = [f"# Backtest: {symbols}", ""]
    lines += [f"> **{w}**" for w in warnings] + ([""] if warnings else [])
    lines += [*_table(("result", "value"), [[k, v] for k, v in headline(result)], "lr"), ""]
    lines += ["## Per symbol", ""]
    lines += [
        *_table(SYMBOL_HEADER, _symbol_rows(stats, result.starting_cash, result.metrics.get("buy_and_hold_return"))),
        "",
    ]
    lines += [
        "P&L = realised (SELLs against the average cost, fees included) + open (holdings at the last close less "
        "their cost). Return on invested = P&L / USD spent on BUYs; of portfolio = P&L / starting cash (the rows "
        "add up to the total return). Buy and hold = the symbol's last close / its close at its first decision - 1 "
        "(all: equal weights).",
        "",
    ]
    counts = outcome_counts(result)
    for title, key in (("Exits by reason", "exits"), ("Refused recommendations by reason", "refusals")):
        if counts[key]:
            lines += [f"## {title}", "", *_table(("reason", "orders"), [[k, f"{v:,}"] for k, v in counts[key].items()])]
            lines += [""]
    lines += ["## Settings", ""]
    lines += [*_table(("setting", "value"), [[str(k), setting_text(k, v)] for k, v in meta.items()], "ll"), ""]
    if sizes:
        lines += [
            "trades.csv rounds money to cents, sizes and prices to these increments: "
            + ", ".join(
                f"{s} {size.normalize():f} / {price.normalize():f}" for s, (size, price) in sorted(sizes.items())
            )
            + ".",
            "",
        ]
    lines += ["## Files", ""] + [f"- `{p.name}`" for p in files.values()]
    return "\n".join(lines) + "\n"


def _write_trades(result: BacktestResult, path: Path, sizes: Mapping[str, tuple[Decimal, Decimal]]) -> None:
    from executor_svc.paper_fill import USD_QUANTUM

    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "time",
                "symbol",
                "side",
                "status",
                "size",
                "price",
                "value_usd",
                "fee_usd",
                "cash_after_usd",
                "pnl_usd",
                "reason",
            ]
        )
        for t in result.trades:
            size_step, price_step = sizes.get(t.symbol, (MIN_INCREMENT, MIN_INCREMENT))
            writer.writerow(
                [
                    t.time.isoformat(),
                    t.symbol,
                    t.side,
                    t.status,
                    t.size.quantize(size_step, rounding=ROUND_HALF_EVEN) if t.size else Decimal(0),
                    t.price.quantize(price_step, rounding=ROUND_HALF_EVEN),
                    cents((t.size * t.price).quantize(USD_QUANTUM)),
                    cents(t.fee),
                    cents(t.cash_after),
                    "" if t.pnl is None else cents(t.pnl),
                    t.reason,
                ]
            )


def write_report(
    result: BacktestResult,
    directory: Path,
    meta: Mapping[str, Any],
    warnings: Sequence[str] = (),
) -> dict[str, Path]:
    """Write the report's four files into ``directory``; returns their paths by name."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "equity_png": directory / "equity.png",
        "trades_csv": directory / "trades.csv",
        "summary_md": directory / "summary.md",
        "summary_json": directory / "summary.json",
    }
    if not result.equity.empty:
        _plot(result, paths["equity_png"], meta)
    else:
        paths.pop("equity_png")
    sizes = increments(result)
    _write_trades(result, paths["trades_csv"], sizes)
    stats = symbol_breakdown(result)
    summary = {
        "meta": dict(meta),
        "warnings": list(warnings),
        "metrics": result.metrics,
        "per_symbol": [
            {
                "symbol": s.symbol,
                "buys": s.buys,
                "sells": s.sells,
                "refused": s.refused,
                "win_rate": s.win_rate,
                "invested_usd": str(cents(s.invested)),
                "fees_usd": str(cents(s.fees)),
                "realised_pnl_usd": str(cents(s.realised_pnl)),
                "open_pnl_usd": str(cents(s.open_pnl)),
                "pnl_usd": str(cents(s.pnl)),
                "return_on_invested": s.return_on_invested,
                "buy_and_hold_return": s.buy_and_hold_return,
            }
            for s in stats
        ],
        **outcome_counts(result),
    }
    paths["summary_json"].write_text(json.dumps(summary, indent=2, default=str) + "\n")
    paths["summary_md"].write_text(_summary_md(result, meta, warnings, stats, paths, sizes))
    return paths
