"""Market regime recorded with each signal, derived from the features of the signal's candle:

- "volatile" when the 24-hour volatility of hourly log returns is above 2 % (about 10 % a day),
- else "bull" when the 50-hour average is more than 1 % above the 200-hour average,
- "bear" when it is more than 1 % below, and "sideways" otherwise."""

from __future__ import annotations

import math
from collections.abc import Mapping

VOLATILE_HOURLY_STD = 0.02
TREND_BAND = 0.01


def regime_of(features: Mapping[str, float]) -> str:
    volatility = float(features["volatility_24"])
    trend = float(features["sma_50_200"])
    if math.isnan(volatility) or math.isnan(trend):
        return "unknown"
    if volatility > VOLATILE_HOURLY_STD:
        return "volatile"
    if trend > TREND_BAND:
        return "bull"
    if trend < -TREND_BAND:
        return "bear"
    return "sideways"
