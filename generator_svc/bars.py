"""Hourly bars built from 5-minute candles, anchored at any 5-minute phase of the hour.

A bar covers the hour that ends at its *end*: the twelve 5-minute candles starting at end - 60 min, end - 55 min,
..., end - 5 min. The bar set anchored at ``anchor_end`` has bars ending at anchor_end, anchor_end - 1 h,
anchor_end - 2 h, ...; 5-minute candles that end after ``anchor_end`` are ignored, so a bar set never depends on
anything later than its anchor (no look-ahead). The *phase* of a bar set is the minute of the hour at which its
bars end, in 5-minute steps: phase 0 ends on the hour (the exchange's own hourly candles), phase 1 at :05, ...,
phase 11 at :55. Training uses all twelve phases; the live generator anchors at the latest closed 5-minute candle.

Aggregation: open of the first 5-minute candle, high the max, low the min, close of the last one, volume the sum.
A bar's ``timestamp`` is its start (end - 1 h), the convention of the hourly candle files, so the features'
``hours_since_prev`` stays in hours.

Gaps, explicitly: a bar with missing 5-minute candles is built from the candles that exist and is marked by its
``candles`` column (12 for a complete bar, fewer when some are missing): its open is the first existing candle's
open, its close the last existing candle's close. An hour without any 5-minute candle has no bar (nothing is
invented, no forward-filled price): the next bar's ``timestamp`` jumps, which ``compute_features`` sees as
``hours_since_prev`` > 1, exactly as for a gap in hourly candles.

Pure functions on DataFrames (columns timestamp, open, high, low, close, volume; timestamp = candle start, Unix
seconds, a multiple of 300).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FIVE_MINUTES = 300
HOUR = 3600
PHASES = HOUR // FIVE_MINUTES  # 12
CANDLES_PER_BAR = PHASES
BAR_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume", "candles")
_OHLCV = ("open", "high", "low", "close", "volume")


def phase_of(bar_end: int) -> int:
    """The 5-minute phase (0..11) of a bar ending at ``bar_end`` (Unix seconds, a multiple of 300)."""
    _check_aligned(bar_end, "bar end")
    return (bar_end % HOUR) // FIVE_MINUTES


def latest_anchor(last_end: int, phase: int) -> int:
    """The latest bar end at or before ``last_end`` whose phase is ``phase``."""
    if not 0 <= phase < PHASES:
        raise ValueError(f"phase must be 0..{PHASES - 1}, not {phase}")
    offset = phase * FIVE_MINUTES
    return last_end - ((last_end - offset) % HOUR)


def _check_aligned(value: int, what: str) -> None:
    if value % FIVE_MINUTES:
        raise ValueError(f"{what} {value} is not a multiple of {FIVE_MINUTES} seconds")


def _empty() -> pd.DataFrame:
    frame = pd.DataFrame({col: pd.Series(dtype=float) for col in BAR_COLUMNS})
    return frame.astype({"timestamp": np.int64, "candles": np.int64})


def sorted_candles(candles_5m: pd.DataFrame) -> pd.DataFrame:
    """Sorted by time, one row per timestamp (the first of duplicates), timestamps checked to be 5-minute aligned."""
    missing = [col for col in ("timestamp", *_OHLCV) if col not in candles_5m.columns]
    if missing:
        raise ValueError(f"5-minute candles lack columns: {', '.join(missing)}")
    frame = candles_5m.sort_values("timestamp", kind="stable").drop_duplicates("timestamp")
    times = frame["timestamp"].to_numpy(dtype=np.int64)
    if len(times) and (times % FIVE_MINUTES).any():
        bad = int(times[(times % FIVE_MINUTES) != 0][0])
        raise ValueError(f"5-minute candle timestamp {bad} is not a multiple of {FIVE_MINUTES} seconds")
    return frame.reset_index(drop=True)


def hourly_bars_from_5m(
    candles_5m: pd.DataFrame, anchor_end: int | None = None, *, phase: int | None = None
) -> pd.DataFrame:
    """Hourly bars (columns BAR_COLUMNS, oldest first) from one symbol's 5-minute candles.

    ``anchor_end`` (Unix seconds, a multiple of 300): the end of the last bar; candles ending later are ignored.
    Without it, ``phase`` picks the latest bar end of that phase at or before the last candle's end; with neither,
    the bars end at the last candle's end (the live case: anchored at the latest closed 5-minute candle)."""
    frame = sorted_candles(candles_5m)
    if frame.empty:
        return _empty()
    starts = frame["timestamp"].to_numpy(dtype=np.int64)
    last_end = int(starts[-1]) + FIVE_MINUTES
    if anchor_end is not None:
        _check_aligned(anchor_end, "anchor_end")
        if phase is not None and phase_of(anchor_end) != phase:
            raise ValueError(f"anchor_end {anchor_end} is phase {phase_of(anchor_end)}, not {phase}")
        anchor = int(anchor_end)
    elif phase is not None:
        anchor = latest_anchor(last_end, phase)
    else:
        anchor = last_end
    ends = starts + FIVE_MINUTES
    keep = ends <= anchor
    if not keep.any():
        return _empty()
    ends = ends[keep]
    # Each candle belongs to the first bar end at or after its own end.
    bar_ends = anchor - ((anchor - ends) // HOUR) * HOUR
    first = np.flatnonzero(np.r_[True, bar_ends[1:] != bar_ends[:-1]])
    last = np.r_[first[1:] - 1, len(bar_ends) - 1]
    values = {col: frame[col].to_numpy(dtype=np.float64)[keep] for col in _OHLCV}
    bars = pd.DataFrame(
        {
            "timestamp": bar_ends[first] - HOUR,
            "open": values["open"][first],
            "high": np.maximum.reduceat(values["high"], first),
            "low": np.minimum.reduceat(values["low"], first),
            "close": values["close"][last],
            "volume": np.add.reduceat(values["volume"], first),
            "candles": (last - first + 1).astype(np.int64),
        }
    )
    return bars


def all_phase_bars(candles_5m: pd.DataFrame) -> dict[int, pd.DataFrame]:
    """The bar sets of all twelve phases {phase: bars}, each ending at its latest bar end within the data."""
    frame = sorted_candles(candles_5m)
    return {phase: hourly_bars_from_5m(frame, phase=phase) for phase in range(PHASES)}


def bar_ends(bars: pd.DataFrame) -> np.ndarray:
    """The end time of every bar (its timestamp + 1 h): the moment its features become known."""
    ends: np.ndarray = bars["timestamp"].to_numpy(dtype=np.int64) + HOUR
    return ends


def anchored_bars_array(rows_5m: np.ndarray, anchor_end: int, count: int) -> np.ndarray:
    """The last ``count`` bars of :func:`hourly_bars_from_5m` anchored at ``anchor_end``, in numpy (the live
    generator's path, one symbol at a time, no DataFrame).

    ``rows_5m``: (n, 6) float array in (timestamp, open, high, low, close, volume) order, sorted by timestamp with
    unique, 5-minute aligned timestamps (as the generator's candle cache keeps them). Returns a (m, 7) float array
    in BAR_COLUMNS order, oldest first, m <= count: the same bars, gaps handled the same way (a bar from the
    candles that exist, ``candles`` counting them; an hour without any candle has no bar). Candles ending after
    ``anchor_end`` are ignored."""
    _check_aligned(anchor_end, "anchor_end")
    if count <= 0 or len(rows_5m) == 0:
        return np.empty((0, len(BAR_COLUMNS)))
    starts = rows_5m[:, 0]
    stop = int(np.searchsorted(starts, anchor_end - FIVE_MINUTES, side="right"))  # candles ending by the anchor
    if stop == 0:
        return np.empty((0, len(BAR_COLUMNS)))
    # Bar k (0 = the one ending at the anchor) holds the candles that end in (anchor - (k+1) h, anchor - k h].
    index = (anchor_end - FIVE_MINUTES - starts[:stop].astype(np.int64)) // HOUR
    change = np.empty(stop, dtype=bool)
    change[0] = True
    np.not_equal(index[1:], index[:-1], out=change[1:])
    first = np.flatnonzero(change)
    if len(first) > count:
        first = first[-count:]
    offset = int(first[0])
    rows = rows_5m[offset:stop]
    first = first - offset
    last = np.empty_like(first)
    last[:-1] = first[1:] - 1
    last[-1] = len(rows) - 1
    bars = np.empty((len(first), len(BAR_COLUMNS)))
    bars[:, 0] = anchor_end - (index[offset + first] + 1) * HOUR
    bars[:, 1] = rows[first, 1]
    bars[:, 2] = np.maximum.reduceat(rows[:, 2], first)
    bars[:, 3] = np.minimum.reduceat(rows[:, 3], first)
    bars[:, 4] = rows[last, 4]
    bars[:, 5] = np.add.reduceat(rows[:, 5], first)
    bars[:, 6] = last - first + 1
    return bars
