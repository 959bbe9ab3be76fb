"""Candle granularities (Coinbase's names) and their length in seconds: one place for every "3600"."""

from __future__ import annotations

from typing import Final

GRANULARITY_SECONDS: Final = {
    "ONE_MINUTE": 60,
    "FIVE_MINUTE": 300,
    "FIFTEEN_MINUTE": 900,
    "THIRTY_MINUTE": 1800,
    "ONE_HOUR": 3600,
    "TWO_HOUR": 7200,
    "SIX_HOUR": 21600,
    "ONE_DAY": 86400,
}


def candle_seconds(granularity: str) -> int:
    """The length of one candle of ``granularity``; KeyError names an unknown granularity."""
    return GRANULARITY_SECONDS[granularity]
