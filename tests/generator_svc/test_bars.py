"""Hourly bars from 5-minute candles: aggregation, anchoring at every phase, gaps, and no look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cts.candle_data import SHARED_CANDLES_DIR
from generator_svc.bars import (
    BAR_COLUMNS,
    HOUR,
    PHASES,
    all_phase_bars,
    anchored_bars_array,
    bar_ends,
    hourly_bars_from_5m,
    latest_anchor,
    phase_of,
)
from generator_svc.features import compute_features

BINANCE = SHARED_CANDLES_DIR.parent / "binance_2024h1"
T0 = 1_704_067_200  # 2024-01-01 00:00 UTC, on the hour


def candles(n: int, start: int = T0, seed: int = 7) -> pd.DataFrame:
    """``n`` consecutive synthetic 5-minute candles from ``start``: a random walk with consistent OHLC."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[100.0, close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.001, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.001, n))
    return pd.DataFrame(
        {
            "timestamp": start + 300 * np.arange(n, dtype=np.int64),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.uniform(1, 10, n),
        }
    )


def test_aggregation_of_one_hour() -> None:
    five = candles(12)
    bars = hourly_bars_from_5m(five)
    assert list(bars.columns) == list(BAR_COLUMNS)
    assert len(bars) == 1
    bar = bars.iloc[0]
    assert bar["timestamp"] == T0  # the bar's start
    assert bar["open"] == five["open"].iloc[0]
    assert bar["high"] == five["high"].max()
    assert bar["low"] == five["low"].min()
    assert bar["close"] == five["close"].iloc[-1]
    assert bar["volume"] == pytest.approx(five["volume"].sum())
    assert bar["candles"] == 12


@pytest.mark.parametrize("phase", range(PHASES))
def test_every_phase_ends_where_it_should(phase: int) -> None:
    five = candles(12 * 30)
    bars = hourly_bars_from_5m(five, phase=phase)
    ends = bar_ends(bars)
    assert (ends % HOUR == phase * 300).all()
    assert np.all(np.diff(ends) == HOUR)
    assert ends[-1] <= int(five["timestamp"].iloc[-1]) + 300
    assert ends[-1] + HOUR > int(five["timestamp"].iloc[-1]) + 300  # the latest bar end of that phase
    assert all(phase_of(int(e)) == phase for e in ends)
    # Every complete bar aggregates exactly the twelve candles before its end.
    for _, bar in bars[bars["candles"] == 12].iterrows():
        inside = five[(five["timestamp"] >= bar["timestamp"]) & (five["timestamp"] < bar["timestamp"] + HOUR)]
        assert len(inside) == 12
        assert bar["open"] == inside["open"].iloc[0]
        assert bar["close"] == inside["close"].iloc[-1]
        assert bar["high"] == inside["high"].max()
        assert bar["low"] == inside["low"].min()
    # Only the first bar can be partial (the data start mid-bar except at phase 0).
    assert (bars["candles"].iloc[1:] == 12).all()
    assert bars["candles"].iloc[0] == (12 if phase == 0 else phase)


def test_anchor_end_cuts_later_candles_and_defaults_to_the_last_candle() -> None:
    five = candles(12 * 10)
    anchor = T0 + 5 * HOUR + 35 * 60
    bars = hourly_bars_from_5m(five, anchor_end=anchor)
    assert bar_ends(bars)[-1] == anchor
    assert bars.equals(hourly_bars_from_5m(five[five["timestamp"] + 300 <= anchor]))
    live = hourly_bars_from_5m(five)
    assert bar_ends(live)[-1] == int(five["timestamp"].iloc[-1]) + 300
    with pytest.raises(ValueError, match="multiple of 300"):
        hourly_bars_from_5m(five, anchor_end=anchor + 1)
    with pytest.raises(ValueError, match="phase"):
        hourly_bars_from_5m(five, anchor_end=anchor, phase=0)
    assert latest_anchor(anchor + 299, 7) == anchor
    assert hourly_bars_from_5m(five, anchor_end=T0).empty  # nothing ends by then


