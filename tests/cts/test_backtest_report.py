"""The backtest report: readable numbers, cents and size increments in trades.csv, per-symbol tables that add up,
a chart whose curves are the result's and whose texts fit the picture, and the training-period warning."""

from __future__ import annotations

import csv
import json
import re
import struct
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from common.config import load_settings
from cts.backtest import BacktestResult, outcome_counts, run_backtest, symbol_breakdown
from cts.backtest_report import (
    FIGURE_DPI,
    FIGURE_INCHES,
    equity_figure,
    headline,
    increments,
    pct,
    price_increment,
    size_increment,
    training_overlap,
    usd,
    write_report,
)
from generator_svc.model_store import load_model
from tests.support.seed import bundled

SYMBOLS = ("ETH-USD", "LTC-USD", "XRP-USD")
META = {"model": "model.joblib", "trade_amount_usd": "100"}
WARNING = "warning: a test warning"


@pytest.fixture(scope="module")
def result() -> BacktestResult:
    model = load_model(Path("models"))
    # Little cash: a BUY while a position is open is refused by the paper executor (INSUFFICIENT_FUND).
    settings = load_settings({}, bridge_min_confidence=0.3, buy_threshold=0.3, paper_starting_cash_usd="150")
    candles = {s: bundled(s).iloc[-1200:].reset_index(drop=True) for s in SYMBOLS}
    outcome = run_backtest(candles, model, settings)
    executed = [t for t in outcome.trades if t.status == "EXECUTED"]
    # The checks below need every kind of row: entries, exits and refused orders.
    assert {t.side for t in executed} == {"BUY", "SELL"}
    assert any(t.status != "EXECUTED" for t in outcome.trades)
    return outcome


