"""Training the "balanced realistic" XGBoost model (`cts train`) with walk-forward evaluation, and its model card.

- Bars: hourly bars. From 5-minute candles (``*_5m.csv.gz``) the bars of all twelve 5-minute phases of the hour
  (generator_svc/bars.py), as the live generator sees them every 5 minutes; from hourly candles (``*_1h.csv.gz``,
  when a symbol has no 5-minute file) the hourly candles themselves. The 51 features of each bar set come from
  ``compute_features``, unchanged.
- Labels ("realistic"), measured in time: the log return from a bar's close to the close of the bar of the same
  phase that ends HORIZON_HOURS later (looked up by timestamp, not by counting rows: across a gap there is no such
  bar and the row has no label), net of a round trip of taker fees (2 x FEE_PER_SIDE): BUY if it beats the fees,
  SELL if it loses more than the fees, else HOLD.
- Walk-forward: FOLDS consecutive test blocks at the end of the time line; before each, a validation block; before
  that, the training data from the start (expanding window). Between training and validation and between
  validation and test a purge gap of PURGE_HOURS (>= HORIZON_HOURS) of candle time, so no training label sees a
  price of the validation block and no validation label a price of the test block.
- Per fold: hyper-parameters (a small grid, the number of rounds by early stopping) chosen on the fold's training
  data only (its last part as an inner, purged validation set, on a subsample of the phases); the booster fitted on
  the fold's training data; per-class Platt calibration fitted on the validation block; everything measured on the
  test block against the class-frequency prior and the majority class.
- The bundled model is the last fold's: its test block is the card's out-of-sample period (``split.test_from``).
  Unweighted classes: the calibrated probabilities are what the signal rule reads (the file name keeps
  "balanced" for the loader's pattern).
- XGBoost ``hist``, fixed seed and thread count: the same data and seed give the same model bytes.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from generator_svc.bars import HOUR, all_phase_bars
from generator_svc.calibration import Calibration, calibration_report, fit_calibration, log_loss
from generator_svc.features import FEATURE_NAMES, compute_features
from generator_svc.model_store import CALIBRATION_ATTRIBUTE, CLASSES, card_path, sha256_of

HORIZON_HOURS = 24
FEE_PER_SIDE = 0.006
PURGE_HOURS = 48
SEED = 42
SELL, HOLD, BUY = 0, 1, 2
BUY_THRESHOLD, SELL_THRESHOLD = 0.5, 0.6  # the live rule's defaults (common/config.py)
ECE_GOAL = 0.05
BASE_PARAMETERS: dict[str, Any] = {
    "eta": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "lambda": 1.0,
    "tree_method": "hist",
    "max_bin": 256,
    "objective": "multi:softprob",
    "num_class": 3,
    "eval_metric": "mlogloss",
}
GRID: tuple[dict[str, float], ...] = (
    {"max_depth": 3, "min_child_weight": 50.0},
    {"max_depth": 5, "min_child_weight": 50.0},
    {"max_depth": 4, "min_child_weight": 500.0},
)


class CandleDirectoryError(ValueError):
    """A candle directory that cannot be read; the message names it and the problem."""


@dataclass(frozen=True)
class TrainingConfig:
    horizon_hours: int = HORIZON_HOURS
    fee_per_side: float = FEE_PER_SIDE
    purge_hours: int = PURGE_HOURS
    folds: int = 4
    test_fraction: float = 0.10  # of the labelled time span, per test block
    validation_fraction: float = 0.10  # likewise, per validation block
    inner_validation_fraction: float = 0.20  # of a fold's training span, for the hyper-parameter search
    search_phases: tuple[int, ...] = (0, 6)  # phases the search fits on (all phases where the data has fewer)
    grid: tuple[dict[str, float], ...] = GRID
    max_rounds: int = 400
    early_stopping_rounds: int = 30
    seed: int = SEED
    nthread: int = 2
    base_parameters: dict[str, Any] = field(default_factory=lambda: dict(BASE_PARAMETERS))

    def __post_init__(self) -> None:
        if self.purge_hours < self.horizon_hours:
            raise ValueError(f"purge_hours {self.purge_hours} < horizon_hours {self.horizon_hours}")
        if self.folds < 1:
            raise ValueError("at least one fold")

    @property
    def horizon_seconds(self) -> int:
        return self.horizon_hours * HOUR

    @property
    def purge_seconds(self) -> int:
        return self.purge_hours * HOUR


# --------------------------------------------------------------------------------------------------- candle files


@dataclass(frozen=True)
class CandleSet:
    """One directory's candles: hourly (``<SYM>_1h.csv.gz``) and 5-minute (``<SYM>_5m.csv.gz``) by symbol."""

    hourly: dict[str, pd.DataFrame]
    five_minute: dict[str, pd.DataFrame]

    @property
    def symbols(self) -> list[str]:
        return sorted(set(self.hourly) | set(self.five_minute))


CANDLE_FILE_COLUMNS = ["timestamp", "open", "high", "low", "close", "volume"]