def test_gaps_partial_bars_are_marked_and_empty_hours_absent() -> None:
    five = candles(12 * 6)
    # Hour 1 loses three candles; hour 3 loses all of them.
    drop = five["timestamp"].isin([T0 + HOUR + 300 * k for k in (0, 5, 11)]) | (
        (five["timestamp"] >= T0 + 3 * HOUR) & (five["timestamp"] < T0 + 4 * HOUR)
    )
    gappy = five[~drop]
    bars = hourly_bars_from_5m(gappy, phase=0)
    assert bars["timestamp"].tolist() == [T0, T0 + HOUR, T0 + 2 * HOUR, T0 + 4 * HOUR, T0 + 5 * HOUR]
    assert bars["candles"].tolist() == [12, 9, 12, 12, 12]
    partial = bars.iloc[1]
    inside = gappy[(gappy["timestamp"] >= T0 + HOUR) & (gappy["timestamp"] < T0 + 2 * HOUR)]
    assert partial["open"] == inside["open"].iloc[0]  # the first existing candle's open
    assert partial["close"] == inside["close"].iloc[-1]
    assert partial["volume"] == pytest.approx(inside["volume"].sum())
    features = compute_features(bars)
    assert features["hours_since_prev"].tolist()[1:] == [1.0, 1.0, 2.0, 1.0]


def test_unsorted_duplicated_input_and_bad_timestamps() -> None:
    five = candles(36)
    shuffled = pd.concat([five.iloc[::-1], five.iloc[:5]])
    pd.testing.assert_frame_equal(hourly_bars_from_5m(shuffled), hourly_bars_from_5m(five))
    bad = five.copy()
    bad.loc[3, "timestamp"] += 7
    with pytest.raises(ValueError, match="not a multiple"):
        hourly_bars_from_5m(bad)
    with pytest.raises(ValueError, match="lack columns"):
        hourly_bars_from_5m(five.drop(columns="volume"))
    assert hourly_bars_from_5m(five.iloc[:0]).empty


