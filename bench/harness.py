"""Benchmark plumbing: the services as a cluster of processes (on testkit), RSS, percentiles, machine description."""

from __future__ import annotations

import asyncio
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.services import SERVICE_NAMES, service
from testkit.databases import scratch_database
from testkit.ports import address, free_ports
from testkit.processes import ServiceProcesses


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary_ms(samples_s: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 0.5), 3),
        "p90_ms": round(percentile(ms, 0.9), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "mean_ms": round(statistics.fmean(ms), 3) if ms else float("nan"),
    }


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _stat(values: Sequence[float]) -> dict[str, Any]:
    """``{"median": m, "range": [min, max]}`` of ``values``, NaN left out (all NaN gives NaN)."""
    finite = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    if not finite:
        return {"median": float("nan"), "range": [float("nan"), float("nan")]}
    median = statistics.median(finite)
    if all(isinstance(v, int) for v in finite) and median == int(median):
        median = int(median)  # counts stay whole: the median of [500, 500] is 500, not 500.0
    return {"median": round(median, 3) if isinstance(median, float) else median, "range": [min(finite), max(finite)]}


def _merge(values: Sequence[Any]) -> Any:
    """Numbers -> their median and range; dicts -> merged key by key (keys in first-seen order, each over the
    values that have it); anything else (strings, booleans, lists, mixed kinds) -> the first value."""
    if values and all(_is_number(v) for v in values):
        return _stat(values)
    if values and all(isinstance(v, Mapping) for v in values):
        keys = list(dict.fromkeys(k for v in values for k in v))
        return {k: _merge([v[k] for v in values if k in v]) for k in keys}
    return values[0] if values else None


def aggregate(outcomes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge the outcomes of repeated runs of one scenario on one engine into one outcome: every number (nested
    anywhere) becomes ``{"median": m, "range": [min, max]}`` over the runs that succeeded, everything else is kept
    from the first of them. ``runs`` counts those; a run that failed (an ``error`` key) is reported in ``errors``
    ("run i/N: ...") and the first of them in ``error``; ``repetitions`` keeps every raw outcome, in order."""
    ok = [o for o in outcomes if "error" not in o]
    merged: dict[str, Any] = {"runs": len(ok)}
    if ok:
        merged.update(_merge(ok))
    errors = [f"run {i}/{len(outcomes)}: {o['error']}" for i, o in enumerate(outcomes, 1) if "error" in o]
    if errors:
        merged["error"] = errors[0]
        merged["errors"] = errors
    merged["repetitions"] = [dict(o) for o in outcomes]
    return merged


def machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def bench_database(engine_name: str, tmp: Path) -> AbstractAsyncContextManager[str]:
    """A fresh migrated database: a SQLite file, or a uniquely named MariaDB database dropped afterwards."""
    if engine_name not in ("sqlite", "mysql"):
        raise ValueError(f"unknown engine {engine_name!r}")
    return scratch_database("sqlite" if engine_name == "sqlite" else "mysql", tmp, prefix="cts_bench")


@dataclass
class RunningService:
    name: str
    process: subprocess.Popen[bytes]
    address: str
    startup_s: float


class Cluster:
    """The four services as real processes on free ports against one database, wired to each other."""

    def __init__(self, database_url: str, log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.ports = dict(zip(SERVICE_NAMES, free_ports(len(SERVICE_NAMES)), strict=True))
        peers = {f"{service(name).env_prefix}_ADDR": address(port) for name, port in self.ports.items()}
        self.processes = ServiceProcesses(database_url, log_dir, {**peers, **(env or {})})
        self.services: dict[str, RunningService] = {}

    def address(self, name: str) -> str:
        return address(self.ports[name])

    async def start(self, names: Sequence[str] = SERVICE_NAMES) -> None:
        """Start ``names`` one after the other (downstream first), each SERVING before the next starts."""
        for name in names:
            started = time.perf_counter()
            process = self.processes.spawn(name, name, self.ports[name])
            await self.processes.wait_one(process)
            self.services[name] = RunningService(name, process.process, process.address, time.perf_counter() - started)

    async def stop(self) -> None:
        await asyncio.to_thread(self.processes.stop)
        self.services.clear()