def _read_candles(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, EOFError) as exc:
        raise CandleDirectoryError(f"{path}: cannot be read as candles ({exc.__class__.__name__})") from None
    missing = [c for c in CANDLE_FILE_COLUMNS if c not in frame.columns]
    if missing:
        raise CandleDirectoryError(f"{path}: lacks the columns {', '.join(missing)}")
    frame = frame.sort_values("timestamp", kind="stable").drop_duplicates("timestamp").reset_index(drop=True)
    return frame[CANDLE_FILE_COLUMNS]


def load_candle_directory(directory: Path, symbols: Sequence[str] | None = None) -> CandleSet:
    """``<SYMBOL>_1h.csv.gz`` and ``<SYMBOL>_5m.csv.gz`` files of a directory (the format of ../shared/data)."""
    if not directory.is_dir():
        raise CandleDirectoryError(f"{directory}: not a readable directory")
    try:
        names = sorted(p.name for p in directory.iterdir())
    except OSError as exc:
        raise CandleDirectoryError(
            f"{directory}: cannot be listed ({exc.strerror or exc.__class__.__name__})"
        ) from None
    hourly: dict[str, pd.DataFrame] = {}
    five: dict[str, pd.DataFrame] = {}
    wanted = {s.upper() for s in symbols} if symbols else None
    for name in names:
        for suffix, target in (("_1h.csv.gz", hourly), ("_5m.csv.gz", five)):
            if name.endswith(suffix):
                symbol = name[: -len(suffix)]
                if wanted is None or symbol in wanted:
                    target[symbol] = _read_candles(directory / name)
    if not hourly and not five:
        raise CandleDirectoryError(f"{directory}: no <SYMBOL>_1h.csv.gz or <SYMBOL>_5m.csv.gz candle files")
    return CandleSet(hourly=hourly, five_minute=five)


# ------------------------------------------------------------------------------------------------------- dataset


@dataclass
class Dataset:
    features: np.ndarray
    labels: np.ndarray
    times: np.ndarray  # bar start, Unix seconds (the decision is made at its end, one hour later)
    symbols: np.ndarray
    phases: np.ndarray  # the bar set's 5-minute phase, 0..11
    closes: np.ndarray
    forward: np.ndarray  # forward log return over the horizon
    sources: dict[str, str] = field(default_factory=dict)  # symbol -> "5-minute (12 phases)" / "hourly"


def labels_by_time(
    bars: pd.DataFrame, horizon_hours: int = HORIZON_HOURS, fee_per_side: float = FEE_PER_SIDE
) -> tuple[np.ndarray, np.ndarray]:
    """(label codes as float with NaN, forward log return) for each bar: the close of the bar starting exactly
    ``horizon_hours`` later (by timestamp); NaN where there is no such bar (end of data or a gap)."""
    times = bars["timestamp"].to_numpy(dtype=np.int64)
    close = bars["close"].to_numpy(dtype=np.float64)
    target = times + horizon_hours * HOUR
    position = np.searchsorted(times, target)
    found = position < len(times)
    found[found] = times[position[found]] == target[found]
    forward = np.full(len(times), np.nan)
    forward[found] = np.log(close[position[found]] / close[found])
    cost = np.log1p(2 * fee_per_side)
    labels = np.full(len(times), float(HOLD))
    labels[forward > cost] = BUY
    labels[forward < -cost] = SELL
    labels[np.isnan(forward)] = np.nan
    return labels, forward