def _gappy_candles(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    five = candles(12 * 320, seed=seed)
    keep = rng.uniform(size=len(five)) > 0.03  # scattered missing candles
    for hour in rng.choice(300, size=4, replace=False):  # and whole missing hours
        keep &= ~((five["timestamp"] >= T0 + hour * HOUR) & (five["timestamp"] < T0 + (hour + 2) * HOUR))
    return five[keep].reset_index(drop=True)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_look_ahead_at_random_cuts_gaps_included(seed: int) -> None:
    """Truncating the 5-minute candles anywhere never changes a bar, nor a feature, that ends by the cut."""
    five = _gappy_candles(seed)
    rng = np.random.default_rng(100 + seed)
    phases = all_phase_bars(five)
    features = {p: compute_features(b) for p, b in phases.items()}
    for cut in rng.integers(12 * 20, len(five), size=6):
        head = five.iloc[:cut]
        cut_end = int(head["timestamp"].iloc[-1]) + 300
        # The live bar set, anchored at the latest closed candle, is the full data's bar set at that anchor.
        live = hourly_bars_from_5m(head)
        pd.testing.assert_frame_equal(live, hourly_bars_from_5m(five, anchor_end=cut_end))
        phase = phase_of(cut_end)
        full = phases[phase]
        done = full[bar_ends(full) <= cut_end].reset_index(drop=True)
        pd.testing.assert_frame_equal(live.iloc[-len(done) :].reset_index(drop=True), done)
        # Each phase's bar set from the truncated data equals the full one up to the cut, and so do its features.
        for p in rng.choice(PHASES, size=3, replace=False):
            truncated = hourly_bars_from_5m(head, phase=int(p))
            assert (bar_ends(truncated) <= cut_end).all()
            pd.testing.assert_frame_equal(truncated, phases[int(p)].iloc[: len(truncated)].reset_index(drop=True))
            pd.testing.assert_frame_equal(
                compute_features(truncated), features[int(p)].iloc[: len(truncated)].reset_index(drop=True)
            )


@pytest.mark.skipif(not BINANCE.is_dir(), reason="needs ../shared/data/binance_2024h1")
def test_phase_zero_bars_are_the_exchanges_hourly_candles() -> None:
    five = pd.read_csv(BINANCE / "ETH-USD_5m.csv.gz").iloc[: 12 * 24 * 20]
    hourly = pd.read_csv(BINANCE / "ETH-USD_1h.csv.gz").iloc[: 24 * 20]
    bars = hourly_bars_from_5m(five, phase=0)
    assert (bars["candles"] == 12).all()
    np.testing.assert_array_equal(bars["timestamp"], hourly["timestamp"])
    for column in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(bars[column], hourly[column])
    np.testing.assert_allclose(bars["volume"], hourly["volume"], rtol=1e-9)


def _array(bars: pd.DataFrame) -> np.ndarray:
    values: np.ndarray = bars[list(BAR_COLUMNS)].to_numpy(dtype=np.float64)
    return values


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_anchored_bars_array_is_hourly_bars_from_5m_in_numpy(seed: int) -> None:
    """The generator's numpy bars equal the DataFrame bars (their last ``count``), gaps included, at any anchor."""
    five = _gappy_candles(seed)
    rows = five[["timestamp", "open", "high", "low", "close", "volume"]].to_numpy(dtype=np.float64)
    rng = np.random.default_rng(seed)
    last_end = int(five["timestamp"].iloc[-1]) + 300
    anchors = [T0, T0 + 300, T0 + HOUR, last_end, last_end + 7 * HOUR, *(T0 + 300 * rng.integers(1, 12 * 330, 12))]
    for anchor in anchors:
        for count in (1, 5, 200, 500):
            expected = _array(hourly_bars_from_5m(five, anchor_end=int(anchor)).tail(count))
            got = anchored_bars_array(rows, int(anchor), count)
            np.testing.assert_array_equal(got, expected)
    assert anchored_bars_array(rows, last_end, 0).shape == (0, len(BAR_COLUMNS))
    assert anchored_bars_array(rows[:0], last_end, 10).shape == (0, len(BAR_COLUMNS))
    with pytest.raises(ValueError, match="multiple of 300"):
        anchored_bars_array(rows, last_end + 1, 10)


def test_anchored_bars_array_marks_partial_bars_and_leaves_empty_hours_out() -> None:
    five = candles(12 * 4)
    gappy = five[
        ~five["timestamp"].isin([T0 + 300 * k for k in (0, 1, 23)])
        & ~five["timestamp"].between(T0 + 2 * HOUR, T0 + 3 * HOUR - 1)
    ]
    rows = gappy[["timestamp", "open", "high", "low", "close", "volume"]].to_numpy(dtype=np.float64)
    bars = anchored_bars_array(rows, T0 + 4 * HOUR, 10)
    assert bars[:, 0].tolist() == [T0, T0 + HOUR, T0 + 3 * HOUR]  # hour 2 has no candle: no bar
    assert bars[:, 6].tolist() == [10, 11, 12]
    assert bars[0, 1] == five["open"].iloc[2]  # the first existing candle's open
    assert bars[1, 4] == five["close"].iloc[22]  # the last existing candle's close (23 is missing)


@pytest.mark.skipif(not BINANCE.is_dir(), reason="needs ../shared/data/binance_2024h1")
@pytest.mark.parametrize("symbol", ["ETH-USD", "SHIB-USD"])
def test_anchored_bars_array_on_real_candles_with_gaps(symbol: str) -> None:
    five = pd.read_csv(BINANCE / f"{symbol}_5m.csv.gz").iloc[: 12 * 24 * 40]
    rng = np.random.default_rng(5)
    keep = rng.uniform(size=len(five)) > 0.05
    for start in rng.choice(len(five) - 40, size=6, replace=False):  # runs of missing candles, whole hours too
        keep[start : start + int(rng.integers(12, 40))] = False
    gappy = five[keep].reset_index(drop=True)
    rows = gappy[["timestamp", "open", "high", "low", "close", "volume"]].to_numpy(dtype=np.float64)
    first = int(five["timestamp"].iloc[0])
    for anchor in first + 300 * rng.integers(12 * 24, len(five), 20):
        expected = _array(hourly_bars_from_5m(gappy, anchor_end=int(anchor)).tail(500))
        np.testing.assert_array_equal(anchored_bars_array(rows, int(anchor), 500), expected)
