"""Per-class Platt calibration: fitted where the probabilities are off, harmless where they are right, and the
measures (log loss, expected calibration error, reliability table) computed as defined."""

from __future__ import annotations

import numpy as np
import pytest

from generator_svc.calibration import (
    Calibration,
    CalibrationError,
    calibration_report,
    expected_calibration_error,
    fit_calibration,
    log_loss,
    reliability_table,
)

CLASSES = ("SELL", "HOLD", "BUY")


def _sample(n: int, seed: int, sharpen: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True class probabilities, labels drawn from them, and an over-confident version of them (softmax of the
    true log-probabilities times ``sharpen``)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 0.6, (n, 3))
    truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=row) for row in truth])
    skewed = np.exp(logits * sharpen) / np.exp(logits * sharpen).sum(axis=1, keepdims=True)
    return truth, labels, skewed


def test_calibration_repairs_over_confident_probabilities() -> None:
    _, fit_labels, fit_raw = _sample(20_000, 1, sharpen=3.0)
    truth, labels, raw = _sample(20_000, 2, sharpen=3.0)
    calibration = fit_calibration(fit_raw, fit_labels, CLASSES)
    calibrated = calibration.apply(raw)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    assert (calibrated > 0).all()
    assert all(0 < a < 1 for a in calibration.slopes)  # over-confident: the slopes shrink the logits
    before = log_loss(raw, labels)
    after = log_loss(calibrated, labels)
    assert after < before
    assert after < log_loss(truth, labels) + 0.01  # close to the best possible
    for k in range(3):
        assert expected_calibration_error(calibrated[:, k], labels == k) < 0.02
        assert expected_calibration_error(raw[:, k], labels == k) > 0.04


def test_calibration_of_calibrated_probabilities_changes_little() -> None:
    truth, labels, _ = _sample(30_000, 3, sharpen=1.0)
    calibration = fit_calibration(truth, labels, CLASSES)
    np.testing.assert_allclose(calibration.slopes, 1.0, atol=0.08)
    np.testing.assert_allclose(calibration.intercepts, 0.0, atol=0.08)
    np.testing.assert_allclose(calibration.apply(truth), truth, atol=0.03)


def test_fitting_is_deterministic_and_round_trips() -> None:
    _, labels, raw = _sample(3_000, 4, sharpen=2.0)
    one = fit_calibration(raw, labels, CLASSES)
    two = fit_calibration(raw, labels, CLASSES)
    assert one == two
    assert Calibration.from_dict(one.to_dict(), CLASSES) == one


@pytest.mark.parametrize(
    "record",
    [
        None,
        {},
        {"method": "isotonic", "per_class": {}},
        {"method": "platt"},
        {"method": "platt", "per_class": {"SELL": {"a": 1, "b": 0}, "HOLD": {"a": 1, "b": 0}}},
        {"method": "platt", "per_class": {c: {"a": 1.0, "b": float("nan")} for c in CLASSES}},
        {"method": "platt", "per_class": {c: {"a": "1", "b": 0.0} for c in CLASSES}},
    ],
)
def test_malformed_records_are_refused(record: object) -> None:
    with pytest.raises(CalibrationError):
        Calibration.from_dict(record, CLASSES)


def test_apply_checks_the_shape() -> None:
    calibration = Calibration(CLASSES, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="matrix"):
        calibration.apply(np.zeros((2, 4)))


def test_measures_by_hand() -> None:
    p = np.array([[0.2, 0.3, 0.5], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
    y = np.array([2, 0, 1, 1])
    assert log_loss(p, y) == pytest.approx(-np.mean(np.log([0.5, 0.7, 0.1, 0.4])))
    certain = np.array([[0.0, 1.0, 0.0]])
    assert log_loss(certain, np.array([0])) == pytest.approx(-np.log(1e-15))
    # P(buy) 0.5, 0.1, 0.8, 0.3 -> bins 5, 1, 8, 3; each bin one row.
    table = reliability_table(p[:, 2], y == 2)
    assert [row["rows"] for row in table] == [1, 1, 1, 1]
    assert [row["observed"] for row in table] == [0.0, 0.0, 1.0, 0.0]
    expected = (abs(0.1 - 0) + abs(0.3 - 0) + abs(0.5 - 1) + abs(0.8 - 0)) / 4
    assert expected_calibration_error(p[:, 2], y == 2) == pytest.approx(expected)
    report = calibration_report(p, y, CLASSES)
    assert set(report) == set(CLASSES)
    assert report["BUY"]["ece"] == pytest.approx(expected)
    assert np.isnan(log_loss(p[:0], y[:0]))