def bar_sets(candles: CandleSet) -> dict[str, dict[int, pd.DataFrame]]:
    """{symbol: {phase: bars}}: the twelve phases from 5-minute candles where a symbol has them, else its hourly
    candles as they are (one phase)."""
    out: dict[str, dict[int, pd.DataFrame]] = {}
    for symbol in candles.symbols:
        if symbol in candles.five_minute:
            out[symbol] = all_phase_bars(candles.five_minute[symbol])
        else:
            hourly = candles.hourly[symbol]
            phase = int((int(hourly["timestamp"].iloc[-1]) % HOUR) // 300) if len(hourly) else 0
            out[symbol] = {phase: hourly}
    return out


def build_dataset(
    candles: CandleSet | Mapping[str, pd.DataFrame],
    config: TrainingConfig | None = None,
    *,
    labelled_only: bool = True,
) -> Dataset:
    """Features, labels and bookkeeping of every bar of every phase of every symbol, sorted by time; rows without
    all 51 features are dropped, and so are rows without a label unless ``labelled_only`` is False."""
    cfg = config or TrainingConfig()
    candle_set = candles if isinstance(candles, CandleSet) else CandleSet(hourly=dict(candles), five_minute={})
    parts = []
    sources = {}
    for symbol, phases in bar_sets(candle_set).items():
        sources[symbol] = f"5-minute candles ({len(phases)} phases)" if symbol in candle_set.five_minute else "hourly"
        for phase, bars in phases.items():
            if bars.empty:
                continue
            features = compute_features(bars[["timestamp", "open", "high", "low", "close", "volume"]])
            labels, forward = labels_by_time(bars, cfg.horizon_hours, cfg.fee_per_side)
            frame = features.assign(
                _label=labels,
                _time=bars["timestamp"].to_numpy(dtype=np.int64),
                _symbol=symbol,
                _phase=phase,
                _close=bars["close"].to_numpy(dtype=np.float64),
                _forward=forward,
            )
            subset = [*FEATURE_NAMES, "_label"] if labelled_only else list(FEATURE_NAMES)
            parts.append(frame.dropna(subset=subset))
    if not parts:
        raise CandleDirectoryError("no candles to build bars from")
    data = pd.concat(parts, ignore_index=True).sort_values(["_time", "_symbol"], kind="stable")
    return Dataset(
        features=data[list(FEATURE_NAMES)].to_numpy(dtype=np.float32),
        labels=data["_label"].fillna(-1).to_numpy(dtype=np.int64),
        times=data["_time"].to_numpy(dtype=np.int64),
        symbols=data["_symbol"].to_numpy(),
        phases=data["_phase"].to_numpy(dtype=np.int64),
        closes=data["_close"].to_numpy(dtype=np.float64),
        forward=data["_forward"].to_numpy(dtype=np.float64),
        sources=sources,
    )


# ------------------------------------------------------------------------------------------------- walk-forward


@dataclass(frozen=True)
class Fold:
    """Half-open [from, until) periods of bar start times."""

    index: int
    train: tuple[int, int]
    validation: tuple[int, int]
    test: tuple[int, int]

    def masks(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        def inside(period: tuple[int, int]) -> np.ndarray:
            result: np.ndarray = (times >= period[0]) & (times < period[1])
            return result

        return inside(self.train), inside(self.validation), inside(self.test)

    def describe(self) -> dict[str, Any]:
        return {
            "fold": self.index,
            "train_period": [_iso(self.train[0]), _iso(self.train[1])],
            "validation_period": [_iso(self.validation[0]), _iso(self.validation[1])],
            "test_period": [_iso(self.test[0]), _iso(self.test[1])],
        }


def walk_forward_folds(times: np.ndarray, config: TrainingConfig | None = None) -> list[Fold]:
    """Consecutive test blocks over the last ``folds x test_fraction`` of the time line (block starts on whole
    hours), each preceded by a purge gap, a validation block and another purge gap; training from the start."""
    cfg = config or TrainingConfig()
    if len(times) == 0:
        raise ValueError("no labelled rows to split")
    first, last = int(np.min(times)), int(np.max(times))
    span = last - first
    purge = cfg.purge_seconds
    validation_length = int(span * cfg.validation_fraction)
    validation_length -= validation_length % HOUR
    end = last - last % HOUR + HOUR  # the end of the hour of the last row
    starts = [first + int(span * (1 - (cfg.folds - k) * cfg.test_fraction)) for k in range(cfg.folds)]
    starts = [s - s % HOUR for s in starts]
    folds = []
    for k, test_start in enumerate(starts):
        test_end = starts[k + 1] if k + 1 < cfg.folds else end
        validation = (test_start - purge - validation_length, test_start - purge)
        train = (first, validation[0] - purge)
        if train[1] - train[0] < validation_length or validation_length <= 0 or test_end <= test_start:
            raise ValueError(
                f"{span / 86400:.1f} days of labelled data are too few for {cfg.folds} walk-forward folds "
                f"with {cfg.purge_hours}-hour purge gaps"
            )
        folds.append(Fold(k + 1, train, validation, (test_start, test_end)))
    return folds


def _iso(ts: int | np.integer[Any]) -> str:
    return datetime.fromtimestamp(int(ts), UTC).isoformat()


# ------------------------------------------------------------------------------------------------------ fitting


def _parameters(config: TrainingConfig, choice: Mapping[str, float]) -> dict[str, Any]:
    return {**config.base_parameters, **choice, "seed": config.seed, "nthread": config.nthread}


def search_hyper_parameters(
    data: Dataset, train_mask: np.ndarray, config: TrainingConfig
) -> tuple[dict[str, float], int, list[dict[str, Any]]]:
    """The grid entry and number of rounds with the best log loss on the last ``inner_validation_fraction`` of the
    fold's training period (purged), fitted on the part before it: training data only."""
    import xgboost as xgb

    phases = np.isin(data.phases, config.search_phases)
    sample = train_mask & phases if (train_mask & phases).any() else train_mask
    times = data.times[train_mask]
    begin, end = int(times.min()), int(times.max())
    inner_start = end - int((end - begin) * config.inner_validation_fraction)
    fit_rows = sample & (data.times < inner_start - config.purge_seconds)
    check_rows = sample & (data.times >= inner_start)
    if not fit_rows.any() or not check_rows.any():
        raise ValueError("a fold's training period is too short for the hyper-parameter search")
    fit = xgb.QuantileDMatrix(
        data.features[fit_rows], label=data.labels[fit_rows], feature_names=list(FEATURE_NAMES), nthread=config.nthread
    )
    check = xgb.DMatrix(
        data.features[check_rows], label=data.labels[check_rows], feature_names=list(FEATURE_NAMES), nthread=1
    )
    table = []
    for choice in config.grid:
        booster = xgb.train(
            _parameters(config, choice),
            fit,
            num_boost_round=config.max_rounds,
            evals=[(check, "inner_validation")],
            early_stopping_rounds=config.early_stopping_rounds,
            verbose_eval=False,
        )
        table.append({**choice, "rounds": int(booster.best_iteration) + 1, "log_loss": float(booster.best_score)})
    best = min(range(len(table)), key=lambda i: (table[i]["log_loss"], i))
    return dict(config.grid[best]), int(table[best]["rounds"]), table


def fit_booster(
    features: np.ndarray, labels: np.ndarray, choice: Mapping[str, float], rounds: int, config: TrainingConfig
) -> Any:
    import xgboost as xgb

    matrix = xgb.QuantileDMatrix(features, label=labels, feature_names=list(FEATURE_NAMES), nthread=config.nthread)
    return xgb.train(_parameters(config, choice), matrix, num_boost_round=rounds, verbose_eval=False)


def raw_probabilities(booster: Any, features: np.ndarray) -> np.ndarray:
    if len(features) == 0:
        return np.zeros((0, len(CLASSES)))
    out = np.asarray(booster.inplace_predict(np.ascontiguousarray(features, dtype=np.float32)), dtype=np.float64)
    return out.reshape(len(features), len(CLASSES))


# ----------------------------------------------------------------------------------------------------- measures


def classification_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    matrix = np.zeros((3, 3), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    per_class = {}
    for k, name in enumerate(CLASSES):
        predicted = matrix[:, k].sum()
        actual = matrix[k, :].sum()
        per_class[name] = {
            "precision": round(float(matrix[k, k] / predicted), 4) if predicted else None,
            "recall": round(float(matrix[k, k] / actual), 4) if actual else None,
            "support": int(actual),
            "predicted": int(predicted),
        }
    return {
        "accuracy": round(float(np.trace(matrix) / matrix.sum()), 4) if matrix.sum() else None,
        "per_class": per_class,
        "confusion_matrix": {"rows_actual_cols_predicted": list(CLASSES), "matrix": matrix.tolist()},
    }


def rule_signals(
    probabilities: np.ndarray, buy_threshold: float = BUY_THRESHOLD, sell_threshold: float = SELL_THRESHOLD
) -> np.ndarray:
    """The live rule (signal_rule.decide) on every row at once: SELL 0, HOLD 1, BUY 2."""
    p_buy, p_sell = probabilities[:, BUY], probabilities[:, SELL]
    buy, sell = p_buy > buy_threshold, p_sell > sell_threshold
    out = np.full(len(probabilities), HOLD, dtype=np.int64)
    out[buy & ~sell] = BUY
    out[sell & ~buy] = SELL
    both = buy & sell
    out[both & (p_buy >= p_sell)] = BUY
    out[both & (p_buy < p_sell)] = SELL
    return out


def signal_report(
    signals: np.ndarray, labels: np.ndarray, forward: np.ndarray, fee_per_side: float = FEE_PER_SIDE
) -> dict[str, Any]:
    """Per BUY and SELL signal: how many, precision (the label agreed) against the base rate (the label's share of
    all rows), the mean forward return of the asset over the horizon, and the mean net return of acting on the
    signal: BUY = buy now, sell after the horizon; SELL = sell now, buy back after the horizon; both after a round
    trip of taker fees."""
    out: dict[str, Any] = {}
    gross = np.expm1(forward)
    keep = (1 - fee_per_side) ** 2
    for code, name in ((BUY, "BUY"), (SELL, "SELL")):
        rows = signals == code
        n = int(rows.sum())
        net = np.exp(forward[rows]) * keep - 1 if code == BUY else np.exp(-forward[rows]) * keep - 1
        out[name] = {
            "signals": n,
            "share_of_rows": float(n / len(signals)) if len(signals) else None,
            "precision": float((labels[rows] == code).mean()) if n else None,
            "base_rate": float((labels == code).mean()) if len(labels) else None,
            "mean_forward_return": float(gross[rows].mean()) if n else None,
            "mean_net_return": float(net.mean()) if n else None,
        }
    return out


def prediction_metrics(
    probabilities: np.ndarray,
    labels: np.ndarray,
    forward: np.ndarray,
    *,
    training_prior: np.ndarray | None = None,
    fee_per_side: float = FEE_PER_SIDE,
    buy_threshold: float = BUY_THRESHOLD,
    sell_threshold: float = SELL_THRESHOLD,
) -> dict[str, Any]:
    """The model's classification, log loss and calibration, the same for the baselines (the class-frequency prior
    and the majority class, both from these rows' own labels: hindsight, the stricter comparison; and the prior of
    the training labels when given), and the rule's BUY and SELL signals."""
    n = len(labels)
    counts = np.bincount(labels, minlength=3).astype(float)
    frequencies = counts / max(n, 1)
    majority = int(np.argmax(counts))
    prior = np.tile(frequencies, (n, 1))
    majority_probabilities = np.zeros((n, 3))
    majority_probabilities[:, majority] = 1.0
    signals = rule_signals(probabilities, buy_threshold, sell_threshold)
    result: dict[str, Any] = {
        "rows": n,
        "class_frequencies": {name: float(frequencies[k]) for k, name in enumerate(CLASSES)},
        "model": {
            "log_loss": log_loss(probabilities, labels),
            **classification_report(labels, probabilities.argmax(axis=1)),
        },
        "prior": {
            "definition": "every row gets the class frequencies of these rows (hindsight)",
            "log_loss": log_loss(prior, labels),
            "accuracy": float(frequencies[majority]),
        },
        "majority_class": {
            "definition": f"always {CLASSES[majority]}, the most frequent class of these rows (hindsight); its log "
            "loss counts the certain misses at probability 1e-15",
            "class": CLASSES[majority],
            "log_loss": log_loss(majority_probabilities, labels),
            **classification_report(labels, np.full(n, majority)),
        },
        "calibration": calibration_report(probabilities, labels, CLASSES),
        "rule": {
            "definition": f"BUY if P(buy) > {buy_threshold}, SELL if P(sell) > {sell_threshold} (calibrated)",
            **signal_report(signals, labels, forward, fee_per_side),
        },
    }
    if training_prior is not None:
        result["training_prior"] = {
            "definition": "every row gets the class frequencies of the training labels",
            "log_loss": log_loss(np.tile(training_prior, (n, 1)), labels),
        }
    return result


def goals(metrics: Mapping[str, Any], backtest: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Each goal of the model as met (True), missed (False) or not measurable (None), with one plain sentence."""
    out: dict[str, Any] = {}
    model_loss, prior_loss = metrics["model"]["log_loss"], metrics["prior"]["log_loss"]
    out["log_loss_below_prior"] = {
        "met": bool(model_loss < prior_loss),
        "words": f"log loss {model_loss:.4f} against the class-frequency prior's {prior_loss:.4f}: "
        + ("better than the prior" if model_loss < prior_loss else "no better than the prior"),
    }
    for name in ("BUY", "SELL"):
        ece = metrics["calibration"][name]["ece"]
        out[f"ece_{name.lower()}_below_{ECE_GOAL}"] = {
            "met": bool(ece < ECE_GOAL),
            "words": f"expected calibration error of P({name.lower()}) {ece:.4f} "
            + ("below" if ece < ECE_GOAL else "not below")
            + f" {ECE_GOAL}",
        }
    for name in ("BUY", "SELL"):
        signal = metrics["rule"][name]
        key = f"{name.lower()}_precision_at_least_base_rate"
        if not signal["signals"]:
            out[key] = {"met": None, "words": f"no {name} signal: its precision cannot be measured"}
        else:
            met = signal["precision"] >= signal["base_rate"]
            out[key] = {
                "met": bool(met),
                "words": f"{signal['signals']:,} {name} signals right {signal['precision']:.1%} of the time against "
                f"a base rate of {signal['base_rate']:.1%}: " + ("at or above" if met else "below") + " the base rate",
            }
    if backtest is not None:
        total, hold = backtest.get("total_return"), backtest.get("buy_and_hold_return")
        drawdown, hold_drawdown = backtest.get("max_drawdown"), backtest.get("buy_and_hold_max_drawdown")
        if total is not None and hold is not None:
            met = total >= hold
            out["backtest_at_least_buy_and_hold"] = {
                "met": bool(met),
                "words": f"backtest {total:+.2%} against equal-weight buy-and-hold {hold:+.2%}: "
                + ("at or above" if met else "below")
                + " buy-and-hold",
            }
        if drawdown is not None and hold_drawdown is not None:
            met = abs(drawdown) <= 0.5 * abs(hold_drawdown)
            out["drawdown_at_most_half_of_buy_and_hold"] = {
                "met": bool(met),
                "words": f"max drawdown {drawdown:.2%} against buy-and-hold's {hold_drawdown:.2%}: "
                + ("at most half" if met else "more than half"),
            }
    return out


def rule_backtest(data: Dataset, mask: np.ndarray, probabilities: np.ndarray, fee_per_side: float) -> dict[str, Any]:
    """A quick check of the rule over a test block, per symbol on one phase (the lowest present, normally the
    hourly candles' own): long-only with one position, BUY enters at the close, SELL exits at the close, a taker
    fee each side, an open position valued at the last close after the exit fee; equal weights across symbols,
    against equal-weight buy-and-hold. (`cts evaluate` runs the full backtest.)"""
    rows_all = np.flatnonzero(mask)
    signals = rule_signals(probabilities)
    results: dict[str, Any] = {}
    strategy, hold = [], []
    for symbol in sorted(set(data.symbols[mask].tolist())):
        mine = data.symbols[rows_all] == symbol
        phase = int(data.phases[rows_all][mine].min())
        positions = np.flatnonzero(mine & (data.phases[rows_all] == phase))
        closes = data.closes[rows_all[positions]]
        equity, entry, orders = 1.0, 0.0, 0
        for position, price in zip(positions.tolist(), closes.tolist(), strict=True):
            signal = signals[position]
            if signal == BUY and not entry:
                entry, orders = price, orders + 1
            elif signal == SELL and entry:
                equity *= price / entry * (1 - fee_per_side) ** 2
                entry, orders = 0.0, orders + 1
        if entry:
            equity *= closes[-1] / entry * (1 - fee_per_side) ** 2
        held = float(closes[-1] / closes[0]) - 1 if len(closes) else 0.0
        results[symbol] = {"strategy_return": round(equity - 1, 4), "buy_and_hold_return": round(held, 4)}
        results[symbol]["orders"] = orders
        strategy.append(equity - 1)
        hold.append(held)
    return {
        "rule": "BUY if P(buy) > 0.5, SELL if P(sell) > 0.6 on one phase per symbol; long-only, fees each side",
        "strategy_return_equal_weight": float(np.mean(strategy)) if strategy else None,
        "buy_and_hold_return_equal_weight": float(np.mean(hold)) if hold else None,
        "per_symbol": results,
    }


# -------------------------------------------------------------------------------------------------------- train


@dataclass
class FoldOutcome:
    fold: Fold
    booster: Any
    calibration: Calibration
    report: dict[str, Any]


def train_fold(data: Dataset, fold: Fold, config: TrainingConfig, say: Callable[[str], None]) -> FoldOutcome:
    train_mask, valid_mask, test_mask = fold.masks(data.times)
    if not (train_mask.any() and valid_mask.any() and test_mask.any()):
        raise ValueError(f"walk-forward fold {fold.index} has an empty training, validation or test block")
    started = time.monotonic()
    say(f"fold {fold.index}: choosing hyper-parameters on {int(train_mask.sum()):,} training rows")
    choice, rounds, search = search_hyper_parameters(data, train_mask, config)
    say(f"fold {fold.index}: fitting {choice} for {rounds} rounds")
    booster = fit_booster(data.features[train_mask], data.labels[train_mask], choice, rounds, config)
    raw_valid = raw_probabilities(booster, data.features[valid_mask])
    calibration = fit_calibration(raw_valid, data.labels[valid_mask], CLASSES)
    raw_test = raw_probabilities(booster, data.features[test_mask])
    calibrated_test = calibration.apply(raw_test)
    training_prior = np.bincount(data.labels[train_mask], minlength=3) / int(train_mask.sum())
    test_metrics = prediction_metrics(
        calibrated_test,
        data.labels[test_mask],
        data.forward[test_mask],
        training_prior=training_prior,
        fee_per_side=config.fee_per_side,
    )
    test_metrics["uncalibrated"] = {
        "log_loss": log_loss(raw_test, data.labels[test_mask]),
        "ece": {k: v["ece"] for k, v in calibration_report(raw_test, data.labels[test_mask], CLASSES).items()},
        "rule": signal_report(
            rule_signals(raw_test), data.labels[test_mask], data.forward[test_mask], config.fee_per_side
        ),
    }
    calibrated_valid = calibration.apply(raw_valid)
    report = {
        **fold.describe(),
        "rows": {
            "train": int(train_mask.sum()),
            "validation": int(valid_mask.sum()),
            "test": int(test_mask.sum()),
        },
        "hyper_parameters": {**choice, "num_boost_round": rounds},
        "hyper_parameter_search": search,
        "training_class_frequencies": {name: float(training_prior[k]) for k, name in enumerate(CLASSES)},
        "calibration": {
            **calibration.to_dict(),
            "validation_log_loss": {
                "uncalibrated": log_loss(raw_valid, data.labels[valid_mask]),
                "calibrated (in-sample for the calibration)": log_loss(calibrated_valid, data.labels[valid_mask]),
            },
        },
        "test": test_metrics,
        "test_rule_backtest": rule_backtest(data, test_mask, calibrated_test, config.fee_per_side),
        "goals": goals(test_metrics),
        "seconds": round(time.monotonic() - started, 1),
    }
    return FoldOutcome(fold, booster, calibration, report)


def _summary(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    goal_names = list(reports[-1]["goals"])
    met = {name: sum(1 for r in reports if r["goals"].get(name, {}).get("met") is True) for name in goal_names}
    rows = []
    for r in reports:
        t = r["test"]
        rows.append(
            {
                "fold": r["fold"],
                "test_period": r["test_period"],
                "log_loss": t["model"]["log_loss"],
                "prior_log_loss": t["prior"]["log_loss"],
                "training_prior_log_loss": t.get("training_prior", {}).get("log_loss"),
                "uncalibrated_log_loss": t["uncalibrated"]["log_loss"],
                "accuracy": t["model"]["accuracy"],
                "majority_accuracy": t["majority_class"]["accuracy"],
                "ece_buy": t["calibration"]["BUY"]["ece"],
                "ece_sell": t["calibration"]["SELL"]["ece"],
                "buy_signals": t["rule"]["BUY"]["signals"],
                "buy_precision": t["rule"]["BUY"]["precision"],
                "buy_base_rate": t["rule"]["BUY"]["base_rate"],
                "sell_signals": t["rule"]["SELL"]["signals"],
                "sell_precision": t["rule"]["SELL"]["precision"],
                "sell_base_rate": t["rule"]["SELL"]["base_rate"],
                "rule_return": r["test_rule_backtest"]["strategy_return_equal_weight"],
                "buy_and_hold_return": r["test_rule_backtest"]["buy_and_hold_return_equal_weight"],
            }
        )
    return {
        "per_fold": rows,
        "folds_meeting_each_goal": {name: f"{met[name]} of {len(reports)}" for name in goal_names},
    }


def verdict(summary: Mapping[str, Any], folds: int) -> list[str]:
    """The walk-forward results in plain words, one sentence per goal."""
    rows = summary["per_fold"]
    met = summary["folds_meeting_each_goal"]

    def count(name: str) -> int:
        return int(str(met.get(name, "0")).split()[0])

    lines = []
    better = count("log_loss_below_prior")
    lines.append(
        f"Log loss: below the class-frequency prior (hindsight frequencies of each test block) in {better} of "
        f"{folds} folds ("
        + ", ".join(f"{r['log_loss']:.4f} vs {r['prior_log_loss']:.4f}" for r in rows)
        + "). "
        + (
            "The model beats the prior in every fold."
            if better == folds
            else "The model does not beat the prior in every fold."
            if better
            else "The model does not beat the prior."
        )
    )
    lines.append(
        "Majority class: accuracy "
        + ", ".join(f"{r['accuracy']:.3f} vs {r['majority_accuracy']:.3f}" for r in rows)
        + " (model vs always the test block's most frequent class)."
    )
    for name in ("BUY", "SELL"):
        key = f"ece_{name.lower()}_below_{ECE_GOAL}"
        lines.append(
            f"Calibration of P({name.lower()}): expected calibration error below {ECE_GOAL} in {count(key)} of "
            f"{folds} folds (" + ", ".join(f"{r[f'ece_{name.lower()}']:.4f}" for r in rows) + ")."
        )
    for name in ("BUY", "SELL"):
        low = name.lower()
        parts = [
            f"{r[f'{low}_signals']:,} signals, "
            + (f"{r[f'{low}_precision']:.1%}" if r[f"{low}_precision"] is not None else "n/a")
            + f" right vs base rate {r[f'{low}_base_rate']:.1%}"
            for r in rows
        ]
        lines.append(
            f"{name} signals (the rule on calibrated probabilities): precision at or above the base rate in "
            f"{count(f'{low}_precision_at_least_base_rate')} of {folds} folds (" + "; ".join(parts) + ")."
        )
    lines.append(
        "Rule on one phase per symbol, long-only, after fees (a quick check; `cts evaluate` runs the full backtest): "
        + ", ".join(
            f"{r['rule_return']:+.2%} vs buy-and-hold {r['buy_and_hold_return']:+.2%}"
            for r in rows
            if r["rule_return"] is not None
        )
        + "."
    )
    all_goals = [name for name in met if count(name) == folds]
    above_majority = sum(1 for r in rows if r["accuracy"] is not None and r["accuracy"] > r["majority_accuracy"])
    lines.append(
        f"Overall: of the {len(met)} goals measured per fold, {len(all_goals)} held in every fold"
        + (f" ({', '.join(all_goals)})" if all_goals else "")
        + ". "
        + f"The model's log loss beats the class-frequency prior in {better} of {folds} folds and its accuracy "
        f"beats the majority class in {above_majority} of {folds}"
        + (": it beats both baselines in every fold." if better == above_majority == folds else ": no reliable edge.")
        + f" The bundled model is fold {folds}'s."
    )
    return lines


def train(
    candles: CandleSet | Mapping[str, pd.DataFrame],
    output_dir: Path,
    *,
    config: TrainingConfig | None = None,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Walk-forward training and evaluation; writes the last fold's model (.joblib, its calibration inside) and
    its card (.json); returns the .joblib path."""
    import joblib

    cfg = config or TrainingConfig()
    say = progress or (lambda _message: None)
    started = time.monotonic()
    candle_set = candles if isinstance(candles, CandleSet) else CandleSet(hourly=dict(candles), five_minute={})
    say("computing bars, features and labels")
    data = build_dataset(candle_set, cfg)
    folds = walk_forward_folds(data.times, cfg)
    outcomes = []
    for fold in folds:
        outcomes.append(train_fold(data, fold, cfg, say))
    final = outcomes[-1]
    reports = [o.report for o in outcomes]
    summary = _summary(reports)

    booster = final.booster
    booster.set_attr(**{CALIBRATION_ATTRIBUTE: json.dumps(final.calibration.to_dict(), sort_keys=True)})
    stamp_time = now or datetime.now(UTC)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / f"balanced_realistic_model_{stamp_time:%Y%m%d_%H%M%S}.joblib"
    joblib.dump(booster, path, compress=3)

    spans = {}
    for symbol in candle_set.symbols:
        frame = candle_set.five_minute.get(symbol)
        frame = frame if frame is not None else candle_set.hourly[symbol]
        spans[symbol] = {
            "from": _iso(frame["timestamp"].iloc[0]),
            "to": _iso(frame["timestamp"].iloc[-1]),
            "candles": len(frame),
            "bars": data.sources.get(symbol, ""),
        }
    last_fold = final.fold
    final_report = final.report
    card: dict[str, Any] = {
        "file": path.name,
        "created_at": stamp_time.isoformat(timespec="seconds"),
        "sha256": sha256_of(path),
        "feature_count": len(FEATURE_NAMES),
        "feature_names": list(FEATURE_NAMES),
        "classes": list(CLASSES),
        "label": {
            "definition": "log return from a bar's close to the close of the bar of the same phase starting "
            "horizon_hours later (by timestamp; none across a gap) vs log(1 + 2 x fee): above -> BUY, below minus "
            "-> SELL, else HOLD",
            "horizon_hours": cfg.horizon_hours,
            "fee_per_side": cfg.fee_per_side,
            "class_weights": "none: the probabilities are calibrated and read by the rule as they are (the file name "
            "keeps 'balanced' for the loader's pattern)",
        },
        "data": {
            "bars": "hourly bars from 5-minute candles at all 12 five-minute phases of the hour where a symbol has "
            "5-minute candles (generator_svc/bars.py), else its hourly candles",
            "span_per_symbol": spans,
            "rows": len(data.labels),
        },
        "split": {
            "note": "the bundled model is the last walk-forward fold's model; times are bar starts, [from, until)",
            "train_from": _iso(last_fold.train[0]),
            "train_until": _iso(last_fold.train[1]),
            "validation": [_iso(last_fold.validation[0]), _iso(last_fold.validation[1])],
            "test_from": _iso(last_fold.test[0]),
            "test_until": _iso(last_fold.test[1]),
            "purge_hours": cfg.purge_hours,
            "rows": final_report["rows"],
        },
        "walk_forward": {
            "definition": f"{cfg.folds} consecutive test blocks of {cfg.test_fraction:.0%} of the labelled time "
            f"span each; before each a validation block ({cfg.validation_fraction:.0%}) for the calibration; "
            f"training from the start; purge gaps of {cfg.purge_hours} h (label horizon {cfg.horizon_hours} h) "
            "between training and validation and between validation and test; nothing fitted on later data",
            "summary": summary,
            "folds": reports,
        },
        "hyper_parameters": {
            **_parameters(cfg, final_report["hyper_parameters"]),
            "selection": f"per fold, the grid {list(cfg.grid)} with early stopping (at most {cfg.max_rounds} "
            f"rounds, patience {cfg.early_stopping_rounds}) on the last {cfg.inner_validation_fraction:.0%} of the "
            f"fold's training period (purged), fitted on phases {list(cfg.search_phases)}: training data only",
        },
        "calibration": {
            **final.calibration.to_dict(),
            "fitted_on": f"the validation block {_iso(last_fold.validation[0])} to {_iso(last_fold.validation[1])} "
            f"({final_report['rows']['validation']:,} rows); stored in the .joblib (booster attribute "
            f"'{CALIBRATION_ATTRIBUTE}') and here",
            "reliability_test": {k: v["reliability"] for k, v in final_report["test"]["calibration"].items()},
            "ece_test": {k: v["ece"] for k, v in final_report["test"]["calibration"].items()},
        },
        "validation": final_report["calibration"]["validation_log_loss"],
        "test": final_report["test"]["model"],
        "training_class_frequencies": final_report["training_class_frequencies"],
        "baselines": {
            "prior": final_report["test"]["prior"],
            "majority_class": final_report["test"]["majority_class"],
            "training_prior": final_report["test"].get("training_prior"),
        },
        "test_backtest": final_report["test_rule_backtest"],
        "verdict": verdict(summary, len(reports)),
        "library_versions": _versions(),
        "training_seconds": round(time.monotonic() - started, 1),
        "data_fingerprint": hashlib.sha256(data.features.tobytes() + data.labels.tobytes()).hexdigest(),
    }
    card_path(path).write_text(json.dumps(json_ready(card), indent=2, allow_nan=False) + "\n")
    say(f"wrote {path} and {card_path(path).name}")
    return path


def json_ready(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers, tuples as lists, and NaN or infinite floats as None."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_ready(v) for v in value.tolist()]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if np.isfinite(number) else None
    return value


def _versions() -> dict[str, str]:
    import joblib
    import xgboost

    return {
        "python": platform.python_version(),
        "xgboost": xgboost.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "joblib": joblib.__version__,
    }