@pytest.fixture(scope="module")
def report(result: BacktestResult, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_report(result, tmp_path_factory.mktemp("report"), META, [WARNING])


def test_formatting() -> None:
    assert pct(-0.036117) == "-3.61 %"
    assert pct(0.4468, 1) == "44.7 %"
    assert pct(None) == "n/a"
    assert usd(Decimal("-1234.5")) == "-$1,234.50"
    assert usd(115.17179867) == "$115.17"


@pytest.mark.parametrize("price", ["0.0000123", "0.3057", "45.6", "199.99", "9500", "65000.5", "250000"])
def test_size_increment_is_the_largest_power_of_ten_worth_at_most_a_cent(price: str) -> None:
    p = Decimal(price)
    step = size_increment(p)
    assert step * p <= Decimal("0.01")
    assert step == 1 or step * 10 * p > Decimal("0.01")
    tick = price_increment(p)
    assert tick <= Decimal("0.01")
    assert tick == Decimal("0.00000001") or p / tick >= 10_000  # five significant digits at least


def test_trades_csv_rounds_money_to_cents_and_sizes_to_the_increment(
    result: BacktestResult, report: dict[str, Path]
) -> None:
    with report["trades_csv"].open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(result.trades)
    steps = increments(result)
    for row, trade in zip(rows, result.trades, strict=True):
        assert (row["symbol"], row["side"], row["status"]) == (trade.symbol, trade.side, trade.status)
        for column in ("value_usd", "fee_usd", "cash_after_usd", "pnl_usd"):
            if row[column]:
                exponent = Decimal(row[column]).as_tuple().exponent
                assert isinstance(exponent, int)
                assert exponent >= -2, (column, row[column])
        step, tick = steps[trade.symbol]
        size = Decimal(row["size"])
        assert size % step == 0
        assert abs(size - trade.size) <= step / 2
        assert abs(Decimal(row["price"]) - trade.price) <= tick / 2
        assert abs(Decimal(row["value_usd"]) - trade.size * trade.price) <= Decimal("0.01")
        assert abs(Decimal(row["cash_after_usd"]) - trade.cash_after) <= Decimal("0.005")
        if trade.pnl is not None:
            assert abs(Decimal(row["pnl_usd"]) - trade.pnl) <= Decimal("0.005")


def test_symbol_breakdown_adds_up_to_the_portfolio(result: BacktestResult) -> None:
    stats = symbol_breakdown(result)
    m = result.metrics
    assert [s.symbol for s in stats] == sorted(SYMBOLS)
    total_pnl = sum((s.pnl for s in stats), Decimal(0))
    assert abs(float(total_pnl) - (float(result.equity.iloc[-1]) - float(result.starting_cash))) < 1e-6
    assert sum(s.trades for s in stats) == m["trades"]
    assert sum(s.refused for s in stats) == m["failed_orders"]
    assert sum(s.sells for s in stats) == m["closed_trades"]
    assert round(sum(s.wins for s in stats) / sum(s.sells for s in stats), 4) == m["win_rate"]
    assert abs(float(sum((s.fees for s in stats), Decimal(0))) - m["fees_paid"]) < 1e-9
    realised = sum((t.pnl for t in result.trades if t.pnl is not None), Decimal(0))
    assert sum((s.realised_pnl for s in stats), Decimal(0)) == realised
    counts = outcome_counts(result)
    assert sum(counts["exits"].values()) == m["closed_trades"]
    assert sum(counts["refusals"].values()) == m["failed_orders"]


def _md_table(text: str, first_header: str) -> list[list[str]]:
    """The body rows of the Markdown table whose first header cell is ``first_header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _percent(cell: str) -> float:
    assert re.fullmatch(r"-?\d+\.\d+ %", cell), cell
    return float(cell.removesuffix(" %"))


def test_summary_md_is_readable_tables(result: BacktestResult, report: dict[str, Path]) -> None:
    text = report["summary_md"].read_text()
    assert "{" not in text
    assert "Decimal(" not in text
    assert f"> **{WARNING}**" in text
    m = result.metrics
    assert dict(_md_table(text, "result")) == dict(headline(result))
    assert f"| total return | {pct(m['total_return'])} |" in text

    per_symbol = {row[0]: row for row in _md_table(text, "symbol")}
    assert set(per_symbol) == {*SYMBOLS, "**all**"}
    shares = [_percent(per_symbol[s][9]) for s in SYMBOLS]  # "of portfolio"
    assert abs(sum(shares) - m["total_return"] * 100) <= 0.005 * len(SYMBOLS) + 1e-9
    assert _percent(per_symbol["**all**"][9]) == pytest.approx(m["total_return"] * 100, abs=0.005)
    for s in symbol_breakdown(result):
        assert per_symbol[s.symbol][1] == f"{s.buys:,} / {s.sells:,}"
        assert per_symbol[s.symbol][6] == usd(s.pnl)

    exits = _md_table(text, "reason")  # the first reason table is the exits'
    assert sum(int(n) for _, n in exits) == m["closed_trades"]
    assert {reason for reason, _ in exits} <= {"signal", "stop_loss", "take_profit", "time_limit"}
    assert "## Refused recommendations by reason" in text
    refused = text.split("## Refused recommendations by reason", 1)[1]
    assert sum(int(n.replace(",", "")) for _, n in _md_table(refused, "reason")) == m["failed_orders"]
    for path in report.values():
        assert f"`{path.name}`" in text


def test_summary_json_keeps_the_raw_numbers(result: BacktestResult, report: dict[str, Path]) -> None:
    data = json.loads(report["summary_json"].read_text())
    assert data["metrics"]["total_return"] == result.metrics["total_return"]
    assert data["warnings"] == [WARNING]
    assert [row["symbol"] for row in data["per_symbol"]] == sorted(SYMBOLS)


@pytest.fixture
def figure(result: BacktestResult) -> Iterator[object]:
    import matplotlib.pyplot as plt

    fig = equity_figure(result, META)
    yield fig
    plt.close(fig)


def test_equity_png_is_written_at_its_size(report: dict[str, Path]) -> None:
    data = report["equity_png"].read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (round(FIGURE_INCHES[0] * FIGURE_DPI), round(FIGURE_INCHES[1] * FIGURE_DPI))


def test_equity_chart_texts_fit_the_picture(figure: object) -> None:
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    assert isinstance(figure, Figure)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    texts = [t for t in figure.findobj(Text) if t.get_visible() and t.get_text()]
    assert any("Backtest" in t.get_text() for t in texts)
    # Everything drawn (titles, labels, drawn tick labels, legends) lies inside the picture.
    drawn = figure.get_tightbbox(renderer)
    width, height = figure.get_size_inches()
    assert min(drawn.x0, drawn.y0) >= 0, drawn
    assert drawn.x1 <= width, drawn
    assert drawn.y1 <= height, drawn
    for text in [*figure.texts, *(ax.title for ax in figure.axes)]:
        extent = text.get_window_extent(renderer)
        assert all(figure.bbox.contains(*corner) for corner in (extent.p0, extent.p1)), text.get_text()
    top = figure.axes[0]
    legend = top.get_legend()
    assert legend is not None
    assert top.bbox.contains(*legend.get_window_extent(renderer).p0)
    assert top.bbox.contains(*legend.get_window_extent(renderer).p1)


def test_equity_chart_draws_the_result(figure: object, result: BacktestResult) -> None:
    from matplotlib.collections import PathCollection, PolyCollection
    from matplotlib.figure import Figure

    assert isinstance(figure, Figure)
    top, drawdown, exposure = figure.axes
    lines = {str(line.get_label()): np.asarray(line.get_ydata(), dtype=float) for line in top.get_lines()}
    m = result.metrics
    assert set(lines["cash (0 %)"]) == {0}
    assert lines["strategy, after fees"][-1] == pytest.approx(m["total_return"] * 100, abs=1e-3)
    assert lines["buy and hold, equal weights"][-1] == pytest.approx(m["buy_and_hold_return"] * 100, abs=1e-3)
    markers = {
        str(c.get_label()): len(np.asarray(c.get_offsets())) for c in top.collections if isinstance(c, PathCollection)
    }
    executed = [t for t in result.trades if t.status == "EXECUTED"]
    assert markers["entry (BUY)"] == sum(1 for t in executed if t.side == "BUY")
    assert markers["exit (SELL)"] == sum(1 for t in executed if t.side == "SELL")

    (dd_fill,) = [c for c in drawdown.collections if isinstance(c, PolyCollection)]
    dd = np.asarray(dd_fill.get_paths()[0].vertices, dtype=float)[:, 1]
    assert dd.max() <= 0
    assert dd.min() == pytest.approx(m["max_drawdown"] * 100, abs=1e-3)
    (exposure_fill,) = [c for c in exposure.collections if isinstance(c, PolyCollection)]
    invested = np.asarray(exposure_fill.get_paths()[0].vertices, dtype=float)[:, 1]
    assert invested.min() >= 0
    assert invested.max() <= 100
    assert invested.max() > 0  # the strategy did hold something
    assert "%" in exposure.yaxis.get_major_formatter().format_data(50.0)


def _card() -> dict[str, object]:
    (path,) = Path("models").glob("*.json")
    card = json.loads(path.read_text())
    assert isinstance(card, dict)
    return card


def test_training_overlap_warning() -> None:
    card = _card()
    split = card["split"]
    assert isinstance(split, dict)
    train_from = datetime.fromisoformat(split["train_from"])
    train_until = datetime.fromisoformat(split["train_until"])
    test_from = datetime.fromisoformat(split["test_from"])
    late = test_from + timedelta(days=30)

    in_training = training_overlap(card, train_from + timedelta(days=1), late)
    assert in_training is not None
    assert "\n" not in in_training
    assert f"training period (until {train_until:%Y-%m-%d})" in in_training
    assert f"out-of-sample period starts {test_from:%Y-%m-%d}" in in_training

    in_validation = training_overlap(card, train_until + timedelta(days=3), late)
    assert in_validation is not None
    assert "validation period" in in_validation
    assert training_overlap(card, test_from, late) is None
    # Candles before the training period are out of sample too (the 2017-2019 set for a model of 2024).
    assert training_overlap(card, train_from - timedelta(days=400), train_from - timedelta(days=1)) is None
    assert training_overlap({}, train_from, late) is None
