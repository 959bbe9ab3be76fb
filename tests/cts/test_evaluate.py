"""`cts evaluate` on a small candle directory (5-minute and hourly files): the JSON and Markdown reports, the
numbers against their definitions, the period options, and one clear line for a directory it cannot read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cts.main import main
from generator_svc.bars import hourly_bars_from_5m
from generator_svc.training import CandleSet, TrainingConfig, train

T0 = 1_704_067_200  # 2024-01-01 00:00 UTC
SMALL = TrainingConfig(
    folds=2,
    test_fraction=0.15,
    validation_fraction=0.15,
    grid=({"max_depth": 2, "min_child_weight": 5.0},),
    max_rounds=10,
    early_stopping_rounds=5,
)


def _five_minute(days: int, seed: int) -> pd.DataFrame:
    n = days * 24 * 12
    rng = np.random.default_rng(seed)
    close = 20 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
    open_ = np.r_[20.0, close[:-1]]
    return pd.DataFrame(
        {
            "timestamp": T0 + 300 * np.arange(n, dtype=np.int64),
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": rng.uniform(10, 100, n),
        }
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A candle directory (AAA: 5-minute and hourly files; BBB: hourly only) and a model trained on it."""
    root = tmp_path_factory.mktemp("evaluate")
    candles = root / "candles"
    candles.mkdir()
    aaa, bbb = _five_minute(36, 1), _five_minute(36, 2)
    aaa.to_csv(candles / "AAA-USD_5m.csv.gz", index=False)
    hourly_bbb = hourly_bars_from_5m(bbb, phase=0).drop(columns="candles")
    hourly_bars_from_5m(aaa, phase=0).drop(columns="candles").to_csv(candles / "AAA-USD_1h.csv.gz", index=False)
    hourly_bbb.to_csv(candles / "BBB-USD_1h.csv.gz", index=False)
    model = train(CandleSet(hourly={}, five_minute={"AAA-USD": aaa, "BBB-USD": bbb}), root / "models", config=SMALL)
    return candles, model


def test_evaluate_writes_json_and_markdown(
    setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    candles, model = setup
    out = tmp_path / "report"
    assert main(["evaluate", "--directory", str(candles), "--model", str(model), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "log loss" in printed
    assert str(out / "evaluation.json") in printed
    report = json.loads((out / "evaluation.json").read_text())
    assert report["model"] == model.name
    assert report["symbols"] == ["AAA-USD", "BBB-USD"]
    assert report["bars"] == {"AAA-USD": "5-minute candles (12 phases)", "BBB-USD": "hourly"}
    m = report["metrics"]
    assert sum(m["model"]["per_class"][c]["support"] for c in ("SELL", "HOLD", "BUY")) == m["rows"]
    for name in ("SELL", "HOLD", "BUY"):
        row = m["model"]["per_class"][name]
        assert {"precision", "recall", "support"} <= set(row)
        assert 0 <= m["calibration"][name]["ece"] <= 1
        assert m["calibration"][name]["reliability"]
    frequencies = np.array([m["class_frequencies"][c] for c in ("SELL", "HOLD", "BUY")])
    assert m["prior"]["log_loss"] == pytest.approx(-(frequencies * np.log(frequencies)).sum())
    assert m["prior"]["accuracy"] == pytest.approx(frequencies.max())
    assert m["majority_class"]["accuracy"] == pytest.approx(frequencies.max(), abs=1e-4)
    assert m["majority_class"]["log_loss"] > m["prior"]["log_loss"]
    assert "training_prior" in m
    assert m["uncalibrated"]["log_loss"] > 0
    for name in ("BUY", "SELL"):
        signal = m["rule"][name]
        assert {"signals", "precision", "base_rate", "mean_forward_return", "mean_net_return"} <= set(signal)
        assert signal["base_rate"] == pytest.approx(m["class_frequencies"][name])
    backtest = report["backtest"]
    for key in ("total_return", "buy_and_hold_return", "cash_return", "max_drawdown", "buy_and_hold_max_drawdown"):
        assert key in backtest
    assert backtest["cash_return"] == 0.0
    assert backtest["max_drawdown"] <= 0
    assert set(report["goals"]) >= {
        "log_loss_below_prior",
        "ece_buy_below_0.05",
        "ece_sell_below_0.05",
        "buy_precision_at_least_base_rate",
        "sell_precision_at_least_base_rate",
        "backtest_at_least_buy_and_hold",
        "drawdown_at_most_half_of_buy_and_hold",
    }
    markdown = (out / "evaluation.md").read_text()
    for heading in ("## Goals", "## Model and baselines", "## The rule's signals", "## Backtest", "## Reliability"):
        assert heading in markdown
    assert "class-frequency prior" in markdown


def test_start_and_end_limit_the_period(setup: tuple[Path, Path], tmp_path: Path) -> None:
    candles, model = setup
    out = tmp_path / "part"
    args = ["evaluate", "--directory", str(candles), "--model", str(model), "--output", str(out)]
    assert main([*args, "--start", "2024-01-20", "--end", "2024-01-25T12:00", "--no-backtest"]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert report["period"]["from"] >= "2024-01-20T00:00:00+00:00"
    assert report["period"]["to"] <= "2024-01-25T12:00:00+00:00"
    assert "backtest" not in report
    assert "overlaps" in report["warning"]  # the model was trained on these candles


@pytest.mark.parametrize("problem", ["missing", "empty", "corrupt"])
def test_a_directory_it_cannot_read_is_one_line_and_exit_1(
    setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], problem: str
) -> None:
    _, model = setup
    directory = tmp_path / "candles"
    if problem != "missing":
        directory.mkdir()
    if problem == "corrupt":
        (directory / "AAA-USD_1h.csv.gz").write_bytes(b"\x1f\x8b not really gzip")
    code = main(["evaluate", "--directory", str(directory), "--model", str(model), "--output", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("cts evaluate: ")
    assert str(directory) in lines[0]
    assert "Traceback" not in captured.err
    assert not (tmp_path / "o").exists()
