"""Training the "balanced realistic" XGBoost model (`cts train`) and writing its model card.

- Labels ("realistic"): the forward log return over HORIZON_HOURS rows, net of a round trip of taker fees
  (2 x FEE_PER_SIDE): BUY if it beats the fees, SELL if it loses more than the fees, else HOLD.
- "Balanced": sample weights inversely proportional to class frequency in the training set.
- Split by time, never shuffled: train / validation / test by the global time line, with a purge gap of
  PURGE_HOURS >= HORIZON_HOURS between them so no label of one part sees prices of the next.
- XGBoost `hist`, fixed seed and thread count: the same data gives the same model and card (but timestamps).
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.lifecycle import SignalType
from generator_svc.features import FEATURE_NAMES, MIN_HISTORY, compute_features
from generator_svc.model_store import CLASSES, card_path, sha256_of
from generator_svc.signal_rule import decide

HORIZON_HOURS = 24
FEE_PER_SIDE = 0.006
PURGE_HOURS = 48
SPLIT = (0.70, 0.15, 0.15)
SEED = 42
BOOST_ROUNDS = 300
HYPER_PARAMETERS: dict[str, Any] = {
    "max_depth": 4,
    "eta": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 5.0,
    "lambda": 1.0,
    "tree_method": "hist",
    "objective": "multi:softprob",
    "num_class": 3,
    "eval_metric": "mlogloss",
    "seed": SEED,
    "nthread": 2,
}
SELL, HOLD, BUY = 0, 1, 2


@dataclass
class Dataset:
    features: np.ndarray
    labels: np.ndarray
    times: np.ndarray  # candle start, Unix seconds
    symbols: np.ndarray
    closes: np.ndarray
    forward: np.ndarray  # forward log return over the horizon


def load_csv_candles(directory: Path) -> dict[str, pd.DataFrame]:
    """<directory>/<SYMBOL>_1h.csv.gz -> {symbol: candles sorted by time}."""
    out = {}
    for path in sorted(directory.glob("*_1h.csv.gz")):
        symbol = path.name.split("_", 1)[0]
        frame = pd.read_csv(path).sort_values("timestamp").drop_duplicates("timestamp").reset_index(drop=True)
        out[symbol] = frame[["timestamp", "open", "high", "low", "close", "volume"]]
    return out


def labels_for(close: pd.Series, horizon: int = HORIZON_HOURS, fee_per_side: float = FEE_PER_SIDE) -> pd.Series:
    """BUY/SELL/HOLD codes from the forward return net of a round trip of fees; NaN where the future is unknown."""
    forward = np.log(close.shift(-horizon) / close)
    cost = np.log1p(2 * fee_per_side)
    labels = pd.Series(HOLD, index=close.index, dtype=float)
    labels[forward > cost] = BUY
    labels[forward < -cost] = SELL
    labels[forward.isna()] = np.nan
    return labels


def build_dataset(candles_by_symbol: Mapping[str, pd.DataFrame]) -> Dataset:
    parts = []
    for symbol, candles in sorted(candles_by_symbol.items()):
        features = compute_features(candles)
        labels = labels_for(candles["close"].astype(float))
        forward = np.log(candles["close"].astype(float).shift(-HORIZON_HOURS) / candles["close"].astype(float))
        frame = features.assign(
            _label=labels.to_numpy(),
            _time=candles["timestamp"].to_numpy(),
            _symbol=symbol,
            _close=candles["close"].astype(float).to_numpy(),
            _forward=forward.to_numpy(),
        )
        frame = frame.iloc[MIN_HISTORY:]
        parts.append(frame.dropna(subset=[*FEATURE_NAMES, "_label"]))
    data = pd.concat(parts).sort_values(["_time", "_symbol"], kind="stable")
    return Dataset(
        features=data[list(FEATURE_NAMES)].to_numpy(dtype=np.float32),
        labels=data["_label"].to_numpy(dtype=np.int64),
        times=data["_time"].to_numpy(dtype=np.int64),
        symbols=data["_symbol"].to_numpy(),
        closes=data["_close"].to_numpy(dtype=np.float64),
        forward=data["_forward"].to_numpy(dtype=np.float64),
    )


def time_split(times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Boolean masks for train / validation / test by time, with purge gaps between them."""
    ordered = np.sort(np.unique(times))
    cut1 = ordered[int(len(ordered) * SPLIT[0])]
    cut2 = ordered[int(len(ordered) * (SPLIT[0] + SPLIT[1]))]
    purge = PURGE_HOURS * 3600
    train = times < cut1 - purge
    valid = (times >= cut1) & (times < cut2 - purge)
    test = times >= cut2
    info = {
        "train_until": _iso(cut1 - purge),
        "validation": [_iso(cut1), _iso(cut2 - purge)],
        "test_from": _iso(cut2),
        "purge_hours": PURGE_HOURS,
    }
    return train, valid, test, info


def _iso(ts: int | np.integer[Any]) -> str:
    return datetime.fromtimestamp(int(ts), UTC).isoformat()


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    counts = np.bincount(labels, minlength=3).astype(float)
    per_class = len(labels) / (3 * np.maximum(counts, 1))
    weights: np.ndarray = per_class[labels]
    return weights


