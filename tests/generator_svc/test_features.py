from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import ta

from generator_svc.features import CANDLE_COLUMNS, FEATURE_NAMES, MIN_HISTORY, compute_features
from generator_svc.features import latest_features as latest_of_arrays
from tests.support.seed import bundled


def latest_features(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The generator's path, fed the (n, 6) arrays its candle cache holds."""
    return latest_of_arrays({s: f[list(CANDLE_COLUMNS)].to_numpy(dtype=float) for s, f in frames.items()})


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return bundled("ETH-USD").iloc[:1500].reset_index(drop=True)


@pytest.fixture(scope="module")
def features(candles: pd.DataFrame) -> pd.DataFrame:
    return compute_features(candles)


def test_51_named_features(features: pd.DataFrame) -> None:
    assert len(FEATURE_NAMES) == 51
    assert len(set(FEATURE_NAMES)) == 51
    assert list(features.columns) == list(FEATURE_NAMES)
    assert features.iloc[MIN_HISTORY + 1 :].notna().all().all()


@pytest.mark.parametrize("t", [0, 1, 13, 50, 199, 200, 201, 350, 777, 1499])
def test_no_look_ahead(candles: pd.DataFrame, features: pd.DataFrame, t: int) -> None:
    prefix = compute_features(candles.iloc[: t + 1]).iloc[t]
    whole = features.iloc[t]
    same = (prefix == whole) | (prefix.isna() & whole.isna())
    assert same.all(), list(prefix.index[~same])


def test_future_changes_do_not_move_the_past(candles: pd.DataFrame, features: pd.DataFrame) -> None:
    shocked = candles.copy()
    shocked.loc[1000:, ["open", "high", "low", "close"]] *= 3.0
    shocked.loc[1000:, "volume"] *= 10
    again = compute_features(shocked)
    pd.testing.assert_frame_equal(again.iloc[:1000], features.iloc[:1000])


def test_reference_indicators_match_ta(candles: pd.DataFrame, features: pd.DataFrame) -> None:
    close, high, low = candles["close"], candles["high"], candles["low"]
    rsi = ta.momentum.RSIIndicator(close, 14).rsi()
    np.testing.assert_allclose(features["rsi_14"][20:] * 100, rsi[20:], atol=1e-6)
    macd = ta.trend.MACD(close)
    np.testing.assert_allclose((features["macd"] * close)[40:], macd.macd()[40:], atol=1e-6)
    np.testing.assert_allclose((features["macd_signal"] * close)[40:], macd.macd_signal()[40:], atol=1e-6)
    atr = ta.volatility.AverageTrueRange(high, low, close, 14).average_true_range()
    np.testing.assert_allclose((features["atr_14"] * close)[14:], atr[14:], atol=1e-6)
    width = ta.volatility.BollingerBands(close, 20, 2).bollinger_wband()
    np.testing.assert_allclose(features["bb_width_20"][20:] * 100, width[20:], atol=1e-6)
    stoch = ta.momentum.StochasticOscillator(high, low, close, 14, 3).stoch()
    np.testing.assert_allclose(features["stoch_k_14"][20:] * 100, stoch[20:], atol=1e-6)


def test_short_history_is_nan(candles: pd.DataFrame) -> None:
    short = compute_features(candles.iloc[: MIN_HISTORY - 10])
    assert short["dist_sma_200"].isna().all()
    assert short["ret_168"].iloc[:168].isna().all()
    assert short["ret_168"].iloc[168:].notna().all()
    assert short["ret_1"].iloc[1:].notna().all()


def test_a_gap_is_not_filled(candles: pd.DataFrame) -> None:
    gapped = candles.drop(index=range(600, 603)).reset_index(drop=True)
    f = compute_features(gapped)
    assert f["hours_since_prev"].iloc[600] == 4.0
    assert f["hours_since_prev"].iloc[599] == 1.0
    expected = np.log(gapped["close"].iloc[600] / gapped["close"].iloc[599])
    assert f["ret_1"].iloc[600] == pytest.approx(expected)
    assert len(f) == len(gapped)


def test_latest_features_equal_the_last_rows(candles: pd.DataFrame, features: pd.DataFrame) -> None:
    other = bundled("XRP-USD").iloc[:900].reset_index(drop=True)
    short = candles.iloc[:260].reset_index(drop=True)
    latest = latest_features({"ETH-USD": candles, "XRP-USD": other, "SHORT": short})
    # 1500 rows vs the live window of 500: exponential indicators differ by at most ~1e-10 (their memory).
    np.testing.assert_allclose(latest.loc["ETH-USD"], features.iloc[-1], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(latest.loc["XRP-USD"], compute_features(other).iloc[-1], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(latest.loc["SHORT"], compute_features(short).iloc[-1], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("symbol", ["BTC-USD", "ETH-USD", "LTC-USD", "XRP-USD"])
def test_latest_features_agree_with_compute_features_across_history(symbol: str) -> None:
    """The generator's last-row path against the training path, at many points of each real series (gaps, quiet
    and wild hours included), with symbols of very different history lengths in one panel."""
    series = bundled(symbol)
    rng = np.random.default_rng(7)
    ends = sorted(rng.choice(np.arange(MIN_HISTORY + 1, len(series)), size=12, replace=False))
    panel = {}
    expected = {}
    for i, end in enumerate(ends):
        start = max(0, end - (MIN_HISTORY + 1 + 97 * i))  # from the minimum history up to the full window
        window = series.iloc[start:end].reset_index(drop=True)
        panel[f"{symbol}-{i}"] = window
        expected[f"{symbol}-{i}"] = compute_features(window).iloc[-1]
    latest = latest_features(panel)
    for name, row in expected.items():
        np.testing.assert_allclose(latest.loc[name], row, rtol=1e-7, atol=1e-9, err_msg=name)


def test_latest_features_of_a_flat_market() -> None:
    """Constant prices and volume (zero variance windows): the same guarded values on both paths."""
    flat = bundled("BTC-USD").iloc[:400].reset_index(drop=True)
    for column in ("open", "high", "low", "close"):
        flat.loc[300:, column] = 100.0
    flat.loc[300:, "volume"] = 5.0
    latest = latest_features({"FLAT": flat})
    expected = compute_features(flat).iloc[-1]
    np.testing.assert_allclose(latest.loc["FLAT"], expected, rtol=1e-7, atol=1e-9)
    assert latest.loc["FLAT", "volume_z_24"] == 0.0
    assert latest.loc["FLAT", "bb_pctb_20"] == 0.5


@pytest.mark.parametrize(
    ("span", "alpha", "min_periods"), [(9, None, 9), (50, None, 50), (None, 1 / 14, 14), (None, 0.5, 0)]
)
def test_block_ewm_is_pandas_ewm(span: int | None, alpha: float | None, min_periods: int) -> None:
    """The generator's blocked recursion against pandas' ewm(adjust=False): ragged starts (leading NaN), lengths that
    are not a multiple of the block, and a column with a gap (which goes through pandas)."""
    from generator_svc.features import _ewm_array

    rng = np.random.default_rng(3)
    values = rng.normal(100, 5, size=(203, 6))
    for col, start in enumerate([0, 1, 31, 32, 150, 202]):
        values[:start, col] = np.nan
    values[120, 0] = np.nan  # a gap after the start
    expected = pd.DataFrame(values).ewm(span=span, alpha=alpha, min_periods=min_periods, adjust=False).mean()
    np.testing.assert_allclose(
        _ewm_array(values, span=span, alpha=alpha, min_periods=min_periods), expected, rtol=1e-12
    )
