"""`make bench` (= `python -m bench`): measure the real services, over real gRPC and a real database, on SQLite and
MariaDB. Writes bench/results.json and the Markdown table between the BENCH markers in README.md.

    python -m bench                       # every scenario, both engines
    python -m bench --engines mysql --scenarios signal_to_order,throughput --quick
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
from bench.harness import machine
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


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": "make bench" + (" (quick)" if args.quick else ""),
        "scenarios": {},
    }
    with tempfile.TemporaryDirectory(prefix="cts-bench-") as tmp:
        for name in args.scenarios:
            for engine_name in args.engines:
                print(f"== {name} on {engine_name}", flush=True)
                started = time.perf_counter()
                try:
                    outcome = await SCENARIOS[name](name, engine_name, Path(tmp), args.quick)
                except Exception as exc:  # a broken scenario is reported, the others still run
                    outcome = {"error": f"{type(exc).__name__}: {exc}"}
                outcome["seconds"] = round(time.perf_counter() - started, 1)
                print(json.dumps(outcome, indent=2), flush=True)
                results["scenarios"].setdefault(name, {})[engine_name] = outcome
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--scenarios", type=lambda s: s.split(","), default=list(SCENARIOS))
    parser.add_argument("--engines", type=lambda s: s.split(","), default=["sqlite", "mysql"])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    parser.add_argument("--output", type=Path, default=Path("bench/results.json"))
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the README table")
    args = parser.parse_args()
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
