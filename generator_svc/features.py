"""The 51 model features, computed from one symbol's hourly candles (or many symbols at once).

Every feature is scale-free (returns, ratios, z-scores, oscillators), so one model serves BTC at 10,000 USD and XRP
at 0.2 USD. Row t uses candle t and earlier candles only (no look-ahead); rows without enough history are NaN.

Gaps: features are computed over consecutive *rows*, not over wall-clock hours. A missing hour is not invented
(no forward-filled fake candle): the candle after a gap is treated as the next observation, so "ret_1" across a
3-hour gap is the return over those 3 hours. The feature ``hours_since_prev`` (1.0 normally, 3.0 after two missing
hours) tells the model where that happened.

Many symbols at once: ``latest_features`` stacks the last ``HISTORY_WINDOW`` rows of every symbol side by side
(row k = each symbol's k-th most recent candle) and computes every indicator once on the whole panel. It runs
exactly the same code as ``compute_features``; a symbol with fewer rows is padded with leading NaN, which every
indicator here treats like missing history.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

RETURN_HORIZONS = (1, 2, 3, 6, 12, 24, 48, 72, 168)
SMA_WINDOWS = (5, 10, 20, 50, 100, 200)
EMA_SPANS = (9, 12, 26, 50)
RSI_WINDOWS = (7, 14, 21)
VOLATILITY_WINDOWS = (12, 24, 72, 168)

FEATURE_NAMES: tuple[str, ...] = (
    *(f"ret_{h}" for h in RETURN_HORIZONS),
    *(f"dist_sma_{n}" for n in SMA_WINDOWS),
    *(f"dist_ema_{n}" for n in EMA_SPANS),
    "sma_5_20",
    "sma_20_50",
    "sma_50_200",
    *(f"rsi_{n}" for n in RSI_WINDOWS),
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_width_20",
    "bb_pctb_20",
    "atr_14",
    "atr_24",
    *(f"volatility_{n}" for n in VOLATILITY_WINDOWS),
    "volatility_ratio_24_168",
    "stoch_k_14",
    "stoch_d_3",
    "volume_z_24",
    "volume_z_72",
    "volume_ratio_24",
    "obv_slope_24",
    "dist_vwap_24",
    "body",
    "upper_wick",
    "lower_wick",
    "range",
    "range_position_24",
    "dist_high_168",
    "hours_since_prev",
)
assert len(FEATURE_NAMES) == 51

# Rows needed before every feature of a row is defined (the 200-candle moving average is the longest).
MIN_HISTORY = 200
# Rows the live generator and the benchmark feed per symbol. Exponential indicators (EMA, RSI, ATR, MACD) forget
# their start: after 500 rows the weight of the first row is below 1e-15, so 500 rows reproduce the full-history
# values (tests/generator_svc/test_features.py checks the agreement).
HISTORY_WINDOW = 500

CANDLE_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")


def _ewm(
    values: pd.DataFrame, *, span: int | None = None, alpha: float | None = None, min_periods: int = 0
) -> pd.DataFrame:
    return values.ewm(span=span, alpha=alpha, min_periods=min_periods, adjust=False).mean()


def _rsi(close: pd.DataFrame, window: int) -> pd.DataFrame:
    """Wilder's RSI as the `ta` package computes it, scaled to 0..1."""
    diff = close.diff(1)
    up = diff.where(diff > 0, 0.0).where(close.notna())
    down = (-diff.where(diff < 0, 0.0)).where(close.notna())
    avg_up = _ewm(up, alpha=1.0 / window, min_periods=window)
    avg_down = _ewm(down, alpha=1.0 / window, min_periods=window)
    rsi = 100.0 - 100.0 / (1.0 + avg_up / avg_down)
    rsi = rsi.where(avg_down != 0, 100.0).where(avg_up.notna())
    return rsi / 100.0


