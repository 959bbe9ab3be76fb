"""Per-class probability calibration (Platt scaling) and the measures of calibration.

The booster's three probabilities are calibrated one class at a time (one against the rest): for class k,
q_k = sigmoid(a_k * logit(p_k) + b_k), with a_k and b_k fitted by maximum likelihood (Newton's method, a tiny ridge
on a and b for stability) on validation data only, never on the data the booster was fitted on nor on the data it
is tested on. The three q_k are then divided by their sum, so the calibrated probabilities sum to 1 and the signal
rule (BUY if P(buy) > 0.5, SELL if P(sell) > 0.6) acts on them.

Measures: log loss (natural log, probabilities clipped to [1e-15, 1]), the expected calibration error per class
(one against the rest, ten equal-width bins of the predicted probability: the mean over rows of
|mean predicted - observed frequency| of their bin), and the reliability table behind it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

METHOD = "platt"
EPSILON = 1e-6  # raw probabilities are clipped to [EPSILON, 1 - EPSILON] before the logit
LOG_LOSS_CLIP = 1e-15
RIDGE = 1e-6
BINS = 10


class CalibrationError(ValueError):
    """A calibration record that cannot be used."""


def _logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, EPSILON, 1.0 - EPSILON)
    out: np.ndarray = np.log(clipped) - np.log1p(-clipped)
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out


def fit_platt_one(raw: np.ndarray, target: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """(a, b) maximising the likelihood of ``target`` (0/1) under sigmoid(a logit(raw) + b)."""
    x = _logit(np.asarray(raw, dtype=np.float64))
    y = np.asarray(target, dtype=np.float64)
    if len(x) == 0:
        raise CalibrationError("no rows to calibrate on")
    a, b = 1.0, 0.0
    for _ in range(iterations):
        q = _sigmoid(a * x + b)
        w = q * (1.0 - q)
        residual = q - y
        gradient = np.array([residual @ x + RIDGE * (a - 1.0), residual.sum() + RIDGE * b])
        hessian = np.array([[w @ (x * x) + RIDGE, w @ x], [w @ x, w.sum() + RIDGE]])
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            break
        a, b = a - float(step[0]), b - float(step[1])
        if abs(float(step[0])) < 1e-10 and abs(float(step[1])) < 1e-10:
            break
    if not (math.isfinite(a) and math.isfinite(b)):
        raise CalibrationError("the calibration did not converge")
    return a, b


@dataclass(frozen=True)
class Calibration:
    """Per-class Platt scaling, then renormalisation to sum 1."""

    classes: tuple[str, ...]
    slopes: tuple[float, ...]
    intercepts: tuple[float, ...]
    method: str = METHOD

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """(n, k) raw probabilities in ``classes`` order -> (n, k) calibrated probabilities summing to 1."""
        p = np.asarray(raw, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != len(self.classes):
            raise ValueError(f"expected an (n, {len(self.classes)}) matrix, got {p.shape}")
        q = _sigmoid(_logit(p) * np.asarray(self.slopes) + np.asarray(self.intercepts))
        q = np.maximum(q, 1e-12)
        out: np.ndarray = q / q.sum(axis=1, keepdims=True)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "definition": "per class: q = sigmoid(a * logit(p) + b), p clipped to [1e-6, 1 - 1e-6]; then q / sum(q)",
            "per_class": {
                name: {"a": a, "b": b} for name, a, b in zip(self.classes, self.slopes, self.intercepts, strict=True)
            },
        }

    @classmethod
    def from_dict(cls, data: object, classes: Sequence[str]) -> Calibration:
        """The calibration recorded by ``to_dict``; CalibrationError when it is missing a class or malformed."""
        if not isinstance(data, Mapping):
            raise CalibrationError("calibration is not an object")
        if data.get("method") != METHOD:
            raise CalibrationError(f"calibration method is {data.get('method')!r}, expected {METHOD!r}")
        per_class = data.get("per_class")
        if not isinstance(per_class, Mapping):
            raise CalibrationError("calibration has no per_class table")
        slopes, intercepts = [], []
        for name in classes:
            entry = per_class.get(name)
            if not isinstance(entry, Mapping):
                raise CalibrationError(f"calibration lacks class {name}")
            a, b = entry.get("a"), entry.get("b")
            if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (a, b)):
                raise CalibrationError(f"calibration of class {name} has no finite a and b")
            slopes.append(float(a))  # type: ignore[arg-type]
            intercepts.append(float(b))  # type: ignore[arg-type]
        return cls(classes=tuple(classes), slopes=tuple(slopes), intercepts=tuple(intercepts))


def fit_calibration(raw: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> Calibration:
    """Per-class Platt scaling of ``raw`` (n, k) against integer ``labels`` (class index)."""
    p = np.asarray(raw, dtype=np.float64)
    fitted = [fit_platt_one(p[:, k], labels == k) for k in range(len(classes))]
    return Calibration(
        classes=tuple(classes), slopes=tuple(a for a, _ in fitted), intercepts=tuple(b for _, b in fitted)
    )


# ------------------------------------------------------------------------------------------------------ measures


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (natural log), probabilities clipped to [1e-15, 1]."""
    if len(labels) == 0:
        return float("nan")
    p = np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(p, LOG_LOSS_CLIP, 1.0))))


def reliability_table(predicted: np.ndarray, target: np.ndarray, bins: int = BINS) -> list[dict[str, Any]]:
    """Equal-width bins of ``predicted`` (one class's probability) with their rows, mean prediction and observed
    frequency of ``target``; empty bins are left out."""
    p = np.asarray(predicted, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    index = np.minimum((p * bins).astype(int), bins - 1)
    table = []
    for b in range(bins):
        rows = index == b
        n = int(rows.sum())
        if n == 0:
            continue
        table.append(
            {
                "bin": [round(b / bins, 4), round((b + 1) / bins, 4)],
                "rows": n,
                "mean_predicted": float(p[rows].mean()),
                "observed": float(y[rows].mean()),
            }
        )
    return table


def expected_calibration_error(predicted: np.ndarray, target: np.ndarray, bins: int = BINS) -> float:
    """sum over bins of (rows in bin / rows) x |mean predicted - observed frequency|."""
    total = len(predicted)
    if total == 0:
        return float("nan")
    table = reliability_table(predicted, target, bins)
    return float(sum(row["rows"] / total * abs(row["mean_predicted"] - row["observed"]) for row in table))


def calibration_report(
    probabilities: np.ndarray, labels: np.ndarray, classes: Sequence[str], bins: int = BINS
) -> dict[str, Any]:
    """ECE and reliability table per class (one against the rest)."""
    p = np.asarray(probabilities, dtype=np.float64)
    return {
        name: {
            "ece": expected_calibration_error(p[:, k], labels == k, bins),
            "reliability": reliability_table(p[:, k], labels == k, bins),
        }
        for k, name in enumerate(classes)
    }
