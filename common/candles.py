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

# The granularities CANDLE_GRANULARITY accepts and the suffix of their candle files (BTC-USD_1h.csv.gz,
# BTC-USD_5m.csv.gz).
FILE_SUFFIX: Final = {"ONE_HOUR": "1h", "FIVE_MINUTE": "5m"}


def candle_seconds(granularity: str) -> int:
    """The length of one candle of ``granularity``; KeyError names an unknown granularity."""
    return GRANULARITY_SECONDS[granularity]


def closed_until(at: int, granularity: str) -> int:
    """The end of the latest candle of ``granularity`` closed at or before ``at`` (Unix seconds): the candle that
    starts there is still open."""
    step = GRANULARITY_SECONDS[granularity]
    return at // step * step


def candle_file_pattern(granularity: str) -> str:
    """The glob of the candle files of ``granularity`` in a candle directory (``*_5m.csv*``)."""
    return f"*_{FILE_SUFFIX[granularity]}.csv*"