def _true_range(high: pd.DataFrame, low: pd.DataFrame, close: pd.DataFrame) -> pd.DataFrame:
    prev = close.shift(1)
    ranges = [high - low, (high - prev).abs(), (low - prev).abs()]
    stacked = np.stack([r.to_numpy(dtype=float) for r in ranges])
    with np.errstate(all="ignore"):
        tr = np.nanmax(np.where(np.isnan(stacked), -np.inf, stacked), axis=0)
    tr[np.isneginf(tr)] = np.nan
    return pd.DataFrame(tr, index=high.index, columns=high.columns)


def _atr(high: pd.DataFrame, low: pd.DataFrame, close: pd.DataFrame, window: int) -> pd.DataFrame:
    """Average true range as the `ta` package computes it: the mean of the first ``window`` true ranges, then
    Wilder smoothing."""
    tr = _true_range(high, low, close)
    valid = tr.notna().cumsum()
    seed = tr.rolling(window, min_periods=window).mean()
    seeded = tr.where(valid > window, seed.where(valid == window))
    return _ewm(seeded, alpha=1.0 / window)


def _zscore(values: pd.DataFrame, window: int) -> pd.DataFrame:
    mean = values.rolling(window, min_periods=window).mean()
    std = values.rolling(window, min_periods=window).std(ddof=0)
    return ((values - mean) / std).where(std > 0, 0.0).where(mean.notna())


