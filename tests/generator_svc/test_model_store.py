from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest

from generator_svc.features import FEATURE_NAMES
from generator_svc.model_store import ModelLoadError, card_path, find_model, load_model, sha256_of

MODELS = Path("models")


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    source = find_model(MODELS)
    shutil.copy(source, tmp_path / source.name)
    shutil.copy(card_path(source), tmp_path / card_path(source).name)
    return tmp_path


def _only(model_dir: Path) -> Path:
    return find_model(model_dir)


def _rewrite_card(model: Path, **changes: object) -> None:
    card = json.loads(card_path(model).read_text())
    card.update(changes)
    card_path(model).write_text(json.dumps(card))


def test_the_committed_model_loads_and_predicts() -> None:
    model = load_model(MODELS)
    assert model.card["feature_names"] == list(FEATURE_NAMES)
    assert model.sha256 == sha256_of(model.path)
    probabilities = model.predict_proba(np.zeros((3, 51)))
    assert probabilities.shape == (3, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_missing_directory_and_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match="no balanced_realistic_model"):
        load_model(tmp_path)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path, tmp_path / "balanced_realistic_model_20990101_000000.joblib")


def test_missing_card(model_dir: Path) -> None:
    model = _only(model_dir)
    card_path(model).unlink()
    with pytest.raises(ModelLoadError, match=r"card .* is missing") as info:
        load_model(model_dir)
    assert model.name in str(info.value)


def test_bytes_differ_from_the_card(model_dir: Path) -> None:
    model = _only(model_dir)
    with model.open("ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(ModelLoadError, match="SHA-256") as info:
        load_model(model_dir)
    assert model.name in str(info.value)


def test_truncated_file_with_a_matching_card(model_dir: Path) -> None:
    model = _only(model_dir)
    model.write_bytes(model.read_bytes()[:1000])
    _rewrite_card(model, sha256=sha256_of(model))
    with pytest.raises(ModelLoadError, match="cannot be loaded"):
        load_model(model_dir)


def test_foreign_object(model_dir: Path) -> None:
    model = _only(model_dir)
    joblib.dump({"not": "a model"}, model)
    _rewrite_card(model, sha256=sha256_of(model))
    with pytest.raises(ModelLoadError, match="not an XGBoost"):
        load_model(model_dir)


def test_feature_names_and_count_must_match(model_dir: Path) -> None:
    model = _only(model_dir)
    _rewrite_card(model, feature_names=list(reversed(FEATURE_NAMES)))
    with pytest.raises(ModelLoadError, match="feature names"):
        load_model(model_dir)
    _rewrite_card(model, feature_names=list(FEATURE_NAMES), feature_count=79)
    with pytest.raises(ModelLoadError, match="feature_count"):
        load_model(model_dir)


def test_newest_model_wins_and_a_bad_newest_model_is_not_skipped(model_dir: Path) -> None:
    model = _only(model_dir)
    newer = model_dir / "balanced_realistic_model_20991231_235959.joblib"
    shutil.copy(model, newer)
    shutil.copy(card_path(model), card_path(newer))
    assert load_model(model_dir).file_name == newer.name
    with newer.open("ab") as fh:
        fh.write(b"x")
    with pytest.raises(ModelLoadError, match=newer.name):
        load_model(model_dir)  # no fallback to the older, valid model


@pytest.mark.parametrize("damage", ["missing", "tampered", "foreign"])
def test_generator_refuses_to_start(model_dir: Path, damage: str, sqlite_url: str) -> None:
    model = _only(model_dir)
    if damage == "missing":
        model.unlink()
    elif damage == "tampered":
        model.write_bytes(model.read_bytes()[:-10] + b"0123456789")
    else:
        joblib.dump([1, 2, 3], model)
        _rewrite_card(model, sha256=sha256_of(model))
    env = {
        "MODEL_DIR": str(model_dir),
        "DATABASE_URL": sqlite_url,
        "SIGNAL_GENERATOR_METRICS_PORT": "0",
        "SIGNAL_GENERATOR_PORT": "1",
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "generator_svc"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 1
    line = [x for x in proc.stderr.splitlines() if x.startswith("generator: cannot start")]
    assert len(line) == 1, proc.stderr
    assert "model" in line[0] or ".joblib" in line[0]


def test_predictions_are_the_calibrated_probabilities() -> None:
    model = load_model(MODELS)
    rng = np.random.default_rng(3)
    features = rng.normal(0, 0.02, (50, 51))
    raw = model.raw_proba(features)
    calibrated = model.predict_proba(features)
    np.testing.assert_allclose(calibrated, model.calibration.apply(raw))
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    assert model.card["calibration"]["method"] == "platt"
    assert model.estimator.attr("calibration")


def test_calibration_missing_from_the_card(model_dir: Path) -> None:
    model = _only(model_dir)
    card = json.loads(card_path(model).read_text())
    del card["calibration"]
    card_path(model).write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="no probability calibration"):
        load_model(model_dir)


def test_calibration_missing_from_the_model(model_dir: Path) -> None:
    model = _only(model_dir)
    booster = joblib.load(model)
    booster.set_attr(calibration=None)
    joblib.dump(booster, model, compress=3)
    _rewrite_card(model, sha256=sha256_of(model))
    with pytest.raises(ModelLoadError, match="carries no probability calibration"):
        load_model(model_dir)


def test_calibration_of_card_and_model_must_agree(model_dir: Path) -> None:
    model = _only(model_dir)
    card = json.loads(card_path(model).read_text())
    card["calibration"]["per_class"]["BUY"]["b"] += 0.5
    card_path(model).write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="differs"):
        load_model(model_dir)


def test_unusable_calibration(model_dir: Path) -> None:
    model = _only(model_dir)
    booster = joblib.load(model)
    booster.set_attr(calibration='{"method": "platt", "per_class": {}}')
    joblib.dump(booster, model, compress=3)
    _rewrite_card(model, sha256=sha256_of(model))
    with pytest.raises(ModelLoadError, match="unusable probability calibration"):
        load_model(model_dir)
