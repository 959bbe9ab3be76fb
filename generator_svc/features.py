"""The 51 model features, computed from one symbol's hourly candles (or many symbols at once).

Every feature is scale-free (returns, ratios, z-scores, oscillators), so one model serves BTC at 10,000 USD and XRP
at 0.2 USD. Row t uses candle t and earlier candles only (no look-ahead); rows without enough history are NaN.

Gaps: features are computed over consecutive *rows*, not over wall-clock hours. A missing hour is not invented
(no forward-filled fake candle): the candle after a gap is treated as the next observation, so "ret_1" across a
3-hour gap is the return over those 3 hours. The feature ``hours_since_prev`` (1.0 normally, 3.0 after two missing
hours) tells the model where that happened.

Many symbols at once (the generator): ``latest_features`` stacks the last ``HISTORY_WINDOW`` rows of every symbol
side by side (row k = each symbol's k-th most recent candle; a symbol with fewer rows is padded with leading NaN,
treated like missing history) and evaluates the same definitions at the last row only, in numpy: the recursive
averages by the same recursion as pandas' ``ewm(adjust=False)``, a block of rows per matrix product (pandas itself
only for a column with a gap after its start). A test holds it to the last row of ``compute_features`` on real
candles.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

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
# their start: after 500 rows the first row's weight is (1 - a)^499, about 2e-9 for the slowest average (the
# 50-span EMA, a = 2/51) and far less for the others, so 500 rows reproduce the full-history values
# (tests/generator_svc/test_features.py holds them to 1e-9).
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


def latest_features(candles_by_symbol: Mapping[str, np.ndarray], window: int = HISTORY_WINDOW) -> pd.DataFrame:
    """The features of each symbol's last candle (index = symbol, columns = FEATURE_NAMES), from the last ``window``
    rows of every symbol, given as (n, 6) float arrays in CANDLE_COLUMNS order, oldest first (as the generator's
    cache keeps them: no DataFrame per symbol). Agrees with the last row of ``compute_features``
    (tests/generator_svc/test_features.py)."""
    symbols = [s for s, rows in candles_by_symbol.items() if len(rows)]
    if not symbols:
        return pd.DataFrame(columns=list(FEATURE_NAMES), dtype=float)
    panel = np.full((len(CANDLE_COLUMNS), window, len(symbols)), np.nan)
    for j, symbol in enumerate(symbols):
        tail = candles_by_symbol[symbol][-window:]
        panel[:, window - len(tail) :, j] = tail.T
    t, o, h, lo, c, v = panel
    with np.errstate(all="ignore"):
        last = _last_row_features(o, h, lo, c, v, t)
        result = pd.DataFrame({name: last[name] for name in FEATURE_NAMES}, index=pd.Index(symbols, name="symbol"))
    return result.replace([np.inf, -np.inf], np.nan)


# --- the last row only, on (rows, symbols) arrays with leading NaN where a symbol has less history ---
# The same definitions as _panel_features, evaluated at the last row: window statistics over the last n rows (NaN
# when any of them is missing, like rolling(n, min_periods=n)), recursive averages by _ewm_array (pandas' recursion
# in numpy).


EWM_BLOCK = 32


@functools.lru_cache(maxsize=32)
def _ewm_block_weights(alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """For y_t = (1 - a) y_(t-1) + a x_t over a block of EWM_BLOCK rows: M[j, i] = a (1 - a)^(j - i) (i <= j)
    carries the block's inputs, P[j] = (1 - a)^(j + 1) the state before the block."""
    j = np.arange(EWM_BLOCK)
    powers = np.subtract.outer(j, j).astype(float)
    inputs = np.tril(alpha * (1.0 - alpha) ** np.maximum(powers, 0.0))
    return inputs, (1.0 - alpha) ** (j + 1.0)


def _ewm_defined(x: np.ndarray, alpha: float) -> np.ndarray:
    """The recursion on columns defined from their first row on (y_0 = x_0), a block of rows at a time: each block
    is one small matrix product instead of a Python step per row."""
    inputs, carry = _ewm_block_weights(alpha)
    out = np.empty_like(x)
    state = x[0]  # y_(-1) = x_0 makes y_0 = x_0
    for row in range(0, len(x), EWM_BLOCK):
        block = x[row : row + EWM_BLOCK]
        n = len(block)
        y = inputs[:n, :n] @ block + np.outer(carry[:n], state)
        out[row : row + n] = y
        state = y[-1]
    return out


