"""Benchmark plumbing: databases, service processes, health waits, RSS, percentiles, machine description."""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text

from common.config import child_environment
from common.database import create_engine
from common.migrate import upgrade

MYSQL_SERVER_URL = "mysql+asyncmy://root:@127.0.0.1:3306"
SERVICES = {
    "generator": ("generator_svc", "SIGNAL_GENERATOR", "crypto_trading.v1.SignalGeneratorService"),
    "bridge": ("bridge_svc", "SIGNAL_BRIDGE", "crypto_trading.v1.SignalBridgeService"),
    "orchestrator": ("orchestrator_svc", "TRADE_ORCHESTRATOR", "crypto_trading.v1.TradeOrchestratorService"),
    "executor": ("executor_svc", "TRADE_EXECUTOR", "crypto_trading.v1.TradeExecutorService"),
}


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


@asynccontextmanager
async def bench_database(engine_name: str, tmp: Path) -> AsyncIterator[str]:
    """A fresh migrated database: a SQLite file, or a uniquely named MariaDB database dropped afterwards."""
    if engine_name == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        name = None
    else:
        name = f"cts_bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(f"{MYSQL_SERVER_URL}/mysql")
        async with admin.begin() as conn:
            await conn.execute(text(f"CREATE DATABASE {name}"))
        await admin.dispose()
        url = f"{MYSQL_SERVER_URL}/{name}"
    engine = create_engine(url)
    await upgrade(engine)
    await engine.dispose()
    try:
        yield url
    finally:
        if name is not None:
            admin = create_engine(f"{MYSQL_SERVER_URL}/mysql")
            async with admin.begin() as conn:
                await conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
            await admin.dispose()


async def wait_serving(address: str, service: str, deadline_s: float = 60.0) -> float:
    """Seconds until the health check says SERVING (raises TimeoutError)."""
    started = time.perf_counter()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.perf_counter() - started < deadline_s:
            try:
                response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.perf_counter() - started
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.02)
    raise TimeoutError(f"{service} at {address} not SERVING within {deadline_s}s")


@dataclass
class RunningService:
    name: str
    process: asyncio.subprocess.Process
    address: str
    startup_s: float


class Cluster:
    """The four services as real processes on free ports against one database."""

    def __init__(self, database_url: str, log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.database_url = database_url
        self.log_dir = log_dir
        self.ports = {name: free_port() for name in SERVICES}
        self.extra = dict(env or {})
        self.services: dict[str, RunningService] = {}

    def environment(self) -> dict[str, str]:
        env = {
            "DATABASE_URL": self.database_url,
            "BIND_HOST": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
            "HEALTH_CHECK_INTERVAL_SECONDS": "1",
        }
        for name, (_, prefix, _) in SERVICES.items():
            env[f"{prefix}_PORT"] = str(self.ports[name])
            env[f"{prefix}_ADDR"] = f"127.0.0.1:{self.ports[name]}"
            env[f"{prefix}_METRICS_PORT"] = "0"
        env.update(self.extra)
        return child_environment(env)

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    async def start(self, names: Sequence[str] = ("executor", "orchestrator", "bridge", "generator")) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        for name in names:
            module, _, full_name = SERVICES[name]
            log = (self.log_dir / f"{name}.log").open("ab")
            started = time.perf_counter()
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", module, env=env, stdout=log, stderr=log
            )
            log.close()
            await wait_serving(self.address(name), full_name)
            self.services[name] = RunningService(name, process, self.address(name), time.perf_counter() - started)

    async def stop(self) -> None:
        for service in self.services.values():
            if service.process.returncode is None:
                service.process.terminate()
        for service in self.services.values():
            try:
                await asyncio.wait_for(service.process.wait(), 20)
            except TimeoutError:
                service.process.kill()
        self.services.clear()