def _panel_features(
    o: pd.DataFrame, h: pd.DataFrame, lo: pd.DataFrame, c: pd.DataFrame, v: pd.DataFrame, t: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """Every feature for a panel: rows are consecutive candles, columns are symbols."""
    out: dict[str, pd.DataFrame] = {}
    log_close = np.log(c)
    for horizon in RETURN_HORIZONS:
        out[f"ret_{horizon}"] = log_close - log_close.shift(horizon)
    sma = {n: c.rolling(n, min_periods=n).mean() for n in (*SMA_WINDOWS,)}
    for n in SMA_WINDOWS:
        out[f"dist_sma_{n}"] = c / sma[n] - 1.0
    for n in EMA_SPANS:
        out[f"dist_ema_{n}"] = c / _ewm(c, span=n, min_periods=n) - 1.0
    out["sma_5_20"] = sma[5] / sma[20] - 1.0
    out["sma_20_50"] = sma[20] / sma[50] - 1.0
    out["sma_50_200"] = sma[50] / sma[200] - 1.0
    for n in RSI_WINDOWS:
        out[f"rsi_{n}"] = _rsi(c, n)
    macd = _ewm(c, span=12, min_periods=12) - _ewm(c, span=26, min_periods=26)
    signal = _ewm(macd, span=9, min_periods=9)
    out["macd"] = macd / c
    out["macd_signal"] = signal / c
    out["macd_hist"] = (macd - signal) / c
    std20 = c.rolling(20, min_periods=20).std(ddof=0)
    upper, lower = sma[20] + 2 * std20, sma[20] - 2 * std20
    out["bb_width_20"] = (upper - lower) / sma[20]
    out["bb_pctb_20"] = ((c - lower) / (upper - lower)).where(std20 > 0, 0.5)
    out["atr_14"] = _atr(h, lo, c, 14) / c
    out["atr_24"] = _atr(h, lo, c, 24) / c
    ret1 = out["ret_1"]
    vol = {n: ret1.rolling(n, min_periods=n).std(ddof=0) for n in VOLATILITY_WINDOWS}
    for n in VOLATILITY_WINDOWS:
        out[f"volatility_{n}"] = vol[n]
    out["volatility_ratio_24_168"] = (vol[24] / vol[168]).where(vol[168] > 0, 1.0).where(vol[168].notna())
    lowest = lo.rolling(14, min_periods=14).min()
    highest = h.rolling(14, min_periods=14).max()
    stoch_k = ((c - lowest) / (highest - lowest)).where(highest > lowest, 0.5).where(lowest.notna())
    out["stoch_k_14"] = stoch_k
    out["stoch_d_3"] = stoch_k.rolling(3, min_periods=3).mean()
    log_volume = np.log1p(v)
    out["volume_z_24"] = _zscore(log_volume, 24)
    out["volume_z_72"] = _zscore(log_volume, 72)
    volume_mean_24 = v.rolling(24, min_periods=24).mean()
    out["volume_ratio_24"] = np.log1p(v) - np.log1p(volume_mean_24)
    direction = np.sign(c.diff(1))
    signed = (direction * v).rolling(24, min_periods=24).sum()
    volume_sum_24 = v.rolling(24, min_periods=24).sum()
    out["obv_slope_24"] = (signed / volume_sum_24).where(volume_sum_24 > 0, 0.0).where(volume_sum_24.notna())
    vwap = (c * v).rolling(24, min_periods=24).sum() / volume_sum_24
    out["dist_vwap_24"] = (c / vwap - 1.0).where(volume_sum_24 > 0, 0.0).where(volume_sum_24.notna())
    top = np.maximum(o, c)
    bottom = np.minimum(o, c)
    out["body"] = c / o - 1.0
    out["upper_wick"] = (h - top) / c
    out["lower_wick"] = (bottom - lo) / c
    out["range"] = (h - lo) / c
    low24 = lo.rolling(24, min_periods=24).min()
    high24 = h.rolling(24, min_periods=24).max()
    out["range_position_24"] = ((c - low24) / (high24 - low24)).where(high24 > low24, 0.5).where(low24.notna())
    out["dist_high_168"] = c / h.rolling(168, min_periods=168).max() - 1.0
    out["hours_since_prev"] = t.diff(1) / 3600.0
    return out


def _as_panel(columns: Mapping[str, pd.DataFrame], names: list[str]) -> dict[str, pd.DataFrame]:
    return {k: v.set_axis(names, axis=1) for k, v in columns.items()}


def compute_features(candles: pd.DataFrame) -> pd.DataFrame:
    """One row per candle with the 51 features (``FEATURE_NAMES`` order), NaN where history is too short.

    ``candles``: one symbol, columns timestamp (Unix seconds), open, high, low, close, volume; sorted by time."""
    missing = [col for col in CANDLE_COLUMNS if col not in candles.columns]
    if missing:
        raise ValueError(f"candles lack columns: {', '.join(missing)}")
    fields = {col: candles[[col]].astype(float).reset_index(drop=True) for col in CANDLE_COLUMNS}
    panel = _as_panel(fields, ["x"])
    features = _panel_features(
        panel["open"], panel["high"], panel["low"], panel["close"], panel["volume"], panel["timestamp"]
    )
    result = pd.DataFrame({name: features[name]["x"].to_numpy() for name in FEATURE_NAMES}, index=candles.index)
    return result.replace([np.inf, -np.inf], np.nan)


def latest_features(candles_by_symbol: Mapping[str, pd.DataFrame], window: int = HISTORY_WINDOW) -> pd.DataFrame:
    """The features of each symbol's last candle (index = symbol, columns = FEATURE_NAMES), computed on one panel
    of the last ``window`` rows of every symbol. Same code path as ``compute_features``."""
    symbols = [s for s, df in candles_by_symbol.items() if len(df)]
    if not symbols:
        return pd.DataFrame(columns=list(FEATURE_NAMES), dtype=float)
    arrays = {col: np.full((window, len(symbols)), np.nan) for col in CANDLE_COLUMNS}
    for j, symbol in enumerate(symbols):
        tail = candles_by_symbol[symbol].tail(window)
        n = len(tail)
        for col in CANDLE_COLUMNS:
            arrays[col][window - n :, j] = tail[col].to_numpy(dtype=float)
    panel = {col: pd.DataFrame(arrays[col], columns=symbols) for col in CANDLE_COLUMNS}
    features = _panel_features(
        panel["open"], panel["high"], panel["low"], panel["close"], panel["volume"], panel["timestamp"]
    )
    last = {name: features[name].iloc[-1].to_numpy(dtype=float) for name in FEATURE_NAMES}
    result = pd.DataFrame(last, index=pd.Index(symbols, name="symbol"))
    return result.replace([np.inf, -np.inf], np.nan)


FeatureFunction = Callable[[pd.DataFrame], pd.DataFrame]