def _ewm_array(
    values: np.ndarray, *, span: int | None = None, alpha: float | None = None, min_periods: int = 0
) -> np.ndarray:
    """pandas' ``ewm(adjust=False).mean()`` on every column at once: from a column's first defined value x0,
    y0 = x0 and y_t = (1 - a) y_(t-1) + a x_t; NaN before min_periods observations. Columns with a gap after
    their start go through pandas itself."""
    a = alpha if alpha is not None else 2.0 / (float(span or 1) + 1.0)
    out = np.full(values.shape, np.nan)
    defined = ~np.isnan(values)
    has_any = defined.any(axis=0)
    starts = np.argmax(defined, axis=0)
    for start in np.unique(starts[has_any]).tolist():
        cols = np.nonzero(has_any & (starts == start))[0]
        x = values[start:, cols]
        gappy = np.isnan(x).any(axis=0)
        if gappy.any():
            frame = pd.DataFrame(values[:, cols[gappy]]).ewm(alpha=a, min_periods=min_periods, adjust=False)
            out[:, cols[gappy]] = frame.mean().to_numpy()
            cols, x = cols[~gappy], x[:, ~gappy]
        if len(cols) == 0:
            continue
        y = _ewm_defined(x, a)
        if min_periods > 1:
            y[: min_periods - 1] = np.nan
        out[start:, cols] = y
    return out


def _tail(values: np.ndarray, n: int) -> np.ndarray:
    if len(values) < n:
        return np.full((n, values.shape[1]), np.nan)
    return values[-n:]


def _mean(values: np.ndarray, n: int) -> np.ndarray:
    return np.asarray(_tail(values, n).mean(axis=0))


def _sum(values: np.ndarray, n: int) -> np.ndarray:
    return np.asarray(_tail(values, n).sum(axis=0))


def _std(values: np.ndarray, n: int) -> np.ndarray:
    """Population std of the last n rows; exactly 0 for a constant window (as pandas' rolling std)."""
    tail = _tail(values, n)
    return np.where(tail.max(axis=0) == tail.min(axis=0), 0.0, tail.std(axis=0))


def _min(values: np.ndarray, n: int) -> np.ndarray:
    return np.asarray(_tail(values, n).min(axis=0))


def _max(values: np.ndarray, n: int) -> np.ndarray:
    return np.asarray(_tail(values, n).max(axis=0))


def _lag(values: np.ndarray, k: int) -> np.ndarray:
    return values[-1 - k] if len(values) > k else np.full(values.shape[1], np.nan)


def _shift(values: np.ndarray) -> np.ndarray:
    shifted = np.empty_like(values)
    shifted[0] = np.nan
    shifted[1:] = values[:-1]
    return shifted


def _where(condition: np.ndarray, values: np.ndarray, other: float) -> np.ndarray:
    return np.where(condition, values, other)


def _if_defined(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(reference), np.nan, values)


def _rsi_last(c: np.ndarray, window: int) -> np.ndarray:
    diff = c - _shift(c)
    defined = ~np.isnan(c)
    up = np.where(defined, np.where(diff > 0, diff, 0.0), np.nan)
    down = np.where(defined, np.where(diff < 0, -diff, 0.0), np.nan)
    averages = _ewm_array(np.hstack([up, down]), alpha=1.0 / window, min_periods=window)[-1]
    avg_up, avg_down = averages[: c.shape[1]], averages[c.shape[1] :]
    rsi = 100.0 - 100.0 / (1.0 + avg_up / avg_down)
    rsi = _if_defined(avg_up, np.where(avg_down != 0, rsi, 100.0))
    return rsi / 100.0


def _atr_last(h: np.ndarray, lo: np.ndarray, c: np.ndarray, window: int) -> np.ndarray:
    prev = _shift(c)
    stacked = np.stack([h - lo, np.abs(h - prev), np.abs(lo - prev)])
    tr = np.nanmax(np.where(np.isnan(stacked), -np.inf, stacked), axis=0)
    tr[np.isneginf(tr)] = np.nan
    valid = np.cumsum(~np.isnan(tr), axis=0)
    seeded = np.where(valid > window, tr, np.nan)
    rows, cols = np.nonzero(valid == window)
    first: dict[int, int] = {}
    for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
        first.setdefault(col, row)
    for col, row in first.items():
        if row + 1 >= window:
            seed = tr[row + 1 - window : row + 1, col]
            seeded[row, col] = seed.mean()  # NaN when the window is not all defined, as rolling(min_periods=n)
    return np.asarray(_ewm_array(seeded, alpha=1.0 / window)[-1])


