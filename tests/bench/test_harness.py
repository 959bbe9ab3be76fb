"""bench.harness.aggregate: repeated outcomes of one scenario -> medians and ranges (pure, no services)."""

from __future__ import annotations

import math
from typing import Any

from bench.harness import aggregate


def _outcome(p50: float, per_second: float, rss: float, seconds: float) -> dict[str, Any]:
    return {
        "target": ">= 1,000/s",
        "latency": {"n": 30, "p50_ms": p50},
        "per_second": per_second,
        "rss_mb": {"generator": rss},
        "ok": True,
        "seconds": seconds,
    }


def test_numbers_become_median_and_range_at_every_depth() -> None:
    outcomes = [
        _outcome(13.0, 2000.0, 160.0, 4.0),
        _outcome(15.0, 1800.0, 150.0, 5.0),
        _outcome(14.0, 2100.0, 170.0, 6.0),
    ]
    merged = aggregate(outcomes)
    assert merged["runs"] == 3
    assert merged["latency"] == {
        "n": {"median": 30, "range": [30, 30]},
        "p50_ms": {"median": 14.0, "range": [13.0, 15.0]},
    }
    assert merged["per_second"] == {"median": 2000.0, "range": [1800.0, 2100.0]}
    assert merged["rss_mb"]["generator"] == {"median": 160.0, "range": [150.0, 170.0]}
    assert merged["seconds"] == {"median": 5.0, "range": [4.0, 6.0]}
    # not numbers: kept from the first run (a boolean is not a figure)
    assert merged["target"] == ">= 1,000/s"
    assert merged["ok"] is True
    assert "error" not in merged
    assert "errors" not in merged
    assert merged["repetitions"] == outcomes


def test_even_count_median_is_the_mean_of_the_middle_two() -> None:
    merged = aggregate([{"x": 1, "n": 500}, {"x": 2, "n": 500}])
    assert merged["x"] == {"median": 1.5, "range": [1, 2]}
    assert merged["n"] == {"median": 500, "range": [500, 500]}
    assert isinstance(merged["n"]["median"], int)


def test_a_failed_run_is_reported_and_left_out_of_the_figures() -> None:
    outcomes = [
        _outcome(13.0, 2000.0, 160.0, 4.0),
        {"error": "RuntimeError: boom", "seconds": 0.5},
        _outcome(15.0, 1800.0, 150.0, 5.0),
    ]
    merged = aggregate(outcomes)
    assert merged["runs"] == 2
    assert merged["error"] == "run 2/3: RuntimeError: boom"
    assert merged["errors"] == ["run 2/3: RuntimeError: boom"]
    assert merged["latency"]["p50_ms"] == {"median": 14.0, "range": [13.0, 15.0]}
    assert merged["seconds"] == {"median": 4.5, "range": [4.0, 5.0]}
    assert len(merged["repetitions"]) == 3


def test_every_run_failed() -> None:
    merged = aggregate([{"error": "A: x", "seconds": 1.0}, {"error": "B: y", "seconds": 2.0}])
    assert merged["runs"] == 0
    assert merged["error"] == "run 1/2: A: x"
    assert merged["errors"] == ["run 1/2: A: x", "run 2/2: B: y"]
    assert "seconds" not in merged


def test_nan_is_left_out_and_keys_missing_in_a_run_use_the_others() -> None:
    merged = aggregate([{"p": math.nan, "only_first": 3.0}, {"p": 2.0}, {"p": 4.0}])
    assert merged["p"] == {"median": 3.0, "range": [2.0, 4.0]}
    assert merged["only_first"] == {"median": 3.0, "range": [3.0, 3.0]}
    all_nan = aggregate([{"p": math.nan}])["p"]
    assert math.isnan(all_nan["median"])
