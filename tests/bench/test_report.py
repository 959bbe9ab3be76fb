"""bench.report: aggregated figures render as "median (min-max)"; one-run numbers (older results.json) still render."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.harness import aggregate
from bench.report import BEGIN, END, markdown, write_readme_table

MACHINE = {"cores": 2, "cpu": "CPU", "memory_gib": 8.0, "python": "3.11.7"}


def _throughput(per_second: float, baseline: float) -> dict[str, Any]:
    return {"target": "t", "per_second": per_second, "baseline_update_commit_per_second": baseline, "seconds": 4.0}


def _results(repeat: int, scenarios: dict[str, Any]) -> dict[str, Any]:
    return {"when": "now", "machine": MACHINE, "command": "make bench", "repeat": repeat, "scenarios": scenarios}


def _row(table: str, label: str) -> str:
    return next(line for line in table.splitlines() if line.startswith(f"| {label}"))


def test_median_and_range_per_engine() -> None:
    sqlite = aggregate([_throughput(2100.0, 950.0), _throughput(2000.0, 960.0), _throughput(2200.0, 970.0)])
    mysql = aggregate([_throughput(1500.0, 1000.0)] * 3)
    table = markdown(_results(3, {"throughput": {"sqlite": sqlite, "mysql": mysql}}))
    assert "median of 3 runs" in table
    assert _row(table, "recommendations executed") == (
        "| recommendations executed end to end (x the UPDATE+COMMIT baseline) | >= 4,000/s and >= x4 "
        "| 2,100/s (2,000-2,200) (x2.2) | 1,500/s (x1.5) |"
    )
    assert "| 960/s (950-970) |" in _row(table, "baseline: single-row")


def test_a_failed_run_is_noted_next_to_the_figures() -> None:
    sqlite = aggregate([_throughput(2100.0, 950.0), {"error": "RuntimeError: boom", "seconds": 1.0}])
    mysql = aggregate([{"error": "RuntimeError: down", "seconds": 1.0}])
    row = _row(markdown(_results(2, {"throughput": {"sqlite": sqlite, "mysql": mysql}})), "recommendations executed")
    assert "| 2,100/s (x2.2) (1 of 2 runs failed) |" in row
    assert "| error: run 1/1: RuntimeError: down |" in row


def test_single_run_results_still_render(tmp_path: Path) -> None:
    results = _results(1, {"throughput": {"sqlite": _throughput(2122.9, 963.1)}})
    del results["repeat"]  # a results.json from before --repeat
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{BEGIN}\nold\n{END}\nafter\n")
    write_readme_table(results, readme)
    text = readme.read_text()
    assert "| 2,123/s (x2.2) | not run |" in text
    assert "old" not in text
    assert text.startswith("intro\n")
    assert text.endswith("after\n")