def _last_row_features(
    o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray, t: np.ndarray
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    close = c[-1]
    log_close = np.log(c)
    for horizon in RETURN_HORIZONS:
        out[f"ret_{horizon}"] = log_close[-1] - _lag(log_close, horizon)
    sma = {n: _mean(c, n) for n in SMA_WINDOWS}
    for n in SMA_WINDOWS:
        out[f"dist_sma_{n}"] = close / sma[n] - 1.0
    ema = {n: _ewm_array(c, span=n, min_periods=n) for n in (*EMA_SPANS,)}
    for n in EMA_SPANS:
        out[f"dist_ema_{n}"] = close / ema[n][-1] - 1.0
    out["sma_5_20"] = sma[5] / sma[20] - 1.0
    out["sma_20_50"] = sma[20] / sma[50] - 1.0
    out["sma_50_200"] = sma[50] / sma[200] - 1.0
    for n in RSI_WINDOWS:
        out[f"rsi_{n}"] = _rsi_last(c, n)
    macd = ema[12] - ema[26]
    signal = _ewm_array(macd, span=9, min_periods=9)[-1]
    out["macd"] = macd[-1] / close
    out["macd_signal"] = signal / close
    out["macd_hist"] = (macd[-1] - signal) / close
    std20 = _std(c, 20)
    upper, lower = sma[20] + 2 * std20, sma[20] - 2 * std20
    out["bb_width_20"] = (upper - lower) / sma[20]
    out["bb_pctb_20"] = _where(std20 > 0, (close - lower) / (upper - lower), 0.5)
    out["atr_14"] = _atr_last(h, lo, c, 14) / close
    out["atr_24"] = _atr_last(h, lo, c, 24) / close
    ret1 = log_close - _shift(log_close)
    vol = {n: _std(ret1, n) for n in VOLATILITY_WINDOWS}
    for n in VOLATILITY_WINDOWS:
        out[f"volatility_{n}"] = vol[n]
    out["volatility_ratio_24_168"] = _if_defined(vol[168], _where(vol[168] > 0, vol[24] / vol[168], 1.0))
    stoch = []
    for end in (len(c) - 2, len(c) - 1, len(c)):  # stoch_k on the last three rows, for stoch_d_3
        lowest, highest = _min(lo[:end], 14), _max(h[:end], 14)
        k = _where(highest > lowest, (c[end - 1] - lowest) / (highest - lowest), 0.5)
        stoch.append(_if_defined(lowest, k))
    out["stoch_k_14"] = stoch[-1]
    out["stoch_d_3"] = np.mean(stoch, axis=0)
    log_volume = np.log1p(v)
    for n in (24, 72):
        mean, std = _mean(log_volume, n), _std(log_volume, n)
        out[f"volume_z_{n}"] = _if_defined(mean, _where(std > 0, (log_volume[-1] - mean) / std, 0.0))
    volume_sum_24 = _sum(v, 24)
    out["volume_ratio_24"] = log_volume[-1] - np.log1p(_mean(v, 24))
    signed = _sum(np.sign(c - _shift(c)) * v, 24)
    out["obv_slope_24"] = _if_defined(volume_sum_24, _where(volume_sum_24 > 0, signed / volume_sum_24, 0.0))
    vwap = _sum(c * v, 24) / volume_sum_24
    out["dist_vwap_24"] = _if_defined(volume_sum_24, _where(volume_sum_24 > 0, close / vwap - 1.0, 0.0))
    top, bottom = np.maximum(o[-1], close), np.minimum(o[-1], close)
    out["body"] = close / o[-1] - 1.0
    out["upper_wick"] = (h[-1] - top) / close
    out["lower_wick"] = (bottom - lo[-1]) / close
    out["range"] = (h[-1] - lo[-1]) / close
    low24, high24 = _min(lo, 24), _max(h, 24)
    out["range_position_24"] = _if_defined(low24, _where(high24 > low24, (close - low24) / (high24 - low24), 0.5))
    out["dist_high_168"] = close / _max(h, 168) - 1.0
    out["hours_since_prev"] = (t[-1] - _lag(t, 1)) / 3600.0
    return out
