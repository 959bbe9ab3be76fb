"""`make bench` (= `python -m bench`): measure the real services, over real gRPC and a real database, on SQLite and
MariaDB. Writes bench/results.json and the Markdown table between the BENCH markers in README.md.

    python -m bench                       # every scenario, both engines, each run 3 times
    python -m bench --engines mysql --scenarios signal_to_order,throughput --quick   # once each
    python -m bench --repeat 5

Each scenario runs ``--repeat`` times per engine (3, or 1 with --quick), the engines taking turns, and each figure
is reported as the median of the runs with its range (bench.harness.aggregate); the raw outcome of every run is
kept under ``repetitions``. backtest and training repeat 3 times inside one run and are run once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.harness import aggregate, machine
from bench.report import write_readme_table

Scenario = Callable[[str, str, Path, bool], Awaitable[dict[str, Any]]]
SCENARIOS: dict[str, Scenario] = {
    "generation": scenarios.generation,
    "signal_to_order": scenarios.signal_to_order,
    "throughput": scenarios.throughput,
    "grpc_overhead": scenarios.grpc_overhead,
    "memory_and_startup": scenarios.memory_and_startup,
    "backtest": scenarios.backtest,
    "training": scenarios.training,
}
# These repeat their measurement inside one run (median of 3 and range_s): the harness runs them once.
REPEATED_INSIDE = frozenset({"backtest", "training"})


async def run_once(name: str, engine_name: str, tmp: Path, quick: bool) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        outcome = await SCENARIOS[name](name, engine_name, tmp, quick)
    except Exception as exc:  # a broken scenario is reported, the others still run
        outcome = {"error": f"{type(exc).__name__}: {exc}"}
    outcome["seconds"] = round(time.perf_counter() - started, 1)
    return outcome


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": "make bench" + (" (quick)" if args.quick else ""),
        "repeat": args.repeat,
        "scenarios": {},
    }
    with tempfile.TemporaryDirectory(prefix="cts-bench-") as tmp:
        for name in args.scenarios:
            repeat = 1 if name in REPEATED_INSIDE else args.repeat
            runs: dict[str, list[dict[str, Any]]] = {engine_name: [] for engine_name in args.engines}
            for i in range(1, repeat + 1):
                for engine_name in args.engines:  # the engines take turns, so a drift of the machine hits both
                    print(f"== {name} on {engine_name}" + (f" (run {i}/{repeat})" if repeat > 1 else ""), flush=True)
                    outcome = await run_once(name, engine_name, Path(tmp), args.quick)
                    print(json.dumps(outcome, indent=2), flush=True)
                    runs[engine_name].append(outcome)
            for engine_name, outcomes in runs.items():
                merged = outcomes[0] if name in REPEATED_INSIDE else aggregate(outcomes)
                results["scenarios"].setdefault(name, {})[engine_name] = merged
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--scenarios", type=lambda s: s.split(","), default=list(SCENARIOS))
    parser.add_argument("--engines", type=lambda s: s.split(","), default=["sqlite", "mysql"])
    parser.add_argument("--quick", action="store_true", help="fewer iterations, one run each (smoke run)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs of each scenario per engine, reported as median and range (default 3, 1 with --quick); "
        "backtest and training repeat inside one run",
    )
    parser.add_argument("--output", type=Path, default=Path("bench/results.json"))
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the README table")
    args = parser.parse_args()
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    results = asyncio.run(main_async(args))
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_readme:
        write_readme_table(results, Path("README.md"))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
