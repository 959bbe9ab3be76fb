"""`cts train`'s pieces: labels and purge gaps measured in time, walk-forward folds where nothing is fitted on
later data, the 12 phases of 5-minute-anchored bars, the rule on every row, and reproducible model bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.lifecycle import SignalType
from generator_svc.bars import HOUR, PHASES
from generator_svc.model_store import card_path, load_model, sha256_of
from generator_svc.signal_rule import decide
from generator_svc.training import (
    BUY,
    HOLD,
    SELL,
    CandleSet,
    TrainingConfig,
    build_dataset,
    labels_by_time,
    load_candle_directory,
    rule_signals,
    train,
    train_fold,
    walk_forward_folds,
)

T0 = 1_704_067_200  # 2024-01-01 00:00 UTC
SMALL = TrainingConfig(
    folds=2,
    test_fraction=0.15,
    validation_fraction=0.15,
    grid=({"max_depth": 2, "min_child_weight": 5.0}, {"max_depth": 3, "min_child_weight": 5.0}),
    max_rounds=15,
    early_stopping_rounds=5,
)


def five_minute_candles(days: int, seed: int, start: int = T0) -> pd.DataFrame:
    n = days * 24 * 12
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
    open_ = np.r_[50.0, close[:-1]]
    return pd.DataFrame(
        {
            "timestamp": start + 300 * np.arange(n, dtype=np.int64),
            "open": open_,
            "high": np.maximum(open_, close) * (1 + rng.uniform(0, 0.002, n)),
            "low": np.minimum(open_, close) * (1 - rng.uniform(0, 0.002, n)),
            "close": close,
            "volume": rng.uniform(10, 100, n),
        }
    )


@pytest.fixture(scope="module")
def candle_set() -> CandleSet:
    return CandleSet(
        hourly={}, five_minute={s: five_minute_candles(36, k) for k, s in enumerate(("AAA-USD", "BBB-USD"))}
    )


def test_labels_are_measured_in_hours_not_rows() -> None:
    times = T0 + HOUR * np.r_[np.arange(30), np.arange(33, 60)]  # hours 30-32 missing
    close = np.exp(np.linspace(0, 1, len(times)))
    close[times == T0 + 50 * HOUR] = close[times == T0 + 26 * HOUR][0] * 1.05  # 24 h after hour 26: +5 %
    bars = pd.DataFrame({"timestamp": times, "close": close})
    labels, forward = labels_by_time(bars, horizon_hours=24, fee_per_side=0.006)
    by_hour = dict(zip(((times - T0) // HOUR).tolist(), range(len(times)), strict=True))
    assert forward[by_hour[26]] == pytest.approx(np.log(1.05))
    assert labels[by_hour[26]] == BUY
    # Hours 6, 7, 8 would look 24 h ahead into the missing hours: no label, although 24 rows later exist.
    for hour in (6, 7, 8):
        assert np.isnan(labels[by_hour[hour]])
        assert np.isnan(forward[by_hour[hour]])
    # Hour 9 looks at hour 33, which is 21 rows later: the horizon is time.
    assert forward[by_hour[9]] == pytest.approx(np.log(close[by_hour[33]] / close[by_hour[9]]))
    assert np.isnan(labels[-24:]).all()  # the last day has no future
    flat = pd.DataFrame({"timestamp": T0 + HOUR * np.arange(30), "close": np.r_[np.full(5, 100.0), np.full(25, 98.0)]})
    codes, _ = labels_by_time(flat, horizon_hours=24, fee_per_side=0.006)
    assert codes[0] == SELL  # -2 % is worse than the 1.2 % round trip
    flat["close"] = 100.0
    assert labels_by_time(flat, horizon_hours=24)[0][0] == HOLD


def test_the_purge_must_cover_the_horizon() -> None:
    with pytest.raises(ValueError, match="purge_hours"):
        TrainingConfig(horizon_hours=24, purge_hours=12)
    TrainingConfig(horizon_hours=24, purge_hours=24)


def test_dataset_has_all_twelve_phases(candle_set: CandleSet) -> None:
    data = build_dataset(candle_set, SMALL)
    assert set(data.phases.tolist()) == set(range(PHASES))
    assert set(data.symbols.tolist()) == {"AAA-USD", "BBB-USD"}
    assert (data.times % 300 == 0).all()
    assert np.all(np.diff(data.times) >= 0)
    assert ((data.times // 300) % PHASES == data.phases).all()  # each row's bar starts at its phase's minute
    assert not np.isnan(data.features).any()
    assert data.features.shape[1] == 51


def test_hourly_directory_gives_one_phase(candle_set: CandleSet) -> None:
    from generator_svc.bars import hourly_bars_from_5m

    hourly = {s: hourly_bars_from_5m(f, phase=0).drop(columns="candles") for s, f in candle_set.five_minute.items()}
    data = build_dataset(CandleSet(hourly=hourly, five_minute={}), SMALL)
    assert set(data.phases.tolist()) == {0}
    assert data.sources == {"AAA-USD": "hourly", "BBB-USD": "hourly"}


@pytest.mark.parametrize("folds", [1, 2, 4])
def test_walk_forward_folds_are_consecutive_and_purged_in_time(folds: int) -> None:
    rng = np.random.default_rng(folds)
    times = np.sort(T0 + 300 * rng.choice(12 * 24 * 180, size=40_000, replace=False))
    config = TrainingConfig(folds=folds, purge_hours=48, horizon_hours=24)
    result = walk_forward_folds(times, config)
    assert len(result) == folds
    for k, fold in enumerate(result):
        train_mask, valid_mask, test_mask = fold.masks(times)
        assert train_mask.any()
        assert valid_mask.any()
        assert test_mask.any()
        assert not (train_mask & valid_mask).any()
        assert not (valid_mask & test_mask).any()
        # Purge gaps in seconds of candle time, each at least the label horizon.
        assert times[valid_mask].min() - times[train_mask].max() > config.horizon_seconds
        assert times[test_mask].min() - times[valid_mask].max() > config.horizon_seconds
        assert fold.validation[0] - fold.train[1] == config.purge_seconds
        assert fold.test[0] - fold.validation[1] == config.purge_seconds
        assert fold.test[0] % HOUR == 0
        assert fold.validation[0] % HOUR == 0
        assert fold.train[0] == times.min()
        if k:
            assert fold.test[0] == result[k - 1].test[1]  # consecutive test blocks
    assert result[-1].test[0] < times.max() < result[-1].test[1] <= times.max() + HOUR
    with pytest.raises(ValueError, match="too few"):
        walk_forward_folds(times[:50], TrainingConfig(folds=4))


def test_nothing_is_fitted_on_later_data(candle_set: CandleSet) -> None:
    """The fold's booster and calibration stay the same whatever the test block (and everything after the
    validation block) holds."""
    data = build_dataset(candle_set, SMALL)
    fold = walk_forward_folds(data.times, SMALL)[0]
    first = train_fold(data, fold, SMALL, lambda _m: None)
    later = data.times >= fold.validation[1]
    rng = np.random.default_rng(0)
    data.features[later] = rng.normal(size=data.features[later].shape).astype(np.float32)
    data.labels[later] = rng.integers(0, 3, size=int(later.sum()))
    second = train_fold(data, fold, SMALL, lambda _m: None)
    assert bytes(first.booster.save_raw()) == bytes(second.booster.save_raw())
    assert first.calibration == second.calibration
    assert first.report["test"]["model"] != second.report["test"]["model"]  # the test block did change


def test_the_rule_on_every_row_is_the_live_rule() -> None:
    rng = np.random.default_rng(5)
    raw = rng.dirichlet([1, 1, 1], size=3000)
    raw[:10] = [[0.6, 0.0, 0.4], [0.3, 0.0, 0.7], [0.61, 0.0, 0.39], [0.45, 0.1, 0.45], [0.7, 0.0, 0.55]] * 2
    codes = rule_signals(raw, 0.5, 0.6)
    names = {SELL: SignalType.SELL, HOLD: SignalType.HOLD, BUY: SignalType.BUY}
    for row, code in zip(raw, codes, strict=True):
        assert names[int(code)] == decide(float(row[BUY]), float(row[SELL]), 0.5, 0.6)
    both = rule_signals(np.array([[0.55, 0.0, 0.55], [0.56, 0.0, 0.55]]), 0.3, 0.3)
    assert both.tolist() == [BUY, SELL]  # both fire: the larger wins, BUY on a tie


def test_training_is_reproducible_and_writes_a_loadable_calibrated_model(candle_set: CandleSet, tmp_path: Path) -> None:
    one = train(candle_set, tmp_path / "one", config=SMALL)
    two = train(candle_set, tmp_path / "two", config=SMALL)
    assert one.read_bytes() == two.read_bytes()
    other_seed = train(candle_set, tmp_path / "three", config=TrainingConfig(**{**SMALL.__dict__, "seed": 7}))
    assert other_seed.read_bytes() != one.read_bytes()

    model = load_model(one.parent)
    card = json.loads(card_path(one).read_text())
    assert card["sha256"] == sha256_of(one)
    folds = card["walk_forward"]["folds"]
    assert [f["fold"] for f in folds] == [1, 2]
    assert card["split"]["test_from"] == folds[-1]["test_period"][0]
    assert card["split"]["purge_hours"] >= card["label"]["horizon_hours"]
    for name in ("prior", "majority_class"):
        assert "log_loss" in card["baselines"][name]
    assert card["calibration"]["method"] == "platt"
    assert set(card["calibration"]["reliability_test"]) == {"SELL", "HOLD", "BUY"}
    assert card["verdict"]
    assert all(isinstance(line, str) for line in card["verdict"])
    assert set(card["walk_forward"]["summary"]["folds_meeting_each_goal"]) >= {
        "log_loss_below_prior",
        "ece_buy_below_0.05",
        "sell_precision_at_least_base_rate",
    }
    for fold in folds:
        assert fold["hyper_parameter_search"]  # chosen on the fold's own training data
        assert fold["hyper_parameters"]["max_depth"] in (2, 3)
    # The loaded model's probabilities are the calibrated ones, summing to 1.
    features = build_dataset(candle_set, SMALL).features[:200]
    raw = model.raw_proba(features)
    calibrated = model.predict_proba(features)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    np.testing.assert_allclose(calibrated, model.calibration.apply(raw))
    assert not np.allclose(calibrated, raw)


def test_candle_directory(tmp_path: Path, candle_set: CandleSet) -> None:
    frame = candle_set.five_minute["AAA-USD"]
    frame.to_csv(tmp_path / "AAA-USD_5m.csv.gz", index=False)
    frame.iloc[::12].to_csv(tmp_path / "AAA-USD_1h.csv.gz", index=False)
    frame.iloc[::12].to_csv(tmp_path / "CCC-USD_1h.csv.gz", index=False)
    loaded = load_candle_directory(tmp_path)
    assert loaded.symbols == ["AAA-USD", "CCC-USD"]
    assert set(loaded.five_minute) == {"AAA-USD"}
    pd.testing.assert_frame_equal(loaded.five_minute["AAA-USD"], frame)
    (tmp_path / "BAD-USD_1h.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match=r"BAD-USD_1h\.csv\.gz"):
        load_candle_directory(tmp_path)
    with pytest.raises(ValueError, match=r"no <SYMBOL>_1h\.csv\.gz"):
        load_candle_directory(tmp_path / "..", symbols=["NOPE"])
    with pytest.raises(ValueError, match="not a readable directory"):
        load_candle_directory(tmp_path / "missing")
