"""Loading the XGBoost model with its model card, and refusing anything that does not match.

The loader takes the newest ``balanced_realistic_model_<YYYYMMDD_HHMMSS>.joblib`` in MODEL_DIR (by the timestamp
in the name), or exactly MODEL_PATH, and checks: the card ``<same name>.json`` exists and parses, the SHA-256 of the
.joblib equals the card's, the card's feature names equal FEATURE_NAMES (51, same order), and the unpickled object
is an XGBoost classifier expecting 51 features and three classes, and the probability calibration is present: in
the booster (attribute ``calibration``, so the SHA-256 covers it) and in the card, the same in both. Any problem
raises ModelLoadError naming the file and the problem. There is never a fallback model or rule.

``LoadedModel.predict_proba`` returns calibrated probabilities (generator_svc/calibration.py: per-class Platt
scaling, renormalised to sum 1), so the signal rule acts on calibrated probabilities."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import StartupError
from generator_svc.calibration import Calibration, CalibrationError
from generator_svc.features import FEATURE_NAMES

log = logging.getLogger(__name__)

MODEL_PATTERN = re.compile(r"^balanced_realistic_model_(\d{8}_\d{6})\.joblib$")
CLASSES = ("SELL", "HOLD", "BUY")  # label encoding 0, 1, 2 used by training
CALIBRATION_ATTRIBUTE = "calibration"  # booster attribute holding the calibration's JSON


class ModelLoadError(StartupError):
    """The model cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class LoadedModel:
    path: Path
    file_name: str
    version: str  # "<timestamp>-<first 12 hex of sha256>"
    sha256: str
    card: dict[str, Any]
    classes: tuple[str, ...]
    estimator: Any
    calibration: Calibration

    def raw_proba(self, features: np.ndarray) -> np.ndarray:
        """(n, 51) float matrix in FEATURE_NAMES order -> (n, 3) booster probabilities, before calibration."""
        if features.ndim != 2 or features.shape[1] != len(FEATURE_NAMES):
            raise ValueError(f"expected an (n, {len(FEATURE_NAMES)}) matrix, got {features.shape}")
        if features.shape[0] == 0:
            return np.zeros((0, len(self.classes)))
        result = self.estimator.inplace_predict(np.ascontiguousarray(features, dtype=np.float32))
        return np.asarray(result, dtype=np.float64).reshape(features.shape[0], len(self.classes))

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """(n, 51) float matrix in FEATURE_NAMES order -> (n, 3) calibrated probabilities in ``classes`` order,
        each row summing to 1."""
        raw = self.raw_proba(features)
        return raw if raw.shape[0] == 0 else self.calibration.apply(raw)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def card_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def find_model(model_dir: Path) -> Path:
    if not model_dir.is_dir():
        raise ModelLoadError(f"{model_dir}: model directory does not exist")
    candidates = sorted(
        (p for p in model_dir.iterdir() if MODEL_PATTERN.match(p.name)),
        key=lambda p: MODEL_PATTERN.match(p.name).group(1),  # type: ignore[union-attr]
    )
    if not candidates:
        raise ModelLoadError(f"{model_dir}: no balanced_realistic_model_<YYYYMMDD_HHMMSS>.joblib found")
    return candidates[-1]


def load_model(model_dir: Path, model_path: Path | None = None) -> LoadedModel:
    path = model_path if model_path is not None else find_model(model_dir)
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file does not exist")
    card_file = card_path(path)
    if not card_file.is_file():
        raise ModelLoadError(f"{path}: model card {card_file.name} is missing")
    try:
        card = json.loads(card_file.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{card_file}: model card is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(card, dict):
        raise ModelLoadError(f"{card_file}: model card is not a JSON object")
    actual = sha256_of(path)
    if card.get("sha256") != actual:
        raise ModelLoadError(
            f"{path}: SHA-256 {actual[:12]}... differs from the card's {str(card.get('sha256'))[:12]}..."
        )
    names = card.get("feature_names")
    if names != list(FEATURE_NAMES):
        raise ModelLoadError(f"{card_file}: feature names do not match the 51 FEATURE_NAMES of this code")
    if card.get("feature_count") != len(FEATURE_NAMES):
        raise ModelLoadError(f"{card_file}: feature_count is {card.get('feature_count')}, expected 51")
    try:
        import joblib

        estimator = joblib.load(path)
    except Exception as exc:  # truncated, foreign or corrupt pickle: all the same to the operator
        raise ModelLoadError(f"{path}: cannot be loaded as a model ({exc.__class__.__name__})") from None
    if not hasattr(estimator, "inplace_predict") or not hasattr(estimator, "num_features"):
        raise ModelLoadError(f"{path}: is a {type(estimator).__name__}, not an XGBoost booster")
    # One thread: the generator predicts a few hundred rows at most, where OpenMP's thread start-up and spinning
    # cost far more than the trees (bench: 20 rows 0.4 ms with one thread, 12-27 ms with two on a busy 2-core box).
    estimator.set_param({"nthread": 1})
    n_features = estimator.num_features()
    if n_features != len(FEATURE_NAMES):
        raise ModelLoadError(f"{path}: the model expects {n_features} features, not 51")
    if estimator.feature_names is not None and list(estimator.feature_names) != list(FEATURE_NAMES):
        raise ModelLoadError(f"{path}: the model was trained on other feature names than FEATURE_NAMES")
    probe = np.asarray(estimator.inplace_predict(np.zeros((1, len(FEATURE_NAMES)), dtype=np.float32)))
    if probe.size != len(CLASSES) or card.get("classes") != list(CLASSES):
        raise ModelLoadError(f"{path}: the model must predict the three classes {', '.join(CLASSES)}")
    calibration = _calibration(path, card_file, card, estimator)
    match = MODEL_PATTERN.match(path.name)
    stamp = match.group(1) if match else path.stem
    model = LoadedModel(
        path=path,
        file_name=path.name,
        version=f"{stamp}-{actual[:12]}",
        sha256=actual,
        card=card,
        classes=CLASSES,
        estimator=estimator,
        calibration=calibration,
    )
    log.info("Loaded model %s sha256=%s features=%d", path.name, actual, len(FEATURE_NAMES))
    return model


def _calibration(path: Path, card_file: Path, card: dict[str, Any], estimator: Any) -> Calibration:
    """The calibration stored in the booster, which must be present, valid and the same as the card's."""
    recorded = card.get("calibration")
    if not isinstance(recorded, dict):
        raise ModelLoadError(f"{card_file}: the card records no probability calibration")
    stored = estimator.attr(CALIBRATION_ATTRIBUTE)
    if not stored:
        raise ModelLoadError(f"{path}: the model carries no probability calibration")
    try:
        inside = json.loads(stored)
        calibration = Calibration.from_dict(inside, CLASSES)
        on_card = Calibration.from_dict(recorded, CLASSES)
    except (ValueError, CalibrationError) as exc:
        raise ModelLoadError(f"{path}: unusable probability calibration ({exc})") from None
    if calibration != on_card:
        raise ModelLoadError(f"{card_file}: the card's calibration differs from the model's")
    return calibration