def classification_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    matrix = np.zeros((3, 3), dtype=int)
    for t, p in zip(y_true, y_pred, strict=True):
        matrix[t, p] += 1
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


def rule_backtest(data: Dataset, mask: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """The live rule on the test period, per symbol, long-only with one position: BUY enters at the close, SELL
    exits at the close, taker fee on each side; equal weights across symbols. Against buy-and-hold."""
    results = {}
    strategy_returns, hold_returns = [], []
    masked_rows = np.where(mask)[0]
    for symbol in sorted(set(data.symbols[mask])):
        rows = np.where(mask & (data.symbols == symbol))[0]
        closes = data.closes[rows]
        equity, position, entry, trades = 1.0, False, 0.0, 0
        for idx, row in enumerate(rows):
            p = probabilities[np.searchsorted(masked_rows, row)]
            signal = decide(float(p[BUY]), float(p[SELL]), 0.5, 0.6)
            price = closes[idx]
            if signal == SignalType.BUY and not position:
                position, entry, trades = True, price, trades + 1
            elif signal == SignalType.SELL and position:
                equity *= (price / entry) * (1 - FEE_PER_SIDE) ** 2
                position, trades = False, trades + 1
        if position:
            equity *= (closes[-1] / entry) * (1 - FEE_PER_SIDE) ** 2
        hold = float(closes[-1] / closes[0]) if len(closes) else 1.0
        results[symbol] = {
            "strategy_return": round(equity - 1, 4),
            "buy_and_hold_return": round(hold - 1, 4),
            "orders": trades,
        }
        strategy_returns.append(equity - 1)
        hold_returns.append(hold - 1)
    return {
        "rule": "BUY if P(buy) > 0.5, SELL if P(sell) > 0.6; long-only, fees 0.6% per side",
        "per_symbol": results,
        "strategy_return_equal_weight": round(float(np.mean(strategy_returns)), 4) if results else None,
        "buy_and_hold_return_equal_weight": round(float(np.mean(hold_returns)), 4) if results else None,
    }


def train(
    candles_by_symbol: Mapping[str, pd.DataFrame],
    output_dir: Path,
    *,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Train, evaluate on the held-out test period, write the .joblib and its card; returns the .joblib path."""
    import joblib
    import xgboost as xgb

    say = progress or (lambda _message: None)
    say("computing features and labels")
    data = build_dataset(candles_by_symbol)
    train_mask, valid_mask, test_mask, split_info = time_split(data.times)
    say(f"training on {train_mask.sum()} rows, validating on {valid_mask.sum()}, testing on {test_mask.sum()}")
    train_matrix = xgb.DMatrix(
        data.features[train_mask],
        label=data.labels[train_mask],
        weight=balanced_weights(data.labels[train_mask]),
        feature_names=list(FEATURE_NAMES),
    )
    valid_matrix = xgb.DMatrix(
        data.features[valid_mask], label=data.labels[valid_mask], feature_names=list(FEATURE_NAMES)
    )
    model = xgb.train(
        HYPER_PARAMETERS,
        train_matrix,
        num_boost_round=BOOST_ROUNDS,
        evals=[(valid_matrix, "validation")],
        verbose_eval=50,
    )
    test_probabilities = model.inplace_predict(data.features[test_mask])
    test_pred = test_probabilities.argmax(axis=1)
    valid_pred = model.inplace_predict(data.features[valid_mask]).argmax(axis=1)

    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d_%H%M%S")
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / f"balanced_realistic_model_{stamp}.joblib"
    joblib.dump(model, path, compress=3)
    spans = {
        symbol: {"from": _iso(df["timestamp"].iloc[0]), "to": _iso(df["timestamp"].iloc[-1]), "candles": len(df)}
        for symbol, df in sorted(candles_by_symbol.items())
    }
    card = {
        "file": path.name,
        "created_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
        "sha256": sha256_of(path),
        "feature_count": len(FEATURE_NAMES),
        "feature_names": list(FEATURE_NAMES),
        "classes": list(CLASSES),
        "label": {
            "definition": "forward log return over the horizon vs log(1 + 2 x fee): above -> BUY, below minus "
            "-> SELL, else HOLD",
            "horizon_hours": HORIZON_HOURS,
            "fee_per_side": FEE_PER_SIDE,
            "class_weights": "balanced (n / (3 x class count)) on the training set",
        },
        "data": {"source": "hourly candles", "span_per_symbol": spans, "rows": len(data.labels)},
        "split": {
            **split_info,
            "rows": {"train": int(train_mask.sum()), "validation": int(valid_mask.sum()), "test": int(test_mask.sum())},
        },
        "hyper_parameters": {**HYPER_PARAMETERS, "num_boost_round": BOOST_ROUNDS},
        "library_versions": _versions(),
        "validation": classification_report(data.labels[valid_mask], valid_pred),
        "test": classification_report(data.labels[test_mask], test_pred),
        "test_backtest": rule_backtest(data, test_mask, test_probabilities),
        "data_fingerprint": hashlib.sha256(data.features.tobytes() + data.labels.tobytes()).hexdigest(),
    }
    card_path(path).write_text(json.dumps(card, indent=2) + "\n")
    say(f"wrote {path} and {card_path(path).name}")
    return path


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
